package dnsrecords

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

var (
	keysOnce           sync.Once
	edKey, rsaKey, old mailauth.Key
)

func testKeys(t testing.TB) []mailauth.Key {
	t.Helper()
	keysOnce.Do(func() {
		now := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
		var err error
		if edKey, err = mailauth.GenerateKey("example.com", "20260315e", mailauth.Ed25519, now); err != nil {
			panic(err)
		}
		if rsaKey, err = mailauth.GenerateKey("example.com", "20260315r", mailauth.RSA, now); err != nil {
			panic(err)
		}
		if old, err = mailauth.GenerateKey("example.com", "20250101e", mailauth.Ed25519, now.AddDate(-1, 0, 0)); err != nil {
			panic(err)
		}
		old.Retired = now
	})
	return []mailauth.Key{edKey, rsaKey, old}
}

func testDomain(t testing.TB) Domain {
	return Domain{
		Name:   "example.com",
		MX:     "mail.example.com",
		Keys:   testKeys(t),
		Ports:  DefaultPorts,
		MTASTS: &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"mail.example.com"}, MaxAge: 7 * 24 * time.Hour},
		IPs:    []net.IP{net.ParseIP("192.0.2.10"), net.ParseIP("2001:db8::10")},
		// Autoconfig and autodiscover served.
		Autoconfig: true,
	}
}

func TestRecords(t *testing.T) {
	d := testDomain(t)
	recs, err := Records(d)
	if err != nil {
		t.Fatal(err)
	}
	edTXT, _ := edKey.TXT()
	rsaTXT, _ := rsaKey.TXT()
	want := []struct{ name, typ, value string }{
		{"example.com.", "MX", "10 mail.example.com."},
		{"mail.example.com.", "A", "192.0.2.10"},
		{"10.2.0.192.in-addr.arpa.", "PTR", "mail.example.com."},
		{"mail.example.com.", "AAAA", "2001:db8::10"},
		{"0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR", "mail.example.com."},
		{"example.com.", "TXT", `"v=spf1 mx -all"`},
		{"mail.example.com.", "TXT", `"v=spf1 a -all"`},
		{"20260315e._domainkey.example.com.", "TXT", `"` + edTXT + `"`},
		// Over 255 octets: cut into character-strings.
		{"20260315r._domainkey.example.com.", "TXT", `"` + rsaTXT[:255] + `" "` + rsaTXT[255:] + `"`},
		{"_dmarc.example.com.", "TXT", `"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"`},
		{"_submissions._tcp.example.com.", "SRV", "0 1 465 mail.example.com."},
		{"_submission._tcp.example.com.", "SRV", "10 1 587 mail.example.com."},
		{"_pop3s._tcp.example.com.", "SRV", "0 1 995 mail.example.com."},
		{"_pop3._tcp.example.com.", "SRV", "10 1 110 mail.example.com."},
		{"_imaps._tcp.example.com.", "SRV", "0 0 0 ."},
		{"_imap._tcp.example.com.", "SRV", "0 0 0 ."},
		{"_mta-sts.example.com.", "TXT", `"v=STSv1; id=` + d.MTASTS.ID() + `"`},
		{"mta-sts.example.com.", "CNAME", "mail.example.com."},
		{"_smtp._tls.example.com.", "TXT", `"v=TLSRPTv1; rua=mailto:postmaster@example.com"`},
		{"autoconfig.example.com.", "CNAME", "mail.example.com."},
		{"autodiscover.example.com.", "CNAME", "mail.example.com."},
		{"_autodiscover._tcp.example.com.", "SRV", "0 1 443 mail.example.com."},
	}
	if len(recs) != len(want) {
		t.Errorf("%d records, want %d:\n%s", len(recs), len(want), Zone(recs))
	}
	for i := range min(len(recs), len(want)) {
		r, w := recs[i], want[i]
		if r.Name != w.name || r.Type != w.typ || r.Value != w.value {
			t.Errorf("record %d = %s %s %s\n             want %s %s %s", i, r.Name, r.Type, r.Value, w.name, w.typ, w.value)
		}
		if r.Comment == "" {
			t.Errorf("record %d has no comment", i)
		}
	}

	// The zone text is valid zone-file syntax: every line reads back as
	// the record it came from.
	zone := Zone(recs)
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(zone), "\n") {
		if strings.HasPrefix(line, ";") {
			continue
		}
		rr, err := dns.NewRR(line)
		if err != nil {
			t.Fatalf("zone line %q: %v", line, err)
		}
		if !dns.IsDuplicate(rr, recs[n].rr) || rr.Header().Ttl != 3600 {
			t.Errorf("zone line %q reads back as %v", line, rr)
		}
		n++
	}
	if n != len(recs) {
		t.Errorf("%d zone lines for %d records", n, len(recs))
	}

	// Services not offered say so; the report address and policy as set.
	d.Ports = Ports{Submissions: 465, POP3S: 995}
	d.DMARCPolicy = mailauth.DispositionReject
	d.ReportAddress = "reports@example.net"
	d.MTASTS = nil
	d.IPs = nil
	d.Autoconfig = false
	recs, _ = Records(d)
	got := map[string]string{}
	for _, r := range recs {
		got[r.Name+" "+r.Type] = r.Value
	}
	for k, v := range map[string]string{
		"_submission._tcp.example.com. SRV": "0 0 0 .",
		"_pop3._tcp.example.com. SRV":       "0 0 0 .",
		"_pop3s._tcp.example.com. SRV":      "0 1 995 mail.example.com.",
		"_dmarc.example.com. TXT":           `"v=DMARC1; p=reject; rua=mailto:reports@example.net"`,
		"_smtp._tls.example.com. TXT":       `"v=TLSRPTv1; rua=mailto:reports@example.net"`,
	} {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	for _, k := range []string{"_mta-sts.example.com. TXT", "mta-sts.example.com. CNAME", "mail.example.com. A",
		"autoconfig.example.com. CNAME", "autodiscover.example.com. CNAME", "_autodiscover._tcp.example.com. SRV"} {
		if _, ok := got[k]; ok {
			t.Errorf("%s published without MTA-STS, addresses or autoconfig", k)
		}
	}

	// Internationalized names become A-labels; nonsense is an error.
	recs, err = Records(Domain{Name: "Bücher.example", MX: "MX.Bücher.example."})
	if err != nil || recs[0].Name != "xn--bcher-kva.example." || recs[0].Value != "10 mx.xn--bcher-kva.example." {
		t.Errorf("IDN: %v %v", recs, err)
	}
	for _, bad := range []Domain{{Name: "", MX: "mx.example.com"}, {Name: "example.com", MX: "a..b"}, {Name: "exa mple.com", MX: "mx"}} {
		if _, err := Records(bad); err == nil {
			t.Errorf("Records(%+v) accepted", bad)
		}
	}
}

