package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// Go's resolver has the same methods: System() needs no adapter.
var _ Resolver = (*net.Resolver)(nil)

func dnsError(t *testing.T, err error) *net.DNSError {
	t.Helper()
	var de *net.DNSError
	if !errors.As(err, &de) {
		t.Fatalf("error %v (%T) is not a *net.DNSError", err, err)
	}
	return de
}

func TestServer(t *testing.T) {
	d := testlib.StartDNS(t,
		`a.test. 60 IN TXT "v=spf1 " "mx -all"`,
		`a.test. 60 IN TXT "second record"`,
		`a.test. 60 IN MX 10 mx1.a.test.`,
		`a.test. 60 IN MX 20 mx2.a.test.`,
		`mx1.a.test. 60 IN A 192.0.2.1`,
		`mx1.a.test. 60 IN AAAA 2001:db8::1`,
		`v4only.a.test. 60 IN A 192.0.2.2`,
		`alias.a.test. 60 IN CNAME mx1.a.test.`,
		`1.2.0.192.in-addr.arpa. 60 IN PTR mx1.a.test.`,
		`_submissions._tcp.a.test. 60 IN SRV 0 1 465 mx1.a.test.`,
		`big.a.test. 60 IN TXT "`+strings.Repeat("x", 250)+`"`,
		`big.a.test. 60 IN TXT "`+strings.Repeat("y", 250)+`"`,
		`big.a.test. 60 IN TXT "`+strings.Repeat("z", 250)+`"`,
		`big.a.test. 60 IN TXT "`+strings.Repeat("w", 250)+`"`,
		`big.a.test. 60 IN TXT "`+strings.Repeat("v", 250)+`"`,
		`big.a.test. 60 IN TXT "`+strings.Repeat("u", 250)+`"`,
	)
	d.ServFail("broken.test.")
	d.Truncate("big.a.test.")
	r := Server(d.Addr, 0)
	ctx := context.Background()

	txts, err := r.LookupTXT(ctx, "a.test")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(txts)
	if want := []string{"second record", "v=spf1 mx -all"}; !slices.Equal(txts, want) {
		t.Errorf("TXT = %q, want %q (strings of one record joined)", txts, want)
	}

	// Six 250-octet records do not fit a 1232-octet UDP answer: the
	// server truncates, and the answer comes over TCP.
	txts, err = r.LookupTXT(ctx, "big.a.test.")
	if err != nil || len(txts) != 6 {
		t.Errorf("truncated TXT: %d records, %v; want 6 over TCP", len(txts), err)
	}

	mxs, err := r.LookupMX(ctx, "a.test")
	if err != nil || len(mxs) != 2 {
		t.Fatalf("MX = %v, %v", mxs, err)
	}
	var hosts []string
	for _, mx := range mxs {
		hosts = append(hosts, mx.Host)
	}
	slices.Sort(hosts)
	if want := []string{"mx1.a.test.", "mx2.a.test."}; !slices.Equal(hosts, want) {
		t.Errorf("MX hosts = %q, want %q", hosts, want)
	}

	addrs, err := r.LookupIPAddr(ctx, "mx1.a.test")
	if err != nil || len(addrs) != 2 {
		t.Fatalf("addresses = %v, %v", addrs, err)
	}
	if !addrs[0].IP.Equal(net.ParseIP("192.0.2.1")) || !addrs[1].IP.Equal(net.ParseIP("2001:db8::1")) {
		t.Errorf("addresses = %v", addrs)
	}
	// A host with only an A record: the AAAA question's NODATA is no
	// failure.
	if addrs, err := r.LookupIPAddr(ctx, "v4only.a.test"); err != nil || len(addrs) != 1 {
		t.Errorf("v4only = %v, %v", addrs, err)
	}

	// Through a CNAME: the target's records, not the CNAME itself.
	if addrs, err := r.LookupIPAddr(ctx, "alias.a.test"); err != nil || len(addrs) != 2 || !addrs[0].IP.Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("alias = %v, %v; want mx1's two addresses", addrs, err)
	}
	if txts, err := r.LookupTXT(ctx, "alias.a.test"); !dnsError(t, err).IsNotFound {
		t.Errorf("TXT through a CNAME to a name without TXT: %q, %v; want not found", txts, err)
	}

	names, err := r.LookupAddr(ctx, "192.0.2.1")
	if err != nil || !slices.Equal(names, []string{"mx1.a.test."}) {
		t.Errorf("PTR = %q, %v", names, err)
	}

	cname, srvs, err := r.LookupSRV(ctx, "submissions", "tcp", "a.test")
	if err != nil || len(srvs) != 1 {
		t.Fatalf("SRV = %v, %v", srvs, err)
	}
	if cname != "_submissions._tcp.a.test." || srvs[0].Target != "mx1.a.test." || srvs[0].Port != 465 {
		t.Errorf("SRV = %q %+v", cname, srvs[0])
	}

	// NXDOMAIN and NODATA are both "not found" (RFC 2308).
	for _, name := range []string{"nonexistent.test", "mx2.a.test"} {
		_, err := r.LookupTXT(ctx, name)
		if de := dnsError(t, err); !de.IsNotFound || de.Temporary() {
			t.Errorf("TXT %s: %+v, want not found", name, de)
		}
	}
	if _, err := r.LookupMX(ctx, "mx1.a.test"); !dnsError(t, err).IsNotFound {
		t.Errorf("MX of a name without MX: %v, want not found", err)
	}
	if _, err := r.LookupIPAddr(ctx, "nonexistent.test"); !dnsError(t, err).IsNotFound {
		t.Errorf("addresses of a missing name: %v, want not found", err)
	}

	// SERVFAIL is temporary, never "not found".
	_, err = r.LookupTXT(ctx, "x.broken.test")
	if de := dnsError(t, err); de.IsNotFound || !de.Temporary() {
		t.Errorf("SERVFAIL: %+v, want temporary", de)
	}
	_, err = r.LookupIPAddr(ctx, "x.broken.test")
	if de := dnsError(t, err); de.IsNotFound || !de.Temporary() {
		t.Errorf("SERVFAIL addresses: %+v, want temporary", de)
	}
}

