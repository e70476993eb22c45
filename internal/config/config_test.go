package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "postoffice.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	if c.DataDir != filepath.Join(wd, "data") || c.POP3.InactivityTimeout != Duration(10*time.Minute) || c.POP3.AllowPlaintextAuth {
		t.Fatalf("unexpected defaults: %+v", c)
	}
	if strings.Join(c.POP3.Listen, ",") != ":110" || strings.Join(c.POP3.TLSListen, ",") != ":995" {
		t.Fatalf("unexpected default listeners: %+v", c.POP3)
	}
}

func TestFileOverridesAndEmptyListDisables(t *testing.T) {
	c, err := Load(write(t, `
data_dir = "/var/mail/po"
hostname = "mail.example.com"
[pop3]
listen = ["127.0.0.1:1110"]
tls_listen = []
inactivity_timeout = 30
allow_plaintext_auth = true
[tls]
cert_file = "/etc/c.pem"
key_file = "/etc/k.pem"
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/var/mail/po" || c.Hostname != "mail.example.com" || c.POP3.InactivityTimeout != Duration(30*time.Second) ||
		!c.POP3.AllowPlaintextAuth || len(c.POP3.TLSListen) != 0 || c.POP3.Listen[0] != "127.0.0.1:1110" ||
		c.TLS.CertFile != "/etc/c.pem" {
		t.Fatalf("file not applied: %+v", c)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[pop3]\nlisten = [\"nope\"]\n", `"pop3.listen"`},
		{"[pop3]\ninactivity_timeout = \"ten\"\n", `pop3.inactivity_timeout`},
		{"[pop3]\ninactivity_timeout = 0\n", `"pop3.inactivity_timeout"`},
		{"[pop3]\nlisten_typo = []\n", `unknown key "pop3.listen_typo"`},
		{"data_dir = \"\"\n", `"data_dir"`},
		{"[tls]\ncert_file = \"/c.pem\"\n", `"tls.key_file"`},
		{"data_dir = \n", "line 1"},
	} {
		_, err := Load(write(t, tc.text))
		if err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error %q does not name %s on one line", tc.text, err, tc.want)
		}
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "absent.toml")); err == nil {
		t.Fatal("no error for a missing file")
	}
}
