package acmecert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// These tests run without a CA: certificates are put in the store as
// another node would, and the CA is an HTTP client that counts and fails.

func TestNames(t *testing.T) {
	names, skipped := Names("Mail.Example.COM.", []string{"{domain}", "mta-sts.{domain}"},
		[]string{"example.com", "b.example", "bücher.example", "under_score.example", "single", "Example.COM"})
	want := []string{"mail.example.com", "b.example", "example.com", "mta-sts.b.example", "mta-sts.example.com",
		"mta-sts.single", "mta-sts.xn--bcher-kva.example", "xn--bcher-kva.example"}
	if !slices.Equal(names, want) {
		t.Errorf("names %q\nwant  %q", names, want)
	}
	// under_score twice (both templates) and the single label once (the
	// mta-sts.single name has a dot and is kept).
	if len(skipped) != 3 {
		t.Errorf("skipped %v", skipped)
	}
	for _, tc := range []struct {
		tmpl string
		ok   bool
	}{
		{"mail.{domain}", true}, {"{domain}", true}, {"a.b.{domain}", true},
		{"mail{domain}", false}, {"{domain}.mail", false}, {"mail.example.com", false},
		{"{domain}.{domain}", false}, {"ma il.{domain}", false}, {"-x.{domain}", false}, {"*.{domain}", false},
	} {
		if err := CheckTemplate(tc.tmpl); (err == nil) != tc.ok {
			t.Errorf("CheckTemplate(%q) = %v, want ok %v", tc.tmpl, err, tc.ok)
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	base := func() Config {
		return Config{Hostname: "mail.example.com", Storage: NewMemStorage(), Domains: func(context.Context) ([]string, error) { return nil, nil }}
	}
	for name, mod := range map[string]func(*Config){
		"no storage":      func(c *Config) { c.Storage = nil },
		"no hostname":     func(c *Config) { c.Hostname = "" },
		"single label":    func(c *Config) { c.Hostname = "localhost" },
		"http directory":  func(c *Config) { c.DirectoryURL = "http://ca.example/dir" },
		"bad challenge":   func(c *Config) { c.Challenge = "dns-01" },
		"bad template":    func(c *Config) { c.Templates = []string{"mail.example.com"} },
		"no domains func": func(c *Config) { c.Domains = nil },
		"bad email":       func(c *Config) { c.Email = "postmaster" },
		"missing CA file": func(c *Config) { c.CAFile = "/nonexistent/ca.pem" },
	} {
		c := base()
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	m, err := New(base())
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.DirectoryURL != LetsEncrypt || m.cfg.Challenge != HTTP01 || !slices.Equal(m.cfg.Templates, DefaultTemplates) {
		t.Errorf("defaults: %q %q %q", m.cfg.DirectoryURL, m.cfg.Challenge, m.cfg.Templates)
	}
	if m.prefix != "acme/acme-v02.api.letsencrypt.org/" {
		t.Errorf("storage prefix %q", m.prefix)
	}
}

type fixture struct {
	m       *Manager
	st      *MemStorage
	asked   atomic.Int32 // requests to the CA
	now     time.Time
	domains []string
	logs    bytes.Buffer
}

var fallbackCert = SelfSigned("fallback.invalid", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))

func newFixture(t *testing.T, mod func(*Config)) *fixture {
	f := &fixture{st: NewMemStorage(), now: time.Now(), domains: []string{"example.com"}}
	cfg := Config{
		DirectoryURL: "https://ca.invalid/dir",
		Hostname:     "mail.example.com",
		Templates:    []string{"autoconfig.{domain}"},
		Domains:      func(context.Context) ([]string, error) { return f.domains, nil },
		Storage:      f.st,
		Holder:       "this",
		Fallback:     func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return fallbackCert, nil },
		Logger:       slog.New(slog.NewTextHandler(&f.logs, nil)),
		RetryMin:     time.Hour,
		RetryMax:     8 * time.Hour,
		HTTPClient: &http.Client{Transport: rtFunc(func(*http.Request) (*http.Response, error) {
			f.asked.Add(1)
			return nil, errors.New("the CA is unreachable in this test")
		})},
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.now = func() time.Time { return f.now }
	f.m = m
	return f
}

type rtFunc func(*http.Request) (*http.Response, error)

func (f rtFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// store puts a certificate for name valid from nb to na, as another node
// would, and returns it.
func (f *fixture) store(t *testing.T, name string, nb, na time.Time) *tls.Certificate {
	c, blob := selfSignedBlob(name, nb, na)
	if err := f.st.Put(t.Context(), f.m.certName(name), blob); err != nil {
		t.Fatal(err)
	}
	return c
}

func (f *fixture) serve(t *testing.T, sni string) *tls.Certificate {
	t.Helper()
	c, err := f.m.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
	if err != nil {
		t.Fatalf("GetCertificate(%q): %v", sni, err)
	}
	return c
}

func TestServesStoredBySNI(t *testing.T) {
	f := newFixture(t, nil)
	h := f.store(t, "mail.example.com", f.now.Add(-time.Hour), f.now.Add(89*24*time.Hour))
	a := f.store(t, "autoconfig.example.com", f.now.Add(-time.Hour), f.now.Add(89*24*time.Hour))
	if err := f.m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := f.asked.Load(); n != 0 {
		t.Fatalf("%d requests to the CA with fresh certificates stored", n)
	}
	for sni, want := range map[string]*tls.Certificate{
		"mail.example.com": h, "": h, "AutoConfig.Example.COM.": a, "autoconfig.example.com": a,
		"other.example.com": fallbackCert, "mta-sts.example.com": fallbackCert,
	} {
		if got := f.serve(t, sni); got.Leaf.SerialNumber.Cmp(want.Leaf.SerialNumber) != 0 {
			t.Errorf("SNI %q: served %v", sni, got.Leaf.DNSNames)
		}
	}
	st := f.m.Status()
	if len(st) != 2 || st[0].Name != "mail.example.com" || st[1].Name != "autoconfig.example.com" {
		t.Fatalf("status %+v", st)
	}
	if d := st[0].DaysLeft(f.now); d < 88.9 || d > 89 {
		t.Errorf("days left %v", d)
	}
	// 2/3 of a lifetime of 89 days and an hour, from an hour ago.
	want := f.now.Add(-time.Hour).Add((89*24*time.Hour + time.Hour) * 2 / 3)
	if d := st[0].RenewAt.Sub(want); d > time.Second || d < -time.Second {
		t.Errorf("renew at %v, want %v", st[0].RenewAt, want)
	}

	// Without a fallback, an unknown name is a handshake error.
	f.m.cfg.Fallback = nil
	if _, err := f.m.GetCertificate(&tls.ClientHelloInfo{ServerName: "other.example.com"}); err == nil {
		t.Error("no error for a name without a certificate and no fallback")
	}
}

func TestFailureBacksOffAndKeepsServing(t *testing.T) {
	var reported []Status
	f := newFixture(t, func(c *Config) {
		c.Templates = []string{}
		c.OnStatus = func(s Status) { reported = append(reported, s) }
	})
	// Due for renewal (past 2/3 of its life) but still valid.
	old := f.store(t, "mail.example.com", f.now.Add(-70*24*time.Hour), f.now.Add(20*24*time.Hour))
	if err := f.m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f.asked.Load() == 0 {
		t.Fatal("a certificate due for renewal did not go to the CA")
	}
	st := f.m.Status()[0]
	if st.Failures != 1 || !strings.Contains(st.LastError, "unreachable") || st.NotAfter != old.Leaf.NotAfter {
		t.Fatalf("status after a failure %+v", st)
	}
	if wait := st.NextAttempt.Sub(f.now); wait > time.Hour || wait < 54*time.Minute {
		t.Fatalf("first retry in %v, want an hour less up to a tenth", wait)
	}
	if got := f.serve(t, "mail.example.com"); got.Leaf.SerialNumber.Cmp(old.Leaf.SerialNumber) != 0 {
		t.Fatal("the old certificate is not served after the failure")
	}
	if !strings.Contains(f.logs.String(), "certificate not obtained") || !strings.Contains(f.logs.String(), "days_left=20.0") {
		t.Fatalf("log:\n%s", f.logs.String())
	}
	if len(reported) == 0 || reported[len(reported)-1].LastError == "" {
		t.Fatalf("OnStatus did not report the failure: %+v", reported)
	}

	// Before the retry time nothing is asked; after it, it tries again and
	// waits twice as long.
	f.asked.Store(0)
	f.now = st.NextAttempt.Add(-time.Minute)
	f.m.Check(t.Context())
	if f.asked.Load() != 0 {
		t.Fatal("retried before the backoff ended")
	}
	if d := f.m.nextCheck(f.now); d != time.Minute {
		t.Errorf("Run would sleep %v, want the minute until the retry", d)
	}
	f.now = st.NextAttempt
	f.m.Check(t.Context())
	st2 := f.m.Status()[0]
	if f.asked.Load() == 0 || st2.Failures != 2 {
		t.Fatalf("retry: asked %d, status %+v", f.asked.Load(), st2)
	}
	if wait := st2.NextAttempt.Sub(f.now); wait > 2*time.Hour || wait < 108*time.Minute {
		t.Fatalf("second retry in %v, want two hours less up to a tenth", wait)
	}
	for range 10 {
		f.m.record(t.Context(), "mail.example.com", errors.New("again"))
	}
	if wait := f.m.Status()[0].NextAttempt.Sub(f.now); wait > 8*time.Hour {
		t.Fatalf("backoff %v beyond RetryMax", wait)
	}

	// Once expired, the old certificate is no longer served.
	f.now = old.Leaf.NotAfter.Add(time.Second)
	if got := f.serve(t, "mail.example.com"); got != fallbackCert {
		t.Fatal("an expired certificate is still served")
	}
}

func TestOtherNodeHoldsLock(t *testing.T) {
	f := newFixture(t, nil)
	if ok, _ := f.st.TryLock(t.Context(), f.m.prefix+"lock", "other", time.Hour); !ok {
		t.Fatal("lock")
	}
	if err := f.m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	if f.asked.Load() != 0 {
		t.Fatal("ordered while another node holds the lock")
	}
	if !strings.Contains(f.logs.String(), "another node is obtaining certificates") {
		t.Fatalf("log:\n%s", f.logs.String())
	}
	// Both names are reported, without certificates yet, and this node
	// looks again soon rather than after CheckInterval.
	st := f.m.Status()
	if len(st) != 2 || st[0].Name != "mail.example.com" || !st[0].NotAfter.IsZero() || !st[1].NotAfter.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if d := f.m.nextCheck(f.now); d != 30*time.Second {
		t.Fatalf("next check in %v, want 30s while another node obtains", d)
	}
	// The other node stores its certificates; this one serves them at its
	// next check.
	c := f.store(t, "autoconfig.example.com", f.now, f.now.Add(90*24*time.Hour))
	f.m.Check(t.Context())
	if got := f.serve(t, "autoconfig.example.com"); got.Leaf.SerialNumber.Cmp(c.Leaf.SerialNumber) != 0 {
		t.Fatal("the certificate stored by the other node is not served")
	}
}

func TestStaleOrBadStoredCopyIgnored(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.Templates = []string{} })
	newer := f.store(t, "mail.example.com", f.now, f.now.Add(90*24*time.Hour))
	f.m.Check(t.Context())
	f.store(t, "mail.example.com", f.now.Add(-24*time.Hour), f.now.Add(89*24*time.Hour))
	f.m.Check(t.Context())
	if got := f.serve(t, "mail.example.com"); got.Leaf.SerialNumber.Cmp(newer.Leaf.SerialNumber) != 0 {
		t.Fatal("an older stored copy replaced the newer certificate")
	}
	// A certificate for another name, or garbage, is never served.
	_, wrong := selfSignedBlob("evil.example.com", f.now, f.now.Add(100*24*time.Hour))
	for _, blob := range [][]byte{wrong, []byte("not PEM")} {
		f.st.Put(t.Context(), f.m.certName("mail.example.com"), blob)
		f.m.Check(t.Context())
		if got := f.serve(t, "mail.example.com"); got.Leaf.SerialNumber.Cmp(newer.Leaf.SerialNumber) != 0 {
			t.Fatalf("served %v", got.Leaf.DNSNames)
		}
	}
	if !strings.Contains(f.logs.String(), "ignoring a stored certificate") {
		t.Fatalf("log:\n%s", f.logs.String())
	}
}

func TestDomainRemoved(t *testing.T) {
	f := newFixture(t, nil)
	f.domains = []string{"example.com", "example.org"}
	f.store(t, "mail.example.com", f.now, f.now.Add(90*24*time.Hour))
	f.store(t, "autoconfig.example.com", f.now, f.now.Add(90*24*time.Hour))
	org := f.store(t, "autoconfig.example.org", f.now, f.now.Add(90*24*time.Hour))
	f.m.Check(t.Context())
	if got := f.serve(t, "autoconfig.example.org"); got.Leaf.SerialNumber.Cmp(org.Leaf.SerialNumber) != 0 {
		t.Fatal("example.org not served")
	}
	f.domains = []string{"example.com"}
	f.m.Check(t.Context())
	if got := f.serve(t, "autoconfig.example.org"); got != fallbackCert {
		t.Fatal("a removed domain's certificate is still served")
	}
	if len(f.m.Status()) != 2 {
		t.Fatalf("status %+v", f.m.Status())
	}
}

func TestHTTPHandler(t *testing.T) {
	f := newFixture(t, nil)
	// A token published by another node, through the store.
	f.st.Put(t.Context(), f.m.tokenName("tok-EN_1"), []byte("tok-EN_1.thumbprint"))
	// And one of this node's.
	f.m.tokens["local"] = "local.thumbprint"
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next") })
	srv := httptest.NewServer(f.m.HTTPHandler(next))
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/.well-known/acme-challenge/tok-EN_1", 200, "tok-EN_1.thumbprint"},
		{"GET", "/.well-known/acme-challenge/local", 200, "local.thumbprint"},
		{"HEAD", "/.well-known/acme-challenge/local", 200, ""},
		{"GET", "/.well-known/acme-challenge/unknown", 404, ""},
		{"GET", "/.well-known/acme-challenge/a%2F..%2Fcert", 404, ""},
		{"GET", "/.well-known/acme-challenge/", 404, ""},
		{"POST", "/.well-known/acme-challenge/local", 405, ""},
		{"GET", "/index.html", 200, "next"},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.code || (tc.code == 200 && string(b) != tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, res.StatusCode, b, tc.code, tc.body)
		}
	}
}

