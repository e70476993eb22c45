package e2e

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// popConn is a minimal POP3 client over a real socket, for the cases the
// stock clients cannot express (holding a session open, dropping it).
type popConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialPOP(t *testing.T, addr string) *popConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	p := &popConn{t: t, c: c, r: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	if g := p.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

func (p *popConn) line() string {
	p.t.Helper()
	l, err := p.r.ReadString('\n')
	if err != nil {
		p.t.Fatalf("reading reply: %v (got %q)", err, l)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends one command and returns the status line.
func (p *popConn) cmd(format string, a ...any) string {
	p.t.Helper()
	fmt.Fprintf(p.c, format+"\r\n", a...)
	return p.line()
}

// multi sends a command with a multi-line answer and returns its lines.
func (p *popConn) multi(format string, a ...any) []string {
	p.t.Helper()
	if st := p.cmd(format, a...); !strings.HasPrefix(st, "+OK") {
		p.t.Fatalf("%s: %s", fmt.Sprintf(format, a...), st)
	}
	var lines []string
	for {
		l := p.line()
		if l == "." {
			return lines
		}
		lines = append(lines, l)
	}
}

func (p *popConn) login(user, pass string) {
	p.t.Helper()
	if r := p.cmd("USER %s", user); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("USER: %s", r)
	}
	if r := p.cmd("PASS %s", pass); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("PASS: %s", r)
	}
}

func (p *popConn) uidls() []string {
	var ids []string
	for _, l := range p.multi("UIDL") {
		_, id, _ := strings.Cut(l, " ")
		ids = append(ids, id)
	}
	return ids
}

func (p *popConn) quit() {
	p.t.Helper()
	if r := p.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		p.t.Fatalf("QUIT: %s", r)
	}
}

const msg = "Subject: m\r\n\r\nbody\r\n"

// TestLockAndDeliveryDuringSession: RFC 1939 section 8's exclusive lock,
// and a message delivered while the lock is held shows up only in the next
// session.
func TestLockAndDeliveryDuringSession(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("f@example.org", "pw")
	in.deliver("f@example.org", msg)
	in.start()

	a := dialPOP(t, in.addr("pop3"))
	a.login("f@example.org", "pw")

	b := dialPOP(t, in.addr("pop3"))
	b.cmd("USER f@example.org")
	if r := b.cmd("PASS pw"); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("second session got %q, want -ERR [IN-USE]", r)
	}
	// Also through SASL.
	if r := b.cmd("AUTH PLAIN %s", base64.StdEncoding.EncodeToString([]byte("\x00f@example.org\x00pw"))); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("second session AUTH PLAIN got %q, want -ERR [IN-USE]", r)
	}

	in.deliver("f@example.org", "Subject: during\r\n\r\nlate\r\n")
	if r := a.cmd("STAT"); r != fmt.Sprintf("+OK 1 %d", len(mdaTrace("", "f@example.org")+msg)) {
		t.Fatalf("STAT in the locked session = %q: the new message leaked in", r)
	}
	a.quit()

	c := dialPOP(t, in.addr("pop3"))
	c.login("f@example.org", "pw")
	if n := len(c.uidls()); n != 2 {
		t.Fatalf("next session sees %d messages, want 2", n)
	}
	c.quit()
}