// The _mta-sts record carries the id of the policy served (package
// mtasts), which changes with the policy (RFC 8461 section 3.1).
func TestMTASTSRecord(t *testing.T) {
	p := &mtasts.Policy{Mode: mtasts.Testing, MX: []string{"mail.example.com"}, MaxAge: 24 * time.Hour}
	id := func() string {
		recs, err := Records(Domain{Name: "example.com", MX: "Mail.Example.com", MTASTS: p})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Name == "_mta-sts.example.com." {
				rec, err := mtasts.ParseRecord(strings.Join(r.rr.(*dns.TXT).Txt, ""))
				if err != nil {
					t.Fatal(err)
				}
				return rec.ID
			}
		}
		t.Fatal("no _mta-sts record")
		return ""
	}
	first := id()
	if first != p.ID() {
		t.Errorf("record id %q, policy id %q", first, p.ID())
	}
	p.Mode = mtasts.Enforce
	if id() == first {
		t.Error("a changed policy kept its id")
	}
}

// zoneOf publishes records in a test DNS server.
func zoneOf(t *testing.T, recs []Record) *testlib.DNS {
	t.Helper()
	d := testlib.StartDNS(t)
	for _, r := range recs {
		d.Add(t, r.String())
	}
	return d
}

func statuses(fs []Finding) map[string]Finding {
	m := map[string]Finding{}
	for _, f := range fs {
		m[f.Record.Name+" "+f.Record.Type] = f
	}
	return m
}

