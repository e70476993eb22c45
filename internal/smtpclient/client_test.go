package smtpclient

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"
)

func msg(from string, body string, rcpts ...string) *Message {
	m := &Message{From: from, Body: strings.NewReader(body), Size: int64(len(body))}
	for _, r := range rcpts {
		m.Rcpts = append(m.Rcpts, Recipient{Addr: r})
	}
	return m
}

func send(t *testing.T, c *Conn, m *Message) (*Result, *Error) {
	t.Helper()
	res, err := c.Send(context.Background(), m)
	if err == nil {
		return res, nil
	}
	e, ok := AsError(err)
	if !ok {
		t.Fatalf("Send: %v is not an *Error", err)
	}
	return res, e
}

// A peer with no extension: one EHLO, the commands one at a time, the
// content dot-stuffed and its last line ended, QUIT.
func TestLockStep(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250 mx.test"),
		C("MAIL FROM:<a@x.test>"),
		S("250 2.1.0 ok"),
		C("RCPT TO:<b@y.test>"),
		S("250 2.1.5 ok"),
		C("RCPT TO:<c@y.test>"),
		S("550 5.1.1 no such user"),
		C("DATA"),
		S("354 go ahead"),
		D("Subject: t\r\n\r\n..dot\r\nbare\r\nlf\r\ncr\r\nlast\r\n.\r\n"),
		S("250 2.0.0 queued as 7"),
		C("QUIT"),
		S("221 bye"),
		EOF(),
	})
	c := dialScript(t, s, Options{TLS: TLSMay})
	if c.Extensions().ESMTP != true || c.Extensions().Pipelining {
		t.Errorf("extensions %+v", c.Extensions())
	}
	res, err := send(t, c, msg("a@x.test", "Subject: t\r\n\r\n.dot\r\nbare\nlf\r\ncr\rlast", "b@y.test", "c@y.test"))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if res.Rcpts[0].Err != nil || res.Final.Code != 250 || res.Final.Message() != "queued as 7" {
		t.Errorf("first recipient %+v, final %+v", res.Rcpts[0], res.Final)
	}
	e := res.Rcpts[1].Err
	if e == nil || e.Kind != KindReply || !e.Permanent || e.Reply.Code != 550 || e.Status.String() != "5.1.1" || e.Command != "RCPT TO" {
		t.Errorf("second recipient: %#v", e)
	}
	if want := "mx.test[127.0.0.1]:" + strings.Split(s.l.Addr().String(), ":")[1] + " said: 550 5.1.1 no such user (in reply to RCPT TO)"; e.Error() != want {
		t.Errorf("error text %q, want %q", e.Error(), want)
	}
	if res.Delivered() != 1 {
		t.Errorf("delivered %d", res.Delivered())
	}
	c.Close()
}

// With PIPELINING, MAIL, every RCPT and DATA go in one segment, with
// the DSN parameters, SIZE and BODY; the replies are read in order.
func TestPipeliningAndDSN(t *testing.T) {
	body := "Subject: caf\xc3\xa9\r\n\r\nh\xc3\xa9\r\n"
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250-PIPELINING", "250-SIZE 10000", "250-8BITMIME", "250-DSN", "250-SMTPUTF8", "250 ENHANCEDSTATUSCODES"),
		G("MAIL FROM:<a@x.test> SIZE=23 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=q+2B1+3Dx",
			"RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;B+2Bx@y.test",
			"RCPT TO:<c@y.test> NOTIFY=NEVER",
			"RCPT TO:<d@y.test> ORCPT=utf-8;j\\x{F6}rg@y.test",
			"DATA"),
		S("250 2.1.0 ok", "250 2.1.5 ok", "450 4.2.1 try later", "250 2.1.5 ok", "354 go ahead"),
		D(body + ".\r\n"),
		S("250 2.0.0 ok"),
		C("QUIT"),
		S("221 bye"),
		EOF(),
	})
	c := dialScript(t, s, Options{})
	m := msg("a@x.test", body)
	m.EightBit, m.UTF8Header = true, true
	m.Ret, m.EnvID = "hdrs", "q+1=x"
	m.Rcpts = []Recipient{
		{Addr: "b@y.test", Notify: []string{"success", "FAILURE"}, ORcpt: "B+x@y.test"},
		{Addr: "c@y.test", Notify: []string{"NEVER"}},
		{Addr: "d@y.test", ORcpt: "jörg@y.test"},
	}
	res, err := send(t, c, m)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	if !res.DSN || res.Rcpts[0].Err != nil || res.Rcpts[2].Err != nil {
		t.Errorf("result %+v", res)
	}
	if e := res.Rcpts[1].Err; e == nil || e.Permanent || e.Status.String() != "4.2.1" || res.Rcpts[1].Reply.Code != 450 {
		t.Errorf("second recipient %+v", res.Rcpts[1])
	}
	c.Close()
}

