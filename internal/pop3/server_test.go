package pop3

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// waitSessions waits until the server has n open sessions.
func waitSessions(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Sessions() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Sessions() = %d, want %d", s.Sessions(), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestCloseAppliesNoDeletions(t *testing.T) {
	e := newEnv(t, nil)
	e.be.set(func(b *fakeBackend) {
		b.users["dave"], b.users["erin"] = "pw", "pw"
		b.boxes["dave"] = []fakeMsg{{"d1", "Subject: d\r\n\r\nx\r\n"}}
		b.boxes["erin"] = []fakeMsg{{"e1", "Subject: e\r\n\r\nx\r\n"}}
	})
	passwords := map[string]string{"alice": "secret", "dave": "pw", "erin": "pw"}
	var clients []*client
	for _, u := range []string{"alice", "dave", "erin"} {
		c := e.dial()
		c.expect("USER "+u, "+OK")
		if got := c.cmd("PASS " + passwords[u]); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("login %s: %q", u, got)
		}
		c.expect("DELE 1", "+OK Message 1 deleted")
		clients = append(clients, c)
	}
	idle := e.dial() // one more, still in AUTHORIZATION
	idle.expect("USER alice", "+OK")
	waitSessions(t, e.srv, 4)

	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range append(clients, idle) {
		c.expectEOF()
	}
	opened, closed, _, commits := e.be.snapshot()
	if len(commits) != 0 {
		t.Errorf("Close committed %v", commits)
	}
	if opened != 3 || closed != 3 {
		t.Errorf("opened %d closed %d, want 3 and 3", opened, closed)
	}
	if n := e.srv.Sessions(); n != 0 {
		t.Errorf("Sessions() = %d after Close", n)
	}
	// Serve on a closed server refuses at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := net.Dial("tcp", l.Addr().String()); err == nil {
		t.Error("listener given to a closed server still accepts")
	}
}

func TestShutdownWaitsForSessions(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	c.expect("DELE 1", "+OK Message 1 deleted")

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	// The listener closes: new connections are refused.
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := net.Dial("tcp", e.addr)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still open during Shutdown")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// The open session goes on and ends normally, committing.
	c.expect("STAT", "+OK 2 90")
	c.expect("QUIT", "+OK pop.test POP3 server signing off (2 messages left)")
	c.expectEOF()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, _, _, commits := e.be.snapshot(); len(commits) != 1 {
		t.Errorf("commits %v", commits)
	}
}

func TestShutdownDeadline(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	c.expect("DELE 1", "+OK Message 1 deleted")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectEOF()
	if opened, closed, _, commits := e.be.snapshot(); len(commits) != 0 || opened != closed {
		t.Errorf("opened %d closed %d commits %v", opened, closed, commits)
	}
}

// A session waiting out an authentication-failure delay ends promptly on
// Close.
func TestCloseDuringAuthDelay(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.AuthFailureDelay = time.Hour })
	c := e.dial()
	c.expect("USER alice", "+OK")
	c.send("PASS wrong")
	waitSessions(t, e.srv, 1)
	// Wait until the backend has been asked, so the session is asleep.
	deadline := time.Now().Add(20 * time.Second)
	for {
		e.be.mu.Lock()
		n := e.be.authCalls
		e.be.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("PASS never reached the backend")
		}
		time.Sleep(2 * time.Millisecond)
	}
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectEOF()
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		e := &env{t: t, be: newFakeBackend(), logs: &testlib.SyncBuffer{}}
		cfg := testConfig(e.be, e.logs)
		cfg.TLSConfig = serverTLS()
		srv := NewServer(cfg)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		e.addr = l.Addr().String()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()

		for i := range 6 {
			c := e.dial()
			switch i % 3 {
			case 0: // complete session
				c.login()
				c.expect("DELE 1", "+OK Message 1 deleted")
				c.expect("RSET", "+OK Maildrop has 3 messages (134 octets)")
				c.cmd("QUIT")
				c.expectEOF()
			case 1: // STLS, then dropped
				c.expect("STLS", "+OK Begin TLS negotiation")
				c.starttls()
				c.expect("NOOP", notInState)
				c.conn.Close()
			case 2: // left open for Close
				c.expect("USER alice", "+OK")
			}
		}
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSessionsCount(t *testing.T) {
	e := newEnv(t, nil)
	if n := e.srv.Sessions(); n != 0 {
		t.Fatalf("Sessions() = %d", n)
	}
	c1 := e.dial()
	c2 := e.dial()
	waitSessions(t, e.srv, 2)
	c1.cmd("QUIT")
	c1.expectEOF()
	waitSessions(t, e.srv, 1)
	c2.conn.Close()
	waitSessions(t, e.srv, 0)
}

