package dnsrecords

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/miekg/dns"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/resolver"
)

// Status is what DNS says about a needed record.
type Status string

// Statuses.
const (
	OK           Status = "ok"      // published, and does its job
	Missing      Status = "missing" // nothing there
	Wrong        Status = "wrong"   // something else there, or it does not work
	LookupFailed Status = "error"   // the lookup failed: try again
)

// Finding is the check of one record.
type Finding struct {
	Record Record
	Status Status
	Found  []string // what DNS has at the name, for the record's type
	Detail string   // why it is wrong, or a note on a record that is fine
}

// Check looks up every record of Records(d) through r and says, for
// each, whether it is published and right. It checks what matters, not
// the letters: the SPF records must let the mail host's addresses send
// (evaluated as receivers evaluate them, RFC 7208 section 4), a DKIM
// record must hold the key, a DMARC record must parse, an alias must
// reach the mail host's addresses.
func Check(ctx context.Context, r resolver.Resolver, d Domain) ([]Finding, error) {
	recs, err := Records(d)
	if err != nil {
		return nil, err
	}
	name, _ := asciiName(d.Name)
	mx, _ := asciiName(d.MX)
	c := &checker{r: r, name: name, mx: mx, ips: d.IPs}
	findings := make([]Finding, 0, len(recs))
	for _, rec := range recs {
		f := Finding{Record: rec}
		c.check(ctx, &f)
		findings = append(findings, f)
	}
	return findings, nil
}

type checker struct {
	r        resolver.Resolver
	name, mx string
	ips      []net.IP // the mail host's addresses, given or looked up

	mxAddrs []net.IP // looked up once
	mxErr   error
	mxDone  bool
}

// lookupFailed fills a finding from a lookup error: missing for "not
// found", failed otherwise.
func lookupFailed(f *Finding, err error) {
	var de *net.DNSError
	if errors.As(err, &de) && de.IsNotFound {
		f.Status = Missing
		return
	}
	f.Status, f.Detail = LookupFailed, err.Error()
}

// sendingIPs are the addresses the mail host sends from: those given, or
// else those its name resolves to.
func (c *checker) sendingIPs(ctx context.Context) ([]net.IP, error) {
	if len(c.ips) > 0 {
		return c.ips, nil
	}
	if !c.mxDone {
		c.mxDone = true
		addrs, err := c.r.LookupIPAddr(ctx, c.mx)
		for _, a := range addrs {
			c.mxAddrs = append(c.mxAddrs, a.IP)
		}
		c.mxErr = err
	}
	return c.mxAddrs, c.mxErr
}

