package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/smtpclient"
)

// Outbound MTA-STS (RFC 8461): for MX delivery to a domain that
// publishes a policy, mode "enforce" allows only the MX hosts the policy
// names, over TLS with a certificate valid for the MX host name (section
// 4), and defers otherwise (section 5: the message must not go to an MX
// that fails validation; a later attempt may find the policy, DNS or the
// host fixed); mode "testing" delivers as without a policy and reports
// what enforce would have refused, in the log and the journal.
//
// A relay host or a [queue.routes] entry is a next hop the operator
// chose: it is not the domain's MX, so its policy, which names MX hosts,
// does not apply, and the configured TLS level does. Postfix decides so
// too: its TLS policy table, where MTA-STS policies go, is looked up by
// the next hop, and a transport or relay host makes that next hop other
// than the recipient domain.

// PolicyClient is an HTTPS client for MTA-STS policies (RFC 8461
// section 3.3): it finds the policy host's addresses with res (the
// queue's DNS, so that dns_server holds here too), dials them with dial
// (nil: a net.Dialer), and verifies the certificate with roots (nil: the
// system's).
func PolicyClient(res Resolver, roots *x509.CertPool, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		Proxy:           nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := res.LookupIP(ctx, host)
			if err != nil {
				return nil, err
			}
			var last error
			for _, ip := range sortAddrs(ips) {
				c, err := dial(ctx, network, net.JoinHostPort(ip.String(), port))
				if err == nil {
					return c, nil
				}
				last = err
			}
			return nil, last
		},
	}}
}

// stsPlan is how MTA-STS shapes one MX delivery.
type stsPlan struct {
	domain string
	policy *mtasts.Policy // nil: no policy applies
}

// policy looks up the domain's policy; a failure to get one leaves
// delivery as without MTA-STS (RFC 8461 section 5.1), and is logged.
func (r *Runner) policy(ctx context.Context, domain string) stsPlan {
	if r.cfg.MTASTS == nil {
		return stsPlan{}
	}
	res := r.cfg.MTASTS.Get(ctx, domain)
	if res.Err != nil {
		r.log.Info("MTA-STS policy not refreshed", "domain", domain, "cached", res.Policy != nil, "err", res.Err)
	}
	if res.Policy == nil || res.Policy.Mode == mtasts.None {
		return stsPlan{}
	}
	return stsPlan{domain: domain, policy: res.Policy}
}

// enforce restricts targets to the MX hosts the policy allows (RFC 8461
// section 4.1) and requires verified TLS with them (section 4.2); in
// mode testing it changes nothing. It returns the failure when no host
// is left.
func (p stsPlan) enforce(targets []smtpclient.Target, level smtpclient.TLSLevel) ([]smtpclient.Target, smtpclient.TLSLevel, *outcome) {
	if p.policy == nil || p.policy.Mode != mtasts.Enforce {
		return targets, level, nil
	}
	var ok []smtpclient.Target
	for _, t := range targets {
		if p.policy.Match(t.Host) {
			ok = append(ok, t)
		}
	}
	if len(ok) == 0 {
		// RFC 3463 section 3.8: X.7.5, the host cannot be authenticated
		// as the domain's (what Postfix reports when a certificate does
		// not match the names its policy allows).
		return nil, level, tempFailure("4.7.5", "no MX host of %s is allowed by its MTA-STS policy (mx: %s)", p.domain, strings.Join(p.policy.MX, ", "))
	}
	return ok, smtpclient.TLSVerify, nil
}

// testingNote is what mode testing reports about a delivery to t over a
// connection in state st: what enforce would have refused, "" if
// nothing.
func (p stsPlan) testingNote(t smtpclient.Target, st smtpclient.TLSState) string {
	if p.policy == nil || p.policy.Mode != mtasts.Testing {
		return ""
	}
	var problems []string
	if !p.policy.Match(t.Host) {
		problems = append(problems, fmt.Sprintf("%s is not among its mx (%s)", t.Host, strings.Join(p.policy.MX, ", ")))
	}
	switch {
	case !st.Encrypted:
		problems = append(problems, "no TLS")
	case !st.Verified:
		problems = append(problems, fmt.Sprintf("certificate not verified: %v", st.VerifyErr))
	}
	if len(problems) == 0 {
		return ""
	}
	return fmt.Sprintf("MTA-STS policy of %s in testing mode would have refused this delivery: %s", p.domain, strings.Join(problems, "; "))
}
