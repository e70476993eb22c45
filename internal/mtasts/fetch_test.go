package mtasts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// policyHost is an HTTPS server on loopback with a certificate from a test
// CA; the fetcher's client trusts that CA and dials it for every name, so
// the certificate check is real: the name must be in the certificate.
type policyHost struct {
	addr     string
	requests atomic.Int32
	mu       sync.Mutex
	handler  http.HandlerFunc
	client   *http.Client
}

func newPolicyHost(t *testing.T, certNames ...string) *policyHost {
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: certNames,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	h := &policyHost{}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	h.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.requests.Add(1)
		h.mu.Lock()
		hf := h.handler
		h.mu.Unlock()
		hf(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	h.client = &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, h.addr)
		},
	}}
	return h
}

func (h *policyHost) serve(status int, contentType, body string) {
	h.mu.Lock()
	h.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != WellKnownPath || r.Host != "mta-sts.example.test" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
	h.mu.Unlock()
}

const policyA = "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n"
const policyB = "version: STSv1\r\nmode: testing\r\nmx: mx2.example.test\r\nmax_age: 3600\r\n"

func resolver(d *testlib.DNS) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, d.Addr)
	}}
}

func TestFetchPolicyChecks(t *testing.T) {
	h := newPolicyHost(t, "mta-sts.example.test")
	ctx := t.Context()
	h.serve(200, "text/plain; charset=utf-8", policyA)
	p, err := FetchPolicy(ctx, h.client, "example.test")
	if err != nil || p.Mode != Enforce || !p.Match("mx.example.test") {
		t.Fatalf("FetchPolicy: %+v, %v", p, err)
	}
	for name, serve := range map[string]func(){
		"404":           func() { h.serve(404, "text/plain", policyA) },
		"HTML":          func() { h.serve(200, "text/html", policyA) },
		"no type":       func() { h.serve(200, "", policyA) },
		"latin1":        func() { h.serve(200, "text/plain; charset=iso-8859-1", policyA) },
		"invalid":       func() { h.serve(200, "text/plain", "version: STSv1\n") },
		"too large":     func() { h.serve(200, "text/plain", policyA+"x: "+strings.Repeat("a", MaxPolicySize)+"\r\n") },
		"redirect 301":  func() { h.serve(301, "text/plain", policyA) },
		"redirect body": func() { h.serve(302, "text/plain", policyA) },
	} {
		serve()
		if p, err := FetchPolicy(ctx, h.client, "example.test"); err == nil {
			t.Errorf("%s: accepted %+v", name, p)
		}
	}
	// A redirect is not followed, even by a client that would.
	h.mu.Lock()
	h.handler = func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == WellKnownPath {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policyA)
	}
	h.mu.Unlock()
	h.requests.Store(0)
	if _, err := FetchPolicy(ctx, h.client, "example.test"); err == nil || h.requests.Load() != 1 {
		t.Fatalf("redirect: %v after %d requests", err, h.requests.Load())
	}
	// The certificate must be valid for mta-sts.DOMAIN.
	other := newPolicyHost(t, "www.example.test")
	other.serve(200, "text/plain", policyA)
	if _, err := FetchPolicy(ctx, other.client, "example.test"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a certificate for another name: %v", err)
	}
}

func TestFetcher(t *testing.T) {
	d := testlib.StartDNS(t, `_mta-sts.example.test. 60 IN TXT "v=spf1 -all"`, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=one"`)
	h := newPolicyHost(t, "mta-sts.example.test")
	h.serve(200, "text/plain", policyA)
	now := time.Now()
	f := &Fetcher{Resolver: resolver(d), Client: h.client, Now: func() time.Time { return now }}
	ctx := t.Context()
	get := func(wantPolicy string, wantCached, wantErr bool, wantRequests int32) {
		t.Helper()
		h.requests.Store(0)
		r := f.Get(ctx, "Example.Test.")
		got := ""
		if r.Policy != nil {
			got = r.Policy.String()
		}
		if got != wantPolicy || r.Cached != wantCached || (r.Err != nil) != wantErr || h.requests.Load() != wantRequests {
			t.Fatalf("Get: policy %q cached %v err %v after %d requests; want %q %v %v %d",
				got, r.Cached, r.Err, h.requests.Load(), wantPolicy, wantCached, wantErr, wantRequests)
		}
	}
	get(policyA, false, false, 1)
	// Same id: the cached policy, no request.
	now = now.Add(time.Hour)
	get(policyA, true, false, 0)
	// A new id: fetched anew.
	d.Remove("_mta-sts.example.test.", dns.TypeTXT)
	d.Add(t, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=two"`)
	h.serve(200, "text/plain", policyB)
	get(policyB, false, false, 1)
	// Another id, but the policy host fails: the cached policy, with the
	// error; and no new attempt for five minutes.
	d.Remove("_mta-sts.example.test.", dns.TypeTXT)
	d.Add(t, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=three"`)
	h.serve(500, "text/plain", "")
	get(policyB, true, true, 1)
	now = now.Add(4 * time.Minute)
	get(policyB, true, true, 0)
	now = now.Add(2 * time.Minute)
	h.serve(200, "text/plain", policyA)
	get(policyA, false, false, 1)
	// Past half its max_age (a day), the policy is refreshed even though
	// the id is the same.
	now = now.Add(13 * time.Hour)
	get(policyA, false, false, 1)
	// The record withdrawn: the cached policy holds until it expires.
	d.Remove("_mta-sts.example.test.", dns.TypeTXT)
	now = now.Add(23 * time.Hour)
	get(policyA, true, false, 0)
	now = now.Add(2 * time.Hour)
	get("", false, false, 0)
	// Two records: no policy, an error.
	d.Add(t, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=a"`, `_mta-sts.example.test. 60 IN TXT "v=STSv1; id=b"`)
	get("", false, true, 0)
	// DNS failing: an error, no policy (none cached any more).
	d.ServFail("example.test.")
	get("", false, true, 0)
	// A domain without a record: nothing at all.
	if r := f.Get(ctx, "other.test"); r.Policy != nil || r.Err != nil {
		t.Fatalf("a domain without MTA-STS: %+v", r)
	}
}
