// Package directory holds what postoffice knows about its users beyond
// storage: the syntax of addresses and domains, password hashing, and
// authentication. It knows nothing of POP3 or SMTP.
package directory

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Length limits of RFC 5321 section 4.5.3.1 (a path is at most 256 octets
// including the angle brackets, hence 254 for the address itself).
const (
	maxLocalPart = 64
	maxDomain    = 253
	maxAddress   = 254
	maxLabel     = 63
)

// NormalizeDomain returns the canonical form of a mail domain: trimmed and
// lower case. The domain must be a host name (RFC 1123 section 2.1: letters,
// digits and inner hyphens, labels of 1 to 63 octets); a trailing dot, an
// address literal or an all-numeric top label is refused, and an
// internationalized domain must be given in its A-label (xn--) form.
// Errors wrap store.ErrInvalid.
func NormalizeDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSpace(s))
	if reason := domainProblem(d); reason != "" {
		return "", fmt.Errorf("%w: domain %q: %s", store.ErrInvalid, s, reason)
	}
	return d, nil
}

func domainProblem(d string) string {
	if d == "" {
		return "empty"
	}
	if len(d) > maxDomain {
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
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Sprintf("character %q not allowed in a host name", c)
			}
		}
	}
	// RFC 3696 section 2: a top-level domain is never all-numeric, which
	// keeps IPv4 addresses out.
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return "all-numeric top-level label"
	}
	return ""
}

// NormalizeAddress returns the canonical form of a mail address: trimmed and
// lower case, exactly one "@", a local part in dot-atom form (RFC 5322
// section 3.2.3, UTF-8 allowed as in RFC 6531; no quoted strings, spaces or
// control characters) and a domain accepted by NormalizeDomain.
// Errors wrap store.ErrInvalid.
//
// Local parts are folded to lower case although RFC 5321 lets them be case
// sensitive: every address postoffice stores is its own, and it treats
// Alice and alice as the same mailbox.
func NormalizeAddress(s string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(s))
	reason := addressProblem(a)
	if !utf8.ValidString(s) {
		// Checked on the input: ToLower would have turned the bad bytes
		// into U+FFFD.
		reason = "not valid UTF-8"
	}
	if reason != "" {
		return "", fmt.Errorf("%w: address %q: %s", store.ErrInvalid, s, reason)
	}
	return a, nil
}

func addressProblem(a string) string {
	if a == "" {
		return "empty"
	}
	if len(a) > maxAddress {
		return "too long"
	}
	if n := strings.Count(a, "@"); n != 1 {
		return "must contain exactly one @"
	}
	local, domain, _ := strings.Cut(a, "@")
	if reason := localProblem(local); reason != "" {
		return "local part " + reason
	}
	if reason := domainProblem(domain); reason != "" {
		return "domain " + reason
	}
	return ""
}

func localProblem(l string) string {
	switch {
	case l == "":
		return "empty"
	case len(l) > maxLocalPart:
		return "longer than 64 octets"
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return "has a leading, trailing or double dot"
	}
	for _, r := range l {
		if r == '.' || isAtext(r) {
			continue
		}
		return fmt.Sprintf("character %q not allowed", r)
	}
	return ""
}

// isAtext reports whether r is an atext character of RFC 5322 section 3.2.3,
// extended by RFC 6531 section 3.3 to every non-ASCII character; spaces and
// control characters stay out in both ranges.
func isAtext(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	case r < utf8.RuneSelf:
		return strings.ContainsRune("!#$%&'*+-/=?^_`{|}~", r)
	default:
		return unicode.IsGraphic(r) && !unicode.IsSpace(r)
	}
}

// NormalizeAliasAddress is NormalizeAddress that also accepts "@domain":
// the catch-all alias of a domain, which receives mail for every address
// of the domain that is neither a user nor another alias.
func NormalizeAliasAddress(s string) (string, error) {
	if t := strings.TrimSpace(s); strings.HasPrefix(t, "@") {
		d, err := NormalizeDomain(t[1:])
		if err != nil {
			return "", err
		}
		return "@" + d, nil
	}
	return NormalizeAddress(s)
}

// NormalizeAlias returns a with its address normalized (NormalizeAliasAddress)
// and its targets normalized, sorted and deduplicated, as every backend
// stores them. An alias without targets is invalid (store.ErrInvalid).
func NormalizeAlias(a store.Alias) (store.Alias, error) {
	addr, err := NormalizeAliasAddress(a.Address)
	if err != nil {
		return a, err
	}
	if len(a.Targets) == 0 {
		return a, fmt.Errorf("alias %s has no targets: %w", addr, store.ErrInvalid)
	}
	targets := make([]string, 0, len(a.Targets))
	for _, t := range a.Targets {
		n, err := NormalizeAddress(t)
		if err != nil {
			return a, fmt.Errorf("alias %s: %w", addr, err)
		}
		targets = append(targets, n)
	}
	slices.Sort(targets)
	return store.Alias{Address: addr, Targets: slices.Compact(targets)}, nil
}
