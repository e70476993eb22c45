package autoconfig

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var host = Host{
	Hostname:   "mail.example.com",
	POP3:       []Listener{{110, STARTTLS}, {995, ImplicitTLS}},
	Submission: []Listener{{587, STARTTLS}, {465, ImplicitTLS}},
}

var profileKey = bytes.Repeat([]byte("k"), 32)

func newHandler() *Handler {
	return &Handler{
		Host: host,
		IsLocal: func(_ context.Context, d string) (bool, error) {
			if d == "broken.example" {
				return false, errors.New("store down")
			}
			return d == "example.com" || d == "example.org", nil
		},
		ProfileKey: profileKey,
	}
}

// tbServer is a Thunderbird server element as readFromXML reads it.
type tbServer struct {
	Type           string   `xml:"type,attr"`
	Hostname       []string `xml:"hostname"`
	Port           []string `xml:"port"`
	SocketType     []string `xml:"socketType"`
	Username       []string `xml:"username"`
	Authentication []string `xml:"authentication"`
}

// checkThunderbird checks a config-v1.1.xml document element by element
// against the published format (wiki.mozilla.org
// Thunderbird:Autoconfiguration:ConfigFileFormat) and what Thunderbird's
// reader (readFromXML) requires, and returns the servers.
func checkThunderbird(t *testing.T, doc []byte, domain string) (in, out []tbServer) {
	t.Helper()
	// Every element is one the format defines, under the right parent.
	allowed := map[string][]string{
		"":               {"clientConfig"},
		"clientConfig":   {"emailProvider", "oAuth2", "enable", "webMail", "clientConfigUpdate"},
		"emailProvider":  {"domain", "displayName", "displayShortName", "incomingServer", "outgoingServer", "documentation", "enable", "instructionsURL"},
		"incomingServer": {"hostname", "port", "socketType", "username", "password", "authentication", "pop3"},
		"outgoingServer": {"hostname", "port", "socketType", "username", "password", "authentication", "addThisServer", "useGlobalPreferredServer", "restriction"},
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	var stack []string
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			parent := ""
			if len(stack) > 0 {
				parent = stack[len(stack)-1]
			}
			if tok.Name.Space != "" || !slices.Contains(allowed[parent], tok.Name.Local) {
				t.Fatalf("element %q under %q is not in the format", tok.Name.Local, parent)
			}
			stack = append(stack, tok.Name.Local)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	var cc struct {
		XMLName  xml.Name `xml:"clientConfig"`
		Version  string   `xml:"version,attr"`
		Provider []struct {
			ID          string     `xml:"id,attr"`
			Domain      []string   `xml:"domain"`
			DisplayName string     `xml:"displayName"`
			Incoming    []tbServer `xml:"incomingServer"`
			Outgoing    []tbServer `xml:"outgoingServer"`
		} `xml:"emailProvider"`
	}
	if err := xml.Unmarshal(doc, &cc); err != nil {
		t.Fatal(err)
	}
	if cc.Version != "1.1" || len(cc.Provider) != 1 {
		t.Fatalf("clientConfig version %q with %d emailProvider", cc.Version, len(cc.Provider))
	}
	p := cc.Provider[0]
	if p.ID != domain || !slices.Equal(p.Domain, []string{domain}) || p.DisplayName == "" {
		t.Fatalf("emailProvider id %q domains %q displayName %q", p.ID, p.Domain, p.DisplayName)
	}
	hostname := regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$`)
	check := func(s tbServer, types []string) {
		// One of each required element, with a value Thunderbird takes.
		for name, v := range map[string][]string{"hostname": s.Hostname, "port": s.Port, "socketType": s.SocketType,
			"username": s.Username, "authentication": s.Authentication} {
			if len(v) != 1 {
				t.Fatalf("%s server: %d %s elements", s.Type, len(v), name)
			}
		}
		if !slices.Contains(types, s.Type) || !hostname.MatchString(s.Hostname[0]) ||
			!slices.Contains([]string{"plain", "SSL", "STARTTLS"}, s.SocketType[0]) ||
			!slices.Contains([]string{"password-cleartext", "password-encrypted", "plain", "secure", "GSSAPI", "NTLM"}, s.Authentication[0]) {
			t.Fatalf("server %+v", s)
		}
		var port int
		if _, err := fmt.Sscanf(s.Port[0], "%d", &port); err != nil || port < 1 || port > 65535 || fmt.Sprint(port) != s.Port[0] {
			t.Fatalf("port %q", s.Port[0])
		}
	}
	for _, s := range p.Incoming {
		check(s, []string{"pop3", "imap", "nntp"})
	}
	for _, s := range p.Outgoing {
		check(s, []string{"smtp"})
	}
	return p.Incoming, p.Outgoing
}

func TestThunderbirdDocument(t *testing.T) {
	in, out := checkThunderbird(t, host.Thunderbird("example.com"), "example.com")
	type s = struct{ typ, host, port, socket, user, auth string }
	got := func(ss []tbServer) (r []s) {
		for _, x := range ss {
			r = append(r, s{x.Type, x.Hostname[0], x.Port[0], x.SocketType[0], x.Username[0], x.Authentication[0]})
		}
		return r
	}
	wantIn := []s{
		{"pop3", "mail.example.com", "995", "SSL", "%EMAILADDRESS%", "password-cleartext"},
		{"pop3", "mail.example.com", "110", "STARTTLS", "%EMAILADDRESS%", "password-cleartext"},
	}
	wantOut := []s{
		{"smtp", "mail.example.com", "465", "SSL", "%EMAILADDRESS%", "password-cleartext"},
		{"smtp", "mail.example.com", "587", "STARTTLS", "%EMAILADDRESS%", "password-cleartext"},
	}
	if !slices.Equal(got(in), wantIn) || !slices.Equal(got(out), wantOut) {
		t.Fatalf("incoming %v\noutgoing %v", got(in), got(out))
	}
}

func do(t *testing.T, h http.HandlerFunc, method, url string, body io.Reader, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, url, body)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h(w, req)
	return w.Result()
}

func readAll(t *testing.T, res *http.Response) []byte {
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServeThunderbird(t *testing.T) {
	h := newHandler()
	for _, tc := range []struct {
		method, url string
		code        int
		domain      string
	}{
		// As Thunderbird asks: autoconfig.DOMAIN, then the domain's well-known path.
		{"GET", "http://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=alice%40example.com", 200, "example.com"},
		{"GET", "https://example.org/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=bob@example.org", 200, "example.org"},
		{"GET", "http://autoconfig.Example.COM:80/mail/config-v1.1.xml", 200, "example.com"},
		{"GET", "http://example.org/.well-known/autoconfig/mail/config-v1.1.xml", 200, "example.org"},
		{"GET", "http://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=eve@evil.example", 404, ""},
		{"GET", "http://autoconfig.evil.example/mail/config-v1.1.xml", 404, ""},
		{"GET", "http://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=%3Cscript%3E", 400, ""},
		{"GET", "http://autoconfig.example.com/mail/config-v1.1.xml?emailaddress=a@broken.example", 503, ""},
		{"POST", "http://autoconfig.example.com/mail/config-v1.1.xml", 405, ""},
	} {
		res := do(t, h.ServeThunderbird, tc.method, tc.url, nil)
		body := readAll(t, res)
		if res.StatusCode != tc.code {
			t.Errorf("%s %s: %d, want %d", tc.method, tc.url, res.StatusCode, tc.code)
			continue
		}
		if tc.code == 200 {
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/xml") {
				t.Errorf("content type %q", ct)
			}
			checkThunderbird(t, body, tc.domain)
		}
	}
}

// outlookRequest is the body Outlook POSTs (Exchange's "Autodiscover
// request (POX)" example).
const outlookRequest = `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>%s</EMailAddress>
    <AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a</AcceptableResponseSchema>
  </Request>
</Autodiscover>`

type poxProtocol struct {
	Type, Server, Port, LoginName, DomainRequired, SPA, SSL, Encryption, AuthRequired string
}

type poxResponse struct {
	XMLName  xml.Name
	Response struct {
		XMLName xml.Name
		User    struct {
			DisplayName string
		}
		Account struct {
			AccountType string
			Action      string
			Protocol    []poxProtocol
		}
		Error struct {
			ErrorCode int
			Message   string
		}
	}
}

func postAutodiscover(t *testing.T, h *Handler, body string) (*http.Response, poxResponse) {
	t.Helper()
	res := do(t, h.ServeAutodiscover, "POST", "https://autodiscover.example.com/autodiscover/autodiscover.xml", strings.NewReader(body),
		"Content-Type", "text/xml", "User-Agent", "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)")
	var r poxResponse
	b := readAll(t, res)
	if err := xml.Unmarshal(b, &r); err != nil && res.StatusCode != 405 && res.StatusCode != 503 {
		t.Fatalf("answer is not XML: %v\n%s", err, b)
	}
	return res, r
}

func TestAutodiscover(t *testing.T) {
	h := newHandler()
	// An address with characters XML escapes.
	addr := "o'brien&co@example.com"
	res, r := postAutodiscover(t, h, fmt.Sprintf(outlookRequest, "o&apos;brien&amp;co@Example.COM"))
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	if r.XMLName.Space != AutodiscoverResponseNS || r.XMLName.Local != "Autodiscover" ||
		r.Response.XMLName.Space != AutodiscoverOutlookNS || r.Response.XMLName.Local != "Response" {
		t.Fatalf("namespaces %v %v", r.XMLName, r.Response.XMLName)
	}
	a := r.Response.Account
	if a.AccountType != "email" || a.Action != "settings" || r.Response.User.DisplayName != addr {
		t.Fatalf("account %+v", r.Response)
	}
	want := []poxProtocol{
		{"POP3", "mail.example.com", "995", addr, "off", "off", "on", "SSL", "on"},
		{"SMTP", "mail.example.com", "465", addr, "off", "off", "on", "SSL", "on"},
	}
	if !slices.Equal(a.Protocol, want) {
		t.Fatalf("protocols %+v\nwant %+v", a.Protocol, want)
	}
	// A host with STARTTLS only: Encryption TLS on 110 and 587.
	h2 := newHandler()
	h2.Host = Host{Hostname: "mx.example.com", POP3: []Listener{{110, STARTTLS}}, Submission: []Listener{{587, STARTTLS}}}
	_, r = postAutodiscover(t, h2, fmt.Sprintf(outlookRequest, "alice@example.org"))
	want = []poxProtocol{
		{"POP3", "mx.example.com", "110", "alice@example.org", "off", "off", "on", "TLS", "on"},
		{"SMTP", "mx.example.com", "587", "alice@example.org", "off", "off", "on", "TLS", "on"},
	}
	if !slices.Equal(r.Response.Account.Protocol, want) {
		t.Fatalf("STARTTLS protocols %+v", r.Response.Account.Protocol)
	}

	for name, tc := range map[string]struct {
		body      string
		code, pox int
	}{
		"other domain":      {fmt.Sprintf(outlookRequest, "eve@evil.example"), 404, 500},
		"not XML":           {"EMailAddress=alice@example.com", 400, 600},
		"no address":        {fmt.Sprintf(outlookRequest, ""), 400, 600},
		"display name":      {fmt.Sprintf(outlookRequest, "Alice &lt;alice@example.com&gt;"), 400, 600},
		"two addresses":     {fmt.Sprintf(outlookRequest, "a@example.com,b@example.com"), 400, 600},
		"wrong namespace":   {strings.Replace(fmt.Sprintf(outlookRequest, "alice@example.com"), "outlook/requestschema", "mobilesync/requestschema", 1), 400, 600},
		"mobilesync schema": {strings.Replace(fmt.Sprintf(outlookRequest, "alice@example.com"), "outlook/responseschema/2006a", "mobilesync/responseschema/2006", 1), 400, 600},
		"too large":         {fmt.Sprintf(outlookRequest, "alice@example.com") + "<!--" + strings.Repeat("x", MaxRequestBody) + "-->", 400, 600},
		"entity expansion":  {`<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "alice@example.com">]>` + fmt.Sprintf(outlookRequest[38:], "&e;"), 400, 600},
		"unclosed":          {strings.TrimSuffix(fmt.Sprintf(outlookRequest, "alice@example.com"), "</Autodiscover>"), 400, 600},
		"store unavailable": {fmt.Sprintf(outlookRequest, "a@broken.example"), 503, 0},
	} {
		res, r := postAutodiscover(t, h, tc.body)
		if res.StatusCode != tc.code || r.Response.Error.ErrorCode != tc.pox || len(r.Response.Account.Protocol) != 0 {
			t.Errorf("%s: HTTP %d POX error %d, want %d %d", name, res.StatusCode, r.Response.Error.ErrorCode, tc.code, tc.pox)
		}
	}
	if res := do(t, h.ServeAutodiscover, "GET", "https://example.com/autodiscover/autodiscover.xml", nil); res.StatusCode != 405 {
		t.Errorf("GET: %d", res.StatusCode)
	}
}

// plist reads a property list with Python's plistlib, as JSON.
func plist(t *testing.T, data []byte) map[string]any {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed (Debian package python3)")
	}
	f := filepath.Join(t.TempDir(), "p.mobileconfig")
	if err := os.WriteFile(f, data, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", `import plistlib, json, sys
with open(sys.argv[1], "rb") as f:
    d = plistlib.load(f, fmt=plistlib.FMT_XML)
json.dump(d, sys.stdout)`, f).CombinedOutput()
	if err != nil {
		t.Fatalf("plistlib: %v\n%s\n%s", err, out, data)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	return m
}

func TestMobileConfig(t *testing.T) {
	addr := "o'brien&co@example.com"
	m := plist(t, host.MobileConfig(addr))
	uuidRE := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	for k, v := range map[string]any{
		"PayloadType": "Configuration", "PayloadVersion": 1.0, "PayloadRemovalDisallowed": false,
		"PayloadDisplayName": "Mail: " + addr, "PayloadOrganization": "mail.example.com",
	} {
		if m[k] != v {
			t.Errorf("profile %s = %#v, want %#v", k, m[k], v)
		}
	}
	if id, _ := m["PayloadIdentifier"].(string); !strings.HasPrefix(id, "com.example.mail.postoffice.mail.") {
		t.Errorf("PayloadIdentifier %q", id)
	}
	content, _ := m["PayloadContent"].([]any)
	if len(content) != 1 {
		t.Fatalf("PayloadContent %#v", m["PayloadContent"])
	}
	p := content[0].(map[string]any)
	for k, v := range map[string]any{
		"PayloadType": "com.apple.mail.managed", "PayloadVersion": 1.0,
		"EmailAccountType": "EmailTypePOP", "EmailAddress": addr, "EmailAccountDescription": addr,
		"IncomingMailServerHostName": "mail.example.com", "IncomingMailServerPortNumber": 995.0,
		"IncomingMailServerUseSSL": true, "IncomingMailServerUsername": addr, "IncomingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingMailServerHostName": "mail.example.com", "OutgoingMailServerPortNumber": 465.0,
		"OutgoingMailServerUseSSL": true, "OutgoingMailServerUsername": addr, "OutgoingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingPasswordSameAsIncomingPassword": true,
	} {
		if p[k] != v {
			t.Errorf("payload %s = %#v, want %#v", k, p[k], v)
		}
	}
	if _, ok := p["IncomingPassword"]; ok {
		t.Error("the profile holds a password")
	}
	u1, u2 := m["PayloadUUID"].(string), p["PayloadUUID"].(string)
	if !uuidRE.MatchString(u1) || !uuidRE.MatchString(u2) || u1 == u2 {
		t.Errorf("UUIDs %q %q", u1, u2)
	}
	// The same address gives the same profile (installing again replaces
	// it); another address another one.
	if again := plist(t, host.MobileConfig(addr)); again["PayloadUUID"] != u1 {
		t.Error("the UUID changed for the same address")
	}
	if other := plist(t, host.MobileConfig("bob@example.com")); other["PayloadUUID"] == u1 || other["PayloadIdentifier"] == m["PayloadIdentifier"] {
		t.Error("two addresses share a profile identity")
	}
}

func TestServeProfile(t *testing.T) {
	h := newHandler()
	now := time.Now()
	h.Now = func() time.Time { return now }
	link, err := ProfileLink(profileKey, "alice@Example.COM", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, ProfilePath+"?t=") {
		t.Fatalf("link %q", link)
	}
	res := do(t, h.ServeProfile, "GET", "https://mail.example.com"+link, nil)
	body := readAll(t, res)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/x-apple-aspen-config" {
		t.Fatalf("%d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if p := plist(t, body); p["PayloadDisplayName"] != "Mail: alice@example.com" {
		t.Fatalf("profile for %v", p["PayloadDisplayName"])
	}
	tok := strings.TrimPrefix(link, ProfilePath+"?t=")
	parts := strings.Split(tok, ".")
	otherLink, _ := ProfileLink(profileKey, "eve@evil.example", now.Add(time.Hour))
	wrongKey, _ := ProfileLink(bytes.Repeat([]byte("x"), 32), "alice@example.com", now.Add(time.Hour))
	for name, tc := range map[string]struct {
		url  string
		code int
	}{
		"no token":         {ProfilePath, 403},
		"garbage":          {ProfilePath + "?t=abc", 403},
		"other address":    {ProfilePath + "?t=" + "Ym9iQGV4YW1wbGUuY29t." + parts[1] + "." + parts[2], 403},
		"later expiry":     {ProfilePath + "?t=" + parts[0] + "." + fmt.Sprint(now.Add(24*time.Hour).Unix()) + "." + parts[2], 403},
		"padded expiry":    {ProfilePath + "?t=" + parts[0] + ".0" + parts[1] + "." + parts[2], 403},
		"another key":      {wrongKey, 403},
		"not local domain": {otherLink, 404},
	} {
		res := do(t, h.ServeProfile, "GET", "https://mail.example.com"+tc.url, nil)
		if res.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d", name, res.StatusCode, tc.code)
		}
	}
	now = now.Add(time.Hour)
	if res := do(t, h.ServeProfile, "GET", "https://mail.example.com"+link, nil); res.StatusCode != 403 {
		t.Errorf("expired link: %d", res.StatusCode)
	}
	h.ProfileKey = nil
	if res := do(t, h.ServeProfile, "GET", "https://mail.example.com"+link, nil); res.StatusCode != 404 {
		t.Errorf("no key: %d", res.StatusCode)
	}
	if _, err := ProfileLink(profileKey[:31], "alice@example.com", now); err == nil {
		t.Error("a short key signed a link")
	}
	if _, err := ProfileLink(profileKey, "Alice <alice@example.com>", now); err == nil {
		t.Error("a display name was signed")
	}
}

func TestParseAddress(t *testing.T) {
	for in, want := range map[string]string{
		"alice@example.com":      "alice@example.com",
		"Alice@Example.COM":      "Alice@example.com",
		"a.b+tag@bücher.example": "a.b+tag@xn--bcher-kva.example",
		"o'brien&co@example.com": "o'brien&co@example.com",
	} {
		if got, _, err := ParseAddress(in); err != nil || got != want {
			t.Errorf("ParseAddress(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "alice", "@example.com", "alice@", "alice@localhost", "Alice <alice@example.com>", "a@b@example.com",
		`"a b"@example.com`, "alice@example.com\r\nBcc: x@y.z", "a@example..com", "alice@[127.0.0.1]",
		strings.Repeat("a", 250) + "@example.com",
	} {
		if got, _, err := ParseAddress(in); err == nil {
			t.Errorf("ParseAddress(%q) accepted: %q", in, got)
		}
	}
}

func TestHostCheck(t *testing.T) {
	if err := host.Check(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []Host{
		{POP3: []Listener{{995, ImplicitTLS}}},
		{Hostname: "mail.example.com"},
		{Hostname: "mail.example.com", POP3: []Listener{{0, ImplicitTLS}}},
		{Hostname: "mail.example.com", POP3: []Listener{{995, Security(7)}}},
	} {
		if h.Check() == nil {
			t.Errorf("Check accepted %+v", h)
		}
	}
	// With nothing to describe, the handlers answer 404, not a broken document.
	hd := newHandler()
	hd.Host.POP3 = nil
	if res := do(t, hd.ServeThunderbird, "GET", "http://autoconfig.example.com/mail/config-v1.1.xml", nil); res.StatusCode != 404 {
		t.Errorf("Thunderbird without POP3: %d", res.StatusCode)
	}
	if res := do(t, hd.ServeAutodiscover, "POST", "https://example.com/autodiscover/autodiscover.xml",
		strings.NewReader(fmt.Sprintf(outlookRequest, "alice@example.com"))); res.StatusCode != 404 {
		t.Errorf("autodiscover without POP3: %d", res.StatusCode)
	}
}
