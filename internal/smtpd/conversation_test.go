package smtpd

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// step is what the client sends (CRLF added unless raw) and the exact
// reply it must get: its lines joined by "\n", CRLFs checked and taken
// off. A want ending in "*" is matched as a prefix.
type step struct {
	send string
	want string
	raw  bool // send as it is: message data, BDAT chunks
}

// rawReply reads one reply as its lines, each of which must end in CRLF.
func (c *client) rawReply() string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.tp.R.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (got %q)", err, strings.Join(append(lines, l), "\n"))
		}
		if !strings.HasSuffix(l, "\r\n") {
			c.t.Fatalf("reply line %q does not end in CRLF", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		lines = append(lines, l)
		if len(l) < 4 || l[3] != '-' {
			return strings.Join(lines, "\n")
		}
	}
}

func run(t *testing.T, c *client, steps []step) {
	t.Helper()
	for _, s := range steps {
		if s.raw {
			c.send(s.send)
		} else {
			c.send(s.send + "\r\n")
		}
		// As many replies as want has last lines.
		var replies []string
		for _, l := range strings.Split(s.want, "\n") {
			if len(l) < 4 || l[3] != '-' {
				replies = append(replies, c.rawReply())
			}
		}
		got := strings.Join(replies, "\n")
		if w, prefix := strings.CutSuffix(s.want, "*"); prefix && strings.HasPrefix(got, w) || got == s.want {
			continue
		}
		t.Fatalf("%.60q: got %q, want %q", s.send, got, s.want)
	}
}

const ehloReply = "250-mx.test Hello client.test\n250-PIPELINING\n250-SIZE 52428800\n250-STARTTLS\n250-AUTH PLAIN LOGIN\n" +
	"250-ENHANCEDSTATUSCODES\n250-8BITMIME\n250-DSN\n250-SMTPUTF8\n250 CHUNKING"

