package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

func TestEHLOAdvertisesExtensions(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxMessageBytes = 12345 }})
	c := h.dial()
	caps := strings.Split(c.ehlo(), "\n")[1:]
	for _, want := range []string{"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "CHUNKING",
		"STARTTLS", "SMTPUTF8", "SIZE 12345", "AUTH PLAIN LOGIN"} {
		if !contains(caps, want) {
			t.Errorf("EHLO lacks %q: %q", want, caps)
		}
	}
	// RFC 3030 BINARYMIME stays off: bodies must be CRLF text.
	if contains(caps, "BINARYMIME") {
		t.Errorf("EHLO advertises BINARYMIME: %q", caps)
	}
	c.cmd("QUIT", 221, "2.0.0")
}

func TestNoSTARTTLSWithoutTLSConfig(t *testing.T) {
	h := newHarness(t, harnessOpt{noTLS: true})
	c := h.dial()
	if caps := strings.Split(c.ehlo(), "\n"); contains(caps, "STARTTLS") {
		t.Errorf("STARTTLS advertised without TLSConfig: %q", caps)
	}
	c.cmd("STARTTLS", 502, "5.5.1")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestMXNullSender(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	body := "From: <>\r\nSubject: bounce\r\n\r\nYour message could not be delivered.\r\n"
	c.transaction("", "bob@example.org", body, 250, "2.0.0")
	c.cmd("QUIT", 221, "2.0.0")

	d := h.be.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries, want 1", len(d))
	}
	env := d[0].env
	if env.From != "" || len(env.To) != 1 || env.To[0] != "bob@example.org" || env.Helo != "client.test" ||
		env.Submission || env.AuthUser != "" || env.TLS != "" || env.RemoteAddr == "" || env.LocalAddr == "" {
		t.Errorf("envelope %+v", env)
	}
	if string(d[0].body) != body {
		t.Errorf("body %q, want %q", d[0].body, body)
	}
}

func TestRecipientRejectionPassthrough(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	h.be.rcptErr = func(_ *Envelope, rcpt string) error {
		switch rcpt {
		case "nobody@example.org":
			return smtpreply.New(550, "5.1.1", "No such user here")
		case "someone@elsewhere.test":
			return smtpreply.New(554, "5.7.1", "Relay access denied")
		case "full@example.org": // wrapped
			return fmt.Errorf("quota: %w", smtpreply.New(452, "4.2.2", "Mailbox full"))
		case "broken@example.org":
			return errors.New("database is locked")
		}
		return nil
	}
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<alice@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<nobody@example.org>", 550, "5.1.1 No such user here")
	c.cmd("RCPT TO:<someone@elsewhere.test>", 554, "5.7.1 Relay access denied")
	c.cmd("RCPT TO:<full@example.org>", 452, "4.2.2 Mailbox full")
	// Not an *Error: a temporary local problem, the text stays in the log.
	msg := c.cmd("RCPT TO:<broken@example.org>", 451, "4.3.0")
	if strings.Contains(msg, "database") {
		t.Errorf("internal error leaked to the client: %q", msg)
	}
	c.cmd("RCPT TO:<bob@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send("Subject: hi\r\n\r\nhi\r\n.\r\n")
	c.expect(250, "2.0.0")
	d := h.be.deliveries()
	if len(d) != 1 || strings.Join(d[0].env.To, ",") != "bob@example.org" {
		t.Fatalf("deliveries %+v", d)
	}
	if !strings.Contains(h.logs.String(), "database is locked") {
		t.Error("backend failure not logged")
	}
}

func TestSenderRejectionPassthrough(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	h.be.senderErr = func(env *Envelope) error {
		switch env.From {
		case "spammer@bad.test":
			return smtpreply.New(550, "5.7.1", "Sender rejected")
		case "temp@bad.test":
			return errors.New("dns timeout")
		case "weird@bad.test": // not an error code: treated as a backend bug
			return smtpreply.New(250, "2.0.0", "ok?")
		case "class@bad.test": // enhanced class not matching the code
			return smtpreply.New(550, "4.1.8", "Bad\r\ndomain")
		}
		return nil
	}
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<spammer@bad.test>", 550, "5.7.1 Sender rejected")
	c.cmd("MAIL FROM:<temp@bad.test>", 451, "4.3.0")
	c.cmd("MAIL FROM:<weird@bad.test>", 451, "4.3.0")
	c.cmd("MAIL FROM:<class@bad.test>", 550, "5.0.0 Bad  domain")
	c.cmd("MAIL FROM:<good@sender.test>", 250, "2.1.0")
	c.cmd("MAIL FROM:<good@sender.test>", 503, "5.5.1") // RFC 5321 section 4.1.4
	c.cmd("RSET", 250, "2.0.0")
	c.cmd("MAIL FROM:<good@sender.test>", 250, "2.1.0")
}

func TestTooManyRecipients(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxRecipients = 3 }})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	for i := range 3 {
		c.cmd(fmt.Sprintf("RCPT TO:<r%d@example.org>", i), 250, "2.1.5")
	}
	c.cmd("RCPT TO:<r3@example.org>", 452, "4.5.3")
	c.cmd("DATA", 354, "")
	c.send("x\r\n.\r\n")
	c.expect(250, "2.0.0")
	if d := h.be.deliveries(); len(d) != 1 || len(d[0].env.To) != 3 {
		t.Fatalf("deliveries %+v", d)
	}
}