// Without DSN offered, no DSN parameter goes out (RFC 3461 section 4);
// without SIZE, no SIZE=.
func TestNoDSNParameters(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		G("MAIL FROM:<>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
	})
	c := dialScript(t, s, Options{})
	m := msg("", "x\r\n")
	m.Ret, m.EnvID = "FULL", "id"
	m.Rcpts = []Recipient{{Addr: "b@y.test", Notify: []string{"SUCCESS"}, ORcpt: "b@y.test"}}
	res, err := send(t, c, m)
	if err != nil || res.DSN || res.Delivered() != 1 {
		t.Fatalf("Send: %+v, %v", res, err)
	}
}

// STARTTLS (RFC 3207), then the second and only other EHLO; without
// STARTTLS offered, "may" goes on in plaintext after one EHLO.
func TestSTARTTLS(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250-STARTTLS", "250 PIPELINING"),
		C("STARTTLS"),
		S("220 2.0.0 ready"),
		TLS(),
		C("EHLO client.test"),
		S("250-mx.test", "250-PIPELINING", "250 DSN"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
		C("QUIT"),
		S("221 bye"),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		C("QUIT"),
		S("221 bye"),
	})
	c := dialScript(t, s, Options{TLS: TLSEncrypt})
	if st := c.TLS(); !st.Encrypted || st.Verified || st.FellBack || !c.Extensions().DSN || c.Extensions().StartTLS {
		t.Errorf("TLS %+v, extensions %+v (must be those said inside TLS)", st, c.Extensions())
	}
	if _, err := send(t, c, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c = dialScript(t, s, Options{TLS: TLSMay})
	if c.TLS().Encrypted {
		t.Error("encrypted without STARTTLS")
	}
	c.Close()
}

// "encrypt" and "verify" refuse a peer without STARTTLS; "verify"
// refuses a certificate it cannot verify, and takes one it can.
func TestTLSRequired(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		EOF(),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready"),
		TLSFail(),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready"),
		TLS(),
		C("EHLO client.test"),
		S("250 mx.test"),
	})
	_, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSEncrypt})
	if e, ok := AsError(err); !ok || e.Kind != KindTLS || e.Permanent || e.Status.String() != "4.7.4" {
		t.Errorf("encrypt without STARTTLS: %#v", err)
	}
	_, err = Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSVerify})
	if e, ok := AsError(err); !ok || e.Kind != KindTLS || e.Status.String() != "4.7.5" || !strings.Contains(e.Error(), "certificate") {
		t.Errorf("verify with an unknown certificate: %v", err)
	}
	cfg := testConfig()
	testCert(t)
	cfg.RootCAs = certPool
	c, err := Dial(context.Background(), cfg, s.target(), Options{TLS: TLSVerify})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.TLS(); !st.Encrypted || !st.Verified || !st.Satisfies(TLSVerify) {
		t.Errorf("TLS %+v", st)
	}
	c.conn.Close()
}

// "may" whose handshake fails goes on without TLS, on a new connection.
func TestTLSMayFallsBack(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready"),
		R(),
		S("this is not TLS"),
		Close(),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("MAIL FROM:<a@x.test>"),
		S("250 ok"),
		C("RCPT TO:<b@y.test>"),
		S("250 ok"),
		C("DATA"),
		S("354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
	})
	c := dialScript(t, s, Options{TLS: TLSMay})
	if st := c.TLS(); st.Encrypted || !st.FellBack || !st.Satisfies(TLSMay) || st.Satisfies(TLSEncrypt) {
		t.Errorf("TLS %+v", st)
	}
	if _, err := send(t, c, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
		t.Fatal(err)
	}
}

// STARTTLS refused with 454: "may" goes on in plaintext on the same
// connection, without another EHLO; "encrypt" gives up.
func TestSTARTTLSRefused(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250-STARTTLS", "250 PIPELINING"),
		C("STARTTLS"),
		S("454 4.7.0 TLS not available"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("454 4.7.0 TLS not available"),
		EOF(),
	})
	c := dialScript(t, s, Options{TLS: TLSMay})
	if st := c.TLS(); st.Encrypted || !st.FellBack {
		t.Errorf("TLS %+v", st)
	}
	if _, err := send(t, c, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
		t.Fatal(err)
	}
	_, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSEncrypt})
	if e, ok := AsError(err); !ok || e.Kind != KindReply || e.Command != "STARTTLS" || e.Reply.Code != 454 {
		t.Errorf("encrypt, STARTTLS refused: %v", err)
	}
}

