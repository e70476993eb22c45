// Package address is the syntax of mail addresses: it parses a mailbox
// into its local part and its domain (RFC 5321 section 4.1.2, with the
// UTF-8 of RFC 6531 section 3.3) and writes one back. String is the one
// writer of an address in postoffice: whatever puts an address on the
// wire, in a header field, in a notification or in the journal writes
// what String (or Quote) returns, so that a local part is quoted exactly
// when it needs to be and nothing else can end up around it.
//
// Parse refuses what could not be written back safely even with quotes:
// control characters (NUL, CR, LF, TAB, DEL and the C1 range), angle
// brackets (the end of a path in MAIL FROM:<...>, which a careless
// parser further down the line would take for it), spaces other than
// U+0020, invalid UTF-8, and addresses over the lengths of RFC 5321
// section 4.5.3.1. The package does no I/O.
package address

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Length limits of RFC 5321 section 4.5.3.1: a local part of 64 octets, a
// domain of 255 and a path of 256 octets with its angle brackets, hence
// 254 for the address itself. A DNS name fits in 253 octets as text.
const (
	MaxLocalPart = 64
	MaxDomain    = 253
	MaxAddress   = 254
	maxLabel     = 63
)

// ErrSyntax is wrapped by every error of this package.
var ErrSyntax = errors.New("bad address syntax")

// Error says what is wrong with an address (or, with Kind "domain", with
// a domain given on its own).
type Error struct {
	Address string
	Reason  string
	Kind    string // "" for an address, "domain" for a domain
}

func (e *Error) Error() string {
	kind := e.Kind
	if kind == "" {
		kind = "address"
	}
	return fmt.Sprintf("%s %q: %s", kind, e.Address, e.Reason)
}
func (e *Error) Unwrap() error { return ErrSyntax }

// Address is a mailbox of RFC 5321 section 4.1.2.
type Address struct {
	// Local is the local part as its owner means it: without the quotes
	// of a quoted string, quoted pairs resolved ("a b", not "\"a b\"").
	Local string
	// Domain is a domain name as written (letters, digits and hyphens;
	// U-labels with SMTPUTF8, RFC 6531 section 3.3) or an address
	// literal in brackets (RFC 5321 section 4.1.3): "[192.0.2.1]",
	// "[IPv6:2001:db8::1]".
	Domain string
}

// Parse parses a mailbox as it is written in SMTP and in a header field:
// a dot-string or a quoted string, "@", a domain or an address literal
// (RFC 5321 section 4.1.2). Surrounding space and angle brackets are not
// part of it.
func Parse(s string) (Address, error) {
	if s == "" {
		return Address{}, &Error{Address: s, Reason: "empty"}
	}
	var local string
	var rest string
	if s[0] == '"' {
		// Quoted-string = DQUOTE *QcontentSMTP DQUOTE, where a quoted
		// pair is a backslash and any printable character.
		var b strings.Builder
		i := 1
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' {
				i++
				if i == len(s) {
					break
				}
			}
			b.WriteByte(s[i])
		}
		if i >= len(s) {
			return Address{}, &Error{Address: s, Reason: "unterminated quoted string"}
		}
		local, rest = b.String(), s[i+1:]
		if !strings.HasPrefix(rest, "@") {
			return Address{}, &Error{Address: s, Reason: "quoted local part not followed by @"}
		}
	} else {
		i := strings.IndexByte(s, '@')
		if i < 0 {
			return Address{}, &Error{Address: s, Reason: "no @"}
		}
		local, rest = s[:i], s[i:]
		if r := dotStringProblem(local); r != "" {
			return Address{}, &Error{Address: s, Reason: "local part " + r}
		}
	}
	a := Address{Local: local, Domain: rest[1:]}
	if err := a.check(s); err != nil {
		return Address{}, err
	}
	return a, nil
}