// Every record published as Records says: every check passes, against
// a real DNS server, SPF evaluated as a receiver would.
func TestCheckAllGood(t *testing.T) {
	d := testDomain(t)
	recs, err := Records(d)
	if err != nil {
		t.Fatal(err)
	}
	dns := zoneOf(t, recs)
	fs, err := Check(context.Background(), resolver.Server(dns.Addr, 0), d)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != len(recs) {
		t.Fatalf("%d findings for %d records", len(fs), len(recs))
	}
	for _, f := range fs {
		if f.Status != OK || f.Detail != "" {
			t.Errorf("%s %s: %s (%s), found %q", f.Record.Name, f.Record.Type, f.Status, f.Detail, f.Found)
		}
	}
}

// Without the addresses given, the mail host's are looked up; SPF is
// evaluated for them.
func TestCheckLooksUpAddresses(t *testing.T) {
	d := testDomain(t)
	recs, _ := Records(d)
	dns := zoneOf(t, recs) // has the A and AAAA records of the mail host
	d.IPs = nil
	fs, err := Check(context.Background(), resolver.Server(dns.Addr, 0), d)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.Status != OK || f.Detail != "" {
			t.Errorf("%s %s: %s (%s)", f.Record.Name, f.Record.Type, f.Status, f.Detail)
		}
	}
}

