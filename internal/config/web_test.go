package config

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestWebKeys: [acme], [http] and [mta_sts] read as written, with their
// checks naming the key.
func TestWebKeys(t *testing.T) {
	c, err := Parse([]byte(`
[acme]
enabled = true
email = "postmaster@example.com"
directory_url = "https://acme.internal:14000/dir"
challenge = "tls-alpn-01"
names = ["mail.{domain}", "{domain}"]
[http]
listen = [":80"]
tls_listen = [":443"]
[mta_sts]
mode = "enforce"
mx = ["mail.example.com", "*.mx.example.net"]
max_age = "1d"
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	if !c.ACME.Enabled || c.ACME.Challenge != "tls-alpn-01" || !slices.Equal(c.ACME.Names, []string{"mail.{domain}", "{domain}"}) ||
		!slices.Equal(c.HTTP.TLSListen, []string{":443"}) || c.MTASTS.Mode != "enforce" || c.MTASTS.MaxAge != Duration(24*time.Hour) {
		t.Fatalf("not read: %+v %+v %+v", c.ACME, c.HTTP, c.MTASTS)
	}
	d := Default()
	if d.ACME.Enabled || len(d.HTTP.Listen) != 0 || len(d.HTTP.TLSListen) != 0 || d.MTASTS.Mode != "testing" ||
		!slices.Equal(d.ACME.Names, []string{"autoconfig.{domain}", "autodiscover.{domain}", "mta-sts.{domain}"}) {
		t.Fatalf("defaults: %+v %+v %+v", d.ACME, d.HTTP, d.MTASTS)
	}
	for _, tc := range []struct{ text, want string }{
		{"[acme]\nemail = \"no address\"\n", `"acme.email"`},
		{"[acme]\nemail = \"<a@b.c>\"\n", `"acme.email"`},
		{"[acme]\ndirectory_url = \"http://ca.example/dir\"\n", `"acme.directory_url"`},
		{"[acme]\nchallenge = \"dns-01\"\n", `"acme.challenge"`},
		{"[acme]\nnames = [\"mail.example.com\"]\n", `"acme.names"`},
		{"[acme]\nnames = [\"mail{domain}\"]\n", `"acme.names"`},
		{"[http]\nlisten = [\"80\"]\n", `"http.listen"`},
		{"[mta_sts]\nmode = \"strict\"\n", `"mta_sts.mode"`},
		{"[mta_sts]\nmx = [\"mail.*.example.com\"]\n", `"mta_sts.mx"`},
		{"[mta_sts]\nmx = [\"*\"]\n", `"mta_sts.mx"`},
		{"[mta_sts]\nmax_age = \"400d\"\n", `"mta_sts.max_age"`},
	} {
		_, err := Parse([]byte(tc.text), "test")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want one naming %s", tc.text, err, tc.want)
		}
	}
}

// TestACMEWarnings: ACME with a challenge nothing here answers is
// loaded, with a warning naming the keys.
func TestACMEWarnings(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[acme]\nenabled = true\n", `http.listen is empty`},
		{"[acme]\nenabled = true\nchallenge = \"tls-alpn-01\"\n[http]\nlisten = [\":80\"]\n", `http.tls_listen is empty`},
		{"[acme]\nenabled = true\n[http]\nlisten = [\":80\"]\n", ""},
		{"[acme]\nenabled = false\n", ""},
	} {
		c, err := Parse([]byte(tc.text), "test")
		if err != nil {
			t.Fatal(err)
		}
		w := strings.Join(c.Warnings(), "\n")
		if tc.want == "" && w != "" || !strings.Contains(w, tc.want) {
			t.Errorf("%q: warnings %q, want %q", tc.text, w, tc.want)
		}
	}
}
