package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// dkimZone publishes the records that 'dkim keygen' printed (zone-file
// lines) in the test's DNS server and returns the selectors by key type.
func dkimZone(t *testing.T, zone *testlib.DNS, out string) map[string]string {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(out), "", "")
	sels := map[string]string{}
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		txt, isTXT := rr.(*dns.TXT)
		if !isTXT || !strings.Contains(rr.Header().Name, "._domainkey.") {
			t.Fatalf("dkim keygen printed a record that is no DKIM key record: %s", rr)
		}
		zone.Add(t, rr.String())
		v := strings.Join(txt.Txt, "")
		for _, alg := range []string{"ed25519", "rsa"} {
			if strings.Contains(v, "k="+alg+";") {
				sels[alg] = strings.SplitN(rr.Header().Name, ".", 2)[0]
			}
		}
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("dkim keygen output is not a zone: %v\n%s", err, out)
	}
	return sels
}

var dkimSigRE = regexp.MustCompile(`(?m)^DKIM-Signature:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*`)

// dkimSignatures returns the selectors and algorithms (a=) of msg's
// DKIM-Signature fields, topmost first, and checks each with python3-dkim
// against the DNS server.
func dkimSignatures(t *testing.T, dnsAddr, what, msg string) []string {
	t.Helper()
	fields := dkimSigRE.FindAllString(msg, -1)
	var out []string
	for i, f := range fields {
		unfolded := strings.Join(strings.Fields(f), "")
		s := regexp.MustCompile(`[:;]s=([^;]+)`).FindStringSubmatch(unfolded)
		a := regexp.MustCompile(`[:;]a=([^;]+)`).FindStringSubmatch(unfolded)
		if s == nil || a == nil {
			t.Fatalf("%s: signature %d has no s= or a=: %s", what, i, f)
		}
		ok, verdict := testlib.DKIMVerify(t, dnsAddr, []byte(msg), i)
		if !ok {
			t.Errorf("%s: python3-dkim does not verify signature %d (s=%s): %s\n%s", what, i, s[1], verdict, msg)
		}
		out = append(out, s[1]+" "+a[1])
	}
	return out
}

const dkimMsg = "From: Alice <alice@example.test>\r\nTo: carol@remote.test, bob@example.test\r\n" +
	"Subject: signed %d\r\nMessage-ID: <dkim%d@example.test>\r\nDate: Sun, 06 Dec 2026 11:00:00 +0000\r\n\r\nHello,\r\n\r\nthis is signed.\r\n"

