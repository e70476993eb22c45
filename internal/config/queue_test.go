package config

import (
	"strings"
	"testing"
	"time"
)

func TestQueueDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	q := c.Queue
	if q.DNSServer != "" || q.MXPort != 25 || q.TLS != "may" || q.RelayHost != "" || q.RetryInitial != Duration(time.Minute) ||
		q.RetryMax != Duration(4*time.Hour) || q.MaxLifetime != Duration(5*24*time.Hour) || q.DelayWarning != Duration(4*time.Hour) || q.MaxConcurrent != 20 || q.MaxPerHost != 5 {
		t.Errorf("queue defaults: %+v", q)
	}
}

func TestQueueFile(t *testing.T) {
	c, err := Load(write(t, `
[queue]
dns_server = "127.0.0.1:5353"
mx_port = 2525
tls = "verify"
relay_host = "smtp.example.net:587"
relay_user = "po"
relay_password = "secret"
relay_tls = "encrypt"
retry_initial = 30
retry_max = 600
max_lifetime = 86400
delay_warning = 3600
max_concurrent = 4
max_per_host = 2
poll_interval = 1
[queue.routes]
"example.org" = "10.0.0.1:25"
"b.test" = "127.0.0.2:2525"
`))
	if err != nil {
		t.Fatal(err)
	}
	q := c.Queue
	if q.DNSServer != "127.0.0.1:5353" || q.MXPort != 2525 || q.TLS != "verify" || q.RelayHost != "smtp.example.net:587" ||
		q.RelayUser != "po" || q.RelayPassword != "secret" || q.RelayTLS != "encrypt" || q.RetryInitial != Duration(30*time.Second) ||
		q.RetryMax != Duration(600*time.Second) || q.MaxLifetime != Duration(86400*time.Second) || q.DelayWarning != Duration(time.Hour) || q.MaxConcurrent != 4 ||
		q.MaxPerHost != 2 || q.PollInterval != Duration(time.Second) || len(q.Routes) != 2 || q.Routes["b.test"] != "127.0.0.2:2525" {
		t.Errorf("queue section not applied: %+v", q)
	}
}

func TestQueueErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[queue]\ndns_server = \"localhost\"\n", `"queue.dns_server"`},
		{"[queue]\ndns_server = \"dns.example:53\"\n", `"queue.dns_server"`},
		{"[queue]\nmx_port = 0\n", `"queue.mx_port"`},
		{"[queue]\ntls = \"maybe\"\n", `"queue.tls"`},
		{"[queue]\nrelay_tls = \"strict\"\n", `"queue.relay_tls"`},
		{"[queue]\nrelay_host = \"smtp.example.net\"\n", `"queue.relay_host"`},
		{"[queue]\nrelay_user = \"u\"\n", `"queue.relay_user"`},
		{"[queue]\nrelay_host = \"h:25\"\nrelay_password = \"p\"\n", `"queue.relay_password"`},
		{"[queue]\nrelay_host = \"h:25\"\nrelay_user = \"u\"\nrelay_tls = \"none\"\n", `"queue.relay_tls"`},
		{"[queue.routes]\n\"example.org\" = \"nope\"\n", `"queue.routes.example.org"`},
		{"[queue.routes]\n\"a@example.org\" = \"h:25\"\n", `"queue.routes.a@example.org"`},
		{"[queue]\nretry_initial = 0\n", `"queue.retry_initial"`},
		{"[queue]\nretry_initial = 600\nretry_max = 60\n", `"queue.retry_max"`},
		{"[queue]\nmax_lifetime = -1\n", `"queue.max_lifetime"`},
		{"[queue]\ndelay_warning = -5\n", `"queue.delay_warning"`},
		{"[queue]\nmax_concurrent = 0\n", `"queue.max_concurrent"`},
		{"[queue]\nmax_per_host = 0\n", `"queue.max_per_host"`},
		{"[queue]\npoll_interval = 0\n", `"queue.poll_interval"`},
		{"[queue]\nrelay = \"h:25\"\n", `unknown key "queue.relay"`},
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
