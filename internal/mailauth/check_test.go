package mailauth

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/authres"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The addresses of the tests: a legitimate sender's and an attacker's.
var (
	goodIP = net.ParseIP("192.0.2.1")
	evilIP = net.ParseIP("198.51.100.7")
)

// authDNS starts a DNS server with the SPF, DKIM and DMARC records the
// checks below need.
func authDNS(t testing.TB) *testlib.DNS {
	t.Helper()
	rk, ek := testKeys(t)
	d := keyDNS(t, rk, ek)
	d.Add(t,
		// SPF (RFC 7208).
		`example.org. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`example.org. 60 IN A 192.0.2.1`,
		`softfail.test. 60 IN TXT "v=spf1 ip4:192.0.2.1 ~all"`,
		`neutral.test. 60 IN TXT "v=spf1 ?all"`,
		`broken.test. 60 IN TXT "v=spf1 ip4:192.0.2.300 -all"`,
		`twice.test. 60 IN TXT "v=spf1 -all"`,
		`twice.test. 60 IN TXT "v=spf1 +all"`,
		`nospf.test. 60 IN A 192.0.2.9`,
		`mx.example.org. 60 IN A 192.0.2.1`,
		`mx.example.org. 60 IN TXT "v=spf1 a -all"`,
		`mail.example.org. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		// DMARC (RFC 7489).
		`_dmarc.example.org. 60 IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"`,
		`_dmarc.example.org. 60 IN TXT "not a dmarc record"`,
		`bigmail.test. 60 IN TXT "v=spf1 ip4:203.0.113.5 -all"`,
		`_dmarc.bigmail.test. 60 IN TXT "v=DMARC1; p=reject"`,
		`evil.test. 60 IN TXT "v=spf1 ip4:198.51.100.7 -all"`,
		`quar.test. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.quar.test. 60 IN TXT "v=DMARC1; p=quarantine"`,
		`parent.test. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.parent.test. 60 IN TXT "v=DMARC1; p=none; sp=reject"`,
		`strict.test. 60 IN TXT "v=spf1 -all"`,
		`mail.strict.test. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.strict.test. 60 IN TXT "v=DMARC1; p=reject; aspf=s; adkim=s"`,
		`pct.test. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.pct.test. 60 IN TXT "v=DMARC1; p=reject; pct=50"`,
		`nodmarc.test. 60 IN TXT "v=spf1 -all"`,
		`_dmarc.badrec.test. 60 IN TXT "v=DMARC1; p=bogus"`,
		`_dmarc.multi.test. 60 IN TXT "v=DMARC1; p=none"`,
		`_dmarc.multi.test. 60 IN TXT "v=DMARC1; p=reject"`,
	)
	d.ServFail("tempfail.test.")
	d.ServFail("_dmarc.tempdmarc.test.")
	return d
}

func TestCheckSPF(t *testing.T) {
	d := authDNS(t)
	r := resolver.Server(d.Addr, 0)
	ctx := context.Background()
	for _, tc := range []struct {
		name           string
		ip             net.IP
		helo, mailFrom string
		want, domain   string
	}{
		{"pass", goodIP, "mx.example.org", "alice@example.org", ResultPass, "example.org"},
		{"fail", evilIP, "mx.evil.test", "alice@example.org", ResultFail, "example.org"},
		{"softfail", evilIP, "x", "a@softfail.test", ResultSoftFail, "softfail.test"},
		{"neutral", evilIP, "x", "a@neutral.test", ResultNeutral, "neutral.test"},
		{"none without a record", evilIP, "x", "a@nospf.test", ResultNone, "nospf.test"},
		{"none for a missing domain", evilIP, "x", "a@missing.test", ResultNone, "missing.test"},
		{"temperror on SERVFAIL", evilIP, "x", "a@tempfail.test", ResultTempError, "tempfail.test"},
		{"permerror for a bad record", evilIP, "x", "a@broken.test", ResultPermError, "broken.test"},
		{"permerror for two records", evilIP, "x", "a@twice.test", ResultPermError, "twice.test"},
		{"case and IDNA", goodIP, "x", "Alice@EXAMPLE.org", ResultPass, "example.org"},
		// RFC 7208 section 2.4: the null reverse path checks the HELO
		// domain as postmaster@helo.
		{"null sender uses HELO", goodIP, "mx.example.org", "", ResultPass, "mx.example.org"},
		{"null sender, HELO fails", evilIP, "mx.example.org", "<>", ResultFail, "mx.example.org"},
		{"null sender, address literal", evilIP, "[198.51.100.7]", "", ResultNone, "[198.51.100.7]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := CheckSPF(ctx, r, tc.ip, tc.helo, tc.mailFrom)
			if res.Result != tc.want || res.Domain != tc.domain || res.Identity != IdentityMailFrom {
				t.Errorf("CheckSPF = %+v, want %s for %s", res, tc.want, tc.domain)
			}
		})
	}
	// The HELO identity on its own (RFC 7208 section 2.3).
	if res := CheckHELO(ctx, r, goodIP, "mx.example.org"); res.Result != ResultPass || res.Identity != IdentityHELO || res.Sender != "postmaster@mx.example.org" {
		t.Errorf("HELO pass: %+v", res)
	}
	if res := CheckHELO(ctx, r, evilIP, "mx.example.org"); res.Result != ResultFail {
		t.Errorf("HELO fail: %+v", res)
	}
	if res := CheckHELO(ctx, r, evilIP, "localhost"); res.Result != ResultNone {
		t.Errorf("single-label HELO: %+v, want none (RFC 7208 section 4.3)", res)
	}
}

func TestOrganizationalDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.org":            "example.org",
		"a.b.example.org":        "example.org",
		"mail.example.co.uk":     "example.co.uk",
		"Example.COM.":           "example.com",
		"co.uk":                  "co.uk",
		"x.y.xn--bcher-kva.test": "xn--bcher-kva.test",
	} {
		if got := OrganizationalDomain(in); got != want {
			t.Errorf("OrganizationalDomain(%q) = %q, want %q", in, got, want)
		}
	}
}

// message returns a test message from author, signed with the keys of
// example.org when sign is set.
func message(t *testing.T, from string, sign bool) string {
	t.Helper()
	msg := "From: " + from + "\r\nTo: bob@example.net\r\nSubject: hello\r\nMessage-ID: <x@y>\r\n\r\nHello.\r\n"
	if sign {
		rk, ek := testKeys(t)
		return signedWith(t, []Key{rk, ek}, msg)
	}
	return msg
}

func TestCheckDMARC(t *testing.T) {
	d := authDNS(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name        string
		env         Envelope
		from        string
		signed      bool
		sample      int // what Sample returns
		rejectAs    Action
		dmarc       string
		disposition Disposition
		action      Action
		record      string // where the policy came from
	}{
		{name: "pass by SPF and DKIM",
			env:  Envelope{goodIP, "mx.example.org", "alice@example.org"},
			from: "alice@example.org", signed: true,
			dmarc: ResultPass, disposition: DispositionNone, action: Accept, record: "example.org"},
		// A forwarded message: SPF fails for the forwarder's address, the
		// aligned signature carries it (RFC 7489 section 6.6.2).
		{name: "pass by DKIM alone",
			env:  Envelope{evilIP, "forwarder.test", "alice@example.org"},
			from: "alice@example.org", signed: true,
			dmarc: ResultPass, disposition: DispositionNone, action: Accept, record: "example.org"},
		// Relaxed SPF alignment: mail.example.org aligns with example.org.
		{name: "pass by relaxed SPF alignment",
			env:   Envelope{goodIP, "mx.example.org", "bounce@mail.example.org"},
			from:  "alice@example.org",
			dmarc: ResultPass, disposition: DispositionNone, action: Accept, record: "example.org"},
		// The forged author: SPF passes, for the attacker's own domain,
		// which does not align with the p=reject author domain.
		{name: "forged From of a p=reject domain",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "Big Mail Support <someone@bigmail.test>",
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "bigmail.test"},
		{name: "forged, site quarantines instead",
			env:  Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from: "someone@bigmail.test", rejectAs: Quarantine,
			dmarc: ResultFail, disposition: DispositionReject, action: Quarantine, record: "bigmail.test"},
		{name: "p=quarantine",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@quar.test",
			dmarc: ResultFail, disposition: DispositionQuarantine, action: Quarantine, record: "quar.test"},
		// Section 6.6.3: no record at the subdomain, the organizational
		// domain's sp= applies.
		{name: "subdomain policy of the organizational domain",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@news.parent.test",
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "parent.test"},
		{name: "p=none at the domain itself",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@parent.test",
			dmarc: ResultFail, disposition: DispositionNone, action: Accept, record: "parent.test"},
		// Strict alignment: mail.strict.test passes SPF but is not
		// strict.test.
		{name: "strict SPF alignment",
			env:   Envelope{goodIP, "mx.example.org", "bounce@mail.strict.test"},
			from:  "x@strict.test",
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "strict.test"},
		// Section 6.6.4: inside the pct= sample the policy applies,
		// outside it the next milder one.
		{name: "pct sample in",
			env:  Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from: "x@pct.test", sample: 49,
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "pct.test"},
		{name: "pct sample out",
			env:  Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from: "x@pct.test", sample: 50,
			dmarc: ResultFail, disposition: DispositionQuarantine, action: Quarantine, record: "pct.test"},
		{name: "no record",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@nodmarc.test",
			dmarc: ResultNone, disposition: DispositionNone, action: Accept},
		{name: "bad record",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@badrec.test",
			dmarc: ResultPermError, disposition: DispositionNone, action: Accept, record: "badrec.test"},
		{name: "two records",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@multi.test",
			dmarc: ResultPermError, disposition: DispositionNone, action: Accept, record: "multi.test"},
		{name: "record lookup fails",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "x@tempdmarc.test",
			dmarc: ResultTempError, disposition: DispositionNone, action: Accept},
		// An SPF temperror for an unaligned domain changes nothing.
		{name: "unaligned SPF temperror",
			env:   Envelope{evilIP, "mx.evil.test", "x@tempfail.test"},
			from:  "x@bigmail.test",
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "bigmail.test"},
		// A From field that does not parse as an address list still has
		// its domains checked.
		{name: "unparsable From",
			env:   Envelope{evilIP, "mx.evil.test", "attacker@evil.test"},
			from:  "PayPal <service@bigmail.test>,,, <",
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "bigmail.test"},
		// RFC 7489 section 6.6.1: each author domain; the strictest
		// failing policy wins.
		{name: "two authors, one forged",
			env:   Envelope{goodIP, "mx.example.org", "alice@example.org"},
			from:  "alice@example.org, someone@bigmail.test",
			dmarc: ResultFail, disposition: DispositionReject, action: Reject, record: "bigmail.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &Checker{Resolver: resolver.Server(d.Addr, 0), AuthServID: "mx.postoffice.test",
				RejectAs: tc.rejectAs, Sample: func() int { return tc.sample }}
			v, err := c.Check(ctx, tc.env, nil, strings.NewReader(message(t, tc.from, tc.signed)))
			if err != nil {
				t.Fatal(err)
			}
			if v.DMARC.Result != tc.dmarc || v.DMARC.Disposition != tc.disposition || v.Action != tc.action || v.DMARC.RecordDomain != tc.record {
				t.Errorf("DMARC %+v, action %s; want %s, disposition %s, action %s, record at %q",
					v.DMARC, v.Action, tc.dmarc, tc.disposition, tc.action, tc.record)
			}
			if tc.action == Reject {
				if v.Reply.Code != 550 || v.Reply.Status != "5.7.1" || !strings.Contains(v.Reply.Text, "DMARC") {
					t.Errorf("reply %v, want 550 5.7.1 naming DMARC", v.Reply)
				}
			} else if v.Reply.Code != 0 {
				t.Errorf("reply %v for %s", v.Reply, v.Action)
			}
			checkAuthResults(t, v.AuthResults)
		})
	}
}

