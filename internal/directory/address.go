// Package directory holds what postoffice knows about its users beyond
// storage: which addresses and domains it keeps (the syntax itself is
// package address's), password hashing, and authentication. It knows
// nothing of POP3 or SMTP.
package directory

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// NormalizeDomain returns the canonical form of a mail domain: trimmed and
// lower case. The domain must be a host name (address.HostnameProblem:
// letters, digits and inner hyphens, labels of 1 to 63 octets); a
// trailing dot, an address literal or an all-numeric top label is
// refused. An internationalized domain is kept in its A-label (xn--)
// form, which is what DNS knows; given in U-labels ("bücher.example",
// as SMTPUTF8 mail carries it, RFC 6531 section 3.2) it is converted
// (RFC 5891 section 4). Errors wrap store.ErrInvalid.
func NormalizeDomain(s string) (string, error) {
	d, reason := domainProblem(s)
	if reason != "" {
		return "", fmt.Errorf("%w: domain %q: %s", store.ErrInvalid, s, reason)
	}
	return d, nil
}

// domainProblem returns the canonical form of a domain, or what is wrong
// with it.
func domainProblem(s string) (string, string) {
	d := strings.ToLower(strings.TrimSpace(s))
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", "not a valid internationalized domain name"
		}
		d = strings.ToLower(a)
	}
	return d, address.HostnameProblem(d)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// NormalizeAddress returns the canonical form of an address postoffice
// keeps in its directory: trimmed and lower case, exactly one "@", a local
// part in dot-string form (address.CheckDotString: RFC 5321 section 4.1.2,
// UTF-8 allowed as in RFC 6531; no quoted strings, spaces or control
// characters) in Unicode normalization form C (RFC 6532 section 3.1, so
// that one name typed two ways is one mailbox), and a domain accepted by
// NormalizeDomain, in its A-label form. Such an address is written as it
// is (address.Address.String leaves it unchanged). Errors wrap
// store.ErrInvalid.
//
// Local parts are folded to lower case although RFC 5321 lets them be case
// sensitive: every address postoffice stores is its own, and it treats
// Alice and alice as the same mailbox.
func NormalizeAddress(s string) (string, error) {
	a := strings.ToLower(strings.TrimSpace(s))
	reason := "not valid UTF-8"
	// Checked on the input: ToLower would have turned the bad bytes into
	// U+FFFD.
	if utf8.ValidString(s) {
		a, reason = addressProblem(a)
	}
	if reason != "" {
		return "", fmt.Errorf("%w: address %q: %s", store.ErrInvalid, s, reason)
	}
	return a, nil
}

// addressProblem returns the canonical form of a (trimmed, lower case),
// or what is wrong with it.
func addressProblem(a string) (string, string) {
	if a == "" {
		return "", "empty"
	}
	if n := strings.Count(a, "@"); n != 1 {
		return "", "must contain exactly one @"
	}
	local, domain, _ := strings.Cut(a, "@")
	local = norm.NFC.String(local)
	if len(local) > address.MaxLocalPart {
		return "", "local part longer than 64 octets"
	}
	if reason := address.CheckDotString(local); reason != "" {
		return "", "local part " + reason
	}
	domain, reason := domainProblem(domain)
	if reason != "" {
		return "", "domain " + reason
	}
	a = local + "@" + domain
	if len(a) > address.MaxAddress {
		return "", "too long"
	}
	return a, ""
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