func TestNewServerDefaults(t *testing.T) {
	s := NewServer(Config{Backend: newFakeBackend()})
	if s.timeout != DefaultInactivityTimeout || s.maxBad != DefaultMaxBadCommands || s.authDelay != DefaultAuthFailureDelay {
		t.Errorf("defaults: timeout %v maxBad %d authDelay %v", s.timeout, s.maxBad, s.authDelay)
	}
	if s.hostname == "" || s.log == nil {
		t.Errorf("hostname %q, logger %v", s.hostname, s.log)
	}
	s = NewServer(Config{Backend: newFakeBackend(), AuthFailureDelay: -1, Logger: slog.New(slog.DiscardHandler)})
	if s.authDelay != 0 {
		t.Errorf("negative AuthFailureDelay gave %v", s.authDelay)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

func TestDotWriter(t *testing.T) {
	tests := []struct {
		chunks []string
		want   string
	}{
		{nil, ".\r\n"},
		{[]string{"a\r\n"}, "a\r\n.\r\n"},
		{[]string{".\r\n"}, "..\r\n.\r\n"},
		{[]string{"..\r\n"}, "...\r\n.\r\n"},
		{[]string{"a.b\r\n.c\r\n"}, "a.b\r\n..c\r\n.\r\n"},
		{[]string{"no newline"}, "no newline\r\n.\r\n"},
		// Line starts across write boundaries.
		{[]string{"x\r", "\n.", "y\r\n", ".", ".", "\r\n"}, "x\r\n..y\r\n...\r\n.\r\n"},
		{[]string{"a", ".b\r\n"}, "a.b\r\n.\r\n"},
		{[]string{"\xff\x00.\r\n\x80"}, "\xff\x00.\r\n\x80\r\n.\r\n"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		d := &dotWriter{w: bw}
		for _, c := range tt.chunks {
			if n, err := d.Write([]byte(c)); n != len(c) || err != nil {
				t.Fatalf("Write %q: %d %v", c, n, err)
			}
		}
		if err := d.Close(); err != nil {
			t.Fatal(err)
		}
		bw.Flush()
		if b.String() != tt.want {
			t.Errorf("%q: got %q, want %q", tt.chunks, b.String(), tt.want)
		}
	}
}

// The dot-stuffer agrees with a line-by-line reference on random content
// cut into random writes.
func TestDotWriterRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("..\r\nab\x00\xff")
	for range 2000 {
		msg := make([]byte, rng.IntN(300))
		for i := range msg {
			msg[i] = alphabet[rng.IntN(len(alphabet))]
		}
		// Reference: RFC 1939 section 3 line by line.
		var want bytes.Buffer
		for _, line := range bytes.SplitAfter(msg, []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			if line[0] == '.' {
				want.WriteByte('.')
			}
			want.Write(line)
		}
		if len(msg) > 0 && msg[len(msg)-1] != '\n' {
			want.WriteString("\r\n")
		}
		want.WriteString(".\r\n")

		var got bytes.Buffer
		bw := bufio.NewWriterSize(&got, 16)
		d := &dotWriter{w: bw}
		for rest := msg; len(rest) > 0; {
			k := 1 + rng.IntN(len(rest))
			if _, err := d.Write(rest[:k]); err != nil {
				t.Fatal(err)
			}
			rest = rest[k:]
		}
		d.Close()
		bw.Flush()
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("%q: got %q, want %q", msg, got.Bytes(), want.Bytes())
		}
	}
}

func TestCopyTop(t *testing.T) {
	long := strings.Repeat("h", 10000)
	msg := "A: " + long + "\r\nB: b\r\n\r\n1 " + long + "\r\n2\r\n\r\n4\r\n"
	tests := []struct {
		msg  string
		n    int
		want string
	}{
		{msg, 0, "A: " + long + "\r\nB: b\r\n\r\n"},
		{msg, 1, "A: " + long + "\r\nB: b\r\n\r\n1 " + long + "\r\n"},
		{msg, 3, "A: " + long + "\r\nB: b\r\n\r\n1 " + long + "\r\n2\r\n\r\n"},
		{msg, 100, msg},
		{"A: a\r\nB: b\r\n", 0, "A: a\r\nB: b\r\n"}, // no body at all
		{"A: a\r\n\r\nbody", 0, "A: a\r\n\r\n"},
		{"A: a\r\n\r\nbody", 1, "A: a\r\n\r\nbody"},
		{"", 5, ""},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		// OneByteReader: the result must not depend on read sizes.
		if err := copyTop(&b, iotest.OneByteReader(strings.NewReader(tt.msg)), tt.n); err != nil {
			t.Fatal(err)
		}
		if b.String() != tt.want {
			t.Errorf("copyTop(%.20q, %d) = %.60q, want %.60q", tt.msg, tt.n, b.String(), tt.want)
		}
	}
	if err := copyTop(io.Discard, iotest.ErrReader(errors.New("boom")), 1); err == nil {
		t.Error("read error not returned")
	}
}

func TestParseNumber(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1": 1, "007": 7, "123456": 123456} {
		if n, ok := parseNumber(in); !ok || n != want {
			t.Errorf("parseNumber(%q) = %d, %v", in, n, ok)
		}
	}
	if n, ok := parseNumber(strings.Repeat("9", 40)); !ok || n < 1<<62 {
		t.Errorf("huge number: %d %v", n, ok)
	}
	for _, in := range []string{"", "-1", "+1", "1a", " 1", "1.0", "0x10", "١"} {
		if _, ok := parseNumber(in); ok {
			t.Errorf("parseNumber(%q) accepted", in)
		}
	}
}