// Every reply of a session as RFC 5321 and RFC 3463 mean them: sequence
// errors 503 5.5.1, unknown commands 500 5.5.1, syntax 501 5.5.4, MAIL
// 250 2.1.0, RCPT 250 2.1.5, the end of data 250 2.0.0 with the
// transaction's id; no enhanced code in the greeting and the replies to
// HELO and EHLO (RFC 2034 section 4).
func TestConversation(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxErrors = 1000 }})
	h.be.rcptErr = func(_ *Envelope, rcpt string) error {
		if strings.HasPrefix(rcpt, "nobody@") {
			return smtpreply.New(550, "5.1.1", "No such user here")
		}
		return nil
	}
	c := h.dial()
	run(t, c, []step{
		// Before HELO/EHLO.
		{send: "MAIL FROM:<a@sender.test>", want: "503 5.5.1 Send HELO or EHLO first"},
		{send: "RCPT TO:<b@example.org>", want: "503 5.5.1 Need MAIL command first"},
		{send: "DATA", want: "503 5.5.1 Need MAIL command first"},
		{send: "BDAT 3\r\nabc", raw: true, want: "503 5.5.1 Need MAIL command first"},
		{send: "AUTH PLAIN", want: "503 5.5.1 Send EHLO first"},
		{send: "NOOP", want: "250 2.0.0 Ok"},
		{send: "NOOP anything at all", want: "250 2.0.0 Ok"},
		{send: "RSET", want: "250 2.0.0 Ok"},
		{send: "RSET x", want: "501 5.5.4 Syntax: RSET"},
		{send: "VRFY bob", want: "252 2.5.0 Cannot VRFY user; try RCPT"},
		{send: "VRFY", want: "501 5.5.4 Syntax: VRFY address"},
		{send: "EXPN staff", want: "502 5.5.1 Command not implemented"},
		{send: "HELP", want: "214 2.0.0 See RFC 5321"},
		{send: "XYZZY", want: "500 5.5.1 Unknown command"},
		{send: "", want: "500 5.5.2 Empty command"},
		{send: "NOOP\n", raw: true, want: "500 5.5.2 Line must end with CRLF"},
		{send: "EHLO", want: "501 Syntax: EHLO hostname"},
		{send: "HELO   ", want: "501 Syntax: HELO hostname"},
		{send: "HELO a\x01b", want: "501 Syntax: HELO hostname"},
		{send: "HELO two words", want: "250 mx.test"},
		{send: "HELO client.test", want: "250 mx.test"},
		{send: "ehlo client.test", want: ehloReply},

		// MAIL and its parameters.
		{send: "MAIL FROM:a@sender.test", want: "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{send: "MAIL TO:<a@sender.test>", want: "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{send: "MAIL FROM:<a@sender.test>x", want: "501 5.5.4 Syntax: MAIL FROM:<address>"},
		{send: "MAIL FROM:<a@sender.test> FOO=1", want: "555 5.5.4 Unsupported parameter FOO"},
		{send: "MAIL FROM:<a@sender.test> SIZE=x", want: "501 5.5.4 Syntax: SIZE=octets"},
		{send: "MAIL FROM:<a@sender.test> SIZE=1 size=2", want: "501 5.5.4 Duplicate parameter SIZE"},
		{send: "MAIL FROM:<a@sender.test> SIZE=52428801", want: "552 5.3.4 Message size exceeds fixed maximum message size"},
		{send: "MAIL FROM:<a@sender.test> BODY=BINARYMIME", want: "504 5.5.4 BODY=BINARYMIME not supported"},
		{send: "MAIL FROM:<a@sender.test> BODY=9BIT", want: "501 5.5.4 Syntax: BODY=7BIT or BODY=8BITMIME"},
		{send: "MAIL FROM:<a@sender.test> SMTPUTF8=yes", want: "501 5.5.4 Syntax: SMTPUTF8 takes no value"},
		{send: "MAIL FROM:<a@sender.test> =x", want: "501 5.5.4 Bad parameter syntax"},
		{send: "MAIL FROM:<a@sender.test> RET=ALL", want: "501 5.5.4 Syntax: RET=FULL or RET=HDRS"},
		{send: "MAIL FROM:<a@sender.test> ENVID=a+ZZ", want: "501 5.5.4 Syntax: ENVID=xtext"},
		{send: "MAIL FROM:<a@sender.test> ENVID=a+0D+0Ab", want: "501 5.5.4 Syntax: ENVID=xtext"},
		{send: "MAIL FROM:<a@sender.test> ENVID=" + strings.Repeat("x", 101), want: "501 5.5.4 Syntax: ENVID=xtext"},
		{send: "MAIL FROM:<jürgen@sender.test>", want: "553 5.6.7 Non-ASCII address requires SMTPUTF8"},
		{send: "MAIL FROM:<a@>", want: "501 5.1.7 Bad sender address syntax"},
		{send: "MAIL FROM:<a@sender.test> SIZE=100 BODY=8BITMIME AUTH=<>", want: "250 2.1.0 Ok"},
		{send: "MAIL FROM:<a@sender.test>", want: "503 5.5.1 Nested MAIL command"},
		{send: "DATA", want: "503 5.5.1 Need RCPT command first"},

		// RCPT and its parameters.
		{send: "RCPT TO:b@example.org", want: "501 5.5.4 Syntax: RCPT TO:<address>"},
		{send: "RCPT TO:<>", want: "501 5.1.3 Bad recipient address syntax"},
		{send: "RCPT TO:<b@example.org> FOO", want: "555 5.5.4 Unsupported parameter FOO"},
		{send: "RCPT TO:<b@example.org> NOTIFY=NEVER,SUCCESS", want: "501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY"},
		{send: "RCPT TO:<b@example.org> NOTIFY=SUCCESS,SUCCESS", want: "501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY"},
		{send: "RCPT TO:<b@example.org> NOTIFY", want: "501 5.5.4 Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY"},
		{send: "RCPT TO:<b@example.org> ORCPT=rfc822", want: "501 5.5.4 Syntax: ORCPT=addr-type;xtext"},
		{send: "RCPT TO:<b@example.org> ORCPT=rfc822;b+0D+0AX-Injected:+20yes", want: "501 5.5.4 Syntax: ORCPT=addr-type;xtext"},
		{send: "RCPT TO:<b@example.org> ORCPT=rfc822;j+FCrgen@example.org", want: "501 5.5.4 Syntax: ORCPT=addr-type;xtext"},
		{send: "RCPT TO:<b@example.org> ORCPT=rfc822;b+C2+85@example.org", want: "501 5.5.4 Syntax: ORCPT=addr-type;xtext"},
		{send: "RCPT TO:<b@example.org> ORCPT=utf-8;j\\x{0D}x@example.org", want: "501 5.5.4 Syntax: ORCPT=addr-type;xtext"},
		{send: "RCPT TO:<nobody@example.org>", want: "550 5.1.1 No such user here"},
		{send: "DATA", want: "554 5.5.1 No valid recipients"},
		{send: "RSET", want: "250 2.0.0 Ok"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "RCPT TO:<Postmaster>", want: "250 2.1.5 Ok"},
		{send: "DATA x", want: "501 5.5.4 Syntax: DATA"},
		{send: "DATA", want: "354 End data with <CR><LF>.<CR><LF>"},
		{send: "Subject: s\r\n\r\nbody\r\n.\r\n", raw: true, want: "250 2.0.0 Ok: queued as *"},
		// EHLO again resets a transaction (RFC 5321 section 4.1.4).
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "EHLO client.test", want: ehloReply},
		{send: "RCPT TO:<b@example.org>", want: "503 5.5.1 Need MAIL command first"},
		{send: "QUIT x", want: "501 5.5.4 Syntax: QUIT"},
		{send: "QUIT", want: "221 2.0.0 Bye"},
	})
	c.expectClosed()
	d := h.be.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries", len(d))
	}
	env := d[0].env
	if env.Size != 0 || env.Body8Bit || fmt.Sprint(env.To) != "[b@example.org postmaster@mx.test]" || len(env.ID) != 12 {
		t.Errorf("envelope %+v", env)
	}
	if !strings.Contains(h.logs.String(), "id="+env.ID) {
		t.Errorf("the transaction id %s is not in the log", env.ID)
	}
}

