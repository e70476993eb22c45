package server

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// newTestChecks is the MX's checks against a DNS server on loopback
// serving zone, with the journal entries they record kept in *journal.
func newTestChecks(t *testing.T, rejectAs mailauth.Action, zone ...string) (*inboundChecks, *testlib.DNS, *[]store.JournalEntry) {
	t.Helper()
	dns := testlib.StartDNS(t, zone...)
	var journal []store.JournalEntry
	c := &inboundChecks{
		checker: &mailauth.Checker{Resolver: resolver.Server(dns.Addr, 0), AuthServID: "mx.test", RejectAs: rejectAs},
		metrics: metrics.New("test", nil),
		log:     slog.New(slog.DiscardHandler),
		record:  func(e ...store.JournalEntry) { journal = append(journal, e...) },
	}
	return c, dns, &journal
}

// checkOne runs a transaction through the checks: MAIL, then the end of
// data; it returns what would be routed, or the refusal.
func checkOne(t *testing.T, c *inboundChecks, env *smtpd.Envelope, msg string) (string, error) {
	t.Helper()
	c.atMail(context.Background(), env, transaction(env))
	out, release, err := c.atData(context.Background(), env, strings.NewReader(msg))
	if err != nil {
		return "", err
	}
	defer release()
	b, err := io.ReadAll(out)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), nil
}

// TestInboundChecksTempError: a DNS failure on the aligned SPF check of a
// p=reject domain is 451 4.4.3 and a rejected journal entry; with
// dmarc_reject = quarantine, where nothing would be refused, it is
// delivered with the temperror recorded and not marked as spam.
func TestInboundChecksTempError(t *testing.T) {
	zone := []string{`_dmarc.tf.test. 60 IN TXT "v=DMARC1; p=reject"`}
	msg := "From: a@tf.test\r\nMessage-ID: <m1@tf.test>\r\nSubject: x\r\n\r\nbody\r\n"
	env := func() *smtpd.Envelope {
		return &smtpd.Envelope{ID: "TX1", From: "a@sub.tf.test", To: []string{"u@example.org"}, Helo: "client.test", RemoteAddr: "127.0.0.1:4000"}
	}

	c, dns, journal := newTestChecks(t, mailauth.Reject, zone...)
	dns.ServFail("sub.tf.test.")
	_, err := checkOne(t, c, env(), msg)
	r, ok := smtpreply.As(err)
	if !ok || r.Code != 451 || r.Status.String() != "4.4.3" {
		t.Fatalf("reject mode: %v, want 451 4.4.3", err)
	}
	if len(*journal) != 1 {
		t.Fatalf("journal: %+v", *journal)
	}
	e := (*journal)[0]
	if e.Event != store.EventRefused || e.MessageID != "<m1@tf.test>" || e.TxID != "TX1" || e.Client != "127.0.0.1:4000" ||
		!strings.Contains(e.Detail, "451 4.4.3") || !strings.Contains(e.Detail, "spf=temperror") || !strings.Contains(e.Detail, "tempfail") {
		t.Errorf("rejected entry: %+v", e)
	}

	c, dns, journal = newTestChecks(t, mailauth.Quarantine, zone...)
	dns.ServFail("sub.tf.test.")
	out, err := checkOne(t, c, env(), msg)
	if err != nil {
		t.Fatalf("quarantine mode: %v", err)
	}
	if !strings.HasPrefix(out, "Authentication-Results: mx.test;") || !strings.Contains(out, "dmarc=temperror") ||
		strings.Contains(out, "X-Spam") || !strings.HasSuffix(out, msg) || len(*journal) != 0 {
		t.Errorf("quarantine mode delivered %q, journal %+v", out, *journal)
	}
}

