package acmecert_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The tests in this file run the real pebble (Debian package pebble) on
// loopback, with testlib's DNS server pointing every name at 127.0.0.1.

const host = "mail.example.test"

var names = []string{host, "autoconfig.example.test", "mta-sts.example.test"}

// env is pebble, the DNS server and this host's HTTP (port 80 in
// production) and TLS (port 443) listeners, which serve whichever Manager
// is set as the server.
type env struct {
	t       *testing.T
	pebble  *testlib.Pebble
	storage *acmecert.MemStorage
	httpL   net.Listener
	tlsL    net.Listener
	server  atomic.Pointer[acmecert.Manager] // answers on the listeners
	logs    *testlib.SyncBuffer
	// alpnHandshakes counts handshakes on tlsL that negotiated acme-tls/1.
	alpnHandshakes atomic.Int32
}

func newEnv(t *testing.T, validity time.Duration) *env {
	t.Helper()
	e := &env{t: t, storage: acmecert.NewMemStorage(), logs: &testlib.SyncBuffer{}}
	var zone []string
	for _, n := range names {
		zone = append(zone, n+". 60 IN A 127.0.0.1")
	}
	dns := testlib.StartDNS(t, zone...)
	var err error
	if e.httpL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if e.tlsL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	e.pebble = testlib.StartPebble(t, testlib.PebbleOptions{
		DNS:      dns.Addr,
		HTTPPort: e.httpL.Addr().(*net.TCPAddr).Port,
		TLSPort:  e.tlsL.Addr().(*net.TCPAddr).Port,
		Validity: validity,
	})
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m := e.server.Load(); m != nil {
			m.HTTPHandler(nil).ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})}
	go hs.Serve(e.httpL)
	t.Cleanup(func() { hs.Close() })
	// The TLS listener: a handshake with the server Manager's TLSConfig,
	// then the connection is closed (as a POP3S or HTTPS listener would,
	// after serving).
	go func() {
		for {
			c, err := e.tlsL.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				m := e.server.Load()
				if m == nil {
					return
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				tc := tls.Server(c, m.TLSConfig(nil))
				if tc.Handshake() != nil {
					return
				}
				if tc.ConnectionState().NegotiatedProtocol == acmecert.ALPNProto {
					e.alpnHandshakes.Add(1)
					return // RFC 8737 section 3: no data after the handshake
				}
				tc.Write([]byte("+OK\r\n"))
			}()
		}
	}()
	t.Cleanup(func() { e.tlsL.Close() })
	return e
}

// fallback is the configured (self-signed) certificate served for names
// without an ACME certificate.
var fallback = sync.OnceValue(func() *tls.Certificate {
	c := acmecert.SelfSigned("fallback.invalid", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	return c
})

func (e *env) manager(mod func(*acmecert.Config)) *acmecert.Manager {
	e.t.Helper()
	cfg := acmecert.Config{
		Email:        "postmaster@example.test",
		DirectoryURL: e.pebble.DirectoryURL,
		CAFile:       e.pebble.CAFile,
		Hostname:     host,
		Templates:    []string{"autoconfig.{domain}", "mta-sts.{domain}"},
		Domains:      func(context.Context) ([]string, error) { return []string{"example.test"}, nil },
		Storage:      e.storage,
		Fallback:     func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return fallback(), nil },
		Logger:       slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := acmecert.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

// dial connects to the TLS listener as a mail client would, verifying the
// chain against pebble's root (from its management interface) and the
// name; it returns the leaf.
func (e *env) dial(roots *x509.CertPool, name string) (*x509.Certificate, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", e.tlsL.Addr().String(),
		&tls.Config{RootCAs: roots, ServerName: name})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestPebbleHTTP01(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	m := e.manager(nil)
	e.server.Store(m)
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	roots := e.pebble.Roots(t)
	checkIssued(t, e, m, roots)
	if n := e.alpnHandshakes.Load(); n != 0 {
		t.Errorf("%d acme-tls/1 handshakes with HTTP-01 configured", n)
	}

	// No challenge response is left behind in the store; the account key,
	// the certificates and their status are there.
	var left []string
	for _, n := range e.storage.Names("acme/") {
		if strings.Contains(n, "/http-01/") || strings.Contains(n, "/tls-alpn-01/") {
			left = append(left, n)
		}
	}
	if len(left) > 0 {
		t.Errorf("challenge responses left in the store: %v", left)
	}
	if got := len(e.storage.Names("acme/")); got != 1+2*len(names)+0 {
		t.Errorf("store holds %v", e.storage.Names("acme/"))
	}

	// A restart (a new Manager on the same store) serves the stored
	// certificates without asking the CA anything.
	var asked atomic.Int32
	m2 := e.manager(func(c *acmecert.Config) {
		c.HTTPClient = &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
			asked.Add(1)
			return nil, fmt.Errorf("no CA in this test")
		})}
	})
	if err := m2.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if asked.Load() != 0 {
		t.Fatalf("the restarted manager made %d requests to the CA", asked.Load())
	}
	before, err := e.dial(roots, "autoconfig.example.test")
	if err != nil {
		t.Fatal(err)
	}
	e.server.Store(m2)
	after, err := e.dial(roots, "autoconfig.example.test")
	if err != nil {
		t.Fatal(err)
	}
	if before.SerialNumber.Cmp(after.SerialNumber) != 0 {
		t.Fatalf("the restarted manager serves serial %x, not the stored %x", after.SerialNumber, before.SerialNumber)
	}
}

