package address

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
)

// The canonical forms of what postoffice keeps in its directory (users'
// addresses, aliases, domains). Every layer that stores or looks one up
// (the store backends, the directory, the router, the CLI and the
// console) normalises through these, so that one address has one
// spelling everywhere. Errors are *Error (wrapping ErrSyntax).

// NormalizeDomain returns the canonical form of a mail domain: trimmed and
// lower case. The domain must be a host name (HostnameProblem: letters,
// digits and inner hyphens, labels of 1 to 63 octets); a trailing dot, an
// address literal or an all-numeric top label is refused. An
// internationalized domain is kept in its A-label (xn--) form, which is
// what DNS knows; given in U-labels ("bücher.example", as SMTPUTF8 mail
// carries it, RFC 6531 section 3.2) it is converted (RFC 5891 section 4).
func NormalizeDomain(s string) (string, error) {
	d, reason := canonicalDomain(s)
	if reason != "" {
		return "", &Error{Address: s, Reason: reason, Kind: "domain"}
	}
	return d, nil
}

// canonicalDomain returns the canonical form of a domain, or what is
// wrong with it.
func canonicalDomain(s string) (string, string) {
	d := strings.ToLower(strings.TrimSpace(s))
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", "not a valid internationalized domain name"
		}
		d = strings.ToLower(a)
	}
	return d, HostnameProblem(d)
}

// Normalize returns the canonical form of an address postoffice keeps in
// its directory: trimmed and lower case, exactly one "@", a local part in
// dot-string form (CheckDotString: RFC 5321 section 4.1.2, UTF-8 allowed
// as in RFC 6531 section 3.3; no quoted strings, spaces or control
// characters) in Unicode normalization form C (RFC 6532 section 3.1, so
// that one name typed two ways is one mailbox), and a domain accepted by
// NormalizeDomain, in its A-label form. Such an address is written as it
// is (Address.String leaves it unchanged).
//
// Local parts are folded to lower case although RFC 5321 lets them be case
// sensitive: every address postoffice stores is its own, and it treats
// Alice and alice as the same mailbox.
func Normalize(s string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(s))
	reason := "not valid UTF-8"
	// Checked on the input: ToLower would have turned the bad bytes into
	// U+FFFD.
	if utf8.ValidString(s) {
		a, reason = canonical(a)
	}
	if reason != "" {
		return "", &Error{Address: s, Reason: reason}
	}
	return a, nil
}

// canonical returns the canonical form of a (trimmed, lower case), or
// what is wrong with it.
func canonical(a string) (string, string) {
	if a == "" {
		return "", "empty"
	}
	if n := strings.Count(a, "@"); n != 1 {
		return "", "must contain exactly one @"
	}
	local, domain, _ := strings.Cut(a, "@")
	local = norm.NFC.String(local)
	if len(local) > MaxLocalPart {
		return "", "local part longer than 64 octets"
	}
	if reason := CheckDotString(local); reason != "" {
		return "", "local part " + reason
	}
	domain, reason := canonicalDomain(domain)
	if reason != "" {
		return "", "domain " + reason
	}
	a = local + "@" + domain
	if len(a) > MaxAddress {
		return "", "too long"
	}
	return a, ""
}

// NormalizeAlias is Normalize that also accepts "@domain": the catch-all
// alias of a domain, which receives mail for every address of the domain
// that is neither a user nor another alias.
func NormalizeAlias(s string) (string, error) {
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "@") {
		d, err := NormalizeDomain(t[1:])
		if err != nil {
			return "", err
		}
		return "@" + d, nil
	}
	return Normalize(s)
}