// flakyListener fails its first Accept like a listener out of file
// descriptors.
type flakyListener struct {
	net.Listener
	failed bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, errors.New("accept: too many open files")
	}
	return l.Listener.Accept()
}

func TestServeSurvivesAcceptError(t *testing.T) {
	e := newEnv(t, func(l net.Listener) net.Listener { return &flakyListener{Listener: l} })
	c := e.dial()
	c.login()
	if !strings.Contains(e.logs.String(), "accept failed") {
		t.Error("accept error not logged")
	}
}

func TestServeListenerClosedElsewhere(t *testing.T) {
	srv := NewServer(Config{Backend: newFakeBackend(), Logger: slog.New(slog.DiscardHandler)})
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	l.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v, want net.ErrClosed", err)
	}
}

// A client that goes away in the middle of a large RETR ends its session
// without any commit.
func TestClientGoneDuringRetr(t *testing.T) {
	e := newEnv(t, nil)
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("b", 998)+"\r\n", 8000)
	e.be.set(func(b *fakeBackend) { b.boxes["alice"] = append(b.boxes["alice"], fakeMsg{"uid-big", big}) })
	c := e.dial()
	c.login()
	c.expect("DELE 1", "+OK Message 1 deleted")
	c.expect("RETR 4", "+OK 8000016 octets")
	c.conn.Close()
	e.be.waitClosed(t, 1)
	if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
		t.Errorf("commits %v", commits)
	}
}
