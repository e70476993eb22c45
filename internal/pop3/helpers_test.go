package pop3

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// env is a running server on 127.0.0.1:0 with a fake backend.
type env struct {
	t     *testing.T
	srv   *Server
	be    *fakeBackend
	addr  string
	logs  *testlib.SyncBuffer
	serve chan error
}

// testConfig is the default test configuration: no auth delay, many bad
// commands allowed (tables send lots of them), debug logs captured.
func testConfig(be *fakeBackend, logs *testlib.SyncBuffer) Config {
	return Config{
		Hostname:         "pop.test",
		Backend:          be,
		MaxBadCommands:   1000,
		AuthFailureDelay: -1,
		Logger:           slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// newEnv starts a server; mods adjust the config; wrap, if set, wraps the
// listener (fake remote addresses, implicit TLS).
func newEnv(t *testing.T, wrap func(net.Listener) net.Listener, mods ...func(*Config)) *env {
	t.Helper()
	e := &env{t: t, be: newFakeBackend(), logs: &testlib.SyncBuffer{}, serve: make(chan error, 1)}
	cfg := testConfig(e.be, e.logs)
	for _, m := range mods {
		m(&cfg)
	}
	e.srv = NewServer(cfg)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = l.Addr().String()
	if wrap != nil {
		l = wrap(l)
	}
	go func() { e.serve <- e.srv.Serve(l) }()
	t.Cleanup(func() {
		if err := e.srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-e.serve; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if n := e.srv.Sessions(); n != 0 {
			t.Errorf("Sessions() after Close = %d", n)
		}
		e.be.mu.Lock()
		defer e.be.mu.Unlock()
		if e.be.opened != e.be.closed {
			t.Errorf("maildrops opened %d, closed %d", e.be.opened, e.be.closed)
		}
		for _, p := range e.be.problems {
			t.Error(p)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", e.logs.String())
		}
	})
	return e
}

// client is a minimal POP3 client that checks exact bytes.
type client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

// dial connects and checks the greeting.
func (e *env) dial() *client {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		e.t.Fatal(err)
	}
	c := newClient(e.t, conn)
	if g := c.line(); g != "+OK pop.test POP3 server ready" {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

func newClient(t *testing.T, conn net.Conn) *client {
	// A safety net against hangs, not a timing assertion.
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { conn.Close() })
	return &client{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write %q: %v", s, err)
	}
}

func (c *client) send(line string) { c.t.Helper(); c.write(line + "\r\n") }

// line reads one response line, which must end in CRLF.
func (c *client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("reading response: %v (got %q)", err, l)
	}
	if !strings.HasSuffix(l, "\r\n") {
		c.t.Fatalf("response %q does not end in CRLF", l)
	}
	return strings.TrimSuffix(l, "\r\n")
}

func (c *client) cmd(line string) string { c.t.Helper(); c.send(line); return c.line() }

// expect sends a command and checks the exact response line.
func (c *client) expect(cmd, want string) {
	c.t.Helper()
	if got := c.cmd(cmd); got != want {
		c.t.Fatalf("%q: got %q, want %q", cmd, got, want)
	}
}

// expectPrefix sends a command and checks the start of the response line.
func (c *client) expectPrefix(cmd, want string) {
	c.t.Helper()
	if got := c.cmd(cmd); !strings.HasPrefix(got, want) {
		c.t.Fatalf("%q: got %q, want %q...", cmd, got, want)
	}
}

// multi reads the rest of a multi-line response, raw, up to and including
// the terminating ".\r\n".
func (c *client) multi() string {
	c.t.Helper()
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading multi-line response: %v (got %q)", err, b.String()+l)
		}
		b.WriteString(l)
		if l == ".\r\n" {
			return b.String()
		}
	}
}

// lines reads a multi-line response as lines, terminator excluded.
func (c *client) lines() []string {
	c.t.Helper()
	raw := strings.TrimSuffix(c.multi(), ".\r\n")
	if raw == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(raw, "\r\n"), "\r\n")
}

// expectEOF checks that the server closed the connection.
func (c *client) expectEOF() {
	c.t.Helper()
	b, err := c.r.ReadByte()
	if err == nil {
		rest, _ := c.r.ReadString('\n')
		c.t.Fatalf("expected the connection closed, got %q", string(b)+rest)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		c.t.Fatalf("expected EOF, got %v", err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func (c *client) login() {
	c.t.Helper()
	c.expect("USER alice", "+OK")
	if got := c.cmd("PASS secret"); !strings.HasPrefix(got, "+OK ") {
		c.t.Fatalf("PASS: %q", got)
	}
}

// starttls upgrades the connection after a +OK to STLS.
func (c *client) starttls() {
	c.t.Helper()
	tc := tls.Client(c.conn, clientTLS())
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// testCert is a self-signed certificate for localhost and 127.0.0.1, made
// once for all the tests.
var testCert = sync.OnceValues(func() (tls.Certificate, *x509.CertPool) {
	c, err := testlib.SelfSigned(testlib.CertOptions{})
	if err != nil {
		panic(err)
	}
	return c, testlib.CertPool(c)
})

func serverTLS() *tls.Config {
	cert, _ := testCert()
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

func clientTLS() *tls.Config {
	_, pool := testCert()
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

func withTLS(c *Config) { c.TLSConfig = serverTLS() }

// remoteAddrListener makes every accepted connection report a fixed remote
// address, to test the non-loopback policy without dialling one.
type remoteAddrListener struct {
	net.Listener
	remote net.Addr
}

func (l remoteAddrListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteAddrConn{c, l.remote}, nil
}

type remoteAddrConn struct {
	net.Conn
	remote net.Addr
}

func (c remoteAddrConn) RemoteAddr() net.Addr { return c.remote }

func nonLoopback(l net.Listener) net.Listener {
	return remoteAddrListener{l, &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}}
}

// countingListener counts the server's writes on all its connections.
type countingListener struct {
	net.Listener
	writes *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.writes}, nil
}

type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}
