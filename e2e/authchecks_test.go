package e2e

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// dkimSign signs msg for domain with python3-dkim's dkimsign, an
// independent signer, and returns the signed message.
func dkimSign(t *testing.T, keyFile, selector, domain, msg string) string {
	t.Helper()
	cmd := exec.Command("dkimsign", selector, domain, keyFile)
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dkimsign: %v", err)
	}
	signed := string(out)
	if !strings.HasPrefix(signed, "DKIM-Signature:") {
		t.Fatalf("dkimsign gave %q", signed[:min(len(signed), 200)])
	}
	if !strings.Contains(signed, "\r\n\r\n") {
		// Only the signature field: the message follows.
		signed += msg
	}
	return signed
}

// dkimKey makes an RSA key: the PEM file for dkimsign and the DNS TXT
// record of its public key (RFC 6376 section 3.6.1), in strings of at
// most 255 octets (RFC 1035 section 3.3.14).
func dkimKey(t *testing.T, name string) (keyFile, txt string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}), 0o600); err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	value := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	var parts []string
	for len(value) > 0 {
		n := min(len(value), 200)
		parts = append(parts, `"`+value[:n]+`"`)
		value = value[n:]
	}
	return keyFile, name + " 60 IN TXT " + strings.Join(parts, " ")
}

// authResultsOf returns the Authentication-Results fields of a message's
// header, unfolded.
func authResultsOf(m string) []string {
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	head = strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(head)
	var out []string
	for _, l := range strings.Split(head, "\r\n") {
		if strings.HasPrefix(strings.ToLower(l), "authentication-results:") {
			out = append(out, l)
		}
	}
	return out
}

