package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const (
	aliasAddHelp = `Create or replace an alias. Targets may be local users, other aliases (nested
aliases are expanded, loops are detected) or remote addresses. ADDRESS may be
@DOMAIN: a catch-all for every unknown address of the domain.`
	aliasDelHelp = `Delete an alias (or the catch-all @DOMAIN). Mail to it is refused from then on,
unless a catch-all of its domain takes it.`
)

// aliasAddress accepts a normal address or "@domain" (a domain's
// catch-all).
func aliasAddress(s string) (string, error) {
	a, err := address.NormalizeAlias(s)
	if err != nil {
		return "", fail(exitUsage, "%q is not a valid alias address: %v", s, err)
	}
	return a, nil
}

func runAliasAdd(c *call) error {
	addr, err := aliasAddress(c.args[0])
	if err != nil {
		return err
	}
	var targets []string
	for i := range c.args[1:] {
		a, err := c.address(i + 1)
		if err != nil {
			return err
		}
		targets = append(targets, a)
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := st.SetAlias(context.Background(), store.Alias{Address: addr, Targets: targets}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fail(exitFailure, "%s is already a user or an extra address", addr)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "alias %s -> %s\n", addr, strings.Join(targets, ", "))
	return nil
}

func runAliasDel(c *call) error {
	addr, err := aliasAddress(c.args[0])
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := st.DeleteAlias(context.Background(), addr); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fail(exitFailure, "no alias %s", addr)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "deleted alias %s\n", addr)
	return nil
}

func runAliasList(c *call) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	as, err := st.ListAliases(context.Background())
	if err != nil {
		return err
	}
	for _, a := range as {
		fmt.Fprintf(c.stdout, "%s -> %s\n", a.Address, strings.Join(a.Targets, ", "))
	}
	return nil
}