// TestDroppedConnectionDeletesNothing: deletions are applied only in the
// UPDATE state (RFC 1939 section 6); a dropped session releases its lock.
func TestDroppedConnectionDeletesNothing(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("g@example.org", "pw")
	in.deliver("g@example.org", msg)
	in.deliver("g@example.org", msg)
	in.start()

	a := dialPOP(t, in.addr("pop3"))
	a.login("g@example.org", "pw")
	a.cmd("DELE 1")
	a.cmd("DELE 2")
	a.c.Close()

	// The lock goes with the dropped connection (give the server a moment
	// to notice the close: retry until it does, bounded).
	var b *popConn
	for i := 0; ; i++ {
		b = dialPOP(t, in.addr("pop3"))
		b.cmd("USER g@example.org")
		r := b.cmd("PASS pw")
		if strings.HasPrefix(r, "+OK") {
			break
		}
		if !strings.Contains(r, "[IN-USE]") || i > 100 {
			t.Fatalf("login after drop: %q", r)
		}
		b.c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(b.uidls()); n != 2 {
		t.Fatalf("%d messages after a dropped session, want 2", n)
	}
	b.quit()
}

// TestInactivityTimeout: an idle session is closed without applying its
// deletions.
func TestInactivityTimeout(t *testing.T) {
	in := newInstance(t, "inactivity_timeout = 1")
	in.addUser("h@example.org", "pw")
	in.deliver("h@example.org", msg)
	in.start()

	a := dialPOP(t, in.addr("pop3"))
	a.login("h@example.org", "pw")
	a.cmd("DELE 1")
	// The server closes the idle connection (it may say why first).
	a.c.SetReadDeadline(time.Now().Add(30 * time.Second))
	rest, err := io.ReadAll(a.r)
	if err != nil {
		t.Fatalf("idle connection not closed by the server: %v", err)
	}
	if len(rest) > 0 && !strings.HasPrefix(string(rest), "-ERR") {
		t.Errorf("unexpected data before close: %q", rest)
	}
	b := dialPOP(t, in.addr("pop3"))
	b.login("h@example.org", "pw")
	if n := len(b.uidls()); n != 1 {
		t.Fatalf("%d messages after timeout, want 1", n)
	}
}

// TestCrashKeepsMailAndUIDLs: a SIGKILL releases the lock, applies no
// uncommitted deletion, keeps every stored message and its UIDL; UIDs are
// never reused after deletions and restarts.
func TestCrashKeepsMailAndUIDLs(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("i@example.org", "pw")
	for range 3 {
		in.deliver("i@example.org", msg)
	}
	in.start()
	a := dialPOP(t, in.addr("pop3"))
	a.login("i@example.org", "pw")
	before := a.uidls()
	a.cmd("DELE 1")
	in.kill()

	in.start()
	b := dialPOP(t, in.addr("pop3"))
	b.login("i@example.org", "pw")
	after := b.uidls()
	if strings.Join(after, ",") != strings.Join(before, ",") {
		t.Fatalf("UIDLs changed across a crash: %v then %v", before, after)
	}
	for i := range after {
		b.cmd("DELE %d", i+1)
	}
	b.quit()
	in.stop()

	// Everything was deleted; new mail after a restart gets a new UIDL.
	in.deliver("i@example.org", msg)
	in.start()
	c := dialPOP(t, in.addr("pop3"))
	c.login("i@example.org", "pw")
	now := c.uidls()
	if len(now) != 1 {
		t.Fatalf("%d messages, want 1", len(now))
	}
	for _, old := range before {
		if now[0] == old {
			t.Fatalf("UIDL %s reused", old)
		}
	}
	c.quit()

	// A user deleted and created again never repeats a UIDL either.
	in.stop()
	in.must("", "user", "del", "i@example.org")
	in.addUser("i@example.org", "pw")
	in.deliver("i@example.org", msg)
	in.start()
	d := dialPOP(t, in.addr("pop3"))
	d.login("i@example.org", "pw")
	again := d.uidls()
	for _, old := range append(before, now...) {
		if again[0] == old {
			t.Fatalf("UIDL %s reused after the user was re-created", old)
		}
	}
}

// TestDeliverWhileServing: the MDA writes into the same data directory
// that serve has open, and the message is retrievable at once.
func TestDeliverWhileServing(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("j@example.org", "pw")
	in.start()
	for i := range 5 {
		in.deliver("j@example.org", fmt.Sprintf("Subject: %d\r\n\r\nx\r\n", i))
	}
	p := dialPOP(t, in.addr("pop3"))
	p.login("j@example.org", "pw")
	if n := len(p.uidls()); n != 5 {
		t.Fatalf("%d messages, want 5", n)
	}
	p.quit()
}

// TestSelfSignedCertificateCreated: with no [tls] files, serve writes a
// certificate into the data directory on first start.
func TestSelfSignedCertificateCreated(t *testing.T) {
	in := newInstance(t, "")
	in.start()
	for _, f := range []string{"cert.pem", "key.pem"} {
		if _, err := os.Stat(filepath.Join(in.dir, "data", "tls", f)); err != nil {
			t.Errorf("%s not created: %v", f, err)
		}
	}
}
