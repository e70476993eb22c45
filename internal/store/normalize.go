package store

import (
	"fmt"
	"slices"

	"github.com/postoffice-mail/postoffice/internal/address"
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
