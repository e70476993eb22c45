package queue

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// Outbound MTA-STS (RFC 8461) against policies served over HTTPS by
// mta-sts.DOMAIN, announced in a DNS server's TXT records: enforce
// allows only the policy's MX hosts and over verified TLS, else the
// recipient waits; testing delivers and reports what enforce would
// have refused; a route bypasses the policy.
func TestMTASTS(t *testing.T) {
	t.Parallel()
	policies := map[string]string{
		"enf.test":     "version: STSv1\nmode: enforce\nmx: mx2.sts.test\nmax_age: 86400\n",
		"notls.test":   "version: STSv1\nmode: enforce\nmx: *.sts.test\nmax_age: 86400\n",
		"nomatch.test": "version: STSv1\nmode: enforce\nmx: other.sts.test\nmax_age: 86400\n",
		"tst.test":     "version: STSv1\nmode: testing\nmx: mx2.sts.test\nmax_age: 86400\n",
		"rt.test":      "version: STSv1\nmode: enforce\nmx: mx2.sts.test\nmax_age: 86400\n",
	}
	zone := []string{"mx1.sts.test. 60 IN A 127.0.0.21", "mx2.sts.test. 60 IN A 127.0.0.22"}
	var hostNames []string
	for d := range policies {
		zone = append(zone, d+". 60 IN MX 10 mx1.sts.test.", d+". 60 IN MX 20 mx2.sts.test.",
			`_mta-sts.`+d+`. 60 IN TXT "v=STSv1; id=20261206"`, "mta-sts."+d+". 60 IN A 127.0.0.23")
		hostNames = append(hostNames, "mta-sts."+d)
	}
	// notls.test's preferred MX offers no STARTTLS at all.
	dns := testlib.StartDNS(t, zone...)

	mxCert, mxLeaf := selfSigned(t, "mx2.sts.test")
	webCert, webLeaf := selfSigned(t, hostNames...)
	roots := x509.NewCertPool()
	roots.AddCert(mxLeaf)
	roots.AddCert(webLeaf)
	var mu sync.Mutex
	fetched := map[string]int{}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{webCert}})
	if err != nil {
		t.Fatal(err)
	}
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		domain := strings.TrimPrefix(r.Host, "mta-sts.")
		p, ok := policies[domain]
		if r.URL.Path != mtasts.WellKnownPath || !ok {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		fetched[domain]++
		mu.Unlock()
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, p)
	})}
	go web.Serve(l)
	t.Cleanup(func() { web.Close() })

	plain := newSink(t)
	verified := newSink(t, withTLS(mxCert))
	routed := newSink(t)
	var events []Event
	var evMu sync.Mutex
	res := NewResolver(resolver.Server(dns.Addr, 0))
	h := newHarness(t, func(c *Config) {
		c.Resolver, c.RootCAs = res, roots
		c.Routes = map[string]string{"rt.test": "127.0.0.30:2525"}
		c.OnEvent = func(ev Event) { evMu.Lock(); events = append(events, ev); evMu.Unlock() }
	})
	h.dial.route("127.0.0.21:25", plain.addr)
	h.dial.route("127.0.0.22:25", verified.addr)
	h.dial.route("127.0.0.23:443", l.Addr().String())
	h.dial.route("127.0.0.30:2525", routed.addr)
	h.r.cfg.MTASTS = &mtasts.Fetcher{Resolver: res.(mtasts.Resolver), Client: PolicyClient(res, roots, h.dial.dial)}

	dialsTo := func(addr string) int {
		n := 0
		for _, d := range h.dial.dialed() {
			if d == addr {
				n++
			}
		}
		return n
	}

	// enforce: the preferred MX is not in the policy; the one that is
	// takes the message over verified TLS.
	id := h.enqueue("alice@a.test", []string{"bob@enf.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("enf.test: still queued: %+v", h.recipient(id, "bob@enf.test"))
	}
	if txns := verified.transactions(); len(txns) != 1 || !txns[0].tls {
		t.Errorf("enf.test: transactions at the allowed MX %+v, want one over TLS", txns)
	}
	if n := dialsTo("127.0.0.21:25"); n != 0 {
		t.Errorf("enf.test: the MX the policy does not allow was dialed %d times", n)
	}

	// enforce, and the allowed preferred MX offers no STARTTLS: not
	// delivered there; the other allowed MX takes it over TLS.
	id = h.enqueue("alice@a.test", []string{"carol@notls.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok || len(plain.transactions()) != 0 || len(verified.transactions()) != 2 {
		t.Errorf("notls.test: queued %v, plain MX got %d, verified MX %d", ok, len(plain.transactions()), len(verified.transactions()))
	}

	// enforce, and no MX allowed: deferred, nothing dialed.
	before := len(h.dial.dialed())
	id = h.enqueue("alice@a.test", []string{"dan@nomatch.test"}, testMsg)
	h.attempt()
	if rc := h.recipient(id, "dan@nomatch.test"); rc.State != store.QueuePending || rc.Status != "4.7.5" || !strings.Contains(rc.LastError, "MTA-STS") {
		t.Errorf("nomatch.test: %+v, want deferred 4.7.5", rc)
	}
	for _, d := range h.dial.dialed()[before:] {
		if strings.HasSuffix(d, ":25") {
			t.Errorf("nomatch.test: dialed %s", d)
		}
	}

	// testing: delivered to the preferred MX as without a policy, and
	// what enforce would have refused is reported.
	id = h.enqueue("alice@a.test", []string{"eve@tst.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok || len(plain.transactions()) != 1 {
		t.Errorf("tst.test: queued %v, %d at the preferred MX", ok, len(plain.transactions()))
	}
	evMu.Lock()
	var note string
	for _, ev := range events {
		if ev.To == "eve@tst.test" && ev.Kind == "forwarded" {
			note = ev.Detail
		}
	}
	evMu.Unlock()
	if !strings.Contains(note, "MTA-STS policy of tst.test in testing mode would have refused this delivery") ||
		!strings.Contains(note, "mx1.sts.test is not among its mx") || !strings.Contains(note, "no TLS") {
		t.Errorf("tst.test: event detail %q", note)
	}

	// A route bypasses the policy: the operator's next hop, its TLS level.
	id = h.enqueue("alice@a.test", []string{"fay@rt.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok || len(routed.transactions()) != 1 {
		t.Errorf("rt.test: queued %v, %d at the route", ok, len(routed.transactions()))
	}
	mu.Lock()
	defer mu.Unlock()
	if fetched["rt.test"] != 0 || fetched["enf.test"] != 1 {
		t.Errorf("policies fetched %v: want enf.test's once, rt.test's never", fetched)
	}
}
