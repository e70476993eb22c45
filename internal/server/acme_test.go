package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// TestACMEWiring runs the Server with pebble (Debian package pebble) on
// loopback: the manager obtains the hostname's certificate through the
// HTTP service (HTTP-01), the HTTPS listener and POP3's STLS present it,
// /metrics has its expiry, a domain change wakes the manager, and a
// reload that switches ACME off serves the self-signed certificate again.
// With -race, it checks the wiring's locking.
func TestACMEWiring(t *testing.T) {
	dns := testlib.StartDNS(t, "mail.test. 60 IN A 127.0.0.1")
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	httpPort := free()
	pebble := testlib.StartPebble(t, testlib.PebbleOptions{DNS: dns.Addr, HTTPPort: httpPort, TLSPort: free()})
	tables := func(enabled bool) string {
		return fmt.Sprintf("[acme]\nenabled = %v\ndirectory_url = %q\nca_file = %q\nnames = []\n[http]\nlisten = [\"127.0.0.1:%d\"]\ntls_listen = [\"127.0.0.1:0\"]\n",
			enabled, pebble.DirectoryURL, pebble.CAFile, httpPort)
	}
	ts := newTestServer(t, tables(true))
	var notAfter time.Time
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := ts.srv.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Certificates) == 1 && !st.Certificates[0].NotAfter.IsZero() {
			notAfter = st.Certificates[0].NotAfter
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no certificate: %+v", st.Certificates)
		}
		time.Sleep(100 * time.Millisecond)
	}
	https := ts.srv.Addrs("https")[0].String()
	roots := pebble.Roots(t)
	c, err := tls.Dial("tcp", https, &tls.Config{ServerName: "mail.test", RootCAs: roots})
	if err != nil {
		t.Fatalf("HTTPS with pebble's root: %v", err)
	}
	c.Close()
	// POP3's STLS (the pop3 service's TLS configuration).
	p, greeting := dialPOP(t, ts.pop3Addr())
	if !strings.HasPrefix(greeting, "+OK") {
		t.Fatal(greeting)
	}
	p.expect("STLS", "+OK")
	tc := tls.Client(p.c, &tls.Config{ServerName: "mail.test", RootCAs: roots})
	if err := tc.Handshake(); err != nil {
		t.Fatalf("STLS handshake with pebble's root: %v", err)
	}
	tc.Close()
	rec := httptest.NewRecorder()
	ts.srv.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	want := `postoffice_certificate_expiry_timestamp_seconds{name="mail.test"} ` + strconv.FormatFloat(float64(notAfter.Unix()), 'g', -1, 64)
	if !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
	if notes, err := ts.srv.DomainsChanged(t.Context()); err != nil || len(notes) != 1 {
		t.Errorf("DomainsChanged: %q %v", notes, err)
	}
	// The site answers on the HTTP listener: / is 404 without a console.
	res, err := http.Get("http://" + ts.srv.Addrs("http")[0].String() + "/mail/config-v1.1.xml?emailaddress=a%40nowhere.test")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Errorf("autoconfig for a domain that is not local: %d", res.StatusCode)
	}

	writeConfig(t, ts.cfg, ts.dir, tables(false))
	notes, err := ts.srv.Reload(context.Background())
	if err != nil || !strings.Contains(strings.Join(notes, "\n"), "acme: off") {
		t.Fatalf("Reload: %q %v", notes, err)
	}
	c, err = tls.Dial("tcp", https, &tls.Config{ServerName: "mail.test", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if iss := c.ConnectionState().PeerCertificates[0].Issuer.CommonName; iss != "mail.test" {
		t.Errorf("after ACME was switched off: issuer %q, want the self-signed certificate", iss)
	}
	c.Close()
	if st, _ := ts.srv.Status(t.Context()); len(st.Certificates) != 0 {
		t.Errorf("certificates after ACME was switched off: %+v", st.Certificates)
	}
}