func TestPebbleTLSALPN01(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	m := e.manager(func(c *acmecert.Config) { c.Challenge = acmecert.TLSALPN01 })
	e.server.Store(m)
	e.httpL.Close() // no HTTP at all: the CA can only validate over TLS
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkIssued(t, e, m, e.pebble.Roots(t))
	// Each name was validated by handshakes that negotiated acme-tls/1.
	if n := e.alpnHandshakes.Load(); n < int32(len(names)) {
		t.Errorf("%d acme-tls/1 handshakes for %d names", n, len(names))
	}
}

// checkIssued checks that every name has a certificate from pebble, served
// by SNI through a verifying TLS client, and the fallback for others.
func checkIssued(t *testing.T, e *env, m *acmecert.Manager, roots *x509.CertPool) {
	t.Helper()
	st := m.Status()
	if len(st) != len(names) {
		t.Fatalf("status of %d names, want %d: %+v", len(st), len(names), st)
	}
	for i, s := range st {
		if s.Name != names[i] && i == 0 {
			t.Errorf("status[0] is %s, want the hostname first", s.Name)
		}
		if s.NotAfter.IsZero() || s.LastError != "" || s.LastRenewed.IsZero() {
			t.Errorf("status %+v: want a certificate and no error", s)
		}
		if !strings.HasPrefix(s.Issuer, "Pebble Intermediate CA") {
			t.Errorf("%s: issuer %q", s.Name, s.Issuer)
		}
	}
	for _, n := range names {
		leaf, err := e.dial(roots, n)
		if err != nil {
			t.Fatalf("TLS to %s with pebble's root: %v", n, err)
		}
		if !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA") || leaf.VerifyHostname(n) != nil {
			t.Errorf("%s: served %v issued by %q", n, leaf.DNSNames, leaf.Issuer.CommonName)
		}
	}
	// A client without SNI (connecting by address) gets the hostname's.
	c, err := tls.Dial("tcp", e.tlsL.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	c.Close()
	if leaf.VerifyHostname(host) != nil || len(leaf.DNSNames) != 1 {
		t.Errorf("without SNI: served %v, want %s", leaf.DNSNames, host)
	}
	// Another name: the fallback certificate.
	c, err = tls.Dial("tcp", e.tlsL.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "other.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	leaf = c.ConnectionState().PeerCertificates[0]
	c.Close()
	if leaf.Subject.CommonName != "fallback.invalid" {
		t.Errorf("unknown name: served %q, want the fallback", leaf.Subject.CommonName)
	}
}

// TestPebbleRenewal: with a 30-second lifetime the certificate is renewed
// after 20 seconds by the running Manager, and the listener presents the
// new one without a restart.
func TestPebbleRenewal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 30*time.Second)
	var renewed atomic.Int32
	m := e.manager(func(c *acmecert.Config) {
		c.Templates = []string{}
		c.CheckInterval = time.Second
		c.OnStatus = func(s acmecert.Status) {
			if !s.LastRenewed.IsZero() && s.LastError == "" {
				renewed.Add(1)
			}
		}
	})
	e.server.Store(m)
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	roots := e.pebble.Roots(t)
	first, err := e.dial(roots, host)
	if err != nil {
		t.Fatal(err)
	}
	if life := first.NotAfter.Sub(first.NotBefore); life > time.Minute {
		t.Fatalf("pebble issued a certificate for %v, not 30 s: certificateValidityPeriod not honoured", life)
	}
	go m.Run(t.Context())
	deadline := time.Now().Add(time.Until(first.NotAfter) + 30*time.Second)
	for {
		time.Sleep(500 * time.Millisecond)
		cur, err := e.dial(roots, host)
		if err != nil {
			t.Fatalf("TLS during renewal: %v", err)
		}
		if cur.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if !cur.NotAfter.After(first.NotAfter) {
				t.Fatalf("new certificate ends %v, not after the old %v", cur.NotAfter, first.NotAfter)
			}
			renewAt := first.NotBefore.Add(first.NotAfter.Sub(first.NotBefore) * 2 / 3)
			if time.Now().Before(renewAt) {
				t.Fatalf("renewed before 2/3 of the lifetime (%v)", renewAt)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %x after its end %v", first.SerialNumber, first.NotAfter)
		}
	}
	if renewed.Load() < 2 {
		t.Errorf("OnStatus reported %d obtained certificates, want the first and the renewal", renewed.Load())
	}
}

