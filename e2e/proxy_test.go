package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// dialProxied connects to addr and sends a PROXY protocol v1 header
// claiming the client is client (ip:port).
func dialProxied(t *testing.T, addr, client string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	host, port, _ := net.SplitHostPort(client)
	_, dport, _ := net.SplitHostPort(addr)
	fmt.Fprintf(c, "PROXY TCP4 %s 127.0.0.1 %s %s\r\n", host, port, dport)
	return c, bufio.NewReader(c)
}

// TestProxyProtocol: behind a proxy speaking the PROXY protocol, the
// client's own address is what postoffice sees: the loopback exemption for
// plaintext logins does not extend to clients the proxy forwards, the
// mail journal records them, and a connection without a header is
// closed.
func TestProxyProtocol(t *testing.T) {
	trusted := "proxy_protocol = true\nproxy_trusted = [\"127.0.0.1\"]\n"
	in := newInstanceWith(t, map[string]string{"pop3": trusted, "smtp": trusted})
	in.addUser("alice@example.org", "pw-alice")
	in.start()

	// A client far away, forwarded by a proxy on loopback: plaintext
	// USER/PASS is refused, as for any remote client without TLS.
	c, r := dialProxied(t, in.addr("pop3"), "203.0.113.5:40000")
	p := &popConn{t: t, c: c, r: r}
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting through the proxy: %q", g)
	}
	if got := p.cmd("USER alice@example.org"); !strings.Contains(got, "[AUTH] Plaintext") {
		t.Errorf("USER from 203.0.113.5 without TLS: %q, want the plaintext refusal", got)
	}
	// A client on the proxy's loopback may, like a direct one.
	c, r = dialProxied(t, in.addr("pop3"), "127.0.0.9:40001")
	p = &popConn{t: t, c: c, r: r}
	p.line()
	p.login("alice@example.org", "pw-alice")
	p.quit()

	// SMTP: the journal names the client the header gave.
	c, r = dialProxied(t, in.addr("smtp"), "198.51.100.77:2525")
	s := &smtpConn{t: t, c: c, r: r}
	s.expect(220, "")
	s.cmd("EHLO client.test", 250, "")
	s.cmd("MAIL FROM:<sender@example.net>", 250, "2.1.0")
	s.cmd("RCPT TO:<alice@example.org>", 250, "2.1.5")
	s.cmd("DATA", 354, "")
	fmt.Fprintf(c, "%s.\r\n", strings.ReplaceAll(plainMsg, "\r\n.", "\r\n.."))
	s.expect(250, "2.0.0")
	s.cmd("QUIT", 221, "")
	waitFor(t, "the journal entry", func() bool {
		return strings.Contains(in.must("", "journal", "--event", "received", "--json"), "198.51.100.77:2525")
	})

	// No header: closed without a greeting.
	plain, err := net.Dial("tcp", in.addr("pop3"))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	plain.Write([]byte("CAPA\r\n"))
	plain.SetReadDeadline(time.Now().Add(30 * time.Second))
	if b, err := io.ReadAll(plain); len(b) != 0 || (err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset")) {
		t.Errorf("connection without a PROXY header got %q, %v; want it closed", b, err)
	}
	waitFor(t, "the log line of the connection without a header", func() bool {
		return strings.Contains(in.logText(), "bad PROXY protocol header")
	})
}