// The 250 after the data names the transaction the backend got.
func TestQueuedAsNamesTheTransaction(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	got := c.transaction("a@sender.test", "b@example.org", "x\r\n", 250, "2.0.0 Ok: queued as ")
	d := h.be.deliveries()
	if len(d) != 1 || got != "2.0.0 Ok: queued as "+d[0].env.ID {
		t.Fatalf("reply %q, deliveries %+v", got, d)
	}
}

// RFC 3461: RET, ENVID (xtext), NOTIFY and ORCPT are taken into the
// envelope, NOTIFY and ORCPT per recipient in the order of To; RFC 6533:
// an ORCPT of type utf-8 in its xtext and (with SMTPUTF8) unitext forms.
func TestDSNParameters(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	run(t, c, []step{
		{send: "MAIL FROM:<a@sender.test> RET=hdrs ENVID=QQ+2Bx+3D1 SMTPUTF8", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org> NOTIFY=success,Failure ORCPT=rfc822;b+40example.org", want: "250 2.1.5 Ok"},
		{send: "RCPT TO:<c@example.org>", want: "250 2.1.5 Ok"},
		{send: "RCPT TO:<d@example.org> NOTIFY=NEVER", want: "250 2.1.5 Ok"},
		{send: `RCPT TO:<e@example.org> ORCPT=utf-8;j\x{FC}rgen@example.org NOTIFY=DELAY`, want: "250 2.1.5 Ok"},
		{send: "RCPT TO:<f@example.org> ORCPT=UTF-8;josé@example.org", want: "250 2.1.5 Ok"},
		// As Postfix sends an internationalized original recipient.
		{send: "RCPT TO:<g@example.org> ORCPT=rfc822;j+C3+BCrgen@example.org", want: "250 2.1.5 Ok"},
		{send: "DATA", want: "354 End data with <CR><LF>.<CR><LF>"},
		{send: "x\r\n.\r\n", raw: true, want: "250 2.0.0 Ok: queued as *"},
		// unitext needs SMTPUTF8 on MAIL.
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<f@example.org> ORCPT=utf-8;josé@example.org", want: "501 5.5.4 Syntax: ORCPT=addr-type;xtext"},
	})
	d := h.be.deliveries()
	if len(d) != 1 {
		t.Fatalf("%d deliveries", len(d))
	}
	env := d[0].env
	want := []RcptDSN{
		{Notify: []string{"SUCCESS", "FAILURE"}, ORcptType: "rfc822", ORcpt: "b@example.org"},
		{},
		{Notify: []string{"NEVER"}},
		{Notify: []string{"DELAY"}, ORcptType: "utf-8", ORcpt: "jürgen@example.org"},
		{ORcptType: "utf-8", ORcpt: "josé@example.org"},
		{ORcptType: "rfc822", ORcpt: "jürgen@example.org"},
	}
	if env.Ret != "HDRS" || env.EnvID != "QQ+x=1" || !env.SMTPUTF8 || !reflect.DeepEqual(env.DSN, want) || len(env.To) != 6 {
		t.Fatalf("envelope Ret %q EnvID %q DSN %+v To %q", env.Ret, env.EnvID, env.DSN, env.To)
	}
}

// RFC 4954: the replies of AUTH, each exact.
func TestAuthConversation(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: submission})
	c := h.dial()
	c.ehlo()
	run(t, c, []step{
		{send: "AUTH", want: "501 5.5.4 Syntax: AUTH mechanism [initial-response]"},
		{send: "AUTH CRAM-MD5", want: "504 5.5.4 Unrecognized authentication type"},
		{send: "AUTH PLAIN !!!", want: "501 5.5.2 Cannot decode response"},
		{send: "AUTH PLAIN " + b64("only-one-part"), want: "501 5.5.2 Malformed authentication exchange"},
		{send: "AUTH PLAIN " + plainIR("alice", "wrong"), want: "535 5.7.8 Authentication credentials invalid"},
		{send: "AUTH PLAIN", want: "334 "},
		{send: "*", want: "501 5.7.0 Authentication cancelled"},
		{send: "AUTH LOGIN", want: "334 " + b64("Username:")},
		{send: b64("alice"), want: "334 " + b64("Password:")},
		{send: "%%%", want: "501 5.5.2 Cannot decode response"},
		{send: "AUTH LOGIN " + b64("alice"), want: "334 " + b64("Password:")},
		{send: strings.Repeat("A", 12289), want: "500 5.5.6 Authentication exchange line is too long"},
		{send: "MAIL FROM:<alice@example.org>", want: "530 5.7.0 Authentication required"},
		{send: "AUTH PLAIN =", want: "501 5.5.2 Malformed authentication exchange"},
		{send: "AUTH PLAIN " + plainIR("alice", "secret-pw-1"), want: "235 2.7.0 Authentication successful"},
		{send: "AUTH PLAIN " + plainIR("alice", "secret-pw-1"), want: "503 5.5.1 Already authenticated"},
		{send: "MAIL FROM:<alice@example.org>", want: "250 2.1.0 Ok"},
	})
	if strings.Contains(h.logs.String(), "secret-pw-1") || strings.Contains(h.logs.String(), "wrong") {
		t.Error("password in the log")
	}
}

