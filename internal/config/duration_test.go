package config

import (
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		str  string
	}{
		{"600", 10 * time.Minute, "10m"}, // seconds, as every duration key was
		{"0", 0, "0s"},
		{"1_000", 1000 * time.Second, "16m40s"},
		{"-5", -5 * time.Second, "-5s"},
		{"10m", 10 * time.Minute, "10m"},
		{"90s", 90 * time.Second, "1m30s"},
		{"36h", 36 * time.Hour, "36h"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"1h0m0s", time.Hour, "1h"},
		{"5d", 5 * day, "5d"},
		{"1d12h", 36 * time.Hour, "36h"},
		{"-2d", -2 * day, "-2d"},
		{" 250ms ", 250 * time.Millisecond, "250ms"},
	} {
		d, err := ParseDuration(tc.in)
		if err != nil {
			t.Errorf("ParseDuration(%q): %v", tc.in, err)
			continue
		}
		if time.Duration(d) != tc.want || d.String() != tc.str {
			t.Errorf("ParseDuration(%q) = %v (%s), want %v (%s)", tc.in, time.Duration(d), d, tc.want, tc.str)
		}
		if back, err := ParseDuration(d.String()); err != nil || back != d {
			t.Errorf("%s does not read back: %v %v", d, time.Duration(back), err)
		}
	}
	for _, bad := range []string{"", "soon", "5x", "1d-3h", "--5m", "d", "1.5d", "99999999999999999", "200000d", "1e3"} {
		if d, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, time.Duration(d))
		} else if !strings.Contains(err.Error(), "not a duration") {
			t.Errorf("ParseDuration(%q): %v", bad, err)
		}
	}
}

// TestDurationKeys: in a file, a duration key takes a plain number of
// seconds (old files keep their meaning) or a string with a unit.
func TestDurationKeys(t *testing.T) {
	c, err := Parse([]byte("[pop3]\ninactivity_timeout = 900\nlogin_delay = \"2m\"\n[queue]\nmax_lifetime = \"2d\"\nretry_max = '36h'\n[store]\nlease = \"10\"\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	if c.POP3.InactivityTimeout != Duration(15*time.Minute) || c.POP3.LoginDelay != Duration(2*time.Minute) ||
		c.Queue.MaxLifetime != Duration(2*day) || c.Queue.RetryMax != Duration(36*time.Hour) || c.Store.Lease != Duration(10*time.Second) {
		t.Errorf("durations %v %v %v %v %v", c.POP3.InactivityTimeout, c.POP3.LoginDelay, c.Queue.MaxLifetime, c.Queue.RetryMax, c.Store.Lease)
	}
	for _, tc := range []struct{ text, want string }{
		{"[queue]\nretry_initial = \"soon\"\n", `key "queue.retry_initial": "soon" is not a duration`},
		{"[auth]\nban_time = 1.5\n", `key "auth.ban_time"`},
		{"[store]\nlease = \"2s\"\n", `key "store.lease": must be at least 3s, got 2s`},
		{"[store]\nlease = \"2h\"\n", `key "store.lease": must be at most 1h, got 2h`},
		{"[submission]\ntimeout = -1\n", `key "submission.timeout": must not be negative, got -1s`},
	} {
		if _, err := Parse([]byte(tc.text), "t"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.text, err, tc.want)
		}
	}
}
