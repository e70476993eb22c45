package address

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string // want "" means invalid
	}{
		{"alice@example.com", "alice@example.com"},
		{"  Alice.Liddell@Example.COM\t", "alice.liddell@example.com"},
		{"first+tag@sub.example.org", "first+tag@sub.example.org"},
		{"o'hara!#$%&*/=?^_`{|}~-@example.com", "o'hara!#$%&*/=?^_`{|}~-@example.com"},
		{"Ünïcödé@example.com", "ünïcödé@example.com"},
		{"x@localhost", "x@localhost"},
		{"x@xn--bcher-kva.example", "x@xn--bcher-kva.example"},
		{"x@1example.com", "x@1example.com"},
		{"", ""},
		{"alice", ""},
		{"@example.com", ""},
		{"alice@", ""},
		{"a@b@example.com", ""},
		{"al ice@example.com", ""},
		{"alice@exa mple.com", ""},
		{"al\x00ice@example.com", ""},
		{"al\tice@example.com", ""},
		{"ali\u00a0ce@example.com", ""}, // no-break space
		{"ali\xffce@example.com", ""},   // not UTF-8
		{`"quoted"@example.com`, ""},
		{"a(comment)@example.com", ""},
		{".alice@example.com", ""},
		{"alice.@example.com", ""},
		{"al..ice@example.com", ""},
		{"alice@example.com.", ""},
		{"alice@.example.com", ""},
		{"alice@example..com", ""},
		{"alice@-example.com", ""},
		{"alice@example-.com", ""},
		{"alice@exa_mple.com", ""},
		// RFC 6531: a U-label domain is kept as its A-label; a local part
		// in NFC (RFC 6532 section 3.1).
		{"alice@Bücher.example", "alice@xn--bcher-kva.example"},
		{"ju\u0308rgen@example.com", "j\u00fcrgen@example.com"},
		{"alice@b\u00fccher\u2028.example", ""},
		{"alice@[192.0.2.1]", ""},
		{"alice@192.0.2.1", ""},
		{strings.Repeat("a", 64) + "@example.com", strings.Repeat("a", 64) + "@example.com"},
		{strings.Repeat("a", 65) + "@example.com", ""},
		{"a@" + strings.Repeat("b", 63) + ".example", "a@" + strings.Repeat("b", 63) + ".example"},
		{"a@" + strings.Repeat("b", 64) + ".example", ""},
		{"a@" + strings.Repeat("b.", 126) + "example", ""}, // over 254 octets
	}
	for _, tt := range tests {
		got, err := Normalize(tt.in)
		if tt.want == "" {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("Normalize(%q) = %q, %v; want an error wrapping ErrSyntax", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizeDomain(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Example.COM", "example.com"},
		{" mail.example.org ", "mail.example.org"},
		{"localhost", "localhost"},
		{"a-b.c-d.example", "a-b.c-d.example"},
		{"", ""},
		{".", ""},
		{"example.com.", ""},
		{"user@example.com", ""},
		{"exa mple.com", ""},
		{"10.0.0.1", ""},
		{strings.Repeat("a", 64) + ".example", ""},
	}
	for _, tt := range tests {
		got, err := NormalizeDomain(tt.in)
		if tt.want == "" {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("NormalizeDomain(%q) = %q, %v; want an error wrapping ErrSyntax", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeDomain(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
