package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// TestDomainRecordsAndCheck: 'domain records' prints zone-file lines that
// read back (miekg/dns) as every record the domain needs, with the
// configured ports and the id of the MTA-STS policy served; published in
// a DNS server, 'domain check' finds them all (exit 0); a record removed
// or wrong is named (exit 1); a lookup that fails is exit 75.
func TestDomainRecordsAndCheck(t *testing.T) {
	zone := testlib.StartDNS(t, "mail.example.test. 60 IN A 127.0.0.1")
	in := newInstance(t, "")
	// Standard ports (the server is not started), HTTP on 80 and 443.
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "mail.example.test"
[submission]
tls_listen = [":465"]
[http]
listen = [":80"]
tls_listen = [":443"]
[mta_sts]
mode = "enforce"
[queue]
dns_server = %q
`, filepath.Join(in.dir, "data"), zone.Addr)
	if err := os.WriteFile(in.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in.must("", "domain", "add", "example.test")
	if r := in.run("", "domain", "records", "example.org"); r.code != 1 || !strings.Contains(r.stderr, "no domain example.org") {
		t.Errorf("records of a domain that is not here: exit %d %q", r.code, r.stderr)
	}
	out := in.must("", "domain", "records", "example.test")

	// Every line reads back as a record; comments say what each is for.
	zp := dns.NewZoneParser(strings.NewReader(out), "", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("domain records output is not a zone: %v\n%s", err, out)
	}
	if c := strings.Count(out, "\n; "); c < len(rrs) {
		t.Errorf("%d comments for %d records", c, len(rrs))
	}
	got := map[string][]string{}
	for _, rr := range rrs {
		h := rr.Header()
		key := h.Name + " " + dns.TypeToString[h.Rrtype]
		got[key] = append(got[key], strings.TrimPrefix(rr.String(), h.String()))
	}
	policy := &mtasts.Policy{Mode: mtasts.Enforce, MX: []string{"mail.example.test"}, MaxAge: 7 * 24 * 3600 * 1e9}
	for key, want := range map[string]string{
		"example.test. MX":                     "10 mail.example.test.",
		"example.test. TXT":                    `"v=spf1 mx -all"`,
		"mail.example.test. TXT":               `"v=spf1 a -all"`,
		"_dmarc.example.test. TXT":             `"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"`,
		"_submissions._tcp.example.test. SRV":  "0 1 465 mail.example.test.",
		"_submission._tcp.example.test. SRV":   "10 1 587 mail.example.test.",
		"_pop3s._tcp.example.test. SRV":        "0 1 995 mail.example.test.",
		"_pop3._tcp.example.test. SRV":         "10 1 110 mail.example.test.",
		"_imaps._tcp.example.test. SRV":        "0 0 0 .",
		"_imap._tcp.example.test. SRV":         "0 0 0 .",
		"_mta-sts.example.test. TXT":           `"v=STSv1; id=` + policy.ID() + `"`,
		"mta-sts.example.test. CNAME":          "mail.example.test.",
		"_smtp._tls.example.test. TXT":         `"v=TLSRPTv1; rua=mailto:postmaster@example.test"`,
		"autoconfig.example.test. CNAME":       "mail.example.test.",
		"autodiscover.example.test. CNAME":     "mail.example.test.",
		"_autodiscover._tcp.example.test. SRV": "0 1 443 mail.example.test.",
	} {
		if !slices.Equal(got[key], []string{want}) {
			t.Errorf("%s = %q, want %q", key, got[key], want)
		}
		delete(got, key)
	}
	if len(got) != 0 {
		t.Errorf("records not expected: %v", got)
	}

	// Published as printed: everything checks out.
	for _, rr := range rrs {
		zone.Add(t, rr.String())
	}
	r := in.run("", "domain", "check", "example.test")
	if r.code != 0 || !strings.Contains(r.stdout, "example.test: every record is published") || strings.Contains(r.stdout, "missing") {
		t.Fatalf("domain check of a complete zone: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, rr := range rrs {
		if !strings.Contains(r.stdout, "ok       "+rr.Header().Name+" "+dns.TypeToString[rr.Header().Rrtype]) {
			t.Errorf("domain check does not list %s as ok", rr.Header().Name)
		}
	}

	// DMARC gone, submission on another port: both named, exit 1.
	zone.Remove("_dmarc.example.test.", dns.TypeTXT)
	zone.Remove("_submission._tcp.example.test.", dns.TypeSRV)
	zone.Add(t, "_submission._tcp.example.test. 60 IN SRV 0 1 2525 mail.example.test.")
	r = in.run("", "domain", "check", "example.test")
	if r.code != 1 || !strings.Contains(r.stdout, "missing  _dmarc.example.test. TXT") ||
		!strings.Contains(r.stdout, "wrong    _submission._tcp.example.test. SRV") || !strings.Contains(r.stdout, "found: 0 1 2525 mail.example.test.") ||
		!strings.Contains(r.stderr, "2 records missing or wrong") {
		t.Errorf("domain check with two problems: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	// A lookup that fails (SERVFAIL) is a temporary failure when nothing
	// else is wrong.
	zone.Add(t, `_dmarc.example.test. 60 IN TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"`)
	zone.Remove("_submission._tcp.example.test.", dns.TypeSRV)
	zone.Add(t, "_submission._tcp.example.test. 60 IN SRV 10 1 587 mail.example.test.")
	zone.ServFail("_smtp._tls.example.test.")
	r = in.run("", "domain", "check", "example.test")
	if r.code != 75 || !strings.Contains(r.stdout, "error    _smtp._tls.example.test. TXT") {
		t.Errorf("domain check with a failing lookup: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