// ParseUnquoted parses an address whose local part has already been
// unquoted: the form go-smtp hands over for MAIL FROM and RCPT TO
// ("a b@example.org" for "\"a b\"@example.org"), or an envelope sender as
// Postfix passes it to a delivery agent. The domain is what follows the
// last "@", since a domain never holds one; the local part may be
// anything that can be written back (with quotes if need be).
func ParseUnquoted(s string) (Address, error) {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return Address{}, &Error{Address: s, Reason: "no @"}
	}
	a := Address{Local: s[:i], Domain: s[i+1:]}
	if err := a.check(s); err != nil {
		return Address{}, err
	}
	return a, nil
}

// check validates both parts of a parsed address and its written length.
func (a Address) check(input string) error {
	if !utf8.ValidString(input) {
		return &Error{Address: input, Reason: "not valid UTF-8"}
	}
	if r := localProblem(a.Local); r != "" {
		return &Error{Address: input, Reason: "local part " + r}
	}
	if r := domainProblem(a.Domain); r != "" {
		return &Error{Address: input, Reason: "domain " + r}
	}
	if n := len(a.quotedLocal()); n > MaxLocalPart {
		return &Error{Address: input, Reason: fmt.Sprintf("local part of %d octets (RFC 5321 section 4.5.3.1.1: at most 64)", n)}
	}
	if n := len(a.String()); n > MaxAddress {
		return &Error{Address: input, Reason: fmt.Sprintf("%d octets long (RFC 5321 section 4.5.3.1.3: at most 254)", n)}
	}
	return nil
}

// String writes the address: the local part as a dot-string when it is
// one, else as a quoted string with '"' and '\' escaped (RFC 5321 section
// 4.1.2: a local part is quoted only when it must be), "@", the domain.
// For an address from Parse or ParseUnquoted, Parse(a.String()) gives a
// back, and the text holds no control character, no angle bracket and no
// space outside the quotes.
func (a Address) String() string {
	return a.quotedLocal() + "@" + a.Domain
}

func (a Address) quotedLocal() string {
	if dotStringProblem(a.Local) == "" {
		return a.Local
	}
	var b strings.Builder
	b.Grow(len(a.Local) + 2)
	b.WriteByte('"')
	for i := 0; i < len(a.Local); i++ {
		if c := a.Local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(a.Local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// ASCII reports whether the address is all ASCII; otherwise it needs
// SMTPUTF8 on the wire (RFC 6531 section 3.2).
func (a Address) ASCII() bool { return isASCII(a.Local) && isASCII(a.Domain) }

// Quote returns s, an address in the written form (as String writes it),
// checked and written again by String; "" for the null path stays "". It
// is what code that holds an address as text calls before writing it
// anywhere: an address that cannot be written safely is an error, never
// copied through.
func Quote(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	a, err := Parse(s)
	if err != nil {
		return "", err
	}
	return a.String(), nil
}

// Path returns s written as an SMTP path or a Return-Path (RFC 5321
// section 4.1.2): "<" address ">", or "<>" for the null path.
func Path(s string) (string, error) {
	q, err := Quote(s)
	if err != nil {
		return "", err
	}
	return "<" + q + ">", nil
}

// DomainOf returns the domain of an address in the written form: what
// follows the last "@" ("" if none).
func DomainOf(s string) string {
	i := strings.LastIndexByte(s, '@')
	if i < 0 {
		return ""
	}
	return s[i+1:]
}

// dotStringProblem checks Dot-string = Atom *("." Atom) of RFC 5321
// section 4.1.2 (atext extended to UTF-8 by RFC 6531 section 3.3).
func dotStringProblem(l string) string {
	switch {
	case l == "":
		return "empty"
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return "has a leading, trailing or double dot"
	}
	for _, r := range l {
		if r != '.' && !IsAtext(r) {
			return fmt.Sprintf("character %q not allowed outside quotes", r)
		}
	}
	return ""
}

// CheckDotString reports what keeps l from being a dot-string (an
// unquoted local part), "" when nothing does.
func CheckDotString(l string) string { return dotStringProblem(l) }

// localProblem checks an unquoted local part: what a quoted string can
// carry (qtextSMTP and quoted pairs: printable ASCII and space, RFC 5321
// section 4.1.2; UTF-8 by RFC 6531 section 3.3), less what cannot be
// written back safely.
func localProblem(l string) string {
	if l == "" {
		return "empty"
	}
	for _, r := range l {
		switch {
		case r == utf8.RuneError:
			return "not valid UTF-8"
		case r == '<' || r == '>':
			// Legal inside quotes, but the end of a path to any parser
			// that does not know quoted strings: MAIL FROM:<"a>
			// SIZE=1"@b> would smuggle a parameter past it.
			return fmt.Sprintf("character %q not allowed", r)
		case r < 0x20 || r == 0x7f:
			return fmt.Sprintf("control character %q not allowed", r)
		case r >= utf8.RuneSelf && (!unicode.IsGraphic(r) || unicode.IsSpace(r)):
			// C1 controls, format characters (bidirectional overrides),
			// spaces other than U+0020.
			return fmt.Sprintf("character %q not allowed", r)
		}
	}
	return ""
}

// IsAtext reports whether r is an atext character of RFC 5322 section
// 3.2.3, extended by RFC 6531 section 3.3 to every non-ASCII character;
// spaces and control characters stay out in both ranges.
func IsAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r < utf8.RuneSelf:
		return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
	default:
		return r != utf8.RuneError && unicode.IsGraphic(r) && !unicode.IsSpace(r)
	}
}

// domainProblem checks Domain / address-literal of RFC 5321 section
// 4.1.2, with U-labels (RFC 6531 section 3.3).
func domainProblem(d string) string {
	if d == "" {
		return "empty"
	}
	if d[0] == '[' {
		return literalProblem(d)
	}
	if isASCII(d) {
		// Underscores are not in host names (RFC 1123), but they are in
		// some mail domains in the wild, and they write back safely.
		return hostnameProblem(d, true)
	}
	if len(d) > MaxDomain {
		return "too long"
	}
	for _, r := range d {
		if r < utf8.RuneSelf {
			continue
		}
		if !unicode.IsLetter(r) && !unicode.IsMark(r) && !unicode.IsDigit(r) {
			return fmt.Sprintf("character %q not allowed in a domain", r)
		}
	}
	// An internationalized domain must have a valid A-label form.
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "not a valid internationalized domain name"
	}
	if r := HostnameProblem(strings.ToLower(a)); r != "" {
		return r
	}
	return ""
}