// RFC 3207 section 4.2: after STARTTLS the server forgets the EHLO, the
// transaction and the authentication; STARTTLS is refused inside a
// transaction, which it would lose.
func TestSTARTTLSResetsSession(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: submission})
	c := h.dial()
	c.ehlo()
	run(t, c, []step{
		{send: "STARTTLS now", want: "501 5.5.4 Syntax: STARTTLS"},
		{send: "AUTH PLAIN " + plainIR("alice", "secret-pw-1"), want: "235 2.7.0 Authentication successful"},
		{send: "MAIL FROM:<alice@example.org>", want: "250 2.1.0 Ok"},
		{send: "STARTTLS", want: "503 5.5.1 STARTTLS not permitted during a mail transaction"},
		{send: "RSET", want: "250 2.0.0 Ok"},
	})
	c = c.startTLS()
	run(t, c, []step{
		{send: "MAIL FROM:<alice@example.org>", want: "503 5.5.1 Send HELO or EHLO first"},
		{send: "EHLO client.test", want: strings.Replace(ehloReply, "250-STARTTLS\n", "", 1)},
		{send: "MAIL FROM:<alice@example.org>", want: "530 5.7.0 Authentication required"},
		{send: "STARTTLS", want: "502 5.5.1 STARTTLS not available"},
	})
}