func TestDeliverErrorPassthrough(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	h.be.deliverErr = func(env *Envelope, _ []byte) error {
		switch env.To[0] {
		case "full@example.org":
			return smtpreply.New(552, "5.2.2", "Mailbox full")
		case "disk@example.org":
			return errors.New("fsync: input/output error")
		}
		return nil
	}
	c := h.dial()
	c.ehlo()
	c.transaction("a@sender.test", "full@example.org", "x\r\n", 552, "5.2.2 Mailbox full")
	c.transaction("a@sender.test", "disk@example.org", "x\r\n", 451, "4.3.0")
	c.transaction("a@sender.test", "ok@example.org", "x\r\n", 250, "2.0.0")
}

// A Deliver that returns nil before the end of the body would store a
// truncated message: no 250 for that.
func TestDeliverMustConsumeBody(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	h.be.deliverRaw = func(_ context.Context, _ *Envelope, body io.Reader) error {
		_, err := body.Read(make([]byte, 4))
		return err
	}
	c := h.dial()
	c.ehlo()
	c.transaction("a@sender.test", "b@example.org", "0123456789\r\n", 451, "4.3.0")
	c.cmd("NOOP", 250, "2.0.0")
}

func TestSMTPUTF8(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<jürgen@example.de>", 553, "5.6.7") // RFC 6531 section 3.5
	c.cmd("MAIL FROM:<jürgen@example.de> SMTPUTF8", 250, "2.1.0")
	c.cmd("RCPT TO:<josé@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send("Subject: héllo\r\n\r\nça va\r\n.\r\n")
	c.expect(250, "2.0.0")
	d := h.be.deliveries()
	if len(d) != 1 || !d[0].env.SMTPUTF8 || d[0].env.From != "jürgen@example.de" || d[0].env.To[0] != "josé@example.org" {
		t.Fatalf("deliveries %+v", d)
	}
	c.cmd("MAIL FROM:<a\x01b@example.de>", 501, "5.1.7")
}

func TestHeloRequiredAndSequence(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.cmd("MAIL FROM:<a@b.test>", 503, "5.5.1")
	c.cmd("HELO client.test", 250, "mx.test")
	c.cmd("RCPT TO:<b@example.org>", 503, "5.5.1")
	c.cmd("DATA", 503, "5.5.1")
	c.cmd("MAIL FROM:<a@b.test>", 250, "2.1.0")
	c.cmd("DATA", 503, "5.5.1")
	c.cmd("VRFY bob", 252, "2.5.0")
	c.cmd("QUIT", 221, "2.0.0")
	c.expectClosed()
}

// A quoted local part reaches the backend written as it must be on the
// wire, quotes included (RFC 5321 section 4.1.2); one that could not be
// written back safely is refused at MAIL (501 5.1.7) or RCPT (501 5.1.3),
// so that no parameter can be smuggled into a later MAIL FROM or RCPT TO.
func TestQuotedLocalParts(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	for _, step := range []struct {
		line string
		code int
		enh  string
	}{
		{`MAIL FROM:<"ceo@bank.com> ENVID=x"@evil.test>`, 501, "5.1.7"},
		{`MAIL FROM:<"a> SMTPUTF8 NOTIFY=NEVER x"@evil.test>`, 501, "5.1.7"},
		{`MAIL FROM:<"a<b"@evil.test>`, 501, "5.1.7"},
		{`MAIL FROM:<"a\` + "\x7f" + `b"@evil.test>`, 501, "5.1.7"},
		{`MAIL FROM:<a@evil"test>`, 501, "5.1.7"},
		{`MAIL FROM:<"john smith"@evil.test>`, 250, "2.1.0"},
		{`RCPT TO:<"x>y"@example.org>`, 501, "5.1.3"},
		{`RCPT TO:<"joe@home"@example.org>`, 250, "2.1.5"},
		{`RCPT TO:<"a\"b"@example.org>`, 250, "2.1.5"},
		{`RCPT TO:<"plain"@example.org>`, 250, "2.1.5"},
	} {
		c.cmd(step.line, step.code, step.enh)
	}
	c.cmd("DATA", 354, "")
	c.send("Subject: quoted\r\n\r\nhi\r\n.\r\n")
	c.expect(250, "2.0.0")
	d := h.be.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries", len(d))
	}
	want := []string{`"joe@home"@example.org`, `"a\"b"@example.org`, "plain@example.org"}
	if env := d[0].env; env.From != `"john smith"@evil.test` || fmt.Sprint(env.To) != fmt.Sprint(want) {
		t.Fatalf("envelope from %q to %q, want %q to %q", env.From, env.To, `"john smith"@evil.test`, want)
	}
	if h.be.sawSender("ceo@bank.com> ENVID=x@evil.test") {
		t.Fatal("the backend saw the injected sender")
	}
}

// DSN (RFC 3461): DSN is offered; RET and ENVID of MAIL, NOTIFY and ORCPT
// of each accepted RCPT reach the backend decoded, in order; an ENVID
// over 100 characters or an ORCPT that decodes to a control character
// is refused with 501 5.5.4.
func TestDSNParametersDecoded(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	if !strings.Contains(c.ehlo(), "DSN") {
		t.Fatal("DSN not offered")
	}
	c.cmd("MAIL FROM:<alice@sender.test> RET=HDRS ENVID=QQ+20314", 250, "")
	c.cmd("RCPT TO:<bob@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob+2Bx@example.org", 250, "")
	c.cmd(`RCPT TO:<carol@example.org> ORCPT=utf-8;j\x{F6}rg@example.org`, 250, "")
	c.cmd(`RCPT TO:<dan@example.org> ORCPT=utf-8;a\x{A}b@example.org`, 501, "5.5.4")
	c.cmd("RCPT TO:<eve@example.org>", 250, "")
	c.cmd("DATA", 354, "")
	c.send("Subject: hi\r\n\r\nhi\r\n.\r\n")
	c.expect(250, "")
	d := h.be.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries", len(d))
	}
	env := d[0].env
	want := []RcptDSN{{Notify: []string{"SUCCESS", "DELAY"}, ORcptType: "rfc822", ORcpt: "bob+x@example.org"},
		{ORcptType: "utf-8", ORcpt: "j\u00f6rg@example.org"}, {}}
	if env.Ret != "HDRS" || env.EnvID != "QQ 314" || !reflect.DeepEqual(env.DSN, want) || len(env.To) != 3 {
		t.Errorf("envelope Ret %q EnvID %q To %q DSN %+v", env.Ret, env.EnvID, env.To, env.DSN)
	}
	c.cmd("MAIL FROM:<alice@sender.test> ENVID="+strings.Repeat("x", 101), 501, "5.5.4")
}
