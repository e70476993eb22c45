package smtpclient

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// A step of a scripted peer: the conversation as the server sees it, on
// a real loopback socket.
type step struct {
	kind byte   // 's' send, 'c' expect a line, 'g' expect one read, 'd' expect data, 't' TLS, 'x' close, 'e' expect EOF
	text string // what is sent or expected, CRLF included
}

// S: the server sends lines (CRLF added to each).
func S(lines ...string) step { return step{'s', strings.Join(lines, "\r\n") + "\r\n"} }

// C: the client must send this line next (CRLF added).
func C(line string) step { return step{'c', line + "\r\n"} }

// G: the client must send these lines in one segment: a single read
// returns exactly them (CRLF added to each). This is how pipelining
// shows (RFC 2920 section 3.1).
func G(lines ...string) step { return step{'g', strings.Join(lines, "\r\n") + "\r\n"} }

// D: the client must send exactly this content up to and with the final
// "." line.
func D(text string) step { return step{'d', text} }

// TLS: the server starts TLS with the test certificate.
func TLS() step { return step{kind: 't'} }

// TLSFail: the server tries TLS, which the client must break off.
func TLSFail() step { return step{kind: 'f'} }

// R: the server reads whatever the client sends next.
func R() step { return step{kind: 'r'} }

// Close: the server closes the connection.
func Close() step { return step{kind: 'x'} }

// EOF: the client must close the connection now.
func EOF() step { return step{kind: 'e'} }

// scriptServer runs one script per connection, in the order they come.
type scriptServer struct {
	t    *testing.T
	l    net.Listener
	cert tls.Certificate
	wg   sync.WaitGroup

	mu   sync.Mutex
	errs []string
}

func (s *scriptServer) target() Target {
	return Target{Host: "mx.test", IP: net.IPv4(127, 0, 0, 1), Port: s.l.Addr().(*net.TCPAddr).Port}
}

// serveScripts starts a server that plays scripts[i] on the i-th
// connection; at the end of the test every script must have run to its
// end.
func serveScripts(t *testing.T, scripts ...[]step) *scriptServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptServer{t: t, l: l, cert: testCert(t)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for i, script := range scripts {
			c, err := l.Accept()
			if err != nil {
				s.fail("connection %d: accept: %v", i+1, err)
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				s.play(i+1, c, script)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
		for _, e := range s.errs {
			t.Error(e)
		}
	})
	return s
}

func (s *scriptServer) fail(format string, a ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, a...))
}

// play runs one script; the first difference ends it.
func (s *scriptServer) play(n int, c net.Conn, script []step) {
	var pending []byte
	buf := make([]byte, 256*1024)
	read := func() bool {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		k, err := c.Read(buf)
		if err != nil {
			return false
		}
		pending = append(pending, buf[:k]...)
		return true
	}
	for i, st := range script {
		where := fmt.Sprintf("connection %d, step %d", n, i+1)
		switch st.kind {
		case 's':
			if _, err := c.Write([]byte(st.text)); err != nil {
				s.fail("%s: write: %v", where, err)
				return
			}
		case 'c':
			for bytes.IndexByte(pending, '\n') < 0 {
				if !read() {
					s.fail("%s: want %q, got %q and the end", where, st.text, pending)
					return
				}
			}
			j := bytes.IndexByte(pending, '\n') + 1
			if got := string(pending[:j]); got != st.text {
				s.fail("%s: want %q, got %q", where, st.text, got)
				return
			}
			pending = pending[j:]
		case 'g':
			if len(pending) > 0 {
				s.fail("%s: want one segment %q, but %q came before it", where, st.text, pending)
				return
			}
			if !read() {
				s.fail("%s: want %q, got the end", where, st.text)
				return
			}
			if got := string(pending); got != st.text {
				s.fail("%s: want in one segment %q, got %q", where, st.text, got)
				return
			}
			pending = nil
		case 'd':
			for len(pending) < len(st.text) {
				if !read() {
					break
				}
			}
			if got := string(pending); got != st.text {
				s.fail("%s: want data %q, got %q", where, st.text, got)
				return
			}
			pending = nil
		case 't':
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}})
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err != nil {
				s.fail("%s: TLS handshake: %v", where, err)
				return
			}
			tc.SetDeadline(time.Time{})
			c = tc
		case 'f':
			tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{s.cert}})
			tc.SetDeadline(time.Now().Add(10 * time.Second))
			if err := tc.Handshake(); err == nil {
				s.fail("%s: TLS handshake succeeded", where)
			}
			return
		case 'r':
			if len(pending) == 0 && !read() {
				s.fail("%s: want something, got the end", where)
				return
			}
			pending = nil
		case 'x':
			return
		case 'e':
			if len(pending) == 0 {
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if k, err := c.Read(buf); err == nil {
					pending = buf[:k]
				}
			}
			if len(pending) > 0 {
				s.fail("%s: want the end, got %q", where, pending)
			}
			return
		}
	}
}

var (
	certOnce sync.Once
	certVal  tls.Certificate
	certPool *x509.CertPool
)

// testCert is a self-signed certificate for mx.test and 127.0.0.1.
func testCert(t testing.TB) tls.Certificate {
	certOnce.Do(func() {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1),
			Subject:      pkix.Name{CommonName: "mx.test"},
			DNSNames:     []string{"mx.test"},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			panic(err)
		}
		leaf, _ := x509.ParseCertificate(der)
		certVal = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
		certPool = x509.NewCertPool()
		certPool.AddCert(leaf)
	})
	return certVal
}

// testConfig is the client's configuration for the tests: short
// timeouts, so that a hung test ends.
func testConfig() Config {
	return Config{Hostname: "client.test", Timeouts: Timeouts{Connect: 5 * time.Second, Greeting: 10 * time.Second,
		Command: 10 * time.Second, Mail: 10 * time.Second, Rcpt: 10 * time.Second, DataInit: 10 * time.Second,
		DataBlock: 10 * time.Second, DataTerm: 10 * time.Second}}
}

func dialScript(t *testing.T, s *scriptServer, opts Options) *Conn {
	t.Helper()
	c, err := Dial(context.Background(), testConfig(), s.target(), opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c
}
