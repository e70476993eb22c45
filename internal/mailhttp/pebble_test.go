package mailhttp_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/autoconfig"
	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/mailhttp"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/testlib"
	"github.com/postoffice-mail/postoffice/internal/tlsutil"
)

// TestWithPebble puts the pieces together as the server will: the site on
// an HTTP listener (port 80 in production) and an HTTPS one (443), ACME
// certificates from the real pebble for the hostname and the domain's
// autoconfig, autodiscover and mta-sts names, the DNS records of package
// dnsrecords in a real DNS server; then a sending server's MTA-STS fetcher discovers
// and fetches the policy over verified HTTPS, and clients fetch their
// documents the same way.
func TestWithPebble(t *testing.T) {
	for _, ch := range []acmecert.Challenge{acmecert.HTTP01, acmecert.TLSALPN01} {
		t.Run(string(ch), func(t *testing.T) {
			t.Parallel()
			testWithPebble(t, ch)
		})
	}
}

func testWithPebble(t *testing.T, ch acmecert.Challenge) {
	const hostname = "mail.example.test"
	isLocal := func(_ context.Context, d string) (bool, error) { return d == "example.test", nil }
	zone := testlib.StartDNS(t, hostname+". 60 IN A 127.0.0.1")
	httpL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pebble := testlib.StartPebble(t, testlib.PebbleOptions{
		DNS: zone.Addr, HTTPPort: httpL.Addr().(*net.TCPAddr).Port, TLSPort: httpsL.Addr().(*net.TCPAddr).Port,
	})
	// The fallback is the configured or self-signed certificate, as
	// tlsutil provides it.
	src, err := tlsutil.Load("", "", t.TempDir(), hostname)
	if err != nil {
		t.Fatal(err)
	}
	m, err := acmecert.New(acmecert.Config{
		DirectoryURL: pebble.DirectoryURL,
		CAFile:       pebble.CAFile,
		Challenge:    ch,
		Hostname:     hostname,
		Domains:      func(context.Context) ([]string, error) { return []string{"example.test"}, nil },
		Storage:      acmecert.NewMemStorage(),
		Fallback:     src.Config().GetCertificate,
	})
	if err != nil {
		t.Fatal(err)
	}
	site, err := mailhttp.New(mailhttp.Config{
		Hostname: hostname,
		IsLocal:  isLocal,
		ACME:     m.HTTPHandler(nil),
		Autoconfig: &autoconfig.Handler{IsLocal: isLocal, Host: autoconfig.Host{
			Hostname:   hostname,
			POP3:       []autoconfig.Listener{{Port: 995, Security: autoconfig.ImplicitTLS}},
			Submission: []autoconfig.Listener{{Port: 465, Security: autoconfig.ImplicitTLS}},
		}},
		MTASTS: &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{hostname}, MaxAge: 24 * time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	// The records the domain's owner would publish, in the real DNS.
	recs, err := dnsrecords.Records(dnsrecords.Domain{Name: "example.test", MX: hostname, Ports: dnsrecords.DefaultPorts,
		MTASTS: site.Policy(), Autoconfig: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range recs {
		zone.Add(t, rr.String())
	}
	httpSrv := mailhttp.Server(site, nil)
	go httpSrv.Serve(httpL)
	httpsSrv := mailhttp.Server(site, nil)
	httpsSrv.TLSConfig = m.TLSConfig(nil)
	go httpsSrv.ServeTLS(httpsL, "", "")
	t.Cleanup(func() { httpSrv.Close(); httpsSrv.Close() })

	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, s := range m.Status() {
		if s.NotAfter.IsZero() {
			t.Fatalf("no certificate for %s: %s", s.Name, s.LastError)
		}
	}
	if len(m.Status()) != 4 {
		t.Fatalf("status %+v", m.Status())
	}

	// Clients resolve names through the zone, connect to port 443 (here
	// the HTTPS listener) and trust pebble's root only.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, zone.Addr)
	}}
	roots := pebble.Roots(t)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, port, _ := net.SplitHostPort(addr)
			ips, err := resolver.LookupHost(ctx, host)
			if err != nil {
				return nil, err
			}
			if port != "443" {
				return nil, fmt.Errorf("port %s", port)
			}
			return (&net.Dialer{}).DialContext(ctx, network, net.JoinHostPort(ips[0], fmt.Sprint(httpsL.Addr().(*net.TCPAddr).Port)))
		},
	}}

	// A sending MTA's view (RFC 8461 section 3): the _mta-sts record, then
	// the policy from mta-sts.example.test over verified HTTPS.
	f := &mtasts.Fetcher{Resolver: resolver, Client: client}
	r := f.Get(t.Context(), "example.test")
	if r.Err != nil || r.Policy == nil {
		t.Fatalf("MTA-STS discovery: %+v", r)
	}
	if r.Policy.String() != site.Policy().String() || r.ID != site.Policy().ID() || !r.Policy.Match(hostname) {
		t.Fatalf("fetched policy %q id %s", r.Policy, r.ID)
	}

	// Thunderbird, then Outlook, as they ask.
	res, err := client.Get("https://autoconfig.example.test/mail/config-v1.1.xml?emailaddress=alice%40example.test")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "<hostname>mail.example.test</hostname>") {
		t.Fatalf("autoconfig: %d %s", res.StatusCode, body)
	}
	checkPeer(t, res.TLS, "autoconfig.example.test", roots)
	res, err = client.Post("https://autodiscover.example.test/autodiscover/autodiscover.xml", "text/xml", strings.NewReader(
		`<Autodiscover xmlns="`+autoconfig.AutodiscoverRequestNS+`"><Request><EMailAddress>alice@example.test</EMailAddress>`+
			`<AcceptableResponseSchema>`+autoconfig.AutodiscoverOutlookNS+`</AcceptableResponseSchema></Request></Autodiscover>`))
	if err != nil {
		t.Fatal(err)
	}
	var ad struct {
		Response struct {
			Account struct {
				Protocol []struct{ Type, Server, Port string }
			}
		}
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if err := xml.Unmarshal(body, &ad); err != nil || res.StatusCode != 200 || len(ad.Response.Account.Protocol) != 2 ||
		ad.Response.Account.Protocol[0].Port != "995" {
		t.Fatalf("autodiscover: %d %v %s", res.StatusCode, err, body)
	}
	checkPeer(t, res.TLS, "autodiscover.example.test", roots)

	// The SRV record Outlook follows names the hostname, whose certificate
	// is pebble's too.
	_, srvs, err := resolver.LookupSRV(t.Context(), "autodiscover", "tcp", "example.test")
	if err != nil || len(srvs) != 1 || srvs[0].Target != hostname+"." {
		t.Fatalf("_autodiscover._tcp: %v %v", srvs, err)
	}
}

func checkPeer(t *testing.T, cs *tls.ConnectionState, name string, roots *x509.CertPool) {
	t.Helper()
	if cs == nil || len(cs.VerifiedChains) == 0 {
		t.Fatalf("%s: no verified TLS", name)
	}
	leaf := cs.PeerCertificates[0]
	if leaf.VerifyHostname(name) != nil || !strings.HasPrefix(leaf.Issuer.CommonName, "Pebble Intermediate CA") {
		t.Fatalf("%s: certificate for %v from %q", name, leaf.DNSNames, leaf.Issuer.CommonName)
	}
}
