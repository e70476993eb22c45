package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// Zero-touch setup (issue 19) with the real binary: pebble, the ACME test
// server of Let's Encrypt (Debian package pebble), started on loopback
// with testlib's DNS server pointing the host's names at 127.0.0.1.

const acmeHost = "mail.example.test"

// acmeNames are the names ACME covers with the default [acme] names for
// the domain example.test.
var acmeNames = []string{acmeHost, "autoconfig.example.test", "autodiscover.example.test", "mta-sts.example.test"}

// acmeEnv is pebble, the DNS server and the ports of this host's HTTP and
// HTTPS listeners (80 and 443 in production), where pebble validates.
type acmeEnv struct {
	t                   *testing.T
	dns                 *testlib.DNS
	pebble              *testlib.Pebble
	httpPort, httpsPort int
	roots               *x509.CertPool
	rootsFile           string
}

// freePort is a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func newACMEEnv(t *testing.T, validity time.Duration) *acmeEnv {
	t.Helper()
	var zone []string
	for _, n := range acmeNames {
		zone = append(zone, n+". 60 IN A 127.0.0.1")
	}
	e := &acmeEnv{t: t, dns: testlib.StartDNS(t, zone...), httpPort: freePort(t), httpsPort: freePort(t)}
	e.pebble = testlib.StartPebble(t, testlib.PebbleOptions{DNS: e.dns.Addr, HTTPPort: e.httpPort, TLSPort: e.httpsPort, Validity: validity})
	e.roots = e.pebble.Roots(t)
	e.rootsFile = filepath.Join(t.TempDir(), "pebble-root.pem")
	if err := os.WriteFile(e.rootsFile, e.pebble.RootsPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// tables are the [acme] and [http] tables of a host validated by pebble;
// more is added to [acme].
func (e *acmeEnv) tables(challenge, more string) string {
	return e.tablesOn(challenge, more, e.httpPort, e.httpsPort)
}

// tablesOn is tables with the HTTP listeners on other ports.
func (e *acmeEnv) tablesOn(challenge, more string, httpPort, httpsPort int) string {
	return fmt.Sprintf(`
[acme]
enabled = true
email = "postmaster@example.test"
directory_url = %q
ca_file = %q
challenge = %q
%s
[http]
listen = ["127.0.0.1:%d"]
tls_listen = ["127.0.0.1:%d"]
`, e.pebble.DirectoryURL, e.pebble.CAFile, challenge, more, httpPort, httpsPort)
}

// status is the running server's status.
func status(t *testing.T, in *instance) control.Status {
	t.Helper()
	var st control.Status
	out := in.must("", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

// waitCertificates waits until every name has an ACME certificate, and
// returns the status.
func waitCertificates(t *testing.T, in *instance, names []string) []control.Certificate {
	t.Helper()
	var certs []control.Certificate
	ok := within(90*time.Second, func() bool {
		certs = status(t, in).Certificates
		if len(certs) != len(names) {
			return false
		}
		for i, c := range certs {
			if c.Name != names[i] || c.NotAfter.IsZero() {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("certificates not obtained: %+v\n%s", certs, in.logText())
	}
	return certs
}

// within polls cond every 200ms until it holds or d has passed.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// opensslIssuer connects with openssl s_client to addr as a client of
// name would (SNI, STARTTLS for starttls "pop3" or "smtp"), verifying
// the chain against pebble's root and the name, and returns the issuer
// of the certificate presented.
func (e *acmeEnv) opensslIssuer(addr, name, starttls string) string {
	e.t.Helper()
	args := []string{"s_client", "-connect", addr, "-servername", name, "-CAfile", e.rootsFile,
		"-verify_return_error", "-verify_hostname", name}
	if starttls != "" {
		args = append(args, "-starttls", starttls)
	}
	cmd := exec.Command("openssl", args...)
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil || !strings.Contains(text, "Verify return code: 0 (ok)") {
		e.t.Fatalf("openssl s_client %s (%s, %s): %v\n%s", addr, name, starttls, err, text)
	}
	m := regexp.MustCompile(`(?m)^issuer=\s*(.*)$`).FindStringSubmatch(text)
	if m == nil {
		e.t.Fatalf("openssl s_client %s: no issuer in\n%s", addr, text)
	}
	return m[1]
}

// leaf is the certificate presented on an implicit-TLS listener for name,
// verified against pebble's root.
func (e *acmeEnv) leaf(addr, name string) *x509.Certificate {
	e.t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{ServerName: name, RootCAs: e.roots})
	if err != nil {
		e.t.Fatalf("TLS to %s as %s: %v", addr, name, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// client is an HTTP client that reaches every name on loopback (the
// port in the URL) and trusts pebble's root only.
func (e *acmeEnv) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{
		Timeout: 30 * time.Second,
		Jar:     jar,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: e.roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				_, port, _ := net.SplitHostPort(addr)
				return (&net.Dialer{}).DialContext(ctx, network, "127.0.0.1:"+port)
			},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// reader returns a function that reads a whole response, for
// read(client.Get(...)).
func reader(t *testing.T) func(*http.Response, error) (int, http.Header, string) {
	return func(res *http.Response, err error) (int, http.Header, string) {
		t.Helper()
		return readAll(t, res, err)
	}
}

func readAll(t *testing.T, res *http.Response, err error) (int, http.Header, string) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, res.Header, string(b)
}

// TestACME: serve obtains certificates from pebble at start (HTTP-01 on
// the [http] listener), for the hostname and the domain's autoconfig,
// autodiscover and mta-sts names; POP3S, STLS, SMTP STARTTLS (25),
// submission (587 STARTTLS, 465) and the console over TLS present them to
// openssl s_client; the HTTPS listener serves Thunderbird's autoconfig,
// Outlook's autodiscover, the MTA-STS policy and the Apple profile whose
// link the console gives; /metrics has the expiry; a domain added while
// serve runs gets its certificates at once.
func TestACME(t *testing.T) {
	needFrom(t, "openssl", "openssl")
	needFrom(t, "python3", "python3")
	e := newACMEEnv(t, 0)
	in := newInstanceWith(t, map[string]string{"hostname": acmeHost, "admin": "tls = true", "tables": e.tables("http-01", "")})
	in.must("", "domain", "add", "example.test")
	in.addUser("alice@example.test", "pw-alice")
	in.must("correct horse\n", "admin", "add", "ops", "--password-stdin")
	in.start()
	certs := waitCertificates(t, in, acmeNames)
	for _, c := range certs {
		if !strings.HasPrefix(c.Issuer, "Pebble Intermediate CA") || c.LastError != "" || c.Warning(time.Now()) != "" {
			t.Errorf("certificate %+v", c)
		}
	}

	// Every TLS listener presents pebble's certificate for the hostname.
	for _, tc := range []struct{ label, starttls string }{
		{"pop3s", ""}, {"pop3", "pop3"}, {"smtp", "smtp"}, {"submission", "smtp"}, {"submissions", ""}, {"admin", ""}, {"https", ""},
	} {
		issuer := e.opensslIssuer(in.addr(tc.label), acmeHost, tc.starttls)
		if !strings.Contains(issuer, "Pebble Intermediate CA") {
			t.Errorf("%s presents a certificate issued by %q", tc.label, issuer)
		}
	}
	// A name without an ACME certificate gets the self-signed one.
	c, err := tls.Dial("tcp", in.addr("pop3s"), &tls.Config{ServerName: "other.example", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	if iss := c.ConnectionState().PeerCertificates[0].Issuer.CommonName; iss != acmeHost {
		t.Errorf("another name got a certificate issued by %q, want the self-signed one", iss)
	}
	c.Close()

	client := e.client()
	read := reader(t)
	https := func(host string) string { return fmt.Sprintf("https://%s:%d", host, e.httpsPort) }
	pop3s, _ := strconv.Atoi(in.port("pop3s"))
	pop3, _ := strconv.Atoi(in.port("pop3"))
	subs, _ := strconv.Atoi(in.port("submissions"))
	sub, _ := strconv.Atoi(in.port("submission"))

	// Thunderbird (config-v1.1.xml), on autoconfig.DOMAIN over HTTPS and
	// at the well-known path on DOMAIN over HTTP.
	code, hdr, body := read(client.Get(https("autoconfig.example.test") + "/mail/config-v1.1.xml?emailaddress=alice%40example.test"))
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/xml") {
		t.Fatalf("autoconfig: %d %s\n%s", code, hdr.Get("Content-Type"), body)
	}
	checkThunderbird(t, body, []server{{"pop3", pop3s, "SSL"}, {"pop3", pop3, "STARTTLS"}}, []server{{"smtp", subs, "SSL"}, {"smtp", sub, "STARTTLS"}})
	code, _, body2 := read(client.Get(fmt.Sprintf("http://example.test:%d/.well-known/autoconfig/mail/config-v1.1.xml", e.httpPort)))
	if code != 200 || body2 != body {
		t.Errorf("the well-known autoconfig over HTTP: %d\n%s", code, body2)
	}

	// Outlook's POX autodiscover, POSTed as Outlook does.
	req, _ := http.NewRequest("POST", https("autodiscover.example.test")+"/Autodiscover/Autodiscover.xml", strings.NewReader(
		`<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>alice@example.test</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`))
	req.Header.Set("Content-Type", "text/xml")
	req.Header.Set("User-Agent", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)")
	code, _, body = read(client.Do(req))
	var ad struct {
		XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
		Response struct {
			XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
			Account struct {
				AccountType, Action string
				Protocol            []struct {
					Type, Server, LoginName, SPA, SSL, Encryption, AuthRequired string
					Port                                                        int
				}
			}
		}
	}
	if err := xml.Unmarshal([]byte(body), &ad); err != nil || code != 200 {
		t.Fatalf("autodiscover: %d %v\n%s", code, err, body)
	}
	acct := ad.Response.Account
	if acct.AccountType != "email" || acct.Action != "settings" || len(acct.Protocol) != 2 {
		t.Fatalf("autodiscover account %+v", acct)
	}
	for i, want := range []struct {
		typ  string
		port int
	}{{"POP3", pop3s}, {"SMTP", subs}} {
		p := acct.Protocol[i]
		if p.Type != want.typ || p.Server != acmeHost || p.Port != want.port || p.LoginName != "alice@example.test" ||
			p.SSL != "on" || p.Encryption != "SSL" || p.SPA != "off" || p.AuthRequired != "on" {
			t.Errorf("autodiscover protocol %d: %+v, want %s on %d over SSL", i, p, want.typ, want.port)
		}
	}

	// The MTA-STS policy on mta-sts.DOMAIN, whose id the _mta-sts record
	// of 'domain records' carries.
	code, hdr, body = read(client.Get(https("mta-sts.example.test") + "/.well-known/mta-sts.txt"))
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") ||
		body != "version: STSv1\r\nmode: testing\r\nmx: mail.example.test\r\nmax_age: 604800\r\n" {
		t.Errorf("MTA-STS policy: %d %s %q", code, hdr.Get("Content-Type"), body)
	}

	// The Apple profile, from the link on the user's console page.
	link := profileLink(t, client, in, "alice@example.test")
	if !strings.HasPrefix(link, https(acmeHost)+"/mail.mobileconfig?t=") {
		t.Fatalf("profile link %q", link)
	}
	code, hdr, body = read(client.Get(link))
	if code != 200 || hdr.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("profile: %d %s\n%s", code, hdr.Get("Content-Type"), body)
	}
	checkProfile(t, body, pop3s, subs)
	code, _, _ = read(client.Get(strings.Replace(link, "?t=", "?t=x", 1)))
	if code != http.StatusForbidden {
		t.Errorf("a forged profile link: %d, want 403", code)
	}

	// / redirects to the console; /metrics has the expiry of each name.
	code, hdr, _ = read(client.Get(fmt.Sprintf("http://%s:%d/", acmeHost, e.httpPort)))
	if code != http.StatusFound || hdr.Get("Location") != "https://"+acmeHost+":"+in.port("admin")+"/" {
		t.Errorf("/ of the HTTP site: %d to %q", code, hdr.Get("Location"))
	}
	_, _, metrics := read(client.Get("https://" + acmeHost + ":" + in.port("admin") + "/metrics"))
	for _, c := range certs {
		want := fmt.Sprintf(`postoffice_certificate_expiry_timestamp_seconds{name=%q} %s`, c.Name, strconv.FormatFloat(float64(c.NotAfter.Unix()), 'g', -1, 64))
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(metrics, `postoffice_certificate_renewal_failures_total{name="mail.example.test"} 0`) {
		t.Error("/metrics lacks the renewal failures of mail.example.test")
	}

	// A domain added while serve runs: its names have certificates within
	// seconds, not at the next check (10 minutes).
	e.dns.Add(t, "autoconfig.example.net. 60 IN A 127.0.0.1", "autodiscover.example.net. 60 IN A 127.0.0.1", "mta-sts.example.net. 60 IN A 127.0.0.1")
	out := in.must("", "domain", "add", "example.net")
	if !strings.Contains(out, "acme: checking") {
		t.Errorf("domain add did not reach serve: %q", out)
	}
	waitCertificates(t, in, []string{acmeHost, "autoconfig.example.net", "autoconfig.example.test", "autodiscover.example.net",
		"autodiscover.example.test", "mta-sts.example.net", "mta-sts.example.test"})
	if iss := e.opensslIssuer(fmt.Sprintf("127.0.0.1:%d", e.httpsPort), "mta-sts.example.net", ""); !strings.Contains(iss, "Pebble") {
		t.Errorf("mta-sts.example.net: issuer %q", iss)
	}
}

// server is one incomingServer or outgoingServer of Thunderbird's
// document.
type server struct {
	typ        string
	port       int
	socketType string
}

// checkThunderbird checks an autoconfig document element by element
// against the format Thunderbird reads (config-v1.1.xml, as its
// autoconfig schema and the ISPDB describe it): the elements it knows,
// their enumerated values, and the servers wanted, in order.
func checkThunderbird(t *testing.T, doc string, in, out []server) {
	t.Helper()
	allowed := map[string][]string{
		"clientConfig":  {"emailProvider"},
		"emailProvider": {"domain", "displayName", "displayShortName", "incomingServer", "outgoingServer", "documentation"},
		"incomingServer": {"hostname", "port", "socketType", "username", "authentication", "pop3", "password",
			"useGlobalPreferredServer"},
		"outgoingServer": {"hostname", "port", "socketType", "username", "authentication", "password", "addThisServer",
			"useGlobalPreferredServer"},
	}
	d := xml.NewDecoder(strings.NewReader(doc))
	var stack []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("autoconfig is not XML: %v\n%s", err, doc)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Space != "" {
				t.Errorf("element %s in namespace %q: Thunderbird's has none", el.Name.Local, el.Name.Space)
			}
			if len(stack) == 0 {
				if el.Name.Local != "clientConfig" {
					t.Fatalf("root element %s, want clientConfig", el.Name.Local)
				}
			} else if kids, ok := allowed[stack[len(stack)-1]]; ok && !slices.Contains(kids, el.Name.Local) {
				t.Errorf("element %s inside %s: not in Thunderbird's format", el.Name.Local, stack[len(stack)-1])
			}
			stack = append(stack, el.Name.Local)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	type srv struct {
		Type           string `xml:"type,attr"`
		Hostname       string `xml:"hostname"`
		Port           int    `xml:"port"`
		SocketType     string `xml:"socketType"`
		Username       string `xml:"username"`
		Authentication string `xml:"authentication"`
	}
	var cc struct {
		Version  string `xml:"version,attr"`
		Provider struct {
			ID          string   `xml:"id,attr"`
			Domain      []string `xml:"domain"`
			DisplayName string   `xml:"displayName"`
			ShortName   string   `xml:"displayShortName"`
			Incoming    []srv    `xml:"incomingServer"`
			Outgoing    []srv    `xml:"outgoingServer"`
		} `xml:"emailProvider"`
	}
	if err := xml.Unmarshal([]byte(doc), &cc); err != nil {
		t.Fatal(err)
	}
	p := cc.Provider
	if cc.Version != "1.1" || p.ID != "example.test" || !slices.Equal(p.Domain, []string{"example.test"}) || p.DisplayName == "" || p.ShortName == "" {
		t.Errorf("clientConfig %q, emailProvider %q, domains %q, names %q %q", cc.Version, p.ID, p.Domain, p.DisplayName, p.ShortName)
	}
	check := func(kind string, got []srv, want []server) {
		if len(got) != len(want) {
			t.Errorf("%d %s servers, want %d", len(got), kind, len(want))
			return
		}
		for i, w := range want {
			g := got[i]
			if g.Type != w.typ || g.Hostname != acmeHost || g.Port != w.port || g.SocketType != w.socketType ||
				g.Username != "%EMAILADDRESS%" || g.Authentication != "password-cleartext" {
				t.Errorf("%s server %d: %+v, want %s on %d with %s", kind, i, g, w.typ, w.port, w.socketType)
			}
			// socketType and authentication take these values in
			// Thunderbird's format.
			if !slices.Contains([]string{"plain", "SSL", "STARTTLS"}, g.SocketType) ||
				!slices.Contains([]string{"password-cleartext", "password-encrypted", "OAuth2", "client-IP-address", "none", "GSSAPI", "NTLM", "TLS-client-cert", "smtp-after-pop"}, g.Authentication) {
				t.Errorf("%s server %d: values outside Thunderbird's: %+v", kind, i, g)
			}
		}
	}
	check("incoming", p.Incoming, in)
	check("outgoing", p.Outgoing, out)
}

// profileLink signs in to the console (over TLS, as the hostname) and
// returns the profile link its page for user shows.
func profileLink(t *testing.T, client *http.Client, in *instance, user string) string {
	t.Helper()
	read := reader(t)
	base := "https://" + acmeHost + ":" + in.port("admin")
	_, _, body := read(client.Get(base + "/login"))
	m := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no sign-in token on the login page:\n%s", body)
	}
	code, _, body := read(client.PostForm(base+"/login", url.Values{"token": {m[1]}, "name": {"ops"}, "password": {"correct horse"}, "next": {"/"}}))
	if code != http.StatusSeeOther {
		t.Fatalf("console sign-in: %d\n%s", code, body)
	}
	_, _, body = read(client.Get(base + "/users/" + user))
	m = regexp.MustCompile(`id="profile-link" href="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no profile link on the user's page:\n%s", body)
	}
	return strings.ReplaceAll(m[1], "&amp;", "&")
}

// checkProfile reads the profile with python3's plistlib, as a property
// list must read, and checks the account in it.
func checkProfile(t *testing.T, profile string, pop3s, submissions int) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "mail.mobileconfig")
	if err := os.WriteFile(f, []byte(profile), 0o600); err != nil {
		t.Fatal(err)
	}
	script := `import json, plistlib, sys
with open(sys.argv[1], "rb") as f:
    p = plistlib.load(f)
print(json.dumps(p, default=str))`
	out, err := exec.Command("python3", "-c", script, f).CombinedOutput()
	if err != nil {
		t.Fatalf("plistlib: %v\n%s\n%s", err, out, profile)
	}
	var p struct {
		PayloadType    string
		PayloadUUID    string
		PayloadVersion int
		PayloadContent []map[string]any
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	if p.PayloadType != "Configuration" || p.PayloadVersion != 1 || p.PayloadUUID == "" || len(p.PayloadContent) != 1 {
		t.Fatalf("profile %+v", p)
	}
	a := p.PayloadContent[0]
	for k, want := range map[string]any{
		"PayloadType": "com.apple.mail.managed", "EmailAccountType": "EmailTypePOP", "EmailAddress": "alice@example.test",
		"IncomingMailServerHostName": acmeHost, "IncomingMailServerPortNumber": float64(pop3s), "IncomingMailServerUseSSL": true,
		"IncomingMailServerUsername": "alice@example.test", "OutgoingMailServerHostName": acmeHost,
		"OutgoingMailServerPortNumber": float64(submissions), "OutgoingMailServerUseSSL": true,
	} {
		if a[k] != want {
			t.Errorf("profile %s = %v, want %v", k, a[k], want)
		}
	}
	if _, ok := a["IncomingPassword"]; ok {
		t.Error("the profile holds a password")
	}
}

// TestACMERenewal: a certificate with a short lifetime (pebble's
// certificateValidityPeriod) is renewed and served by every listener
// without a restart; then with pebble stopped, the renewal fails, the old
// certificate keeps serving, and the failure shows in /metrics, in status
// and on the dashboard.
func TestACMERenewal(t *testing.T) {
	t.Parallel() // waits on timers most of its time: see TestMain
	e := newACMEEnv(t, 45*time.Second)
	in := newInstanceWith(t, map[string]string{"hostname": acmeHost, "tables": e.tables("tls-alpn-01", "names = []")})
	in.start()
	first := waitCertificates(t, in, []string{acmeHost})[0]
	if life := first.NotAfter.Sub(first.NotBefore); life > time.Minute {
		t.Fatalf("pebble issued a certificate for %v: certificateValidityPeriod not honoured", life)
	}
	serial := func(label string) *big.Int { return e.leaf(in.addr(label), acmeHost).SerialNumber }
	s1 := serial("pop3s")
	if s := serial("submissions"); s.Cmp(s1) != 0 {
		t.Fatalf("pop3s and submissions serve different certificates")
	}
	pid := status(t, in).PID

	// Renewed at two thirds of its life, served at once.
	var s2 *big.Int
	if !within(2*time.Minute, func() bool { s2 = serial("pop3s"); return s2.Cmp(s1) != 0 }) {
		t.Fatalf("not renewed:\n%s", in.logText())
	}
	if s := serial("submissions"); s.Cmp(s2) != 0 {
		t.Errorf("submissions serves %x after the renewal, pop3s %x", s, s2)
	}
	st := status(t, in)
	if st.PID != pid {
		t.Fatal("serve restarted")
	}
	renewed := st.Certificates[0]
	if !renewed.NotAfter.After(first.NotAfter) || renewed.LastError != "" {
		t.Errorf("after renewal: %+v", renewed)
	}

	// The CA goes away: the next renewal fails; the renewed certificate
	// keeps serving until it expires.
	e.pebble.Stop()
	var failed control.Certificate
	if !within(2*time.Minute, func() bool { failed = status(t, in).Certificates[0]; return failed.LastError != "" }) {
		t.Fatalf("no renewal failure reported:\n%s", in.logText())
	}
	if s := serial("pop3s"); s.Cmp(s2) != 0 {
		t.Errorf("serving %x after the failure, want the old certificate %x", s, s2)
	}
	if !failed.NotAfter.Equal(renewed.NotAfter) || failed.Failures < 1 || !strings.HasPrefix(failed.Warning(time.Now()), "renewal failing: ") {
		t.Errorf("status after the failure: %+v", failed)
	}
	read := reader(t)
	code, _, metrics := read(http.Get("http://" + in.addr("admin") + "/metrics"))
	if code != 200 || !regexp.MustCompile(`postoffice_certificate_renewal_failures_total\{name="mail.example.test"\} [1-9]`).MatchString(metrics) {
		t.Errorf("/metrics (%d) does not count the failure:\n%s", code, grepLines(metrics, "certificate"))
	}
	in.must("correct horse\n", "admin", "add", "ops", "--password-stdin")
	client := &http.Client{}
	client.Jar, _ = cookiejar.New(nil)
	base := "http://" + in.addr("admin")
	_, _, body := read(client.Get(base + "/login"))
	m := regexp.MustCompile(`name="token" value="([^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no sign-in token")
	}
	_, _, body = read(client.PostForm(base+"/login", url.Values{"token": {m[1]}, "name": {"ops"}, "password": {"correct horse"}, "next": {"/"}}))
	if !strings.Contains(body, `id="cert-mail-example-test"`) || !strings.Contains(body, "renewal failing:") {
		t.Errorf("the dashboard does not show the failing renewal:\n%s", body)
	}
	if out := in.must("", "status"); !regexp.MustCompile(`mail\.example\.test .* renewal failing: `).MatchString(out) {
		t.Errorf("status does not show the failing renewal:\n%s", out)
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestACMECluster: two nodes on one PostgreSQL database, pebble reaching
// node A only (as a load balancer might send it anywhere): one node
// obtains the certificate, holding the issuing lock, whichever it is (a
// challenge answer that node B stores, node A serves), and both serve it.
func TestACMECluster(t *testing.T) {
	t.Parallel() // waits on timers most of its time: see TestMain
	_, dsn := pgtest.Schema(t)
	e := newACMEEnv(t, 0)
	node := func(name, tables string) *instance {
		return newInstanceWith(t, map[string]string{"hostname": acmeHost, "queue": storeSection(dsn, name), "tables": tables})
	}
	a := node("node-a", e.tables("http-01", "names = []"))
	b := node("node-b", e.tablesOn("http-01", "names = []", freePort(t), freePort(t)))
	a.start()
	b.start()
	waitCertificates(t, a, []string{acmeHost})
	waitCertificates(t, b, []string{acmeHost})
	ca, cb := e.leaf(a.addr("pop3s"), acmeHost), e.leaf(b.addr("pop3s"), acmeHost)
	if ca.SerialNumber.Cmp(cb.SerialNumber) != 0 {
		t.Fatalf("node A serves %x, node B %x: not one shared certificate", ca.SerialNumber, cb.SerialNumber)
	}
	if !strings.HasPrefix(ca.Issuer.CommonName, "Pebble Intermediate CA") {
		t.Fatalf("issuer %q", ca.Issuer.CommonName)
	}
	for _, label := range []string{"submissions", "https"} {
		if s := e.leaf(b.addr(label), acmeHost).SerialNumber; s.Cmp(ca.SerialNumber) != 0 {
			t.Errorf("node B's %s serves %x", label, s)
		}
	}
	logs := a.logText() + b.logText()
	if n := strings.Count(logs, "msg=\"requesting a certificate\""); n != 1 {
		t.Errorf("%d certificate requests by the two nodes, want 1:\n%s", n, grepLines(logs, "acme"))
	}
}

// TestACMEReload: ACME and the HTTP listener switched on at run time
// (config set, which reloads) obtain and serve certificates without a
// restart; switched off, the self-signed certificate serves again.
func TestACMEReload(t *testing.T) {
	e := newACMEEnv(t, 0)
	in := newInstanceWith(t, map[string]string{"hostname": acmeHost})
	in.start()
	pid := status(t, in).PID
	selfSigned := func() bool {
		c, err := tls.Dial("tcp", in.addr("pop3s"), &tls.Config{ServerName: acmeHost, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].Issuer.CommonName == acmeHost
	}
	if !selfSigned() {
		t.Fatal("not self-signed before ACME")
	}
	for _, kv := range [][2]string{
		{"http.listen", fmt.Sprintf("127.0.0.1:%d", e.httpPort)},
		{"acme.directory_url", e.pebble.DirectoryURL},
		{"acme.ca_file", e.pebble.CAFile},
		{"acme.names", ""},
		{"acme.enabled", "true"},
	} {
		in.must("", "config", "set", kv[0], kv[1])
	}
	waitCertificates(t, in, []string{acmeHost})
	if iss := e.leaf(in.addr("pop3s"), acmeHost).Issuer.CommonName; !strings.HasPrefix(iss, "Pebble Intermediate CA") {
		t.Errorf("issuer %q after ACME was switched on", iss)
	}
	if in.addr("http") == "" || status(t, in).PID != pid {
		t.Fatal("no HTTP listener, or serve restarted")
	}
	out := in.must("", "config", "set", "acme.enabled", "false")
	if !strings.Contains(out, "acme: off") {
		t.Errorf("config set acme.enabled false: %q", out)
	}
	if !selfSigned() || len(status(t, in).Certificates) != 0 {
		t.Error("ACME switched off: the self-signed certificate does not serve again")
	}
}
