package autoconfig

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseAddress: the address comes from the client's request and ends
// up in XML, a profile and a log; whatever it is, ParseAddress does not
// panic, and what it accepts is valid UTF-8 without control characters,
// spaces, quotes or angle brackets, at most 254 octets as given, with a
// lower-case ASCII domain of at least two labels that it returns apart.
func FuzzParseAddress(f *testing.F) {
	for _, seed := range []string{
		"user@example.com", "User@Example.COM.", "u@bücher.example", "a@b", "@example.com",
		"\"q u\"@example.com", "Name <u@example.com>", "u@[192.0.2.1]", "u@example.com\r\nX: y",
		"u&x@example.com", "用户@例子.广告",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		addr, domain, err := ParseAddress(s)
		if err != nil {
			return
		}
		if len(s) > 254 {
			t.Fatalf("accepted %d octets", len(s))
		}
		if !utf8.ValidString(addr) || strings.ContainsAny(addr, " \"<>") {
			t.Fatalf("accepted %q as %q", s, addr)
		}
		for _, r := range addr {
			if r < 0x20 || r == 0x7f {
				t.Fatalf("accepted %q as %q: a control character", s, addr)
			}
		}
		if !strings.HasSuffix(addr, "@"+domain) || strings.ToLower(domain) != domain || !strings.Contains(domain, ".") {
			t.Fatalf("%q: address %q, domain %q", s, addr, domain)
		}
		for i := 0; i < len(domain); i++ {
			if domain[i] >= 0x80 {
				t.Fatalf("%q: domain %q is not ASCII", s, domain)
			}
		}
	})
}