// TestAuthChecksInbound: mail from other hosts on port 25 is checked
// (SPF at MAIL, DKIM and DMARC at the end of data) against records served
// by a DNS server on loopback, which serve uses as its resolver ([queue]
// dns_server): a DMARC p=reject failure is refused with 550 5.7.1,
// p=quarantine is delivered with X-Spam: yes and the [spam] subject_tag,
// a DNS failure where DMARC would reject is 451 4.4.3; every message
// delivered carries one
// Authentication-Results field of ours on top and none forged with our
// name; an authenticated submission and the deliver command are not
// checked; the journal and /metrics count it all; dmarc_reject =
// "quarantine" set at run time delivers what p=reject would refuse.
func TestAuthChecksInbound(t *testing.T) {
	needFrom(t, "python3-dkim", "dkimsign")
	need(t, "python3")
	goodKey, goodTXT := dkimKey(t, "sel._domainkey.good.test.")
	noneKey, noneTXT := dkimKey(t, "sel._domainkey.none.test.")
	zone := testlib.StartDNS(t,
		// good.test: SPF allows 127.0.0.1, DMARC p=reject, a DKIM key.
		`good.test. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"`,
		`_dmarc.good.test. 60 IN TXT "v=DMARC1; p=reject"`,
		goodTXT,
		// bigmail.test: SPF allows another host only, DMARC p=reject.
		`bigmail.test. 60 IN TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`_dmarc.bigmail.test. 60 IN TXT "v=DMARC1; p=reject"`,
		// quar.test: DMARC p=quarantine, no SPF record.
		`_dmarc.quar.test. 60 IN TXT "v=DMARC1; p=quarantine"`,
		// none.test: a DKIM key, no SPF and no DMARC record.
		`none.test. 60 IN A 192.0.2.9`,
		noneTXT,
		// tf.test: DMARC p=reject, and its subdomain's SPF lookups fail.
		`_dmarc.tf.test. 60 IN TXT "v=DMARC1; p=reject"`,
	)
	zone.ServFail("sub.tf.test.")
	zone.ServFail("down.test.")

	in := newInstanceWith(t, map[string]string{"queue": fmt.Sprintf("dns_server = %q", zone.Addr),
		"tables": "[spam]\nsubject_tag = \"[SPAM]\"\n"})
	for _, u := range []string{"spf", "spffail", "none", "dkim", "dkimfail", "forged", "quar", "ar", "sub", "mda", "temp", "later"} {
		in.addUser(u+"@example.org", "pw")
	}
	in.start()
	mx := in.addr("smtp")

	msgFrom := func(from, subject string) string {
		return "From: " + from + "\r\nTo: someone@example.org\r\nSubject: " + subject + "\r\nMessage-ID: <" + subject + "@test>\r\n\r\nHello.\r\n"
	}
	send := func(mailFrom, rcpt, msg string) smtpResult {
		t.Helper()
		st := time.Now()
		defer func() { t.Logf("send %s %s", rcpt, time.Since(st)) }()
		return sendmail(t, smtpSend{addr: mx, from: mailFrom, to: []string{rcpt}, msg: msg})
	}
	// one returns the only message of a mailbox and its one
	// Authentication-Results field, which must be ours and on top
	// (below the trace fields the router adds).
	one := func(user string) (msg, ar string) {
		t.Helper()
		msgs := retrieveAll(t, in, user+"@example.org", "pw")
		if len(msgs) != 1 {
			t.Fatalf("%s has %d messages, want 1", user, len(msgs))
		}
		ars := authResultsOf(msgs[0])
		ours := 0
		for _, a := range ars {
			if strings.HasPrefix(a, "Authentication-Results: mail.test;") {
				ours++
			}
		}
		if ours != 1 || !strings.HasPrefix(ars[0], "Authentication-Results: mail.test;") {
			t.Fatalf("%s: Authentication-Results fields %q, want one of mail.test, on top", user, ars)
		}
		return msgs[0], ars[0]
	}
	wantIn := func(what, s string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(s, w) {
				t.Errorf("%s lacks %q: %s", what, w, s)
			}
		}
	}
	refused := func(what string, r smtpResult, code int, status string) {
		t.Helper()
		if r.code() != code || len(r.Error) < 2 || !strings.HasPrefix(r.Error[1].(string), status) {
			t.Errorf("%s: %+v, want %d %s", what, r, code, status)
		}
	}

	// SPF pass, aligned: DMARC pass.
	if r := send("a@good.test", "spf@example.org", msgFrom("a@good.test", "spfpass")); r.code() != 250 {
		t.Fatalf("SPF pass: %+v", r)
	}
	// SPF fail with an aligned From of a p=reject domain: refused at the
	// end of data.
	refused("SPF fail", send("a@bigmail.test", "spffail@example.org", msgFrom("a@bigmail.test", "spffail")), 550, "5.7.1")
	// SPF none, DMARC none: delivered.
	if r := send("a@none.test", "none@example.org", msgFrom("a@none.test", "none")); r.code() != 250 {
		t.Fatalf("none: %+v", r)
	}
	// DKIM pass (python3-dkim signed it) aligned with From: DMARC pass
	// although SPF says none for the envelope domain.
	signed := dkimSign(t, goodKey, "sel", "good.test", msgFrom("a@good.test", "dkimpass"))
	if r := send("bounce@none.test", "dkim@example.org", signed); r.code() != 250 {
		t.Fatalf("DKIM pass: %+v", r)
	}
	// DKIM fail: the body changed after signing. Of a p=reject domain:
	// refused; of a domain without DMARC: delivered with dkim=fail.
	altered := strings.Replace(signed, "Hello.", "Hello!", 1)
	refused("DKIM fail, p=reject", send("bounce@none.test", "dkimfail@example.org", altered), 550, "5.7.1")
	noneSigned := strings.Replace(dkimSign(t, noneKey, "sel", "none.test", msgFrom("a@none.test", "dkimfail")), "Hello.", "Hello!", 1)
	if r := send("a@none.test", "dkimfail@example.org", noneSigned); r.code() != 250 {
		t.Fatalf("DKIM fail, no DMARC: %+v", r)
	}
	// The forged author: From someone@bigmail.test from a host bigmail
	// does not authorize.
	refused("forged From", send("x@none.test", "forged@example.org", msgFrom("someone@bigmail.test", "forged")), 550, "5.7.1")
	// p=quarantine: delivered, marked.
	if r := send("x@none.test", "quar@example.org", msgFrom("boss@quar.test", "quar")); r.code() != 250 {
		t.Fatalf("quarantine: %+v", r)
	}
	// Forged Authentication-Results with our authserv-id are removed;
	// another host's stay.
	forgedAR := "Authentication-Results: mail.test; dmarc=pass header.from=bigmail.test\r\n" +
		"Authentication-Results: (comment) \"MAIL.TEST.\"; spf=pass\r\n" +
		"Authentication-Results: other.example; spf=pass smtp.mailfrom=a@good.test\r\n" + msgFrom("a@good.test", "ar")
	if r := send("a@good.test", "ar@example.org", forgedAR); r.code() != 250 {
		t.Fatalf("forged AR: %+v", r)
	}
	// A DNS failure: the SPF of an envelope domain aligned with a p=reject
	// author domain cannot be checked: 451 4.4.3, the sender retries. A
	// DMARC record that cannot be looked up says no policy: delivered
	// with temperror.
	refused("SPF temperror, p=reject", send("a@sub.tf.test", "temp@example.org", msgFrom("a@tf.test", "temp")), 451, "4.4.3")
	if r := send("a@good.test", "temp@example.org", msgFrom("a@down.test", "dmarctemp")); r.code() != 250 {
		t.Fatalf("DMARC temperror: %+v", r)
	}
	// An authenticated submission is not checked: a From of a p=reject
	// domain that the checks would refuse is delivered, with auth=pass
	// only; a forged field of ours is removed there too.
	sub := sendmail(t, smtpSend{addr: in.addr("submission"), starttls: true, user: "spf@example.org", password: "pw",
		from: "spf@example.org", to: []string{"sub@example.org"},
		msg: "Authentication-Results: mail.test; dmarc=pass header.from=bigmail.test\r\n" + msgFrom("someone@bigmail.test", "submitted")})
	if sub.code() != 250 {
		t.Fatalf("submission: %+v", sub)
	}
	// Nor is the deliver command.
	in.deliver("mda@example.org", msgFrom("someone@bigmail.test", "mda"))

	_, ar := one("spf")
	wantIn("SPF pass", ar, "spf=pass smtp.mailfrom=a@good.test", "dkim=none", "dmarc=pass", "header.from=good.test")
	_, ar = one("none")
	wantIn("none", ar, "spf=none", "dkim=none", "dmarc=none")
	_, ar = one("dkim")
	wantIn("DKIM pass", ar, "dkim=pass", "header.d=good.test", "header.s=sel", "dmarc=pass")
	_, ar = one("dkimfail")
	wantIn("DKIM fail", ar, "dkim=fail", "header.d=none.test", "dmarc=none")
	m, ar := one("quar")
	wantIn("quarantine", ar, "dmarc=fail", "p=quarantine", "header.from=quar.test")
	if !strings.Contains(m, "\r\nX-Spam: yes\r\n") || !strings.Contains(m, "\r\nSubject: [SPAM] quar\r\n") {
		t.Errorf("quarantined message not marked (X-Spam, [spam] subject_tag):\n%s", m)
	}
	m, ar = one("ar")
	wantIn("forged AR", ar, "spf=pass", "dmarc=pass", "header.from=good.test")
	if !strings.Contains(m, "Authentication-Results: other.example; spf=pass") || strings.Contains(m, "header.from=bigmail.test") || strings.Contains(m, `"MAIL.TEST."`) {
		t.Errorf("forged Authentication-Results kept, or another host's dropped:\n%s", m)
	}
	if _, ar = one("temp"); !strings.Contains(ar, "dmarc=temperror") {
		t.Errorf("DMARC temperror: %s", ar)
	}
	m, ar = one("sub")
	if want := "Authentication-Results: mail.test; auth=pass smtp.auth=spf@example.org"; ar != want || strings.Contains(m, "X-Spam") || strings.Contains(m, "dmarc=") {
		t.Errorf("submission: %q, want %q; message:\n%s", ar, want, m)
	}
	for _, u := range []string{"spffail", "forged", "mda"} {
		msgs := retrieveAll(t, in, u+"@example.org", "pw")
		switch {
		case u == "spffail" || u == "forged":
			if len(msgs) != 0 {
				t.Errorf("%s: %d messages delivered, want the refusal", u, len(msgs))
			}
		case len(msgs) != 1:
			t.Errorf("%s: %d messages, want 1", u, len(msgs))
		default:
			if ars := authResultsOf(msgs[0]); len(ars) != 0 || strings.Contains(msgs[0], "X-Spam") {
				t.Errorf("%s was checked: %q", u, ars)
			}
		}
	}
	for _, u := range []string{"spf", "dkim"} {
		if m := retrieveAll(t, in, u+"@example.org", "pw"); strings.Contains(m[0], "X-Spam") {
			t.Errorf("%s marked as spam", u)
		}
	}

	// The journal: each received entry of port 25 carries the results.
	type entry struct {
		Event, MessageID, Detail string
	}
	var received []entry
	// The journal is written in batches: wait for the last message's.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		received = nil
		for _, line := range strings.Split(strings.TrimSpace(in.must("", "journal", "--json", "--event", "received")), "\n") {
			var e entry
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				t.Fatalf("journal --json: %v: %q", err, line)
			}
			received = append(received, e)
		}
		if len(received) >= 9 || time.Now().After(deadline) {
			break
		}
	}
	detail := func(id string) string {
		for _, e := range received {
			if e.MessageID == "<"+id+"@test>" {
				return e.Detail
			}
		}
		t.Errorf("no received entry for %s", id)
		return ""
	}
	wantIn("journal of spfpass", detail("spfpass"), "spf=pass", "dkim=none", "dmarc=pass (good.test p=reject)")
	wantIn("journal of dkimpass", detail("dkimpass"), "spf=none", "dkim=pass (good.test)", "dmarc=pass")
	wantIn("journal of quar", detail("quar"), "dmarc=fail (quar.test p=quarantine) quarantine")
	if d := detail("submitted"); strings.Contains(d, "spf=") || strings.Contains(d, "dmarc=") {
		t.Errorf("journal of the submission shows checks: %s", d)
	}
	// Each refusal has a refused entry with the reply and the results.
	var rejected []entry
	for _, line := range strings.Split(strings.TrimSpace(in.must("", "journal", "--json", "--event", "refused")), "\n") {
		var e entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("journal --json: %v: %q", err, line)
		}
		rejected = append(rejected, e)
	}
	want := map[string][]string{
		"<forged@test>":   {"550 5.7.1", "spf=none", "dkim=none", "dmarc=fail (bigmail.test p=reject) reject"},
		"<spffail@test>":  {"550 5.7.1", "spf=fail", "dmarc=fail (bigmail.test p=reject)"},
		"<dkimpass@test>": {"550 5.7.1", "dkim=fail (good.test)", "dmarc=fail (good.test p=reject)"},
		"<temp@test>":     {"451 4.4.3", "spf=temperror", "dmarc=temperror (tf.test p=reject) tempfail"},
	}
	if len(rejected) != len(want) {
		t.Errorf("%d rejected entries, want %d: %+v", len(rejected), len(want), rejected)
	}
	for _, e := range rejected {
		wantIn("rejected entry of "+e.MessageID, e.Detail, want[e.MessageID]...)
		if want[e.MessageID] == nil {
			t.Errorf("unexpected rejected entry %+v", e)
		}
	}

	// /metrics: 11 messages checked to the end of data so far.
	met := in.metrics()
	for name, want := range map[string]float64{
		`postoffice_messages_total{event="refused"}`:                             4,
		`postoffice_auth_check_actions_total{action="reject"}`:                   3, // spffail, dkimfail p=reject, forged
		`postoffice_auth_check_actions_total{action="quarantine"}`:               1,
		`postoffice_auth_check_actions_total{action="tempfail"}`:                 1,
		`postoffice_auth_check_actions_total{action="accept"}`:                   6, // spf, none, dkim, dkimfail, ar, dmarctemp
		`postoffice_auth_check_results_total{method="spf",result="pass"}`:        3, // spfpass, ar, dmarctemp
		`postoffice_auth_check_results_total{method="spf",result="fail"}`:        1,
		`postoffice_auth_check_results_total{method="spf",result="temperror"}`:   1,
		`postoffice_auth_check_results_total{method="dkim",result="pass"}`:       1,
		`postoffice_auth_check_results_total{method="dkim",result="fail"}`:       2,
		`postoffice_auth_check_results_total{method="dmarc",result="pass"}`:      3,
		`postoffice_auth_check_results_total{method="dmarc",result="fail"}`:      4,
		`postoffice_auth_check_results_total{method="dmarc",result="none"}`:      2,
		`postoffice_auth_check_results_total{method="dmarc",result="temperror"}`: 2,
	} {
		if got := met[name]; got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// dmarc_reject = "quarantine", set while serve runs: the forged
	// author is delivered, marked.
	in.must("", "config", "set", "auth_checks.dmarc_reject", "quarantine")
	if r := send("x@none.test", "later@example.org", msgFrom("someone@bigmail.test", "later")); r.code() != 250 {
		t.Fatalf("dmarc_reject = quarantine: %+v", r)
	}
	m, ar = one("later")
	wantIn("dmarc_reject = quarantine", ar, "dmarc=fail", "p=reject", "header.from=bigmail.test")
	if !strings.Contains(m, "\r\nX-Spam: yes\r\n") || !strings.Contains(m, "\r\nSubject: [SPAM] later\r\n") {
		t.Errorf("p=reject as quarantine not marked:\n%s", m)
	}
	// And switched off: no checks, no field.
	in.must("", "config", "set", "auth_checks.enabled", "false")
	if r := send("x@none.test", "later@example.org", msgFrom("someone@bigmail.test", "off")); r.code() != 250 {
		t.Fatalf("checks off: %+v", r)
	}
	msgs := retrieveAll(t, in, "later@example.org", "pw")
	if len(msgs) != 2 || len(authResultsOf(msgs[1])) != 0 {
		t.Errorf("checks off: %d messages, the new one with %q", len(msgs), authResultsOf(msgs[len(msgs)-1]))
	}
}