// The aligned-temperror rule, on its own: the SPF of the author domain
// could not be checked, nothing else passed: temperror, delivered.
func TestDMARCAlignedTempError(t *testing.T) {
	d := testlib.StartDNS(t, `_dmarc.tempfail.test. 60 IN TXT "v=DMARC1; p=reject"`)
	r := resolver.Server(d.Addr, 0)
	spf := SPFResult{Result: ResultTempError, Domain: "tempfail.test"}
	res := EvaluateDMARC(context.Background(), r, "tempfail.test", spf, nil, nil)
	if res.Result != ResultTempError || res.Disposition != DispositionNone {
		t.Errorf("aligned SPF temperror: %+v, want temperror and no disposition", res)
	}
	dk := []DKIMResult{{Result: ResultTempError, Domain: "tempfail.test"}}
	res = EvaluateDMARC(context.Background(), r, "tempfail.test", SPFResult{Result: ResultFail, Domain: "tempfail.test"}, dk, nil)
	if res.Result != ResultTempError {
		t.Errorf("aligned DKIM temperror: %+v", res)
	}
	// An unaligned temperror does not count.
	dk[0].Domain = "other.test"
	res = EvaluateDMARC(context.Background(), r, "tempfail.test", SPFResult{Result: ResultFail, Domain: "tempfail.test"}, dk, func() int { return 0 })
	if res.Result != ResultFail || res.Disposition != DispositionReject {
		t.Errorf("unaligned temperror: %+v, want fail", res)
	}
}

// checkAuthResults parses the field with go-msgauth's parser, an
// independent reading of RFC 8601's syntax.
func checkAuthResults(t *testing.T, field string) {
	t.Helper()
	name, value, ok := strings.Cut(field, ":")
	if !ok || name != "Authentication-Results" || !strings.HasSuffix(value, "\r\n") {
		t.Fatalf("not a field: %q", field)
	}
	for _, line := range strings.Split(strings.TrimSuffix(field, "\r\n"), "\r\n")[1:] {
		if !strings.HasPrefix(line, "\t") {
			t.Errorf("continuation line without white space: %q", line)
		}
	}
	id, results, err := authres.Parse(strings.ReplaceAll(strings.TrimSpace(value), "\r\n", ""))
	if err != nil {
		t.Fatalf("Authentication-Results does not parse: %v\n%s", err, field)
	}
	if id != "mx.postoffice.test" || len(results) == 0 {
		t.Errorf("authserv-id %q, %d results", id, len(results))
	}
}

