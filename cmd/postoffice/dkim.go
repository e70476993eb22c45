package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/server"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const (
	dkimKeygenHelp = `Create DKIM keys for DOMAIN (a local domain), store them (in the store, so
that every node of a cluster signs with them) and print their DNS records,
ready to paste. By default two keys are made, an Ed25519 one (RFC 8463) and
an RSA one of 2048 bits, and every message is signed with both: not every
receiver verifies Ed25519 yet. Their selectors are the date and e or r
(20260315e, 20260315r), as Stalwart names them; --selector names the key
that --algorithm makes.

The keys sign at once the mail of authenticated users whose From is in
DOMAIN, and postoffice's own notifications (a running serve is told):
publish the records now. Until they are published receivers see the new
signatures fail, which DMARC counts as no signature.

Rotation: make new keys, publish their records, then retire the old ones
('postoffice dkim retire DOMAIN SELECTOR').`
	dkimListHelp = `List the DKIM keys of DOMAIN, or of every local domain: selector, key type,
creation date and state. An active key signs; a retired one signs no more,
and its record stays published until the date shown (mail signed before it
retired may still be on its way), after which the record can be deleted.`
	dkimRetireHelp = `Retire a DKIM key: it signs no more (a running serve stops at once, other
nodes of a cluster within a minute). Its record stays among those of
'postoffice domain records' for a week (or two days more than [queue]
max_lifetime, if longer), marked retired with the date until which to keep
it: messages signed before may still be in a queue. Then delete it from
DNS. The key itself is kept in the store, listed as retired.

Rotation, as OpenDKIM and Stalwart users do it: 'dkim keygen DOMAIN' makes
new keys, which sign next to the old ones; publish the new records; once
they are visible ('postoffice domain check DOMAIN'), retire the old keys.`
)

func parseAlgorithm(s string) ([]mailauth.Algorithm, error) {
	switch strings.ToLower(s) {
	case "":
		return nil, nil
	case "ed25519":
		return []mailauth.Algorithm{mailauth.Ed25519}, nil
	case "rsa":
		return []mailauth.Algorithm{mailauth.RSA}, nil
	}
	return nil, fail(exitUsage, "unknown algorithm %q: ed25519 or rsa", s)
}

// localDomainArg is a domain argument that must be a local domain.
func (c *call) localDomainArg(s string) (string, store.Store, error) {
	d, err := domainArg(s)
	if err != nil {
		return "", nil, err
	}
	st, err := c.store()
	if err != nil {
		return "", nil, err
	}
	ok, err := st.HasDomain(context.Background(), d)
	if err != nil {
		return "", nil, err
	}
	if !ok {
		return "", nil, fail(exitFailure, "no domain %s here (postoffice domain add %s)", d, d)
	}
	return d, st, nil
}

func runDKIMKeygen(c *call) error {
	algs, err := parseAlgorithm(c.algorithm)
	if err != nil {
		return err
	}
	if c.selector != "" {
		if len(algs) == 0 {
			return fail(exitUsage, "--selector names one key: give --algorithm ed25519 or rsa with it")
		}
		if err := mailauth.CheckSelector(c.selector); err != nil {
			return fail(exitUsage, "%v", err)
		}
	}
	d, st, err := c.localDomainArg(c.args[0])
	if err != nil {
		return err
	}
	now := time.Now()
	made, err := mailauth.Keygen(context.Background(), st, d, c.selector, algs, now)
	if errors.Is(err, mailauth.ErrKeyExists) {
		return fail(exitFailure, "%s has a key of selector %s already: choose another selector", d, strings.ToLower(c.selector))
	}
	if err != nil && len(made) == 0 {
		return err
	}
	recs, rerr := dnsrecords.DKIMRecords(d, made, now, 0, 0)
	if rerr != nil {
		return rerr
	}
	for _, k := range made {
		fmt.Fprintf(c.stdout, "; created DKIM key %s (%s) for %s: it signs from now on\n", k.Selector, k.Algorithm, d)
	}
	fmt.Fprintf(c.stdout, "; Publish in the DNS zone of %s:\n", d)
	fmt.Fprint(c.stdout, dnsrecords.Zone(recs))
	c.domainsChanged()
	return err
}

// keyState says whether a key signs, or until when its record stays.
func keyState(k mailauth.Key, now time.Time, keep time.Duration) string {
	switch {
	case k.Active():
		return "active"
	case k.Published(now, keep):
		return fmt.Sprintf("retired %s, keep its record until %s", k.Retired.Format("2006-01-02"), k.Retired.Add(keep).Format("2006-01-02"))
	}
	return fmt.Sprintf("retired %s, its record can be deleted", k.Retired.Format("2006-01-02"))
}

func runDKIMList(c *call) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	var domains []string
	if len(c.args) == 1 {
		d, _, err := c.localDomainArg(c.args[0])
		if err != nil {
			return err
		}
		domains = []string{d}
	} else {
		ds, err := st.ListDomains(ctx)
		if err != nil {
			return err
		}
		for _, d := range ds {
			domains = append(domains, d.Name)
		}
	}
	now, keep := time.Now(), server.KeepRetired(cfg)
	w := tabwriter.NewWriter(c.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "DOMAIN\tSELECTOR\tALGORITHM\tCREATED\tSTATE")
	for _, d := range domains {
		keys, err := st.DKIMKeys(ctx, d)
		if err != nil {
			return err
		}
		for _, k := range keys {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.Domain, k.Selector, k.Algorithm, k.Created.Format("2006-01-02"), keyState(k, now, keep))
		}
		if len(c.args) == 1 && !slices.ContainsFunc(keys, mailauth.Key.Active) {
			defer fmt.Fprintf(c.stdout, "%s has no active key: its mail goes unsigned ('postoffice dkim keygen %s')\n", d, d)
		}
	}
	return w.Flush()
}

func runDKIMRetire(c *call) error {
	cfg, err := c.config()
	if err != nil {
		return err
	}
	d, st, err := c.localDomainArg(c.args[0])
	if err != nil {
		return err
	}
	sel := strings.ToLower(c.args[1])
	ctx := context.Background()
	now := time.Now()
	keys, err := st.DKIMKeys(ctx, d)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(keys, func(k mailauth.Key) bool { return k.Selector == sel })
	if i < 0 {
		return fail(exitFailure, "%s has no DKIM key of selector %s ('postoffice dkim list %s')", d, sel, d)
	}
	if !keys[i].Active() {
		fmt.Fprintf(c.stdout, "%s of %s is retired already (%s)\n", sel, d, keyState(keys[i], now, server.KeepRetired(cfg)))
		return nil
	}
	if err := st.RetireDKIMKey(ctx, d, sel, now); err != nil {
		return err
	}
	keep := server.KeepRetired(cfg)
	fmt.Fprintf(c.stdout, "retired DKIM key %s of %s: it signs no more; keep its record %s._domainkey.%s published until %s, then delete it\n",
		sel, d, sel, d, now.Add(keep).Format("2006-01-02"))
	keys[i].Retired = now
	if !slices.ContainsFunc(keys, mailauth.Key.Active) {
		fmt.Fprintf(c.stdout, "%s has no active key left: its mail goes unsigned ('postoffice dkim keygen %s')\n", d, d)
	}
	c.domainsChanged()
	return nil
}