func sameName(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// withPrefix returns the TXT records that start with prefix (e.g.
// "v=spf1"), compared without regard to case, followed by the end, a
// space or a semicolon.
func withPrefix(txts []string, prefix string) []string {
	var out []string
	for _, t := range txts {
		t = strings.TrimSpace(t)
		if len(t) >= len(prefix) && strings.EqualFold(t[:len(prefix)], prefix) &&
			(len(t) == len(prefix) || t[len(prefix)] == ' ' || t[len(prefix)] == ';') {
			out = append(out, t)
		}
	}
	return out
}

// tags parses a tag list ("a=1; b=2", RFC 6376 section 3.2), white
// space in values removed.
func tags(s string) map[string]string {
	m := map[string]string{}
	for _, part := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok {
			m[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
		}
	}
	return m
}

func (c *checker) check(ctx context.Context, f *Finding) {
	rec := f.Record
	switch rec.kind {
	case kindMX:
		mxs, err := c.r.LookupMX(ctx, c.name)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		f.Status, f.Detail = Wrong, "mail for "+c.name+" goes elsewhere"
		for _, m := range mxs {
			f.Found = append(f.Found, fmt.Sprintf("%d %s", m.Pref, m.Host))
			if sameName(m.Host, c.mx) {
				f.Status, f.Detail = OK, ""
			}
		}

	case kindAddress:
		addrs, err := c.r.LookupIPAddr(ctx, c.mx)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		f.Status, f.Detail = Missing, "the mail host has other addresses"
		for _, a := range addrs {
			f.Found = append(f.Found, a.IP.String())
			if a.IP.Equal(rec.ip) {
				f.Status, f.Detail = OK, ""
			}
		}

	case kindPTR:
		names, err := c.r.LookupAddr(ctx, rec.ip.String())
		if err != nil {
			lookupFailed(f, err)
			return
		}
		f.Status, f.Detail = Wrong, "the address has another name: receivers see a mismatch"
		for _, n := range names {
			f.Found = append(f.Found, n)
			if sameName(n, c.mx) {
				f.Status, f.Detail = OK, ""
			}
		}

	case kindSPF, kindHELOSPF:
		owner := c.name
		if rec.kind == kindHELOSPF {
			owner = c.mx
		}
		txts, err := c.r.LookupTXT(ctx, owner)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		spfs := withPrefix(txts, "v=spf1")
		f.Found = spfs
		switch len(spfs) {
		case 0:
			f.Status = Missing
			return
		case 1:
		default:
			// RFC 7208 section 3.2: more than one record is a permerror.
			f.Status, f.Detail = Wrong, "more than one SPF record: receivers take that as an error (RFC 7208 section 3.2)"
			return
		}
		ips, err := c.sendingIPs(ctx)
		if len(ips) == 0 {
			f.Status, f.Detail = OK, "not evaluated: the mail host's addresses are unknown"
			if err != nil {
				f.Detail += " (" + err.Error() + ")"
			}
			return
		}
		// Evaluated as a receiver evaluates it.
		f.Status = OK
		var bad []string
		for _, ip := range ips {
			var res mailauth.SPFResult
			if rec.kind == kindSPF {
				res = mailauth.CheckSPF(ctx, c.r, ip, c.mx, "postmaster@"+c.name)
			} else {
				res = mailauth.CheckHELO(ctx, c.r, ip, c.mx)
			}
			if res.Result != mailauth.ResultPass {
				bad = append(bad, fmt.Sprintf("%s gets %s", ip, res.Result))
			}
		}
		if len(bad) > 0 {
			f.Status, f.Detail = Wrong, "the mail host may not send by it: "+strings.Join(bad, ", ")
		}

	case kindDKIM:
		txts, err := c.r.LookupTXT(ctx, rec.Name)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		f.Found = txts
		want, err := rec.key.TXT()
		if err != nil {
			f.Status, f.Detail = Wrong, err.Error()
			return
		}
		wantP := tags(want)["p"]
		f.Status, f.Detail = Wrong, "another key: mail signed with this one fails verification"
		for _, t := range txts {
			switch p := tags(t)["p"]; {
			case p == wantP:
				f.Status, f.Detail = OK, ""
				if len(txts) > 1 {
					f.Status, f.Detail = Wrong, "more than one record: verifiers may pick the wrong one (RFC 6376 section 3.6.2.2)"
				}
				return
			case p == "" && strings.Contains(t, "p="):
				f.Detail = "the key is revoked (empty p=, RFC 6376 section 3.6.1)"
			}
		}

	case kindDMARC:
		c.checkDMARC(ctx, f)

	case kindSRV:
		want := rec.rr.(*dns.SRV)
		_, srvs, err := c.r.LookupSRV(ctx, "", "", rec.Name)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		f.Status, f.Detail = Wrong, "clients are sent elsewhere"
		for _, s := range srvs {
			f.Found = append(f.Found, fmt.Sprintf("%d %d %d %s", s.Priority, s.Weight, s.Port, s.Target))
			if sameName(s.Target, want.Target) && (want.Target == "." || s.Port == want.Port) {
				f.Status, f.Detail = OK, ""
			}
		}

	case kindMTASTS:
		txts, err := c.r.LookupTXT(ctx, rec.Name)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		sts := withPrefix(txts, "v=STSv1")
		f.Found = sts
		wantID := tags(strings.Join(rec.rr.(*dns.TXT).Txt, ""))["id"]
		switch {
		case len(sts) == 0:
			f.Status = Missing
		case len(sts) > 1:
			f.Status, f.Detail = Wrong, "more than one record: senders ignore MTA-STS (RFC 8461 section 3.1)"
		case tags(sts[0])["id"] != wantID:
			f.Status, f.Detail = Wrong, "another id: the policy changed, and senders keep the old one until the id changes (RFC 8461 section 3.1)"
		default:
			f.Status = OK
		}

	case kindTLSRPT:
		txts, err := c.r.LookupTXT(ctx, rec.Name)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		f.Found = withPrefix(txts, "v=TLSRPTv1")
		f.Status = OK
		if len(f.Found) == 0 {
			f.Status = Missing
		} else if len(f.Found) > 1 {
			f.Status, f.Detail = Wrong, "more than one record: senders send no reports (RFC 8460 section 3)"
		}

	case kindAlias:
		// What matters is that the name reaches the mail host: a CNAME
		// or address records of its own.
		addrs, err := c.r.LookupIPAddr(ctx, rec.Name)
		if err != nil {
			lookupFailed(f, err)
			return
		}
		ips, _ := c.sendingIPs(ctx)
		if len(c.ips) > 0 {
			ips = c.ips
		}
		f.Status, f.Detail = Wrong, "the name reaches another host than "+c.mx
		for _, a := range addrs {
			f.Found = append(f.Found, a.IP.String())
			if slices.ContainsFunc(ips, a.IP.Equal) {
				f.Status, f.Detail = OK, ""
			}
		}
	}
}

// checkDMARC: a record that parses, at the domain or, failing that, at
// its organizational domain (RFC 7489 section 6.6.3).
func (c *checker) checkDMARC(ctx context.Context, f *Finding) {
	lookup := func(domain string) ([]string, error) {
		txts, err := c.r.LookupTXT(ctx, "_dmarc."+domain)
		if err != nil {
			return nil, err
		}
		return withPrefix(txts, "v=DMARC1"), nil
	}
	recs, err := lookup(c.name)
	if err != nil {
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			lookupFailed(f, err)
			return
		}
	}
	f.Found = recs
	if len(recs) == 0 {
		if org := mailauth.OrganizationalDomain(c.name); org != c.name {
			if orgRecs, err := lookup(org); err == nil && len(orgRecs) == 1 {
				if _, err := dmarc.Parse(orgRecs[0]); err == nil {
					f.Status, f.Detail = OK, "the record of "+org+" applies (RFC 7489 section 6.6.3)"
					f.Found = orgRecs
					return
				}
			}
		}
		f.Status = Missing
		return
	}
	if len(recs) > 1 {
		f.Status, f.Detail = Wrong, "more than one record: receivers apply none (RFC 7489 section 6.6.3)"
		return
	}
	rec, err := dmarc.Parse(recs[0])
	if err != nil {
		f.Status, f.Detail = Wrong, strings.TrimPrefix(err.Error(), "dmarc: ")
		return
	}
	f.Status = OK
	if rec.Policy == dmarc.PolicyNone {
		f.Detail = "p=none: receivers deliver mail forged in the domain's name; fine while watching reports"
	}
}
