package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

var aliasCommand = &command{
	name:    "alias",
	usage:   "add|del|list",
	summary: "manage aliases and distribution lists (one address to several local or remote addresses)",
	sub: []*command{
		{name: "add", usage: "ADDRESS TARGET...", summary: "create or replace an alias; ADDRESS may be @DOMAIN for a catch-all", run: runAliasAdd},
		{name: "del", usage: "ADDRESS", summary: "delete an alias", run: runAliasDel},
		{name: "list", summary: "list aliases and their targets", run: runAliasList},
	},
}

// aliasAddress accepts a normal address or "@domain" (a domain's
// catch-all).
func aliasAddress(s string) (string, error) {
	a, err := address.NormalizeAlias(s)
	if err != nil {
		return "", fail(exitUsage, "%q is not a valid alias address: %v", s, err)
	}
	return a, nil
}

func runAliasAdd(e *env, args []string) error {
	fs := newFlags(e, "alias add", "ADDRESS TARGET...",
		"Create or replace an alias. Targets may be local users, other aliases (nested\n"+
			"aliases are expanded, loops are detected) or remote addresses. ADDRESS may be\n"+
			"@DOMAIN: a catch-all for every unknown address of the domain.")
	pos, err := e.parseArgs(fs, args, 2, -1)
	if err != nil {
		return err
	}
	addr, err := aliasAddress(pos[0])
	if err != nil {
		return err
	}
	var targets []string
	for _, t := range pos[1:] {
		a, err := addressArg(t)
		if err != nil {
			return err
		}
		targets = append(targets, a)
	}
	return e.withNewStore(func(st store.Store) error {
		if err := st.SetAlias(context.Background(), store.Alias{Address: addr, Targets: targets}); err != nil {
			if errors.Is(err, store.ErrExists) {
				return fail(exitFailure, "%s is already a user or an extra address", addr)
			}
			return err
		}
		fmt.Fprintf(e.stdout, "alias %s -> %s\n", addr, strings.Join(targets, ", "))
		return nil
	})
}

func runAliasDel(e *env, args []string) error {
	fs := newFlags(e, "alias del", "ADDRESS", "Delete an alias (or the catch-all @DOMAIN). Mail to it is refused from then on,\nunless a catch-all of its domain takes it.")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	addr, err := aliasAddress(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		if err := st.DeleteAlias(context.Background(), addr); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fail(exitFailure, "no alias %s", addr)
			}
			return err
		}
		fmt.Fprintf(e.stdout, "deleted alias %s\n", addr)
		return nil
	})
}

func runAliasList(e *env, args []string) error {
	fs := newFlags(e, "alias list", "", "List aliases and their targets, one alias per line: ADDRESS TARGET,TARGET...")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		as, err := st.ListAliases(context.Background())
		if err != nil {
			return err
		}
		for _, a := range as {
			fmt.Fprintf(e.stdout, "%s -> %s\n", a.Address, strings.Join(a.Targets, ", "))
		}
		return nil
	})
}