// TestPebbleDown: the CA is gone when the renewal falls due; the failure
// is logged and reported, and the old certificate keeps serving.
func TestPebbleDown(t *testing.T) {
	t.Parallel()
	// Renewal falls due after 30 s, leaving 15 s for two failures.
	e := newEnv(t, 45*time.Second)
	var mu sync.Mutex
	var failed []acmecert.Status
	m := e.manager(func(c *acmecert.Config) {
		c.Templates = []string{}
		c.CheckInterval = time.Second
		c.RetryMin = time.Second
		c.OnStatus = func(s acmecert.Status) {
			if s.LastError != "" {
				mu.Lock()
				failed = append(failed, s)
				mu.Unlock()
			}
		}
	})
	e.server.Store(m)
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	roots := e.pebble.Roots(t)
	first, err := e.dial(roots, host)
	if err != nil {
		t.Fatal(err)
	}
	e.pebble.Stop()
	go m.Run(t.Context())
	deadline := time.Now().Add(time.Until(first.NotAfter))
	for {
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		n := len(failed)
		mu.Unlock()
		if n >= 2 { // the first failure and at least one retry
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure reported before the certificate's end; status %+v", m.Status())
		}
	}
	cur, err := e.dial(roots, host)
	if err != nil {
		t.Fatalf("TLS after the failed renewal: %v", err)
	}
	if cur.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Fatalf("serving serial %x, want the old %x", cur.SerialNumber, first.SerialNumber)
	}
	st := m.Status()[0]
	if st.LastError == "" || st.Failures < 2 || st.NotAfter != first.NotAfter || st.DaysLeft(time.Now()) <= 0 {
		t.Fatalf("status %+v: want the error, the failures and the old certificate's end", st)
	}
	if !strings.Contains(e.logs.String(), "certificate not obtained") || !strings.Contains(e.logs.String(), "days_left") {
		t.Fatalf("the failure is not logged:\n%s", e.logs.String())
	}
	// The failure is in the store, so that every node reports it.
	other := e.manager(nil)
	other.Check(t.Context())
	for _, s := range other.Status() {
		if s.Name == host && (s.LastError == "" || s.Failures < 2) {
			t.Fatalf("another node's status %+v lacks the failure", s)
		}
	}
}

// TestPebbleCluster: two nodes share the store; they check at the same
// time, one orders each certificate while the other answers the CA's
// challenges from the store, and both serve the same certificates.
func TestPebbleCluster(t *testing.T) {
	t.Parallel()
	for _, ch := range []acmecert.Challenge{acmecert.HTTP01, acmecert.TLSALPN01} {
		t.Run(string(ch), func(t *testing.T) {
			e := newEnv(t, 0)
			newOrder := directory(t, e.pebble)["newOrder"]
			var orders atomic.Int32
			node := func(name string) *acmecert.Manager {
				return e.manager(func(c *acmecert.Config) {
					c.Holder = name
					c.Challenge = ch
					base, _ := acmecert.HTTPClientForTest(e.pebble.CAFile)
					c.HTTPClient = &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
						if r.Method == http.MethodPost && r.URL.String() == newOrder {
							orders.Add(1)
						}
						return base.Transport.RoundTrip(r)
					})}
				})
			}
			a, b := node("a"), node("b")
			// The CA's validation requests reach b, which may not be the
			// node that ordered.
			e.server.Store(b)
			var wg sync.WaitGroup
			for _, m := range []*acmecert.Manager{a, b} {
				wg.Go(func() {
					if err := m.Check(t.Context()); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			if n := orders.Load(); n != int32(len(names)) {
				t.Fatalf("%d orders for %d names", n, len(names))
			}
			// The node that did not order picks the certificates up from
			// the store at its next check.
			for _, m := range []*acmecert.Manager{a, b} {
				if err := m.Check(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			if n := orders.Load(); n != int32(len(names)) {
				t.Fatalf("%d orders after the second check, want %d", n, len(names))
			}
			roots := e.pebble.Roots(t)
			for _, n := range names {
				e.server.Store(a)
				la, err := e.dial(roots, n)
				if err != nil {
					t.Fatal(err)
				}
				e.server.Store(b)
				lb, err := e.dial(roots, n)
				if err != nil {
					t.Fatal(err)
				}
				if la.SerialNumber.Cmp(lb.SerialNumber) != 0 {
					t.Fatalf("%s: node a serves %x, node b %x", n, la.SerialNumber, lb.SerialNumber)
				}
			}
		})
	}
}

func directory(t *testing.T, p *testlib.Pebble) map[string]string {
	c, err := acmecert.HTTPClientForTest(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range d {
		if s, ok := v.(string); ok {
			out[k] = s
		}
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