// A reply that comes with the 220 to STARTTLS came before TLS: refused.
func TestSTARTTLSInjection(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready", "250-mx.test", "250 AUTH PLAIN"),
		EOF(),
	})
	_, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSEncrypt})
	if e, ok := AsError(err); !ok || e.Kind != KindProtocol || e.Command != "STARTTLS" {
		t.Errorf("Dial: %v", err)
	}
}

// EHLO refused with 5xx: HELO (RFC 5321 section 4.1.1.1), and no
// extension.
func TestHELOFallback(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 old.test SMTP"),
		C("EHLO client.test"),
		S("502 5.5.1 what?"),
		C("HELO client.test"),
		S("250 old.test"),
		C("MAIL FROM:<a@x.test>"),
		S("250 ok"),
		C("RCPT TO:<b@y.test>"),
		S("250 ok"),
		C("DATA"),
		S("354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
	})
	c := dialScript(t, s, Options{})
	if c.Extensions().ESMTP {
		t.Error("ESMTP after HELO")
	}
	m := msg("a@x.test", "x\r\n", "b@y.test")
	m.Ret = "FULL"
	if _, err := send(t, c, m); err != nil {
		t.Fatal(err)
	}
}

// Relay credentials go only inside TLS, with AUTH PLAIN (RFC 4616) or
// LOGIN.
func TestAuth(t *testing.T) {
	plain := base64.StdEncoding.EncodeToString([]byte("\x00user\x00secret"))
	s := serveScripts(t, []step{
		S("220 relay.test ESMTP"),
		C("EHLO client.test"),
		S("250-relay.test", "250 AUTH PLAIN LOGIN"),
		EOF(),
	}, []step{
		S("220 relay.test ESMTP"),
		C("EHLO client.test"),
		S("250-relay.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready"),
		TLS(),
		C("EHLO client.test"),
		S("250-relay.test", "250 AUTH LOGIN PLAIN"),
		C("AUTH PLAIN " + plain),
		S("235 2.7.0 ok"),
		C("QUIT"),
		S("221 bye"),
	}, []step{
		S("220 relay.test ESMTP"),
		C("EHLO client.test"),
		S("250-relay.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready"),
		TLS(),
		C("EHLO client.test"),
		S("250-relay.test", "250 AUTH LOGIN"),
		C("AUTH LOGIN"),
		S("334 VXNlcm5hbWU6"),
		C(base64.StdEncoding.EncodeToString([]byte("user"))),
		S("334 UGFzc3dvcmQ6"),
		C(base64.StdEncoding.EncodeToString([]byte("secret"))),
		S("535 5.7.8 bad"),
		EOF(),
	})
	auth := &Auth{User: "user", Password: "secret"}
	_, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSMay, Auth: auth})
	if e, ok := AsError(err); !ok || e.Command != "AUTH" || e.Permanent || strings.Contains(e.Error(), "secret") {
		t.Errorf("AUTH without TLS: %v", err)
	}
	c, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSMay, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	_, err = Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSMay, Auth: auth})
	if e, ok := AsError(err); !ok || e.Kind != KindReply || e.Reply.Code != 535 || e.Permanent || e.Status.String() != "4.7.8" {
		t.Errorf("refused login: %#v", err)
	}
}