// A server that never answers gives a temporary timeout error, within
// the timeout.
func TestServerTimeout(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	r := Server(pc.LocalAddr().String(), 200*time.Millisecond)
	_, err = r.LookupTXT(context.Background(), "a.test")
	de := dnsError(t, err)
	if !de.IsTimeout || !de.Temporary() || de.IsNotFound {
		t.Errorf("silent server: %+v, want a temporary timeout", de)
	}
	// A cancelled context stops the question as well.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r = Server(pc.LocalAddr().String(), time.Minute)
	if _, err := r.LookupMX(ctx, "a.test"); !dnsError(t, err).Temporary() {
		t.Errorf("cancelled: %v, want a temporary error", err)
	}
}

// A server that answers with garbage: a temporary error, not a crash.
func TestServerBadAnswer(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 512)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := new(dns.Msg)
			if m.Unpack(buf[:n]) != nil {
				continue
			}
			// The right id, then nonsense.
			reply := append([]byte{buf[0], buf[1], 0x81, 0x80, 0, 1, 0, 5}, "garbage"...)
			pc.WriteTo(reply, addr)
		}
	}()
	r := Server(pc.LocalAddr().String(), time.Second)
	_, err = r.LookupTXT(context.Background(), "a.test")
	if de := dnsError(t, err); !de.Temporary() || de.IsNotFound {
		t.Errorf("garbage answer: %+v, want temporary", de)
	}
}

