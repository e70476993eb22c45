package store

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
)

// Invalid wraps err, a reason to refuse an argument (an address that
// package address does not accept), in ErrInvalid: what a backend returns
// for it.
func Invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }

// NormalizeAlias returns a with its address normalized
// (address.NormalizeAlias) and its targets normalized, sorted and
// deduplicated, as every backend stores them. An alias without targets,
// or with an address that is not valid, is ErrInvalid.
func NormalizeAlias(a Alias) (Alias, error) {
	addr, err := address.NormalizeAlias(a.Address)
	if err != nil {
		return a, Invalid(err)
	}
	if len(a.Targets) == 0 {
		return a, fmt.Errorf("alias %s has no targets: %w", addr, ErrInvalid)
	}
	targets := make([]string, 0, len(a.Targets))
	for _, t := range a.Targets {
		n, err := address.Normalize(t)
		if err != nil {
			return a, fmt.Errorf("alias %s: %w", addr, Invalid(err))
		}
		targets = append(targets, n)
	}
	slices.Sort(targets)
	return Alias{Address: addr, Targets: slices.Compact(targets)}, nil
}

// NormalizeDKIMKey returns k as every backend stores it: its domain
// normalized (address.NormalizeDomain: lower case, A-labels), its
// selector lower case, times in UTC and whole seconds. A key without a valid domain or
// selector (RFC 6376 section 3.1), of another algorithm, or whose
// private key does not parse as one of its algorithm, is ErrInvalid.
func NormalizeDKIMKey(k mailauth.Key) (mailauth.Key, error) {
	d, err := address.NormalizeDomain(k.Domain)
	if err != nil {
		return k, Invalid(err)
	}
	if err := mailauth.CheckSelector(k.Selector); err != nil {
		return k, Invalid(err)
	}
	k.Domain, k.Selector = d, strings.ToLower(k.Selector)
	if k.Algorithm != mailauth.RSA && k.Algorithm != mailauth.Ed25519 {
		return k, Invalid(fmt.Errorf("dkim key %s: unknown algorithm %q", k.Selector, k.Algorithm))
	}
	if _, err := k.Signer(); err != nil {
		return k, Invalid(err)
	}
	if k.Created.IsZero() {
		return k, Invalid(fmt.Errorf("dkim key %s: no creation time", k.Selector))
	}
	// Whole seconds, as both backends keep them.
	k.Created = k.Created.UTC().Truncate(time.Second)
	if !k.Retired.IsZero() {
		k.Retired = k.Retired.UTC().Truncate(time.Second)
	}
	return k, nil
}

// DKIMDomain is the form of domain that DKIM keys are looked up by: as
// NormalizeDKIMKey keeps it, or lower case when it is no valid domain
// (which no key has).
func DKIMDomain(domain string) string {
	if d, err := address.NormalizeDomain(domain); err == nil {
		return d
	}
	return strings.ToLower(domain)
}
