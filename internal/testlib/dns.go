// Package testlib holds what the tests of several packages share: a DNS
// server on loopback, and other real-socket fixtures. Only tests import
// it.
package testlib

import (
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"
)

// DNS is an authoritative DNS server on a loopback UDP and TCP port (the
// same port for both), serving records in presentation format, following
// CNAMEs inside the zone. Names not in the zone do not exist (NXDOMAIN); names under a ServFail suffix
// answer SERVFAIL; answers for a Truncate name over UDP are empty and
// truncated, so that a resolver retries over TCP (RFC 7766 section 5).
// A negative answer (NXDOMAIN or NODATA) carries the zone's SOA record in
// its authority section when the zone has one above the name, as RFC 2308
// section 3 asks of an authoritative server, so that resolvers may cache
// it.
type DNS struct {
	Addr string // host:port, for a resolver setting such as [queue] dns_server

	mu       sync.Mutex
	rrs      []dns.RR
	servFail []string
	truncate map[string]bool
	queries  int
}

// Queries returns how many queries the server has answered.
func (d *DNS) Queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries
}

// StartDNS starts a DNS server with the zone's records; it stops at the
// end of the test.
func StartDNS(t testing.TB, zone ...string) *DNS {
	t.Helper()
	d := &DNS{truncate: map[string]bool{}}
	d.Add(t, zone...)
	// The same port for UDP and TCP: retry while the TCP one is taken.
	var pc net.PacketConn
	var l net.Listener
	for try := 0; l == nil; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 50 {
				t.Fatal(err)
			}
		}
	}
	udp := &dns.Server{PacketConn: pc, Handler: d}
	tcp := &dns.Server{Listener: l, Handler: d}
	go udp.ActivateAndServe()
	go tcp.ActivateAndServe()
	t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
	d.Addr = pc.LocalAddr().String()
	return d
}

// Add adds records (presentation format, e.g. "a.test. 60 IN MX 10
// mx.a.test.") to the zone.
func (d *DNS) Add(t testing.TB, zone ...string) {
	t.Helper()
	for _, z := range zone {
		rr, err := dns.NewRR(z)
		if err != nil {
			t.Fatalf("zone record %q: %v", z, err)
		}
		d.mu.Lock()
		d.rrs = append(d.rrs, rr)
		d.mu.Unlock()
	}
}

// Remove drops every record of name (fully qualified, e.g. "a.test.") and
// type (dns.TypeTXT...; dns.TypeANY for all).
func (d *DNS) Remove(name string, rrtype uint16) {
	d.mu.Lock()
	defer d.mu.Unlock()
	kept := d.rrs[:0]
	for _, rr := range d.rrs {
		h := rr.Header()
		if strings.EqualFold(h.Name, name) && (rrtype == dns.TypeANY || h.Rrtype == rrtype) {
			continue
		}
		kept = append(kept, rr)
	}
	d.rrs = kept
}

// ServFail makes every name ending in suffix (e.g. "fail.test.") answer
// SERVFAIL.
func (d *DNS) ServFail(suffix string) {
	d.mu.Lock()
	d.servFail = append(d.servFail, strings.ToLower(suffix))
	d.mu.Unlock()
}

// Truncate makes answers for name over UDP empty and truncated.
func (d *DNS) Truncate(name string) {
	d.mu.Lock()
	d.truncate[strings.ToLower(name)] = true
	d.mu.Unlock()
}

// ServeDNS answers from the zone.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	d.mu.Lock()
	d.queries++
	exists := false
	// A name that has a CNAME answers with it and, for another type, with
	// the records of its target in the zone (RFC 1034 section 4.3.2, step
	// 3a), as an authoritative server does; at most 8 links.
	for qname, hops := q.Name, 0; hops < 8; hops++ {
		var cname *dns.CNAME
		found := false
		for _, rr := range d.rrs {
			if !strings.EqualFold(rr.Header().Name, qname) {
				continue
			}
			exists = true
			if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
				m.Answer = append(m.Answer, dns.Copy(rr))
				found = true
			} else if c, ok := rr.(*dns.CNAME); ok {
				cname = c
			}
		}
		if found || cname == nil {
			break
		}
		m.Answer = append(m.Answer, dns.Copy(cname))
		qname = cname.Target
	}
	servFail := false
	for _, s := range d.servFail {
		if strings.HasSuffix(name, s) {
			servFail = true
		}
	}
	truncate := d.truncate[name]
	if len(m.Answer) == 0 {
		m.Ns = d.soaAbove(name)
	}
	d.mu.Unlock()
	switch {
	case servFail:
		m.Answer, m.Ns = nil, nil
		m.Rcode = dns.RcodeServerFailure
	case !exists:
		m.Rcode = dns.RcodeNameError
	case truncate && w.RemoteAddr().Network() == "udp":
		m.Answer, m.Truncated = nil, true
	}
	w.WriteMsg(m)
}

// soaAbove returns the zone's SOA record of the closest enclosing name of
// name (itself included), if there is one. d.mu is held.
func (d *DNS) soaAbove(name string) []dns.RR {
	var best dns.RR
	for _, rr := range d.rrs {
		owner := strings.ToLower(rr.Header().Name)
		if rr.Header().Rrtype != dns.TypeSOA || !dns.IsSubDomain(owner, name) {
			continue
		}
		if best == nil || len(owner) > len(best.Header().Name) {
			best = rr
		}
	}
	if best == nil {
		return nil
	}
	return []dns.RR{dns.Copy(best)}
}
