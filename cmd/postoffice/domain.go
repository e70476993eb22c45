package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

var domainCommand = &command{
	name:    "domain",
	usage:   "add|del|list [DOMAIN]",
	summary: "manage the mail domains this host receives mail for",
	sub: []*command{
		{name: "add", usage: "DOMAIN", summary: "add a mail domain", run: runDomainAdd},
		{name: "del", usage: "DOMAIN", summary: "delete a domain that has no users, addresses or aliases left", run: runDomainDel},
		{name: "list", summary: "list the domains", run: runDomainList},
	},
}

func domainArg(s string) (string, error) {
	d, err := address.NormalizeDomain(s)
	if err != nil {
		return "", fail(exitUsage, "%q is not a valid domain: %v", s, err)
	}
	return d, nil
}

func runDomainAdd(e *env, args []string) error {
	return e.withDomain(args, "domain add", `Add a mail domain: postoffice becomes the final destination of mail for
addresses in DOMAIN (a recipient that is no user, extra address or alias of
it is refused with 550 5.1.1). Adding a user or an alias adds its domain;
mail for other domains is relayed only for authenticated users.`, func(st store.Store, d string) error {
		if err := st.AddDomain(context.Background(), d); err != nil {
			if errors.Is(err, store.ErrExists) {
				return fail(exitFailure, "domain %s already exists", d)
			}
			return err
		}
		fmt.Fprintf(e.stdout, "added domain %s\n", d)
		return nil
	})
}

func runDomainDel(e *env, args []string) error {
	return e.withDomain(args, "domain del", `Delete a domain. It is refused while users, extra addresses or aliases of
the domain remain: delete those first.`, func(st store.Store, d string) error {
		if err := st.DeleteDomain(context.Background(), d); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fail(exitFailure, "no domain %s", d)
			}
			return fail(exitFailure, "cannot delete: %v", err)
		}
		fmt.Fprintf(e.stdout, "deleted domain %s\n", d)
		return nil
	})
}

func (e *env) withDomain(args []string, name, summary string, f func(store.Store, string) error) error {
	with := e.withStore
	if name == "domain add" {
		with = e.withNewStore
	}
	fs := newFlags(e, name, "DOMAIN", summary)
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	d, err := domainArg(pos[0])
	if err != nil {
		return err
	}
	return with(func(st store.Store) error { return f(st, d) })
}

func runDomainList(e *env, args []string) error {
	fs := newFlags(e, "domain list", "", "List the local domains, one per line, sorted.")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		ds, err := st.ListDomains(context.Background())
		if err != nil {
			return err
		}
		for _, d := range ds {
			fmt.Fprintln(e.stdout, d.Name)
		}
		return nil
	})
}

// withStore loads the configuration, opens the existing store, runs f and
// closes it.
func (e *env) withStore(f func(store.Store) error) error {
	return e.openAnd(existingStore, f)
}

// withNewStore is withStore for the commands that set a server up: it
// creates the store when there is none.
func (e *env) withNewStore(f func(store.Store) error) error {
	return e.openAnd(createStore, f)
}

func (e *env) openAnd(use storeUse, f func(store.Store) error) error {
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	st, err := openStore(cfg, use)
	if err != nil {
		return err
	}
	defer st.Close()
	return f(st)
}