func TestCheckProblems(t *testing.T) {
	d := testDomain(t)
	other, err := mailauth.GenerateKey("example.com", "x", mailauth.Ed25519, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	otherTXT, _ := other.TXT()
	dns := testlib.StartDNS(t,
		`example.com. 60 IN MX 10 mx.provider.test.`,
		`example.com. 60 IN TXT "v=spf1 ip4:198.51.100.1 -all"`,
		`mail.example.com. 60 IN A 192.0.2.99`,
		`mail.example.com. 60 IN TXT "v=spf1 a -all"`,
		`mail.example.com. 60 IN TXT "v=spf1 mx -all"`,
		`10.2.0.192.in-addr.arpa. 60 IN PTR vps-123.provider.test.`,
		`20260315e._domainkey.example.com. 60 IN TXT "`+otherTXT+`"`,
		`_dmarc.example.com. 60 IN TXT "v=DMARC1; p=bogus"`,
		`_submissions._tcp.example.com. 60 IN SRV 0 1 465 mail.example.com.`,
		`_submission._tcp.example.com. 60 IN SRV 0 1 25 mail.example.com.`,
		`_imap._tcp.example.com. 60 IN SRV 0 1 143 mail.example.com.`,
		`_mta-sts.example.com. 60 IN TXT "v=STSv1; id=20240101"`,
		`mta-sts.example.com. 60 IN CNAME mail.example.com.`,
		`autoconfig.example.com. 60 IN A 203.0.113.7`,
	)
	dns.ServFail("_pop3s._tcp.example.com.")
	fs, err := Check(context.Background(), resolver.Server(dns.Addr, 0), d)
	if err != nil {
		t.Fatal(err)
	}
	got := statuses(fs)
	for key, want := range map[string]Status{
		"example.com. MX":                       Wrong,        // mail goes to another host
		"mail.example.com. A":                   Missing,      // another address
		"mail.example.com. AAAA":                Missing,      // no IPv6 address
		"10.2.0.192.in-addr.arpa. PTR":          Wrong,        // the provider's name
		"example.com. TXT":                      Wrong,        // SPF does not allow our address
		"mail.example.com. TXT":                 Wrong,        // two SPF records
		"20260315e._domainkey.example.com. TXT": Wrong,        // another key
		"20260315r._domainkey.example.com. TXT": Missing,      // not published
		"_dmarc.example.com. TXT":               Wrong,        // does not parse
		"_submissions._tcp.example.com. SRV":    OK,           //
		"_submission._tcp.example.com. SRV":     Wrong,        // port 25
		"_pop3s._tcp.example.com. SRV":          LookupFailed, // SERVFAIL
		"_pop3._tcp.example.com. SRV":           Missing,      //
		"_imap._tcp.example.com. SRV":           Wrong,        // claims an IMAP service
		"_mta-sts.example.com. TXT":             Wrong,        // old id
		"mta-sts.example.com. CNAME":            Wrong,        // reaches 192.0.2.99, not ours
		"_smtp._tls.example.com. TXT":           Missing,      //
		"autoconfig.example.com. CNAME":         Wrong,        // another host
		"autodiscover.example.com. CNAME":       Missing,      //
		"_autodiscover._tcp.example.com. SRV":   Missing,      //
	} {
		f, ok := got[key]
		if !ok {
			t.Errorf("no finding for %s", key)
			continue
		}
		if f.Status != want {
			t.Errorf("%s: %s (%s), found %q; want %s", key, f.Status, f.Detail, f.Found, want)
		}
		if (want == Wrong || want == LookupFailed) && f.Detail == "" {
			t.Errorf("%s: %s without a detail", key, f.Status)
		}
	}
	if f := got["example.com. TXT"]; !strings.Contains(f.Detail, "192.0.2.10 gets fail") {
		t.Errorf("SPF detail %q should name the address and the result", f.Detail)
	}
	if f := got["example.com. MX"]; len(f.Found) != 1 || f.Found[0] != "10 mx.provider.test." {
		t.Errorf("MX found %q", f.Found)
	}
}

// A subdomain without a DMARC record of its own is covered by its
// organizational domain's (RFC 7489 section 6.6.3); p=none is fine but
// noted.
func TestCheckDMARCOrganizational(t *testing.T) {
	dns := testlib.StartDNS(t, `_dmarc.example.com. 60 IN TXT "v=DMARC1; p=none"`)
	fs, err := Check(context.Background(), resolver.Server(dns.Addr, 0), Domain{Name: "lists.example.com", MX: "mail.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	f := statuses(fs)["_dmarc.lists.example.com. TXT"]
	if f.Status != OK || !strings.Contains(f.Detail, "example.com") {
		t.Errorf("subdomain DMARC: %+v", f)
	}
	fs, _ = Check(context.Background(), resolver.Server(dns.Addr, 0), Domain{Name: "example.com", MX: "mail.example.com"})
	f = statuses(fs)["_dmarc.example.com. TXT"]
	if f.Status != OK || !strings.Contains(f.Detail, "p=none") {
		t.Errorf("p=none: %+v", f)
	}
}

// TestRetiredKeyRecord: a retired key's record stays, marked, while mail
// it signed may still be on its way, and goes afterwards; DKIMRecords
// (what dkim keygen prints) gives the lines Records has.
func TestRetiredKeyRecord(t *testing.T) {
	d := testDomain(t)
	retired := old.Retired
	selectors := func(now time.Time, keep time.Duration) (sels []string, comments []string) {
		t.Helper()
		d.Now, d.KeepRetired = now, keep
		recs, err := Records(d)
		if err != nil {
			t.Fatal(err)
		}
		var lines []string
		for _, r := range recs {
			if r.kind == kindDKIM {
				sels = append(sels, strings.SplitN(r.Name, ".", 2)[0])
				comments = append(comments, r.Comment)
				lines = append(lines, r.String())
			}
		}
		only, err := DKIMRecords("example.com", d.Keys, now, keep, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range only {
			got = append(got, r.String())
		}
		if strings.Join(got, "\n") != strings.Join(lines, "\n") {
			t.Errorf("DKIMRecords:\n%s\nRecords' DKIM lines:\n%s", strings.Join(got, "\n"), strings.Join(lines, "\n"))
		}
		return sels, comments
	}
	sels, comments := selectors(retired.Add(3*24*time.Hour), 0)
	if strings.Join(sels, " ") != "20260315e 20260315r 20250101e" {
		t.Fatalf("three days after the retirement: records of %v, want both active keys and the retired one", sels)
	}
	if c := comments[2]; !strings.Contains(c, "retired 2026-03-15") || !strings.Contains(c, "until 2026-03-22") {
		t.Errorf("the retired key's comment %q does not say it is retired and until when to keep it", c)
	}
	if strings.Contains(comments[0], "retired") {
		t.Errorf("an active key's comment says retired: %q", comments[0])
	}
	if sels, _ := selectors(retired.Add(8*24*time.Hour), 0); strings.Join(sels, " ") != "20260315e 20260315r" {
		t.Errorf("eight days after the retirement: records of %v, want the active keys only", sels)
	}
	if sels, _ := selectors(retired.Add(8*24*time.Hour), 10*24*time.Hour); len(sels) != 3 {
		t.Errorf("eight days after the retirement, kept ten: records of %v, want the retired one too", sels)
	}
}
