package smtpd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend is an in-memory Backend. Deliver reads the whole body
// before storing anything, and stores nothing when reading failed.
type fakeBackend struct {
	mu         sync.Mutex
	users      map[string]string // username -> password
	senderErr  func(env *Envelope) error
	rcptErr    func(env *Envelope, rcpt string) error
	deliverErr func(env *Envelope, body []byte) error
	// deliverRaw, when set, replaces Deliver entirely.
	deliverRaw func(ctx context.Context, env *Envelope, body io.Reader) error

	senders   []string
	delivered []delivery
	readErrs  []error // errors Deliver saw while reading bodies
}

type delivery struct {
	env  Envelope
	body []byte
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{users: map[string]string{"alice": "secret-pw-1"}}
}

func (b *fakeBackend) Authenticate(_ context.Context, username, password string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if pw, ok := b.users[username]; ok && pw == password {
		return username + "@example.org", nil
	}
	return "", ErrAuthFailed
}

func (b *fakeBackend) CheckSender(_ context.Context, env *Envelope) error {
	b.mu.Lock()
	b.senders = append(b.senders, env.From)
	f := b.senderErr
	b.mu.Unlock()
	if f != nil {
		return f(env)
	}
	return nil
}

func (b *fakeBackend) CheckRecipient(_ context.Context, env *Envelope, rcpt string) error {
	b.mu.Lock()
	f := b.rcptErr
	b.mu.Unlock()
	if f != nil {
		return f(env, rcpt)
	}
	return nil
}

func (b *fakeBackend) Deliver(ctx context.Context, env *Envelope, body io.Reader) error {
	if b.deliverRaw != nil {
		return b.deliverRaw(ctx, env, body)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		b.mu.Lock()
		b.readErrs = append(b.readErrs, err)
		b.mu.Unlock()
		return err // nothing stored
	}
	if b.deliverErr != nil {
		if err := b.deliverErr(env, data); err != nil {
			return err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.delivered = append(b.delivered, delivery{env: *env, body: data})
	return nil
}

func (b *fakeBackend) deliveries() []delivery {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]delivery(nil), b.delivered...)
}

func (b *fakeBackend) sawSender(from string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range b.senders {
		if s == from {
			return true
		}
	}
	return false
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type harness struct {
	t     *testing.T
	srv   *Server
	be    *fakeBackend
	addr  string
	logs  *lockedBuffer
	serve chan error
}

type harnessOpt struct {
	cfg    func(*Config)
	wrap   func(net.Listener) net.Listener // e.g. non-loopback, tls.NewListener
	noTLS  bool                            // no STARTTLS
	listen net.Listener                    // instead of 127.0.0.1:0
}

// newHarness starts a server on a loopback port with STARTTLS configured.
func newHarness(t *testing.T, o harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, be: newFakeBackend(), logs: &lockedBuffer{}, serve: make(chan error, 1)}
	cfg := Config{
		Hostname: "mx.test",
		Backend:  h.be,
		Logger:   slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if !o.noTLS {
		cfg.TLSConfig = serverTLS()
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	h.srv = NewServer(cfg)
	l := o.listen
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	h.addr = l.Addr().String()
	if o.wrap != nil {
		l = o.wrap(l)
	}
	go func() { h.serve <- h.srv.Serve(l) }()
	t.Cleanup(func() {
		h.srv.Close()
		if err := <-h.serve; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", h.logs.String())
		}
	})
	return h
}

// client is a raw SMTP client: every reply is checked by the test.
type client struct {
	t    *testing.T
	conn net.Conn
	tp   *textproto.Conn
}

func (h *harness) dial() *client {
	h.t.Helper()
	nc, err := net.Dial("tcp", h.addr)
	if err != nil {
		h.t.Fatal(err)
	}
	return newClient(h.t, nc)
}

func newClient(t *testing.T, nc net.Conn) *client {
	t.Helper()
	c := &client{t: t, conn: nc, tp: textproto.NewConn(nc)}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second)) // a hang fails, not blocks
	c.expect(220, "mx.test ESMTP")
	return c
}

// reply reads one (possibly multi-line) reply.
func (c *client) reply() (int, string) {
	c.t.Helper()
	code, msg, err := c.tp.ReadResponse(0)
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return code, msg
}

// expect reads a reply and checks its code and the start of its text
// (which begins with the enhanced status code).
func (c *client) expect(code int, prefix string) string {
	c.t.Helper()
	got, msg := c.reply()
	if got != code || !strings.HasPrefix(msg, prefix) {
		c.t.Fatalf("got %d %q, want %d %q...", got, msg, code, prefix)
	}
	return msg
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.conn, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// cmd sends one command line and checks the reply.
func (c *client) cmd(line string, code int, prefix string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(code, prefix)
}

// expectClosed checks that the server closed the connection.
func (c *client) expectClosed() {
	c.t.Helper()
	buf := make([]byte, 512)
	n, err := c.tp.R.Read(buf)
	if err == nil {
		c.t.Fatalf("connection still open, read %q", buf[:n])
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal("connection still open: the test's deadline ran out")
	}
}

func (c *client) ehlo() string {
	c.t.Helper()
	return c.cmd("EHLO client.test", 250, "mx.test Hello client.test")
}

// startTLS upgrades the connection (RFC 3207) and returns the new client.
func (c *client) startTLS() *client {
	c.t.Helper()
	c.cmd("STARTTLS", 220, "2.0.0")
	tc := tls.Client(c.conn, clientTLS())
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("handshake: %v", err)
	}
	return &client{t: c.t, conn: tc, tp: textproto.NewConn(tc)}
}

// transaction sends MAIL, RCPT and DATA with body (CRLF lines, already
// dot-stuffed) and returns the reply text of the final reply.
func (c *client) transaction(from, to, body string, code int, prefix string) string {
	c.t.Helper()
	c.cmd("MAIL FROM:<"+from+">", 250, "2.1.0")
	c.cmd("RCPT TO:<"+to+">", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send(body + ".\r\n")
	return c.expect(code, prefix)
}

func plainIR(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// remoteListener makes every connection look like it comes from
// 192.0.2.1 (TEST-NET-1), a non-loopback client, without dialing one.
type remoteListener struct{ net.Listener }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 40000}
}

func nonLoopback(l net.Listener) net.Listener { return remoteListener{l} }

var (
	certOnce sync.Once
	testCert tls.Certificate
	certPool *x509.CertPool
)

// makeCert creates one self-signed certificate for "localhost" per test
// binary.
func makeCert() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	testCert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
	certPool = x509.NewCertPool()
	certPool.AddCert(cert)
}

func serverTLS() *tls.Config {
	certOnce.Do(makeCert)
	return &tls.Config{Certificates: []tls.Certificate{testCert}}
}

func clientTLS() *tls.Config {
	certOnce.Do(makeCert)
	return &tls.Config{RootCAs: certPool, ServerName: "localhost"}
}
