package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/server"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const (
	domainAddHelp = `Add a mail domain: postoffice becomes the final destination of mail for
addresses in DOMAIN (a recipient that is no user, extra address or alias of
it is refused with 550 5.1.1). Adding a user or an alias adds its domain;
mail for other domains is relayed only for authenticated users. A running
serve is told, so that with [acme] the domain's names get certificates at
once. 'postoffice domain records DOMAIN' prints the DNS records it needs.`
	domainRecordsHelp = `Print every DNS record DOMAIN needs, as zone-file lines ready to paste,
each after a comment saying what it is for: the MX (the hostname), SPF for
the domain and for the hostname, DKIM (one record per active key, once the
domain has keys: 'postoffice dkim keygen DOMAIN', and for a week per retired
one, marked with the date until which to keep it), DMARC, the SRV records
with which mail clients find POP3 and submission (RFC 6186, RFC 8314), the
MTA-STS record (when [mta_sts] is on and [http] tls_listen serves its
policy) and TLS reporting, and the autoconfig and autodiscover names (when
[http] serves them). Ports are those configured; a listener on port 0 or
switched off is published as not offered. The hostname's address (A,
AAAA) and reverse (PTR) records are set where the address comes from.`
	domainCheckHelp = `Look up every record of 'domain records DOMAIN' through the configured
resolver ([queue] dns_server, or the system's) and say, for each, whether
it is published and right: SPF is evaluated for the hostname's addresses as
receivers evaluate it, a DKIM record must hold the key, DMARC must parse,
an alias must reach the hostname. Exits 0 when everything is published, 1
when something is missing or wrong, 75 when lookups failed (try again).`
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
	c.domainsChanged()
	return nil
}

// domainsChanged tells a running serve that a domain may be new, so that
// its names get certificates now. Without a serve (or one another user
// runs) there is nothing to tell: it looks at the domains by itself.
func (c *call) domainsChanged() {
	cfg, err := c.config()
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := control.Call(ctx, control.SocketPath(cfg.DataDir), control.Request{Cmd: "domains"})
	if err == nil {
		printNotes(c.stdout, resp.Notes)
	}
}

// recordsDomain is what DOMAIN's records are built from.
func (c *call) recordsDomain() (config.Config, dnsrecords.Domain, error) {
	d, err := domainArg(c.args[0])
	if err != nil {
		return config.Config{}, dnsrecords.Domain{}, err
	}
	cfg, err := c.config()
	if err != nil {
		return cfg, dnsrecords.Domain{}, err
	}
	st, err := c.store()
	if err != nil {
		return cfg, dnsrecords.Domain{}, err
	}
	dom, err := server.RecordsDomain(context.Background(), cfg, st, d, nil)
	if errors.Is(err, store.ErrNotFound) {
		return cfg, dom, fail(exitFailure, "no domain %s here (postoffice domain add %s)", d, d)
	}
	return cfg, dom, err
}

func runDomainRecords(c *call) error {
	_, d, err := c.recordsDomain()
	if err != nil {
		return err
	}
	recs, err := dnsrecords.Records(d)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "; DNS records of %s, served by %s\n", d.Name, d.MX)
	fmt.Fprint(c.stdout, dnsrecords.Zone(recs))
	if !slices.ContainsFunc(d.Keys, mailauth.Key.Active) {
		fmt.Fprintf(c.stdout, "; No DKIM key for %s yet: 'postoffice dkim keygen %s' creates one, and its record is printed here.\n", d.Name, d.Name)
	}
	return nil
}

func runDomainCheck(c *call) error {
	cfg, d, err := c.recordsDomain()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fs, err := dnsrecords.Check(ctx, server.Resolver(cfg), d)
	if err != nil {
		return err
	}
	bad, failed := 0, 0
	for _, f := range fs {
		fmt.Fprintf(c.stdout, "%-8s %s %s %s\n", f.Status, f.Record.Name, f.Record.Type, f.Record.Value)
		switch f.Status {
		case dnsrecords.OK:
		case dnsrecords.LookupFailed:
			failed++
		default:
			bad++
		}
		if f.Status != dnsrecords.OK && len(f.Found) > 0 {
			fmt.Fprintf(c.stdout, "         found: %s\n", strings.Join(f.Found, " | "))
		}
		if f.Detail != "" {
			fmt.Fprintf(c.stdout, "         %s\n", f.Detail)
		}
	}
	switch {
	case bad > 0:
		return fail(exitFailure, "%s: %s missing or wrong (postoffice domain records %s prints them)", d.Name, plural(bad, "record"), d.Name)
	case failed > 0:
		return fail(exitTempFail, "%s: %s could not be looked up: try again", d.Name, plural(failed, "record"))
	}
	fmt.Fprintf(c.stdout, "%s: every record is published\n", d.Name)
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
