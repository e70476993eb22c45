package address

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in            string
		local, domain string // both "" means invalid
		out           string // String(); "" means in
	}{
		{in: "alice@example.com", local: "alice", domain: "example.com"},
		{in: "Alice.Liddell@Example.COM", local: "Alice.Liddell", domain: "Example.COM"},
		{in: "first+tag@sub.example.org", local: "first+tag", domain: "sub.example.org"},
		{in: "o'hara!#$%&*/=?^_`{|}~-@example.com", local: "o'hara!#$%&*/=?^_`{|}~-", domain: "example.com"},
		{in: "Ünïcödé@example.com", local: "Ünïcödé", domain: "example.com"},
		{in: "用户@例子.广告", local: "用户", domain: "例子.广告"},
		{in: "x@localhost", local: "x", domain: "localhost"},
		{in: "x@mail_host.example.com", local: "x", domain: "mail_host.example.com"}, // not a host name, seen in mail
		{in: "x@[192.0.2.1]", local: "x", domain: "[192.0.2.1]"},
		{in: "x@[IPv6:2001:db8::1]", local: "x", domain: "[IPv6:2001:db8::1]"},
		{in: "x@[ipv6:2001:db8::1]", local: "x", domain: "[ipv6:2001:db8::1]"},
		// Quoted strings: unquoted when they need not be (RFC 5321
		// section 4.1.2), kept quoted and escaped when they must be.
		{in: `"john smith"@example.com`, local: "john smith", domain: "example.com"},
		{in: `"abc"@example.com`, local: "abc", domain: "example.com", out: "abc@example.com"},
		{in: `"a\"b\\c"@example.com`, local: `a"b\c`, domain: "example.com"},
		{in: `"a\bc"@example.com`, local: "abc", domain: "example.com", out: "abc@example.com"},
		{in: `"a@b"@example.com`, local: "a@b", domain: "example.com"},
		{in: `"a..b"@example.com`, local: "a..b", domain: "example.com"},
		{in: `".a"@example.com`, local: ".a", domain: "example.com"},
		{in: `"a SIZE=1 NOTIFY=NEVER x"@evil.test`, local: "a SIZE=1 NOTIFY=NEVER x", domain: "evil.test"},

		// What cannot be written back safely.
		{in: `"ceo@bank.com> ENVID=x"@evil.test`},
		{in: `"a> SMTPUTF8 NOTIFY=NEVER x"@evil.test`},
		{in: `"a<b"@example.com`},
		{in: "\"a\r\nb\"@example.com"},
		{in: "\"a\x00b\"@example.com"},
		{in: "\"a\tb\"@example.com"},
		{in: "\"a\x7fb\"@example.com"},
		{in: "\"a\u0085b\"@example.com"}, // C1 control (NEL)
		{in: "\"a\u202eb\"@example.com"}, // right-to-left override
		{in: "\"a\u00a0b\"@example.com"}, // no-break space
		{in: "\"a\xffb\"@example.com"},   // not UTF-8
		{in: `""@example.com`},
		{in: `"abc@example.com`},
		{in: `"abc"example.com`},
		{in: `"abc"x@example.com`},
		{in: `"abc\`},

		// Plain syntax errors.
		{in: ""},
		{in: "alice"},
		{in: "@example.com"},
		{in: "alice@"},
		{in: "a@b@example.com"},
		{in: "al ice@example.com"},
		{in: "<alice@example.com>"},
		{in: " alice@example.com"},
		{in: "a(comment)@example.com"},
		{in: ".alice@example.com"},
		{in: "alice.@example.com"},
		{in: "al..ice@example.com"},
		{in: "alice@example.com."},
		{in: "alice@.example.com"},
		{in: "alice@-example.com"},
		{in: "alice@-exa_mple.com"},
		{in: "alice@example.com>"},
		{in: "alice@exa mple.com"},
		{in: "alice@192.0.2.1"},
		{in: "alice@[192.0.2.1"},
		{in: "alice@[300.0.2.1]"},
		{in: "alice@[IPv6:192.0.2.1]"},
		{in: "alice@[2001:db8::1]"},
		{in: "alice@[tag:content]"},
		{in: "alice@bü cher.example"},
		{in: "alice@bü\u202echer.example"},
		{in: strings.Repeat("a", 65) + "@example.com"},
		{in: `"` + strings.Repeat("a", 62) + ` "@example.com`}, // 65 octets with its quotes
		{in: "a@" + strings.Repeat("b", 64) + ".example"},
		{in: "a@" + strings.Repeat("b.", 126) + "example"},
	}
	for _, tt := range tests {
		a, err := Parse(tt.in)
		if tt.local == "" {
			if err == nil || !errors.Is(err, ErrSyntax) {
				t.Errorf("Parse(%q) = %+v, %v; want an error wrapping ErrSyntax", tt.in, a, err)
			}
			continue
		}
		if err != nil || a.Local != tt.local || a.Domain != tt.domain {
			t.Errorf("Parse(%q) = %+v, %v; want local %q, domain %q", tt.in, a, err, tt.local, tt.domain)
			continue
		}
		want := tt.out
		if want == "" {
			want = tt.in
		}
		if got := a.String(); got != want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, want)
		}
	}
}

// go-smtp hands over paths with their local part unquoted; ParseUnquoted
// takes the domain after the last "@" and quotes what needs it.
func TestParseUnquoted(t *testing.T) {
	tests := []struct{ in, want string }{ // want "" means invalid
		{"alice@example.com", "alice@example.com"},
		{"john smith@example.com", `"john smith"@example.com`},
		{"a@b@example.com", `"a@b"@example.com`},
		{`a"b\c@example.com`, `"a\"b\\c"@example.com`},
		{"a SMTPUTF8 NOTIFY=NEVER x@evil.test", `"a SMTPUTF8 NOTIFY=NEVER x"@evil.test`},
		{"ceo@bank.com> ENVID=x@evil.test", ""},
		{"a> SMTPUTF8 NOTIFY=NEVER x@evil.test", ""},
		{"a\rb@example.com", ""},
		{"alice", ""},
		{"@example.com", ""},
		{"alice@", ""},
		{"alice@exa\"mple.com", ""},
		{"alice@example.com>", ""},
	}
	for _, tt := range tests {
		a, err := ParseUnquoted(tt.in)
		if tt.want == "" {
			if !errors.Is(err, ErrSyntax) {
				t.Errorf("ParseUnquoted(%q) = %+v, %v; want an error", tt.in, a, err)
			}
			continue
		}
		if err != nil || a.String() != tt.want {
			t.Errorf("ParseUnquoted(%q) = %q, %v; want %q", tt.in, a.String(), err, tt.want)
		}
	}
}

func TestQuoteAndPath(t *testing.T) {
	for _, tt := range []struct{ in, quote, path string }{
		{"", "", "<>"},
		{"alice@example.com", "alice@example.com", "<alice@example.com>"},
		{`"abc"@example.com`, "abc@example.com", "<abc@example.com>"},
		{`"a b"@example.com`, `"a b"@example.com`, `<"a b"@example.com>`},
	} {
		if q, err := Quote(tt.in); err != nil || q != tt.quote {
			t.Errorf("Quote(%q) = %q, %v; want %q", tt.in, q, err, tt.quote)
		}
		if p, err := Path(tt.in); err != nil || p != tt.path {
			t.Errorf("Path(%q) = %q, %v; want %q", tt.in, p, err, tt.path)
		}
	}
	// The unquoted text of an injection never passes through.
	for _, bad := range []string{"ceo@bank.com> ENVID=x@evil.test", "a b@example.com", "a\r\nRCPT TO:<x@y>@z"} {
		if q, err := Quote(bad); err == nil {
			t.Errorf("Quote(%q) = %q, want an error", bad, q)
		}
		if p, err := Path(bad); err == nil {
			t.Errorf("Path(%q) = %q, want an error", bad, p)
		}
	}
}

func TestHostnameProblem(t *testing.T) {
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{"example.com", true}, {"Example.COM", true}, {"localhost", true}, {"a-b.c-d.example", true},
		{"x.1example", true},
		{"", false}, {".", false}, {"example.com.", false}, {"user@example.com", false},
		{"exa mple.com", false}, {"10.0.0.1", false}, {strings.Repeat("a", 64) + ".example", false},
		{"bücher.example", false}, {"exa_mple.com", false},
	} {
		if got := HostnameProblem(tt.in) == ""; got != tt.ok {
			t.Errorf("HostnameProblem(%q) = %q", tt.in, HostnameProblem(tt.in))
		}
	}
}

// FuzzParse: whatever Parse or ParseUnquoted accept, String writes back
// in a form Parse reads as the same address, with nothing in it that
// could end a path or a line early.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"alice@example.com", `"john smith"@example.com`, `"a\"b"@x.test`,
		`"ceo@bank.com> ENVID=x"@evil.test`, "x@[IPv6:2001:db8::1]", "用户@例子.广告", "a@b@c.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (Address, error){Parse, ParseUnquoted} {
			a, err := parse(s)
			if err != nil {
				continue
			}
			w := a.String()
			if strings.ContainsAny(w, "<>\r\n\x00\t\x7f") || len(w) > MaxAddress {
				t.Fatalf("%q written as %q", s, w)
			}
			if i := strings.LastIndexByte(w, '@'); strings.Contains(a.quotedLocal(), " ") && (w[0] != '"' || w[i-1] != '"') {
				t.Fatalf("%q: space outside quotes in %q", s, w)
			}
			b, err := Parse(w)
			if err != nil || b != a {
				t.Fatalf("%q written as %q, which parses as %+v, %v", s, w, b, err)
			}
		}
	})
}