// RFC 3030: each chunk but the last is acknowledged with its size, the
// last with the transaction's id; a BDAT outside a transaction has its
// chunk read and dropped; NOOP may come between chunks, and any other
// command ends the transaction unacknowledged and then runs.
func TestBDATConversation(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	run(t, c, []step{
		{send: "BDAT 5\r\nMAIL ", raw: true, want: "503 5.5.1 Need MAIL command first"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "BDAT 3\r\nabc", raw: true, want: "503 5.5.1 Need RCPT command first"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "BDAT 4\r\nab\r\n", raw: true, want: "250 2.0.0 4 octets received"},
		{send: "NOOP", want: "250 2.0.0 Ok"},
		{send: "BDAT 0\r\n", raw: true, want: "250 2.0.0 0 octets received"},
		{send: "BDAT 4 LAST\r\ncd\r\n", raw: true, want: "250 2.0.0 Ok: queued as *"},
		{send: "DATA", want: "503 5.5.1 Need MAIL command first"},
		// Another command between chunks.
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "BDAT 4\r\nlost", raw: true, want: "250 2.0.0 4 octets received"},
		{send: "RSET", want: "250 2.0.0 Ok"},
		{send: "BDAT 4 LAST\r\nlost", raw: true, want: "503 5.5.1 Need MAIL command first"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "BDAT 4\r\nlost", raw: true, want: "250 2.0.0 4 octets received"},
		{send: "MAIL FROM:<c@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "BDAT 2 LAST\r\no\n", raw: true, want: "554 5.6.0 Message contains a bare CR or LF; lines must end with CRLF"},
		// A size that cannot be read: where the chunk ends is unknown.
		{send: "BDAT x", want: "501 5.5.4 Syntax: BDAT size [LAST]"},
	})
	c.expectClosed()
	d := h.be.deliveries()
	if len(d) != 1 || string(d[0].body) != "ab\r\ncd\r\n" {
		t.Fatalf("deliveries %+v", d)
	}
}

// Error replies count towards MaxErrors, and a message accepted starts
// the count again (as Postfix's smtpd_hard_error_limit, "without
// delivering mail").
func TestErrorCountResetByDelivery(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxErrors = 3 }})
	c := h.dial()
	c.ehlo()
	run(t, c, []step{
		{send: "XYZZY", want: "500 5.5.1 Unknown command"},
		{send: "RCPT TO:<b@example.org>", want: "503 5.5.1 Need MAIL command first"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "BDAT 3 LAST\r\nx\r\n", raw: true, want: "250 2.0.0 Ok: queued as *"},
		{send: "XYZZY", want: "500 5.5.1 Unknown command"},
		{send: "XYZZY", want: "500 5.5.1 Unknown command"},
		{send: "XYZZY", want: "500 5.5.1 Unknown command\n421 4.7.0 mx.test Too many errors, closing connection"},
	})
	c.expectClosed()
}