// TestCachingServer: answers are kept for their TTL (at most MaxTTL),
// negative ones for the SOA's negative TTL (RFC 2308 section 5) and only
// with an SOA, failures not at all; the cache stays within CacheEntries.
func TestCachingServer(t *testing.T) {
	d := testlib.StartDNS(t,
		`a.test. 60 IN TXT "v=spf1 -all"`,
		`long.test. 86400 IN TXT "long"`,
		`alias.test. 30 IN CNAME a.test.`,
		`zone.test. 3600 IN SOA ns.zone.test. host.zone.test. 1 7200 900 1209600 300`,
		`there.zone.test. 60 IN A 192.0.2.1`,
	)
	d.ServFail("broken.test.")
	r := CachingServer(d.Addr, 0).(*server)
	now := time.Unix(1_000_000, 0)
	r.cache.now = func() time.Time { return now }
	ctx := context.Background()
	asks := func(what string, want int, lookup func() error) {
		t.Helper()
		before := d.Queries()
		lookup()
		if got := d.Queries() - before; got != want {
			t.Errorf("%s: %d queries, want %d", what, got, want)
		}
	}
	txt := func(name string) func() error {
		return func() error { _, err := r.LookupTXT(ctx, name); return err }
	}

	asks("first TXT of a.test", 1, txt("a.test"))
	asks("TXT of a.test again", 0, txt("A.Test."))
	if got, err := r.LookupTXT(ctx, "a.test"); err != nil || len(got) != 1 || got[0] != "v=spf1 -all" {
		t.Errorf("cached TXT = %q, %v", got, err)
	}
	now = now.Add(59 * time.Second)
	asks("TXT of a.test within its TTL", 0, txt("a.test"))
	now = now.Add(time.Second)
	asks("TXT of a.test at its TTL", 1, txt("a.test"))

	// A chain lives as long as its shortest link (the CNAME's 30 s).
	asks("TXT through a CNAME", 1, txt("alias.test"))
	now = now.Add(29 * time.Second)
	asks("TXT through a CNAME, within 30 s", 0, txt("alias.test"))
	now = now.Add(time.Second)
	asks("TXT through a CNAME, after 30 s", 1, txt("alias.test"))

	// A day's TTL is kept MaxTTL at most.
	asks("TXT of long.test", 1, txt("long.test"))
	now = now.Add(MaxTTL - time.Second)
	asks("TXT of long.test within MaxTTL", 0, txt("long.test"))
	now = now.Add(time.Second)
	asks("TXT of long.test after MaxTTL", 1, txt("long.test"))

	// NXDOMAIN and NODATA under an SOA: min(SOA TTL, MINIMUM) = 300 s,
	// and the error says not found each time.
	for _, name := range []string{"none.zone.test", "there.zone.test"} {
		for i := range 2 {
			before := d.Queries()
			_, err := r.LookupTXT(ctx, name)
			if de := dnsError(t, err); !de.IsNotFound || de.IsTemporary {
				t.Errorf("TXT of %s (try %d): %+v, want not found", name, i, de)
			}
			if got, want := d.Queries()-before, 1-i; got != want {
				t.Errorf("TXT of %s (try %d): %d queries, want %d", name, i, got, want)
			}
		}
	}
	if _, err := r.LookupTXT(ctx, "none.zone.test"); !strings.Contains(err.Error(), "no such host") {
		t.Errorf("cached NXDOMAIN: %v", err)
	}
	if _, err := r.LookupTXT(ctx, "there.zone.test"); !strings.Contains(err.Error(), "no TXT record") {
		t.Errorf("cached NODATA: %v", err)
	}
	now = now.Add(300 * time.Second)
	asks("NXDOMAIN after the negative TTL", 1, txt("none.zone.test"))

	// Without an SOA, no negative caching; failures never.
	asks("NXDOMAIN without SOA", 1, txt("nowhere.test"))
	asks("NXDOMAIN without SOA again", 1, txt("nowhere.test"))
	asks("SERVFAIL", 1, txt("x.broken.test"))
	asks("SERVFAIL again", 1, txt("x.broken.test"))

	// The plain Server caches nothing.
	plain := Server(d.Addr, 0)
	for range 2 {
		asks("uncached TXT", 1, func() error { _, err := plain.LookupTXT(ctx, "a.test"); return err })
	}
}

func TestCacheBounded(t *testing.T) {
	c := newCache()
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now }
	rr, err := dns.NewRR(`x.test. 60 IN A 192.0.2.1`)
	if err != nil {
		t.Fatal(err)
	}
	for i := range CacheEntries + 500 {
		c.putAnswer(fmt.Sprintf("n%d.test", i), dns.TypeA, []dns.RR{rr}, []dns.RR{rr})
		if len(c.entries) > CacheEntries {
			t.Fatalf("%d entries after %d answers, over %d", len(c.entries), i+1, CacheEntries)
		}
	}
	if _, ok := c.get(fmt.Sprintf("n%d.test", CacheEntries+499), dns.TypeA); !ok {
		t.Error("the newest answer is not in the cache")
	}
	// Expired entries go first: a full cache of them is emptied by the
	// next answer.
	for i := len(c.entries); i < CacheEntries; i++ {
		c.putAnswer(fmt.Sprintf("m%d.test", i), dns.TypeA, []dns.RR{rr}, []dns.RR{rr})
	}
	now = now.Add(time.Minute)
	c.putAnswer("new.test", dns.TypeA, []dns.RR{rr}, []dns.RR{rr})
	if len(c.entries) != 1 {
		t.Errorf("%d entries after the expired ones went, want 1", len(c.entries))
	}
}