func TestTLSConfigALPN(t *testing.T) {
	f := newFixture(t, nil)
	normal := f.store(t, "mail.example.com", f.now.Add(-time.Minute), f.now.Add(90*24*time.Hour))
	f.m.Check(t.Context())
	// The TLS-ALPN-01 certificate another node published.
	chal, blob := selfSignedBlob("mail.example.com", f.now.Add(-time.Minute), f.now.Add(24*time.Hour))
	f.st.Put(t.Context(), f.m.alpnName("mail.example.com"), blob)

	dial := func(base *tls.Config, protos []string) (*tls.ConnectionState, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			tls.Server(c, f.m.TLSConfig(base)).Handshake()
		}()
		c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "mail.example.com", NextProtos: protos})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		cs := c.ConnectionState()
		return &cs, nil
	}
	cs, err := dial(nil, []string{ALPNProto})
	if err != nil {
		t.Fatal(err)
	}
	if cs.NegotiatedProtocol != ALPNProto || cs.PeerCertificates[0].SerialNumber.Cmp(chal.Leaf.SerialNumber) != 0 {
		t.Fatalf("acme-tls/1 client: protocol %q", cs.NegotiatedProtocol)
	}
	// A client offering its own protocol gets the listener's, and the
	// normal certificate; acme-tls/1 is never offered to it.
	cs, err = dial(&tls.Config{NextProtos: []string{"h2", "http/1.1"}}, []string{"h2", ALPNProto})
	if err != nil {
		t.Fatal(err)
	}
	if cs.NegotiatedProtocol != "h2" || cs.PeerCertificates[0].SerialNumber.Cmp(normal.Leaf.SerialNumber) != 0 {
		t.Fatalf("h2 client: protocol %q", cs.NegotiatedProtocol)
	}
	// A listener without ALPN (POP3S) still serves a client that sends one.
	cs, err = dial(nil, []string{"pop3"})
	if err != nil {
		t.Fatalf("pop3 ALPN client: %v", err)
	}
	if cs.NegotiatedProtocol != "" || cs.PeerCertificates[0].SerialNumber.Cmp(normal.Leaf.SerialNumber) != 0 {
		t.Fatalf("pop3 client: protocol %q", cs.NegotiatedProtocol)
	}
	// No challenge for the name: the acme-tls/1 handshake fails.
	f.st.Delete(t.Context(), f.m.alpnName("mail.example.com"))
	if _, err := dial(nil, []string{ALPNProto}); err == nil {
		t.Fatal("acme-tls/1 handshake without a challenge succeeded")
	}
}

func TestAccountKeyCreatedOnceAndKept(t *testing.T) {
	f := newFixture(t, nil)
	k1, err := f.m.accountKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	k2, err := f.m.accountKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(k2.Public()) {
		t.Fatal("a second account key was created")
	}
	f.st.Put(t.Context(), f.m.accountName(), []byte("garbage"))
	if _, err := f.m.accountKey(t.Context()); err == nil {
		t.Fatal("a garbage account key was accepted")
	}
}

func TestWakeRunsCheck(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CheckInterval = time.Hour })
	var calls atomic.Int32
	f.m.cfg.Domains = func(context.Context) ([]string, error) {
		calls.Add(1)
		return nil, fmt.Errorf("store down")
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { f.m.Run(ctx); close(done) }()
	waitFor(t, func() bool { return calls.Load() == 1 })
	f.m.Wake()
	waitFor(t, func() bool { return calls.Load() == 2 })
	cancel()
	<-done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
