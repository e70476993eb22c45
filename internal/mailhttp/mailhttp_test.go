package mailhttp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/autoconfig"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
)

func isLocal(_ context.Context, d string) (bool, error) {
	if d == "broken.test" {
		return false, errors.New("store down")
	}
	return d == "example.test" || d == "example.org", nil
}

var services = autoconfig.Host{
	Hostname:   "mail.example.test",
	POP3:       []autoconfig.Listener{{Port: 995, Security: autoconfig.ImplicitTLS}, {Port: 110, Security: autoconfig.STARTTLS}},
	Submission: []autoconfig.Listener{{Port: 465, Security: autoconfig.ImplicitTLS}, {Port: 587, Security: autoconfig.STARTTLS}},
}

func newSite(t *testing.T, mod func(*Config)) *Site {
	t.Helper()
	cfg := Config{
		Hostname:   "mail.example.test",
		IsLocal:    isLocal,
		ACME:       http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "acme:"+r.URL.Path) }),
		Autoconfig: &autoconfig.Handler{Host: services, IsLocal: isLocal, ProfileKey: make([]byte, 32)},
		MTASTS:     &mtasts.Policy{Mode: mtasts.Testing, MX: []string{"mail.example.test"}, MaxAge: 7 * 24 * time.Hour},
		ConsoleURL: "https://mail.example.test:8443/",
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func get(t *testing.T, h http.Handler, method, url, body string) *http.Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, url, rd))
	return w.Result()
}

func TestRoutes(t *testing.T) {
	s := newSite(t, nil)
	link, _ := autoconfig.ProfileLink(make([]byte, 32), "alice@example.test", time.Now().Add(time.Hour))
	for _, tc := range []struct {
		method, url string
		code        int
		contains    string
	}{
		{"GET", "http://anything.example/.well-known/acme-challenge/tok", 200, "acme:/.well-known/acme-challenge/tok"},
		{"GET", "https://mta-sts.example.test/.well-known/mta-sts.txt", 200, "version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 604800\r\n"},
		{"GET", "http://MTA-STS.Example.ORG.:443/.well-known/mta-sts.txt", 200, "mode: testing"},
		{"GET", "https://mta-sts.evil.example/.well-known/mta-sts.txt", 404, ""},
		{"GET", "https://mta-sts.broken.test/.well-known/mta-sts.txt", 503, ""},
		{"GET", "https://example.test/.well-known/mta-sts.txt", 404, ""},
		{"GET", "https://mail.example.test/.well-known/mta-sts.txt", 404, ""},
		{"POST", "https://mta-sts.example.test/.well-known/mta-sts.txt", 405, ""},
		{"GET", "https://autoconfig.example.test/mail/config-v1.1.xml?emailaddress=alice@example.test", 200, `<incomingServer type="pop3">`},
		{"GET", "https://example.org/.well-known/autoconfig/mail/config-v1.1.xml", 200, `<emailProvider id="example.org">`},
		{"POST", "https://autodiscover.example.test/Autodiscover/Autodiscover.xml", 400, "<ErrorCode>600</ErrorCode>"},
		{"GET", "https://mail.example.test" + link, 200, "com.apple.mail.managed"},
		{"GET", "http://mail.example.test/", 302, ""},
		{"GET", "http://mail.example.test/index.php", 404, ""},
	} {
		res := get(t, s, tc.method, tc.url, "")
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != tc.code || !strings.Contains(string(b), tc.contains) {
			t.Errorf("%s %s: %d %q, want %d with %q", tc.method, tc.url, res.StatusCode, b, tc.code, tc.contains)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", tc.url)
		}
		if tc.code == 200 && strings.HasSuffix(tc.url, "mta-sts.txt") {
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("policy content type %q", ct)
			}
			if p, err := mtasts.Parse(string(b)); err != nil || p.String() != s.Policy().String() {
				t.Errorf("served policy %q: %v", b, err)
			}
		}
		if tc.code == 302 && res.Header.Get("Location") != "https://mail.example.test:8443/" {
			t.Errorf("redirect to %q", res.Header.Get("Location"))
		}
	}
	// Without ACME, autoconfig, MTA-STS or console, their paths are 404.
	bare := newSite(t, func(c *Config) { c.ACME, c.Autoconfig, c.MTASTS, c.ConsoleURL = nil, nil, nil, "" })
	for _, u := range []string{"/.well-known/acme-challenge/tok", "/mail/config-v1.1.xml", "/autodiscover/autodiscover.xml", "/"} {
		if res := get(t, bare, "GET", "http://autoconfig.example.test"+u, ""); res.StatusCode != 404 {
			t.Errorf("bare %s: %d", u, res.StatusCode)
		}
	}
	if res := get(t, bare, "GET", "http://mta-sts.example.test/.well-known/mta-sts.txt", ""); res.StatusCode != 404 {
		t.Errorf("bare policy: %d", res.StatusCode)
	}
}

func TestNewChecks(t *testing.T) {
	for name, mod := range map[string]func(*Config){
		"no hostname": func(c *Config) { c.Hostname = "" },
		"no IsLocal":  func(c *Config) { c.IsLocal = nil },
		"bad mode": func(c *Config) {
			c.MTASTS = &mtasts.Policy{Mode: "enforcing", MX: []string{"mail.example.test"}, MaxAge: time.Hour}
		},
		"bad mx": func(c *Config) {
			c.MTASTS = &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"mx..example"}, MaxAge: time.Hour}
		},
		"no mx": func(c *Config) { c.MTASTS = &mtasts.Policy{Mode: mtasts.Enforce, MaxAge: time.Hour} },
		"max_age over a year": func(c *Config) {
			c.MTASTS = &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"mail.example.test"}, MaxAge: 400 * 24 * time.Hour}
		},
		"console not a URL": func(c *Config) { c.ConsoleURL = "javascript:alert(1)" },
	} {
		cfg := Config{Hostname: "mail.example.test", IsLocal: isLocal}
		mod(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
