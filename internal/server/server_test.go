package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// testServer is a running Server on loopback with a config file.
type testServer struct {
	t    *testing.T
	srv  *Server
	st   store.Store
	cfg  string // config file
	dir  string
	logs *testWriter
}

// newTestServer writes a config with extra TOML lines (and lines of its
// [queue] table) and starts serve's Server on it. The data directory
// lives under a short temporary path (the control socket's name must fit
// in 108 bytes).
func newTestServer(t *testing.T, extra string, queue ...string) *testServer {
	t.Helper()
	dir, err := os.MkdirTemp("", "srv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "postoffice.toml")
	writeConfig(t, path, dir, extra, queue...)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(cfg.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	logs := &testWriter{t: t}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg, st, log, Options{ConfigPath: path, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	ts := &testServer{t: t, srv: srv, st: st, cfg: path, dir: dir, logs: logs}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		st.Close()
	})
	return ts
}

func writeConfig(t *testing.T, path, dir, extra string, queue ...string) {
	t.Helper()
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "mail.test"
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = []
%s
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = []
tls_listen = []
[queue]
autostart = false
`, filepath.Join(dir, "data"), extra) + strings.Join(queue, "\n")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testWriter sends the server's log to the test's, and keeps it.
type testWriter struct {
	t   *testing.T
	mu  sync.Mutex
	buf strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *testWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func (ts *testServer) addUser(addr, pw string, msgs ...string) store.User {
	ts.t.Helper()
	hash, err := directory.HashPassword(pw)
	if err != nil {
		ts.t.Fatal(err)
	}
	u, err := ts.st.AddUser(context.Background(), store.User{Address: addr, PasswordHash: hash, Enabled: true})
	if err != nil {
		ts.t.Fatal(err)
	}
	for _, m := range msgs {
		if _, err := ts.st.Deliver(context.Background(), strings.NewReader(m), []store.Delivery{{UserID: u.ID}}); err != nil {
			ts.t.Fatal(err)
		}
	}
	return u
}

func (ts *testServer) pop3Addr() string {
	ts.t.Helper()
	a := ts.srv.Addrs("pop3")
	if len(a) == 0 {
		ts.t.Fatal("pop3 is not listening")
	}
	return a[0].String()
}

// popClient is a line-level POP3 client.
type popClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialPOP(t *testing.T, addr string) (*popClient, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	p := &popClient{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	return p, p.line()
}

func (p *popClient) line() string {
	p.t.Helper()
	l, err := p.r.ReadString('\n')
	if err != nil {
		return "EOF: " + err.Error()
	}
	return strings.TrimRight(l, "\r\n")
}

func (p *popClient) cmd(s string) string {
	p.t.Helper()
	fmt.Fprintf(p.c, "%s\r\n", s)
	return p.line()
}

func (p *popClient) expect(cmd, prefix string) {
	p.t.Helper()
	if got := p.cmd(cmd); !strings.HasPrefix(got, prefix) {
		p.t.Fatalf("%s: %q, want %q...", cmd, got, prefix)
	}
}

func (p *popClient) login(user, pw string) {
	p.t.Helper()
	p.expect("USER "+user, "+OK")
	p.expect("PASS "+pw, "+OK")
}

func count(t *testing.T, st store.Store, id int64) int {
	t.Helper()
	n, _, err := st.Usage(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStopLetsSessionsFinish: a stopped service refuses new connections at
// once, a session in progress finishes (and its QUIT applies its
// deletions), and start brings the service back on the same address.
func TestStopLetsSessionsFinish(t *testing.T) {
	ts := newTestServer(t, "")
	u := ts.addUser("a@example.com", "pw", "Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n")
	addr := ts.pop3Addr()
	p, greeting := dialPOP(t, addr)
	if !strings.HasPrefix(greeting, "+OK mail.test") {
		t.Fatalf("greeting %q", greeting)
	}
	p.login("a@example.com", "pw")
	p.expect("DELE 1", "+OK")

	stopped := make(chan error, 1)
	go func() {
		_, err := ts.srv.StopService(context.Background(), "pop3", 30*time.Second)
		stopped <- err
	}()
	// New connections are refused once the listener is closed.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("pop3 still accepts connections after stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st, _ := ts.srv.Status(context.Background())
	if st.Services[0].Name != "pop3" || st.Services[0].Running {
		t.Errorf("status during stop: %+v", st.Services[0])
	}
	// The session in progress goes on.
	p.expect("STAT", "+OK 1 ")
	p.expect("QUIT", "+OK")
	if err := <-stopped; err != nil {
		t.Fatalf("StopService: %v", err)
	}
	if n := count(t, ts.st, u.ID); n != 1 {
		t.Errorf("%d messages after QUIT, want 1 (the deletion applied)", n)
	}
	if _, err := ts.srv.StopService(context.Background(), "pop3", time.Second); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("second stop: %v", err)
	}

	if _, err := ts.srv.StartService(context.Background(), "pop3"); err != nil {
		t.Fatal(err)
	}
	if got := ts.pop3Addr(); got != addr {
		t.Errorf("restarted on %s, want the same address %s", got, addr)
	}
	p2, _ := dialPOP(t, addr)
	p2.login("a@example.com", "pw")
	p2.expect("QUIT", "+OK")
}

// TestStopAtGraceClosesWithoutDeleting: sessions still open at the end of
// the grace period are closed, and their deletions are not applied (RFC
// 1939 section 6).
func TestStopAtGraceClosesWithoutDeleting(t *testing.T) {
	ts := newTestServer(t, "")
	u := ts.addUser("b@example.com", "pw", "Subject: 1\r\n\r\none\r\n")
	p, _ := dialPOP(t, ts.pop3Addr())
	p.login("b@example.com", "pw")
	p.expect("DELE 1", "+OK")
	notes, err := ts.srv.StopService(context.Background(), "pop3", 100*time.Millisecond)
	if err != nil || len(notes) != 1 || !strings.Contains(notes[0], "closed") {
		t.Fatalf("StopService: %q, %v; want a note that sessions were closed", notes, err)
	}
	if got := p.line(); !strings.HasPrefix(got, "EOF") {
		t.Errorf("the session got %q, want it closed", got)
	}
	if n := count(t, ts.st, u.ID); n != 1 {
		t.Errorf("%d messages, want 1: a session closed by stop deletes nothing", n)
	}
	st, _ := ts.srv.Status(context.Background())
	if st.Services[0].Sessions != 0 {
		t.Errorf("sessions after stop = %d", st.Services[0].Sessions)
	}
}

// TestSessionLimits: max_sessions_per_ip and max_sessions refuse the
// connection with -ERR [SYS/TEMP] (RFC 3206 section 4); a slot is freed
// when a session ends.
func TestSessionLimits(t *testing.T) {
	ts := newTestServer(t, "max_sessions_per_ip = 2\nmax_sessions = 3")
	addr := ts.pop3Addr()
	var open []*popClient
	for range 2 {
		p, g := dialPOP(t, addr)
		if !strings.HasPrefix(g, "+OK") {
			t.Fatalf("greeting %q", g)
		}
		open = append(open, p)
	}
	_, g := dialPOP(t, addr)
	if g != "-ERR [SYS/TEMP] Too many connections, try again later." {
		t.Errorf("third connection from one address: %q", g)
	}
	st, _ := ts.srv.Status(context.Background())
	if st.Services[0].Sessions != 2 {
		t.Errorf("sessions = %d, want 2", st.Services[0].Sessions)
	}
	open[0].expect("QUIT", "+OK")
	// The slot is free once the server has closed the session.
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, _ := ts.srv.Status(context.Background())
		if st.Services[0].Sessions == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions stay at %d after QUIT", st.Services[0].Sessions)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, g := dialPOP(t, addr); !strings.HasPrefix(g, "+OK") {
		t.Errorf("after a QUIT: %q, want a greeting", g)
	}
}

// TestReloadKeepsSessions: a reload gives new sessions the new settings
// (here the greeting's host name and a session limit) while a session
// opened before goes on, on the same listening socket.
func TestReloadKeepsSessions(t *testing.T) {
	ts := newTestServer(t, "")
	ts.addUser("c@example.com", "pw", "Subject: 1\r\n\r\none\r\n")
	addr := ts.pop3Addr()
	old, _ := dialPOP(t, addr)
	old.login("c@example.com", "pw")

	writeConfig(t, ts.cfg, ts.dir, `hostname = "pop.example.net"`)
	notes, err := ts.srv.Reload(context.Background())
	if err != nil {
		t.Fatalf("Reload: %v (%q)", err, notes)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "pop3: new settings apply to new sessions (1 open") {
		t.Errorf("notes %q", notes)
	}
	if got := ts.pop3Addr(); got != addr {
		t.Errorf("pop3 moved from %s to %s", addr, got)
	}
	_, g := dialPOP(t, addr)
	if !strings.HasPrefix(g, "+OK pop.example.net ") {
		t.Errorf("new session greeting %q, want the new host name", g)
	}
	old.expect("STAT", "+OK 1 ")
	if got := old.cmd("QUIT"); !strings.HasPrefix(got, "+OK mail.test ") {
		t.Errorf("old session QUIT %q, want it to finish with the old settings", got)
	}
	st, _ := ts.srv.Status(context.Background())
	if st.Services[0].Draining > 1 {
		t.Errorf("draining %d", st.Services[0].Draining)
	}

	// A broken file changes nothing.
	os.WriteFile(ts.cfg, []byte("[pop3]\nlisten = 5\n"), 0o600)
	if _, err := ts.srv.Reload(context.Background()); err == nil || !strings.Contains(err.Error(), "nothing changed") {
		t.Errorf("Reload of a bad file: %v", err)
	}
	if _, g := dialPOP(t, addr); !strings.HasPrefix(g, "+OK pop.example.net ") {
		t.Errorf("after a failed reload: %q", g)
	}
}

// TestConcurrentStartStop: start, stop and status from many goroutines
// leave the service in a consistent state (run with -race).
func TestConcurrentStartStop(t *testing.T) {
	ts := newTestServer(t, "")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				ts.srv.StopService(context.Background(), "pop3", time.Second)
			} else {
				ts.srv.StartService(context.Background(), "pop3")
			}
			ts.srv.Status(context.Background())
		}()
	}
	wg.Wait()
	ts.srv.StartService(context.Background(), "all")
	st, _ := ts.srv.Status(context.Background())
	for _, s := range st.Services {
		if !s.Running {
			t.Errorf("%s not running after start all", s.Name)
		}
	}
	if _, g := dialPOP(t, ts.pop3Addr()); !strings.HasPrefix(g, "+OK") {
		t.Errorf("greeting %q", g)
	}
	if _, err := ts.srv.StartService(context.Background(), "imap"); err == nil {
		t.Errorf("unknown service accepted")
	}
}

// TestSweep: the background sweep expires retrieved messages in mailboxes
// not in use (RFC 2449 section 6.7), and prunes old journal entries.
func TestSweep(t *testing.T) {
	ts := newTestServer(t, `expire = "1h"`+"\n[journal]\nretention_days = 7")
	ctx := context.Background()
	idle := ts.addUser("idle@example.com", "pw", "Subject: 1\r\n\r\none\r\n", "Subject: 2\r\n\r\ntwo\r\n")
	busy := ts.addUser("busy@example.com", "pw", "Subject: 1\r\n\r\none\r\n")
	// busy is in a session: its messages stay until its next login.
	p, _ := dialPOP(t, ts.pop3Addr())
	p.login("busy@example.com", "pw")
	long := time.Now().Add(-2 * time.Hour)
	for _, u := range []store.User{idle, busy} {
		if err := ts.st.MarkRetrieved(ctx, u.ID, []uint64{1}, long); err != nil {
			t.Fatal(err)
		}
	}
	old := store.JournalEntry{Time: time.Now().Add(-8 * 24 * time.Hour), Event: store.EventReceived, Detail: "old"}
	if err := ts.st.AppendJournal(ctx, []store.JournalEntry{old}); err != nil {
		t.Fatal(err)
	}
	ts.srv.Sweep(ctx)
	ts.srv.journal.Flush(ctx)
	if n := count(t, ts.st, idle.ID); n != 1 {
		t.Errorf("idle has %d messages, want 1 (the retrieved one expired)", n)
	}
	if n := count(t, ts.st, busy.ID); n != 1 {
		t.Errorf("busy has %d messages, want 1 (a mailbox in use is left alone)", n)
	}
	es, _ := ts.st.QueryJournal(ctx, store.JournalQuery{Text: "old"})
	if len(es) != 0 {
		t.Errorf("an entry older than retention_days survived the sweep")
	}
	es, _ = ts.st.QueryJournal(ctx, store.JournalQuery{Event: store.EventExpired})
	if len(es) != 1 || es[0].User != "idle@example.com" {
		t.Errorf("expired entries %+v, want one for idle", es)
	}
	p.expect("QUIT", "+OK")
}

// TestReloadMovesConsole: a reload moves the web console to its new
// address (and off), the old address stops answering.
func TestReloadMovesConsole(t *testing.T) {
	ts := newTestServer(t, "[admin]\nlisten = \"127.0.0.1:0\"")
	get := func(url string) (int, error) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	st, _ := ts.srv.Status(context.Background())
	oldURL := st.Console
	if code, err := get(oldURL + "metrics"); err != nil || code != 200 {
		t.Fatalf("console at %s: %d %v", oldURL, code, err)
	}
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := free.Addr().String()
	free.Close()
	writeConfig(t, ts.cfg, ts.dir, fmt.Sprintf("[admin]\nlisten = %q", addr))
	notes, err := ts.srv.Reload(context.Background())
	if err != nil || !strings.Contains(strings.Join(notes, "|"), "web console now at http://"+addr+"/") {
		t.Fatalf("Reload: %q %v", notes, err)
	}
	if code, err := get("http://" + addr + "/metrics"); err != nil || code != 200 {
		t.Errorf("console at its new address: %d %v", code, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := get(oldURL + "metrics"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the old console address still answers")
		}
		time.Sleep(10 * time.Millisecond)
	}
	writeConfig(t, ts.cfg, ts.dir, "")
	if notes, err := ts.srv.Reload(context.Background()); err != nil || !strings.Contains(strings.Join(notes, "|"), "web console switched off") {
		t.Errorf("switching off: %q %v", notes, err)
	}
	if st, _ := ts.srv.Status(context.Background()); st.Console != "" {
		t.Errorf("status still names a console: %s", st.Console)
	}
}
