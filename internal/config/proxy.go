package config

import (
	"fmt"
	"net/netip"
)

// validateProxy checks proxy_protocol and proxy_trusted of [pop3], [smtp]
// and [submission]: a service that expects PROXY protocol headers must say
// whose, since a header from anyone else could claim any address.
func (c Config) validateProxy() error {
	for _, s := range []struct {
		table string
		svc   Service
	}{{"pop3", c.POP3.Service}, {"smtp", c.SMTP.Service}, {"submission", c.Submission.Service}} {
		for _, t := range s.svc.ProxyTrusted {
			if _, err := netip.ParsePrefix(t); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(t); err != nil {
				return fmt.Errorf(`key "%s.proxy_trusted": %q is neither an address nor a prefix like 10.0.0.0/8`, s.table, t)
			}
		}
		if s.svc.ProxyProtocol && len(s.svc.ProxyTrusted) == 0 {
			return fmt.Errorf(`key "%s.proxy_trusted": must list the load balancers' addresses when %s.proxy_protocol is true`, s.table, s.table)
		}
	}
	return nil
}
