package pop3

import (
	"crypto/tls"
	"net"
	"testing"
)

func TestSTLS(t *testing.T) {
	e := newEnv(t, nil, withTLS)
	c := e.dial()
	run(t, c, []step{
		{"STLS x", "-ERR Syntax error: STLS takes no argument", ""},
		{"USER alice", "+OK", ""},
		{"stls", "+OK Begin TLS negotiation", ""},
	})
	c.starttls()
	if !c.conn.(*tls.Conn).ConnectionState().HandshakeComplete {
		t.Fatal("no TLS")
	}
	run(t, c, []step{
		// RFC 2595 section 4: the USER given before STLS is forgotten.
		{"PASS secret", "-ERR No user name given, send USER first", ""},
		{"STLS", "-ERR Already using TLS", ""},
		{"USER alice", "+OK", ""},
		{"PASS secret", loggedIn, ""},
		{"RETR 1", "+OK 44 octets", stuffed1},
		{"DELE 1", "+OK Message 1 deleted", ""},
		{"QUIT", "+OK pop.test POP3 server signing off (2 messages left)", ""},
	})
	c.expectEOF()
}

func TestSTLSNotConfigured(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.expect("STLS", "-ERR STLS not available")
	c.login()
	c.expect("STLS", notInState)
}

// Plaintext sent after STLS in the same packet must not be executed inside
// the TLS session (CVE-2011-0411 style command injection).
func TestSTLSDiscardsPipelinedPlaintext(t *testing.T) {
	e := newEnv(t, nil, withTLS)
	c := e.dial()
	c.write("STLS\r\nXINJECTED\r\nUSER alice\r\n")
	if got := c.line(); got != "+OK Begin TLS negotiation" {
		t.Fatalf("got %q", got)
	}
	c.starttls()
	// Had the injected lines survived, the first answers would be
	// "-ERR Unknown command" and "+OK" to them, and PASS would succeed.
	c.expect("NOOP", notInState)
	c.expect("PASS secret", "-ERR No user name given, send USER first")
}

func TestSTLSHandshakeFailure(t *testing.T) {
	e := newEnv(t, nil, withTLS)
	c := e.dial()
	c.expect("STLS", "+OK Begin TLS negotiation")
	c.write("this is not a TLS ClientHello\r\n")
	// The server gives up on the session; what it sends (a TLS alert) is
	// not POP3 any more.
	buf := make([]byte, 512)
	for {
		if _, err := c.conn.Read(buf); err != nil {
			break
		}
	}
	waitSessions(t, e.srv, 0)
}

func TestImplicitTLS(t *testing.T) {
	e := newEnv(t, func(l net.Listener) net.Listener {
		return tls.NewListener(nonLoopback(l), serverTLS())
	})
	conn, err := tls.Dial("tcp", e.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	if g := c.line(); g != "+OK pop.test POP3 server ready" {
		t.Fatalf("greeting %q", g)
	}
	// Already TLS: no STLS, and plaintext mechanisms are fine even from a
	// non-loopback address (RFC 8314 section 3.3).
	checkCaps(t, c, capsPlain)
	c.expect("STLS", "-ERR Already using TLS")
	c.login()
	run(t, c, []step{
		{"RETR 2", "+OK 56 octets", stuffed2},
		{"DELE 2", "+OK Message 2 deleted", ""},
		{"QUIT", "+OK pop.test POP3 server signing off (2 messages left)", ""},
	})
	c.expectEOF()
	if _, _, _, commits := e.be.snapshot(); len(commits) != 1 || len(commits[0]) != 1 || commits[0][0] != 1 {
		t.Errorf("commits %v", commits)
	}
}

// A client that never completes the implicit-TLS handshake gets no
// greeting and is dropped.
func TestImplicitTLSBadClient(t *testing.T) {
	e := newEnv(t, func(l net.Listener) net.Listener { return tls.NewListener(l, serverTLS()) })
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, conn)
	c.write("USER alice\r\n")
	buf := make([]byte, 512)
	for {
		if _, err := c.conn.Read(buf); err != nil {
			break
		}
	}
	waitSessions(t, e.srv, 0)
}
