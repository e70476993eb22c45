// Package resolver answers the DNS questions that mail authentication
// and the checks of a domain's records ask (TXT, MX, addresses, PTR, SRV):
// from the operating system's resolver, or from one configured DNS server
// (the dns_server setting), asked directly.
//
// Every error is a *net.DNSError, as Go's own resolver returns them, so
// that the libraries on top (SPF, DKIM, DMARC) tell the outcomes apart:
// IsNotFound for a name that does not exist or has no record of the type
// asked (NXDOMAIN or NODATA, RFC 2308), IsTemporary or IsTimeout for
// anything else (a server failure, no answer): a temporary error.
package resolver

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver is the set of lookups used here. Go's *net.Resolver has them
// all, with the same signatures: net.DefaultResolver is a Resolver.
type Resolver interface {
	// LookupTXT returns one string per TXT record: the record's
	// character-strings concatenated (RFC 7208 section 3.3, RFC 6376
	// section 3.6.2.2).
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, name string) ([]*net.MX, error)
	LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error)
	// LookupAddr returns the names of an address (PTR records).
	LookupAddr(ctx context.Context, addr string) ([]string, error)
	// LookupSRV looks up _service._proto.name (RFC 2782); empty service
	// and proto look up name itself.
	LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error)
}

// System is the operating system's resolver (Go's net.DefaultResolver).
func System() Resolver { return net.DefaultResolver }

// Server returns a Resolver that asks the DNS server at addr (ip:port)
// directly, with recursion desired: over UDP, and again over TCP when the
// answer is truncated (RFC 7766 section 5). timeout bounds each exchange
// (0: 5 seconds). Every lookup asks the server: for checks that must see
// a record just published (postoffice domain check).
func Server(addr string, timeout time.Duration) Resolver {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &server{addr: addr, timeout: timeout}
}

// CachingServer is Server with a cache of the answers (see cache.go for
// its rules: TTLs honoured up to MaxTTL, negative answers as RFC 2308
// says, failures never), for the checks of every incoming message and the
// queue's MX lookups, which ask the same few questions again and again.
func CachingServer(addr string, timeout time.Duration) Resolver {
	s := Server(addr, timeout).(*server)
	s.cache = newCache()
	return s
}

type server struct {
	addr    string
	timeout time.Duration
	cache   *cache // nil: no cache
}

// query asks one question and returns the records of the type asked in
// the answer section. A name that does not exist or has no record of the
// type is an IsNotFound error.
func (s *server) query(ctx context.Context, name string, qtype uint16) ([]dns.RR, error) {
	if e, ok := s.cache.get(name, qtype); ok {
		if e.rrs == nil {
			return nil, s.notFound(name, qtype, e.nxdomain)
		}
		return e.rrs, nil
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: s.timeout}
	r, _, err := c.ExchangeContext(ctx, m, s.addr)
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, s.addr)
	}
	if err != nil {
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
		return nil, &net.DNSError{Err: err.Error(), Name: name, Server: s.addr, IsTimeout: timeout, IsTemporary: true}
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		s.cache.putNegative(name, qtype, true, r.Ns)
		return nil, s.notFound(name, qtype, true)
	default:
		return nil, &net.DNSError{Err: "server answered " + dns.RcodeToString[r.Rcode], Name: name, Server: s.addr, IsTemporary: true}
	}
	// Records of any owner: the answer may follow a CNAME chain (RFC 1034
	// section 3.6.2). Only those of the type asked count.
	var rrs []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			rrs = append(rrs, rr)
		}
	}
	if len(rrs) == 0 {
		// NODATA (RFC 2308 section 2.2): the name exists, without records
		// of the type.
		s.cache.putNegative(name, qtype, false, r.Ns)
		return nil, s.notFound(name, qtype, false)
	}
	s.cache.putAnswer(name, qtype, r.Answer, rrs)
	return rrs, nil
}

// notFound is the error of an NXDOMAIN (nxdomain) or NODATA answer.
func (s *server) notFound(name string, qtype uint16, nxdomain bool) error {
	msg := "no such host"
	if !nxdomain {
		msg = "no " + dns.TypeToString[qtype] + " record"
	}
	return &net.DNSError{Err: msg, Name: name, Server: s.addr, IsNotFound: true}
}

func (s *server) LookupTXT(ctx context.Context, name string) ([]string, error) {
	rrs, err := s.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, err
	}
	txts := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		txts = append(txts, strings.Join(rr.(*dns.TXT).Txt, ""))
	}
	return txts, nil
}

func (s *server) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	rrs, err := s.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	mxs := make([]*net.MX, 0, len(rrs))
	for _, rr := range rrs {
		mx := rr.(*dns.MX)
		mxs = append(mxs, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	return mxs, nil
}

// LookupIPAddr asks for A and AAAA records; it fails only when both
// questions do, with a temporary failure winning over "not found".
func (s *server) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	if ip := net.ParseIP(host); ip != nil {
		return []net.IPAddr{{IP: ip}}, nil
	}
	var addrs []net.IPAddr
	var errs []error
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		rrs, err := s.query(ctx, host, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range rrs {
			switch a := rr.(type) {
			case *dns.A:
				addrs = append(addrs, net.IPAddr{IP: a.A})
			case *dns.AAAA:
				addrs = append(addrs, net.IPAddr{IP: a.AAAA})
			}
		}
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	for _, err := range errs {
		if !err.(*net.DNSError).IsNotFound {
			return nil, err
		}
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, Server: s.addr, IsNotFound: true}
}

func (s *server) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	rev, err := dns.ReverseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "unrecognized address", Name: addr, Server: s.addr}
	}
	rrs, err := s.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(rrs))
	for _, rr := range rrs {
		names = append(names, rr.(*dns.PTR).Ptr)
	}
	return names, nil
}

func (s *server) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, error) {
	target := name
	if service != "" || proto != "" {
		target = "_" + service + "._" + proto + "." + name
	}
	target = dns.Fqdn(target)
	rrs, err := s.query(ctx, target, dns.TypeSRV)
	if err != nil {
		return "", nil, err
	}
	srvs := make([]*net.SRV, 0, len(rrs))
	for _, rr := range rrs {
		srv := rr.(*dns.SRV)
		srvs = append(srvs, &net.SRV{Target: srv.Target, Port: srv.Port, Priority: srv.Priority, Weight: srv.Weight})
	}
	return target, srvs, nil
}