func TestAuthResultsField(t *testing.T) {
	d := authDNS(t)
	c := &Checker{Resolver: resolver.Server(d.Addr, 0), AuthServID: "mx.postoffice.test"}
	v, err := c.Check(context.Background(), Envelope{goodIP, "mx.example.org", "alice@example.org"}, nil,
		strings.NewReader(message(t, "alice@example.org", true)))
	if err != nil {
		t.Fatal(err)
	}
	checkAuthResults(t, v.AuthResults)
	_, results, _ := authres.Parse(strings.ReplaceAll(strings.TrimPrefix(v.AuthResults, "Authentication-Results:"), "\r\n", ""))
	var spfFrom, spfHelo, dkim, dmarc int
	for _, r := range results {
		switch r := r.(type) {
		case *authres.SPFResult:
			if r.Value != authres.ResultPass {
				t.Errorf("spf %+v", r)
			}
			if r.From == "alice@example.org" {
				spfFrom++
			}
			if r.Helo == "mx.example.org" {
				spfHelo++
			}
		case *authres.DKIMResult:
			if r.Value != authres.ResultPass || r.Domain != "example.org" || r.Identifier != "@example.org" {
				t.Errorf("dkim %+v", r)
			}
			dkim++
		case *authres.DMARCResult:
			if r.Value != authres.ResultPass || r.From != "example.org" {
				t.Errorf("dmarc %+v", r)
			}
			dmarc++
		}
	}
	if spfFrom != 1 || spfHelo != 1 || dkim != 2 || dmarc != 1 {
		t.Errorf("results: %d spf mailfrom, %d spf helo, %d dkim, %d dmarc in\n%s", spfFrom, spfHelo, dkim, dmarc, v.AuthResults)
	}
	for _, want := range []string{"header.s=20260315e", "header.s=20260315r", "header.a=ed25519-sha256", "header.b=", "dmarc=pass (p=reject dis=NONE)"} {
		if !strings.Contains(v.AuthResults, want) {
			t.Errorf("field lacks %q:\n%s", want, v.AuthResults)
		}
	}

	// A failure carries its reason, quoted as a value needs.
	v, _ = c.Check(context.Background(), Envelope{evilIP, "mx.evil.test", "attacker@evil.test"}, nil,
		strings.NewReader(message(t, "someone@bigmail.test", false)))
	checkAuthResults(t, v.AuthResults)
	if !strings.Contains(v.AuthResults, `dmarc=fail (p=reject dis=REJECT) reason="no aligned SPF or DKIM pass" header.from=bigmail.test`) ||
		!strings.Contains(v.AuthResults, "dkim=none") {
		t.Errorf("failure field:\n%s", v.AuthResults)
	}

	// Submission: auth=pass with the user.
	f := AuthResultsSubmission("mx.postoffice.test", "alice@example.org")
	if f != "Authentication-Results: mx.postoffice.test;\r\n\tauth=pass smtp.auth=alice@example.org\r\n" {
		t.Errorf("submission field %q", f)
	}
	checkAuthResults(t, f)
}

// SPF results from MAIL time are used, not checked again.
func TestCheckUsesGivenSPF(t *testing.T) {
	d := authDNS(t)
	c := &Checker{Resolver: resolver.Server(d.Addr, 0), AuthServID: "mx.postoffice.test"}
	env := Envelope{evilIP, "mx.evil.test", "alice@example.org"}
	spf := c.SPF(context.Background(), env)
	if spf.MailFrom.Result != ResultFail {
		t.Fatalf("SPF %+v", spf)
	}
	spf.MailFrom.Result = ResultPass // as if it had passed at MAIL time
	v, err := c.Check(context.Background(), env, &spf, strings.NewReader(message(t, "alice@example.org", false)))
	if err != nil {
		t.Fatal(err)
	}
	if v.SPF.MailFrom.Result != ResultPass || v.DMARC.Result != ResultPass {
		t.Errorf("given SPF ignored: %+v %+v", v.SPF, v.DMARC)
	}
}

func TestCheckNoFrom(t *testing.T) {
	d := authDNS(t)
	c := &Checker{Resolver: resolver.Server(d.Addr, 0), AuthServID: "mx.postoffice.test"}
	for _, msg := range []string{"To: x@y\r\n\r\nbody\r\n", "From: undisclosed\r\n\r\nbody\r\n"} {
		v, err := c.Check(context.Background(), Envelope{evilIP, "x.test", ""}, nil, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		if v.DMARC.Result != ResultNone || v.Action != Accept {
			t.Errorf("%q: %+v %s", msg, v.DMARC, v.Action)
		}
		checkAuthResults(t, v.AuthResults)
	}
}
