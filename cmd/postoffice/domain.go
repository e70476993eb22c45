package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const (
	domainAddHelp = `Add a mail domain: postoffice becomes the final destination of mail for
addresses in DOMAIN (a recipient that is no user, extra address or alias of
it is refused with 550 5.1.1). Adding a user or an alias adds its domain;
mail for other domains is relayed only for authenticated users.`
	domainDelHelp = `Delete a domain. It is refused while users, extra addresses or aliases of
the domain remain: delete those first.`
)

// domainArg checks and normalises a domain argument.
func domainArg(s string) (string, error) {
	d, err := address.NormalizeDomain(s)
	if err != nil {
		return "", fail(exitUsage, "%q is not a valid domain: %v", s, err)
	}
	return d, nil
}

func runDomainAdd(c *call) error {
	d, err := domainArg(c.args[0])
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := st.AddDomain(context.Background(), d); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fail(exitFailure, "domain %s already exists", d)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "added domain %s\n", d)
	return nil
}

func runDomainDel(c *call) error {
	d, err := domainArg(c.args[0])
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := st.DeleteDomain(context.Background(), d); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fail(exitFailure, "no domain %s", d)
		}
		return fail(exitFailure, "cannot delete: %v", err)
	}
	fmt.Fprintf(c.stdout, "deleted domain %s\n", d)
	return nil
}

func runDomainList(c *call) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	ds, err := st.ListDomains(context.Background())
	if err != nil {
		return err
	}
	for _, d := range ds {
		fmt.Fprintln(c.stdout, d.Name)
	}
	return nil
}
