package config

import (
	"strings"
	"testing"
)

// TestParseSize: one syntax for every size: bytes, or K, M, G, T (powers
// of 1024), any case, with an optional B or iB.
func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"0": 0, "1024": 1024, "500M": 500 << 20, "500m": 500 << 20, "2G": 2 << 30, "2g": 2 << 30, "1.5K": 1536,
		"10 MiB": 10 << 20, "10MB": 10 << 20, " 64k ": 64 << 10, "1T": 1 << 40, "52428800": 50 << 20, "1_000": 1000,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "-1M", "lots", "1X", "M", "1.5", "NaNM", "9999999999T"} {
		if _, err := ParseSize(bad); err == nil || !strings.Contains(err.Error(), "500M or 2G") {
			t.Errorf("ParseSize(%q): %v, want an error with an example", bad, err)
		}
	}
	for n, want := range map[Size]string{0: "0", 1000: "1000", 1024: "1K", 50 << 20: "50M", 3 << 30: "3G", 1536: "1536"} {
		if got := n.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(n), got, want)
		}
		if back, err := ParseSize(n.String()); err != nil || back != n {
			t.Errorf("ParseSize(%q) = %d, %v: no round trip", n.String(), back, err)
		}
	}
}

// TestSizeKeys: byte-size keys take the same syntax in the file and in
// config set, and a bad one is named.
func TestSizeKeys(t *testing.T) {
	c, err := Parse([]byte("[smtp]\nmax_message_size = \"25M\"\n[submission]\nmax_message_size = 1048576\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.MaxMessageSize != 25<<20 || c.SubmissionMaxMessageSize() != 1<<20 {
		t.Errorf("sizes %d %d", c.SMTP.MaxMessageSize, c.SubmissionMaxMessageSize())
	}
	if s, _ := Lookup(c, "smtp.max_message_size"); s.Value != `"25M"` || s.Kind != "size" {
		t.Errorf("shown as %s (%s)", s.Value, s.Kind)
	}
	_, err = Parse([]byte("[submission]\nmax_message_size = \"lots\"\n"), "t")
	if err == nil || !strings.Contains(err.Error(), `key "submission.max_message_size"`) {
		t.Errorf("bad size: %v", err)
	}
	s, _ := Lookup(Default(), "smtp.max_message_size")
	if v, err := ValueText(s, "2G"); err != nil || v != `"2G"` {
		t.Errorf("ValueText(2G) = %s, %v", v, err)
	}
	if _, err := ValueText(s, "2Q"); err == nil {
		t.Error("ValueText(2Q) accepted")
	}
}
