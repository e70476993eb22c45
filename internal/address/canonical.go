package address

import (
	"strings"
	"unicode/utf8"
)

// The canonical forms of what postoffice keeps in its directory (users'
// addresses, aliases, domains). Every layer that stores or looks one up
// (the store backends, the directory, the router, the CLI and the
// console) normalises through these, so that one address has one
// spelling everywhere. Errors are *Error (wrapping ErrSyntax).

// NormalizeDomain returns the canonical form of a mail domain: trimmed and
// lower case. The domain must be a host name (HostnameProblem: letters,
// digits and inner hyphens, labels of 1 to 63 octets); a trailing dot, an
// address literal or an all-numeric top label is refused, and an
// internationalized domain must be given in its A-label (xn--) form.
func NormalizeDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(s))
	if reason := HostnameProblem(d); reason != "" {
		return "", &Error{Address: s, Reason: reason, Kind: "domain"}
	}
	return d, nil
}

// Normalize returns the canonical form of an address postoffice keeps in
// its directory: trimmed and lower case, exactly one "@", a local part in
// dot-string form (CheckDotString: RFC 5321 section 4.1.2, UTF-8 allowed
// as in RFC 6531 section 3.3; no quoted strings, spaces or control
// characters) and a domain accepted by NormalizeDomain. Such an address is
// written as it is (Address.String leaves it unchanged).
//
// Local parts are folded to lower case although RFC 5321 lets them be case
// sensitive: every address postoffice stores is its own, and it treats
// Alice and alice as the same mailbox.
func Normalize(s string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(s))
	reason := canonicalProblem(a)
	if !utf8.ValidString(s) {
		// Checked on the input: ToLower would have turned the bad bytes
		// into U+FFFD.
		reason = "not valid UTF-8"
	}
	if reason != "" {
		return "", &Error{Address: s, Reason: reason}
	}
	return a, nil
}

func canonicalProblem(a string) string {
	if a == "" {
		return "empty"
	}
	if len(a) > MaxAddress {
		return "too long"
	}
	if n := strings.Count(a, "@"); n != 1 {
		return "must contain exactly one @"
	}
	local, domain, _ := strings.Cut(a, "@")
	if len(local) > MaxLocalPart {
		return "local part longer than 64 octets"
	}
	if reason := CheckDotString(local); reason != "" {
		return "local part " + reason
	}
	if reason := HostnameProblem(domain); reason != "" {
		return "domain " + reason
	}
	return ""
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