// A message bigger than the peer's SIZE, one that needs SMTPUTF8 from a
// peer without it, or with an address that cannot be written, is refused
// here: none of it goes on the wire.
func TestRefusedHere(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250-PIPELINING", "250 SIZE 100"),
		G("MAIL FROM:<a@x.test> SIZE=3", "RCPT TO:<ok@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
		G("RSET", "MAIL FROM:<a@x.test> SIZE=3", "RCPT TO:<ok@y.test>", "DATA"),
		S("250 ok", "250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
		C("QUIT"),
		S("221 bye"),
	})
	c := dialScript(t, s, Options{})
	big := msg("a@x.test", strings.Repeat("x", 101), "b@y.test")
	if _, e := send(t, c, big); e == nil || e.Kind != KindLocal || !e.Permanent || e.Status.String() != "5.3.4" {
		t.Errorf("too big: %v", e)
	}
	u := msg("a@x.test", "x\r\n", "b@y.test")
	u.UTF8Header = true
	if res, e := send(t, c, u); e == nil || e.Status.String() != "5.6.7" || res.Rcpts[0].Err != e {
		t.Errorf("UTF-8 header: %v", e)
	}
	if _, e := send(t, c, msg("jörg@x.test", "x\r\n", "b@y.test")); e == nil || e.Status.String() != "5.6.7" {
		t.Errorf("UTF-8 sender: %v", e)
	}
	for _, bad := range []string{"a@x.test>\r\nRSET", "a\n@x.test", "<a@x.test", "a@x\x00.test", "a@x\x7f.test"} {
		if _, e := send(t, c, msg(bad, "x\r\n", "b@y.test")); e == nil || e.Status.String() != "5.1.7" || !errors.Is(e, e) {
			t.Errorf("sender %q: %v", bad, e)
		}
	}
	// A recipient refused here leaves the others.
	res, e := send(t, c, msg("a@x.test", "x\r\n", "jörg@y.test", "b@y.test>\r\nDATA", "ok@y.test"))
	if e != nil || res.Rcpts[0].Err.Status.String() != "5.6.7" || res.Rcpts[1].Err.Status.String() != "5.1.3" || res.Rcpts[2].Err != nil {
		t.Errorf("recipients: %+v, %v", res, e)
	}
	// The next transaction on the connection starts with RSET.
	if _, e := send(t, c, msg("a@x.test", "x\r\n", "ok@y.test")); e != nil {
		t.Error(e)
	}
	c.Close()
}

// MAIL refused under pipelining: the RCPT and DATA replies are read, and
// the MAIL reply decides for all; all recipients refused but DATA
// accepted: a lone dot (RFC 2920 section 3.1).
func TestPipelinedRefusals(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("550 5.7.1 go away", "503 5.5.1 MAIL first", "503 5.5.1 MAIL first"),
		G("RSET", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "RCPT TO:<c@y.test>", "DATA"),
		S("250 ok", "250 ok", "550 5.1.1 no", "550 5.1.1 no", "354 go"),
		C("."),
		S("554 5.5.1 no valid recipients"),
		G("RSET", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "250 ok", "451 4.3.0 try later"),
		C("QUIT"),
		S("221 bye"),
	})
	c := dialScript(t, s, Options{})
	res, e := send(t, c, msg("a@x.test", "x\r\n", "b@y.test"))
	if e == nil || e.Command != "MAIL FROM" || !e.Permanent || res.Rcpts[0].Err != e {
		t.Errorf("MAIL refused: %+v, %v", res, e)
	}
	res, e = send(t, c, msg("a@x.test", "x\r\n", "b@y.test", "c@y.test"))
	if e != nil || res.Delivered() != 0 || res.Rcpts[1].Err.Reply.Code != 550 {
		t.Errorf("all refused: %+v, %v", res, e)
	}
	res, e = send(t, c, msg("a@x.test", "x\r\n", "b@y.test"))
	if e == nil || e.Command != "DATA" || e.Permanent || res.Rcpts[0].Err != e {
		t.Errorf("DATA refused: %+v, %v", res, e)
	}
	if !c.Usable() {
		t.Error("unusable after refusals")
	}
	c.Close()
}

// The end of the data refused, a 421 that closes, a broken connection,
// a malformed reply, a greeting with our name, a 554 greeting.
func TestFailures(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("554-5.6.0 content refused", "554 5.6.0 see the log"),
		G("RSET", "MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("421 4.4.2 closing"),
		Close(),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		Close(),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "2x0 PIPELINING"),
		EOF(),
	}, []step{
		S("220 client.test ESMTP"),
		EOF(),
	}, []step{
		S("554 5.7.1 no service for you"),
		EOF(),
	})
	c := dialScript(t, s, Options{})
	res, e := send(t, c, msg("a@x.test", "x\r\n", "b@y.test"))
	if e == nil || e.Command != "end of data" || !e.Permanent || e.Status.String() != "5.6.0" || len(res.Final.Text) != 2 {
		t.Errorf("end of data refused: %+v, %v", res, e)
	}
	_, e = send(t, c, msg("a@x.test", "x\r\n", "b@y.test"))
	if e == nil || e.Reply.Code != 421 || e.Permanent || c.Usable() {
		t.Errorf("421: %v", e)
	}

	c = dialScript(t, s, Options{})
	_, e = send(t, c, msg("a@x.test", strings.Repeat("line\r\n", 100000), "b@y.test"))
	if e == nil || (e.Kind != KindConn && e.Kind != KindTimeout) || e.Permanent || c.Usable() {
		t.Errorf("connection closed during data: %#v", e)
	}

	_, err := Dial(context.Background(), testConfig(), s.target(), Options{})
	if e, ok := AsError(err); !ok || e.Kind != KindProtocol || e.Command != "EHLO" {
		t.Errorf("malformed EHLO reply: %v", err)
	}
	_, err = Dial(context.Background(), testConfig(), s.target(), Options{})
	if e, ok := AsError(err); !ok || e.Status.String() != "5.4.6" {
		t.Errorf("greeting with our name: %v", err)
	}
	_, err = Dial(context.Background(), testConfig(), s.target(), Options{})
	if e, ok := AsError(err); !ok || e.Kind != KindReply || e.Command != "greeting" || e.Reply.Code != 554 {
		t.Errorf("554 greeting: %v", err)
	}
}