// TestInboundChecksPassThrough: authenticated sessions (submission, or
// the MX with AUTH) are not checked: their mail gets auth=pass and loses
// the fields that forge ours only.
func TestInboundChecksPassThrough(t *testing.T) {
	c, _, journal := newTestChecks(t, mailauth.Reject, `_dmarc.bigmail.test. 60 IN TXT "v=DMARC1; p=reject"`)
	rest := "Authentication-Results: other.test; spf=pass\r\nFrom: x@bigmail.test\r\n\r\nbody\r\n"
	msg := "Authentication-Results: mx.test; dmarc=pass\r\n" + rest
	for _, env := range []*smtpd.Envelope{
		{From: "u@example.org", AuthUser: "u@example.org", RemoteAddr: "127.0.0.1:1"},
		{From: "u@example.org", AuthUser: "u@example.org", Submission: true, RemoteAddr: "127.0.0.1:1"},
	} {
		out, err := checkOne(t, c, env, msg)
		if want := "Authentication-Results: mx.test;\r\n\tauth=pass smtp.auth=u@example.org\r\n" + rest; err != nil || out != want {
			t.Errorf("%+v: %q, %v; want %q", env, out, err, want)
		}
		if renv := transaction(env); renv.Checks != nil {
			t.Errorf("%+v: checks recorded: %v", env, renv.Checks)
		}
	}
	// The same from a stranger: refused, and the refusal journaled.
	_, err := checkOne(t, c, &smtpd.Envelope{From: "x@bigmail.test", RemoteAddr: "127.0.0.1:1"}, msg)
	if r, ok := smtpreply.As(err); !ok || r.Code != 550 || r.Status.String() != "5.7.1" || len(*journal) != 1 {
		t.Errorf("stranger: %v, journal %+v", err, *journal)
	}
	// A nil *inboundChecks ([auth_checks] off, or submission) checks
	// nothing.
	var off *inboundChecks
	env := &smtpd.Envelope{From: "x@bigmail.test", RemoteAddr: "127.0.0.1:1"}
	if out, err := checkOne(t, off, env, msg); err != nil || out != msg {
		t.Errorf("checks off: %q, %v", out, err)
	}
}

// TestInboundChecksBodyError: the body reader's own refusal (too big)
// comes back as it was, not as a check's result.
func TestInboundChecksBodyError(t *testing.T) {
	c, _, journal := newTestChecks(t, mailauth.Reject)
	env := &smtpd.Envelope{From: "a@example.net", RemoteAddr: "127.0.0.1:1"}
	c.atMail(context.Background(), env, transaction(env))
	tooBig := smtpreply.New(552, "5.3.4", "Message too big")
	_, _, err := c.atData(context.Background(), env, io.MultiReader(strings.NewReader("From: a@example.net\r\n"), errReader{&tooBig}))
	if r, ok := smtpreply.As(err); !ok || r.Code != 552 {
		t.Errorf("body error: %v", err)
	}
	if len(*journal) != 0 {
		t.Errorf("journal: %+v", *journal)
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// TestInboundChecksQuarantineTag: a DMARC p=quarantine failure is
// delivered with X-Spam: yes under our Authentication-Results field and,
// with [spam] subject_tag, the tag before its subject, once; without a
// tag the subject is left alone.
func TestInboundChecksQuarantineTag(t *testing.T) {
	zone := `_dmarc.quar.test. 60 IN TXT "v=DMARC1; p=quarantine"`
	env := func() *smtpd.Envelope {
		return &smtpd.Envelope{ID: "TX2", From: "a@elsewhere.test", To: []string{"u@example.org"}, Helo: "client.test", RemoteAddr: "127.0.0.1:4000"}
	}
	for _, tc := range []struct{ tag, subject, want string }{
		{"[SPAM]", "Subject: cheap\r\n", "Subject: [SPAM] cheap\r\n"},
		{"[SPAM]", "Subject: [SPAM] again\r\n", "Subject: [SPAM] again\r\n"},
		{"", "Subject: cheap\r\n", "Subject: cheap\r\n"},
	} {
		c, _, _ := newTestChecks(t, mailauth.Reject, zone)
		c.subjectTag = tc.tag
		out, err := checkOne(t, c, env(), "From: a@quar.test\r\n"+tc.subject+"\r\nbody\r\n")
		if err != nil {
			t.Fatalf("tag %q: %v", tc.tag, err)
		}
		ar, rest, _ := strings.Cut(out, "X-Spam: yes\r\n")
		if !strings.HasPrefix(ar, "Authentication-Results: mx.test;") || !strings.Contains(ar, "dmarc=fail") ||
			rest != "From: a@quar.test\r\n"+tc.want+"\r\nbody\r\n" {
			t.Errorf("tag %q, %q: delivered %q", tc.tag, tc.subject, out)
		}
	}
}