// TestDKIMSigning is point 1 of issue 18 with the real binary: 'dkim
// keygen' prints the records, which a DNS server serves; mail submitted
// by an authenticated user reaches a remote host through the queue and a
// local mailbox (fetched over POP3) each with an Ed25519 and an RSA
// signature that python3-dkim verifies against that DNS; 'dkim retire'
// stops a key signing at once while 'domain records' still lists its
// record, marked; the journal and /metrics count the signatures.
func TestDKIMSigning(t *testing.T) {
	needFrom(t, "python3-dkim", "dkimverify")
	sink := testlib.StartSMTPSink(t, testlib.SinkOptions{})
	zone := testlib.StartDNS(t,
		"remote.test. 60 IN MX 10 mx.remote.test.",
		"mx.remote.test. 60 IN A 127.0.0.1",
	)
	in := newInstanceWith(t, map[string]string{
		"hostname": "mail.example.test",
		"queue":    fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\n", zone.Addr, sink.Port()),
	})
	in.addUser("alice@example.test", "pw-alice")
	in.addUser("bob@example.test", "pw-bob")
	if r := in.run("", "dkim", "keygen", "nowhere.test"); r.code != 1 || !strings.Contains(r.stderr, "no domain nowhere.test") {
		t.Errorf("keygen for a domain that is not here: exit %d %q", r.code, r.stderr)
	}
	sels := dkimZone(t, zone, in.must("", "dkim", "keygen", "example.test"))
	if sels["ed25519"] == "" || sels["rsa"] == "" {
		t.Fatalf("dkim keygen made keys %v, want an ed25519 and an rsa one", sels)
	}
	in.start()

	submit(t, in, "alice@example.test", "pw-alice", []string{"carol@remote.test", "bob@example.test"}, fmt.Sprintf(dkimMsg, 1, 1))
	waitFor(t, "the remote delivery", func() bool { return len(sink.Txns()) == 1 })
	remote := string(sink.Txns()[0].Data)
	want := []string{sels["ed25519"] + " ed25519-sha256", sels["rsa"] + " rsa-sha256"}
	if got := dkimSignatures(t, zone.Addr, "remote copy", remote); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the remote copy is signed %v, want %v (each key once)", got, want)
	}
	local := retrieveAll(t, in, "bob@example.test", "pw-bob")
	if len(local) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(local))
	}
	if got := dkimSignatures(t, zone.Addr, "local copy", local[0]); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("the local copy is signed %v, want %v", got, want)
	}

	// Rotation: the Ed25519 key retires and signs no more at once (serve
	// is told); its record is still among the domain's records, marked.
	out := in.must("", "dkim", "retire", "example.test", sels["ed25519"])
	if !strings.Contains(out, "keep its record "+sels["ed25519"]+"._domainkey.example.test published until") {
		t.Errorf("dkim retire says:\n%s", out)
	}
	submit(t, in, "alice@example.test", "pw-alice", []string{"carol@remote.test"}, fmt.Sprintf(dkimMsg, 2, 2))
	waitFor(t, "the second remote delivery", func() bool { return len(sink.Txns()) == 2 })
	if got := dkimSignatures(t, zone.Addr, "after the retirement", string(sink.Txns()[1].Data)); strings.Join(got, ",") != sels["rsa"]+" rsa-sha256" {
		t.Errorf("after retiring %s the message is signed %v, want by %s alone", sels["ed25519"], got, sels["rsa"])
	}
	records := in.must("", "domain", "records", "example.test")
	if !strings.Contains(records, "DKIM key "+sels["ed25519"]+" (ed25519), retired") ||
		!strings.Contains(records, sels["ed25519"]+"._domainkey.example.test.") ||
		!strings.Contains(records, sels["rsa"]+"._domainkey.example.test.") ||
		!strings.Contains(records, "_dmarc.example.test.") {
		t.Errorf("domain records lacks the keys (the retired one marked) or DMARC:\n%s", records)
	}
	list := in.must("", "dkim", "list")
	if !regexp.MustCompile(sels["rsa"]+`\s+rsa\s+\S+\s+active`).MatchString(list) ||
		!regexp.MustCompile(sels["ed25519"]+`\s+ed25519\s+\S+\s+retired`).MatchString(list) {
		t.Errorf("dkim list:\n%s", list)
	}
	// domain check finds the key records published (the rest is not).
	check := in.run("", "domain", "check", "example.test")
	for _, sel := range []string{sels["rsa"], sels["ed25519"]} {
		if !regexp.MustCompile(`(?m)^ok\s+` + sel + `\._domainkey\.example\.test\. TXT`).MatchString(check.stdout) {
			t.Errorf("domain check does not find %s published:\n%s", sel, check.stdout)
		}
	}

	if j := in.journal(func(j string) bool { return strings.Count(j, "dkim-signed d=example.test") == 2 }, "--grep", "dkim-signed"); strings.Count(j, "dkim-signed d=example.test") != 2 {
		t.Errorf("the journal has not both signed messages:\n%s", j)
	}
	resp, err := http.Get("http://" + in.addr("admin") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `postoffice_dkim_signed_total{domain="example.test",result="ok"} 2`) {
		t.Errorf("/metrics does not count the two signed messages:\n%s", grepLines(string(metrics), "dkim"))
	}
}

// TestDKIMClusterSigning: keys made once, with one node's configuration,
// sign on both nodes of a PostgreSQL cluster.
func TestDKIMClusterSigning(t *testing.T) {
	needFrom(t, "python3-dkim", "dkimverify")
	_, dsn := pgtest.Schema(t)
	sink := testlib.StartSMTPSink(t, testlib.SinkOptions{})
	zone := testlib.StartDNS(t,
		"remote.test. 60 IN MX 10 mx.remote.test.",
		"mx.remote.test. 60 IN A 127.0.0.1",
	)
	queue := fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\n", zone.Addr, sink.Port())
	a := newNode(t, dsn, "node-a", queue)
	b := newNode(t, dsn, "node-b", queue)
	a.addUser("alice@example.test", "pw-alice")
	a.start()
	b.start()
	// Made while both run, with node A's configuration: B reads them
	// from the store within its cache's minute, or at once when a
	// message is its first.
	sels := dkimZone(t, zone, a.must("", "dkim", "keygen", "example.test"))
	want := sels["ed25519"] + " ed25519-sha256," + sels["rsa"] + " rsa-sha256"
	for i, in := range []*instance{a, b} {
		submit(t, in, "alice@example.test", "pw-alice", []string{"carol@remote.test"},
			strings.Replace(fmt.Sprintf(dkimMsg, i, i), "To: carol@remote.test, bob@example.test", "To: carol@remote.test", 1))
	}
	waitFor(t, "both deliveries", func() bool { return len(sink.Txns()) == 2 })
	for _, tx := range sink.Txns() {
		if got := dkimSignatures(t, zone.Addr, "cluster copy", string(tx.Data)); strings.Join(got, ",") != want {
			t.Errorf("a message is signed %v, want %s", got, want)
		}
	}
}
