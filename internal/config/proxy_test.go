package config

import (
	"slices"
	"strings"
	"testing"
)

func TestProxyKeys(t *testing.T) {
	c, err := Load(write(t, `
[pop3]
proxy_protocol = true
proxy_trusted = ["127.0.0.1", "10.0.0.0/8", "2001:db8::/32"]
[submission]
proxy_trusted = ["192.0.2.10"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if !c.POP3.ProxyProtocol || !slices.Equal(c.POP3.ProxyTrusted, []string{"127.0.0.1", "10.0.0.0/8", "2001:db8::/32"}) {
		t.Errorf("pop3: %+v", c.POP3.Service)
	}
	if c.SMTP.ProxyProtocol || c.Submission.ProxyProtocol {
		t.Errorf("proxy_protocol is off by default")
	}
	for _, bad := range []struct{ toml, key string }{
		{"[smtp]\nproxy_protocol = true", "smtp.proxy_trusted"},
		{"[submission]\nproxy_protocol = true\nproxy_trusted = []", "submission.proxy_trusted"},
		{"[pop3]\nproxy_trusted = [\"lb.example.com\"]", "pop3.proxy_trusted"},
	} {
		_, err := Load(write(t, bad.toml))
		if err == nil || !strings.Contains(err.Error(), `"`+bad.key+`"`) {
			t.Errorf("%q: error %v, want one naming %s", bad.toml, err, bad.key)
		}
	}
}
