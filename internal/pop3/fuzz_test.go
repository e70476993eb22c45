package pop3

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fuzzConn is a connection whose client sends a fixed input and then
// closes; the server's output is kept.
type fuzzConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *fuzzConn) Close() error                     { return nil }
func (c *fuzzConn) LocalAddr() net.Addr              { return fakeAddr("127.0.0.1:110") }
func (c *fuzzConn) RemoteAddr() net.Addr             { return fakeAddr("127.0.0.1:40000") }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzSession feeds arbitrary bytes to a session as a client's input: the
// session must neither panic nor hang, must release every maildrop it
// opened, and may commit deletions only after a QUIT.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"CAPA\r\nQUIT\r\n",
		"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 1\r\nDELE 1\r\nRSET\r\nDELE 3\r\nQUIT\r\n",
		"AUTH PLAIN " + b64("\x00alice\x00secret") + "\r\nLIST 2\r\nUIDL 1\r\nDELE 2\r\nQUIT\r\n",
		"AUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("secret") + "\r\nRETR 3\r\nDELE 1\r\n",
		"AUTH PLAIN\r\n*\r\nAUTH\r\nUSER x\r\nPASS y\r\nAUTH LOGIN =\r\n\r\n",
		"STLS\r\n\x16\x03\x01\x00\x05hello",
		"\x00\xff\r\n" + strings.Repeat("A", 3000) + "\r\nNOOP\r\nUSER alice\r\nPASS secret\r\nTOP 1 0\r\n",
		"user alice\npass secret\nlist 99999999999999999999\ntop 1 99999999999999999999\ndele 1\nquit\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		be := newFakeBackend()
		srv := NewServer(Config{
			Hostname:         "pop.test",
			Backend:          be,
			TLSConfig:        serverTLS(),
			AuthFailureDelay: -1,
			Logger:           slog.New(slog.DiscardHandler),
		})
		var panicked any
		srv.onPanic = func(v any) { panicked = v }
		conn := &fuzzConn{in: bytes.NewReader(data)}
		done := make(chan struct{})
		go func() {
			srv.ServeConn(conn)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("session did not end at the end of its input\n%s", buf[:runtime.Stack(buf, true)])
		}
		srv.Close()
		if panicked != nil {
			t.Fatalf("session panicked: %v", panicked)
		}
		opened, closed, _, commits := be.snapshot()
		if opened != closed {
			t.Fatalf("maildrops opened %d, closed %d", opened, closed)
		}
		if len(be.problems) > 0 {
			t.Fatalf("backend misuse: %v", be.problems)
		}
		if len(commits) > 0 && !bytes.Contains(bytes.ToUpper(data), []byte("QUIT")) {
			t.Fatalf("commit %v without QUIT", commits)
		}
		if !bytes.HasPrefix(conn.out.Bytes(), []byte("+OK pop.test POP3 server ready\r\n")) {
			t.Fatalf("no greeting: %q", conn.out.Bytes())
		}
	})
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