// HostnameProblem checks a host name (RFC 1123 section 2.1, the Domain of
// RFC 5321 section 4.1.2): letters, digits and inner hyphens, labels of 1
// to 63 octets, no trailing dot, and a top-level label that is not all
// digits (RFC 3696 section 2), which keeps IPv4 addresses out. It returns
// "" for a good name.
func HostnameProblem(d string) string { return hostnameProblem(d, false) }

func hostnameProblem(d string, underscore bool) string {
	if d == "" {
		return "empty"
	}
	if len(d) > MaxDomain {
		return "too long"
	}
	labels := strings.Split(d, ".")
	for _, l := range labels {
		switch {
		case l == "":
			return "empty label (leading, trailing or double dot)"
		case len(l) > maxLabel:
			return "label longer than 63 octets"
		case l[0] == '-' || l[len(l)-1] == '-':
			return "label starts or ends with a hyphen"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' && underscore) {
				return fmt.Sprintf("character %q not allowed in a host name", c)
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "all-numeric top-level label"
	}
	return ""
}

// literalProblem checks an address literal (RFC 5321 section 4.1.3): an
// IPv4 address, or "IPv6:" and an IPv6 address, in brackets. General
// address literals (a standardized tag) are not accepted: none is defined.
func literalProblem(d string) string {
	if len(d) < 3 || d[len(d)-1] != ']' {
		return "unterminated address literal"
	}
	in := d[1 : len(d)-1]
	if v6, ok := cutPrefixFold(in, "IPv6:"); ok {
		ip, err := netip.ParseAddr(v6)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return "bad IPv6 address literal"
		}
		return ""
	}
	ip, err := netip.ParseAddr(in)
	if err != nil || !ip.Is4() {
		return "bad address literal"
	}
	return ""
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