// A peer that does not answer: a timeout, told apart from a reply.
func TestTimeout(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		EOF(),
	})
	cfg := testConfig()
	cfg.Timeouts.Command = 300 * time.Millisecond
	_, err := Dial(context.Background(), cfg, s.target(), Options{})
	e, ok := AsError(err)
	if !ok || e.Kind != KindTimeout || e.Permanent || e.HasReply() || e.Command != "EHLO" {
		t.Errorf("Dial: %#v", err)
	}
	// Nothing listens: a connection failure.
	l := s.target()
	l.Port = 1
	_, err = Dial(context.Background(), cfg, l, Options{})
	if e, ok := AsError(err); !ok || e.Kind != KindConn || e.Command != "connect" || e.Status.String() != "4.4.1" {
		t.Errorf("Dial to a closed port: %#v", err)
	}
}

// A peer without 8BITMIME gets 8-bit content converted to 7 bit, its
// SIZE the converted one, and no BODY=8BITMIME.
func TestConvertTo7Bit(t *testing.T) {
	in := "Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nh\xc3\xa9llo\r\n"
	out := "Subject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nh=C3=A9llo\r\n"
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250-PIPELINING", "250 SIZE"),
		G("MAIL FROM:<a@x.test> SIZE=113", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D(out + ".\r\n"),
		S("250 ok"),
	})
	if len(out) != 113 {
		t.Fatalf("converted size %d", len(out))
	}
	c := dialScript(t, s, Options{})
	m := msg("a@x.test", in, "b@y.test")
	m.EightBit = true
	res, e := send(t, c, m)
	if e != nil || !res.Converted {
		t.Fatalf("Send: %+v %v", res, e)
	}
}

// At a level that does not require a valid certificate the client still
// checks it and says so: Verified with a certificate for the host from a
// trusted root, VerifyErr otherwise (what an MTA-STS policy in testing
// mode reports).
func TestTLSVerifiedReported(t *testing.T) {
	handshake := []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 ready"),
		TLS(),
		C("EHLO client.test"),
		S("250 mx.test"),
	}
	s := serveScripts(t, handshake, handshake)
	c, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSMay})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.TLS(); !st.Encrypted || st.Verified || st.VerifyErr == nil || st.Satisfies(TLSVerify) {
		t.Errorf("unknown root: TLS %+v", st)
	}
	c.conn.Close()
	cfg := testConfig()
	testCert(t)
	cfg.RootCAs = certPool
	c, err = Dial(context.Background(), cfg, s.target(), Options{TLS: TLSMay})
	if err != nil {
		t.Fatal(err)
	}
	if st := c.TLS(); !st.Encrypted || !st.Verified || st.VerifyErr != nil {
		t.Errorf("trusted root: TLS %+v", st)
	}
	c.conn.Close()
}

// Data after the reply to STARTTLS, before the handshake (the client
// side of CVE-2011-0411): the client would take it for a reply inside
// TLS; it refuses the session instead (RFC 3207 section 4.2).
func TestSTARTTLSInjectedReply(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 STARTTLS"),
		C("STARTTLS"),
		S("220 2.0.0 ready", "250 2.0.0 injected in plaintext"),
		EOF(),
	})
	_, err := Dial(context.Background(), testConfig(), s.target(), Options{TLS: TLSEncrypt})
	if e, ok := AsError(err); !ok || e.Command != "STARTTLS" || e.Kind != KindProtocol || e.Status.String() != "4.7.0" {
		t.Errorf("data after the STARTTLS reply: %v", err)
	}
}
