package pop3

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// step is one command and its exact expected answer; multi, when set, is
// the exact rest of a multi-line answer including the final ".\r\n".
type step struct {
	cmd   string
	want  string
	multi string
}

func run(t *testing.T, c *client, steps []step) {
	t.Helper()
	for _, s := range steps {
		c.expect(s.cmd, s.want)
		if s.multi != "" {
			if got := c.multi(); got != s.multi {
				t.Fatalf("%q: multi-line answer\n got %q\nwant %q", s.cmd, got, s.multi)
			}
		}
	}
}

const (
	notInState = "-ERR Command not valid in this state"
	unknown    = "-ERR Unknown command"
	authFailed = "-ERR [AUTH] Authentication failed."
)

// Message bodies of the fake backend, byte-stuffed as RETR must send them.
const (
	stuffed1 = "Subject: one\r\n\r\nHello\r\n..\r\n...\r\n..leading dot\r\n.\r\n"
	stuffed2 = "Subject: two\r\nX-Eight: caf\xc3\xa9 \xff\xfe\r\n\r\nline1\r\nline2\r\nline3\r\n.\r\n"
	stuffed3 = "Subject: three\r\n\r\nno final newline\r\n.\r\n"
)

func TestAuthorizationState(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	run(t, c, []step{
		// RFC 1939 section 5 commands are not valid before login.
		{"STAT", notInState, ""},
		{"LIST", notInState, ""},
		{"LIST 1", notInState, ""},
		{"RETR 1", notInState, ""},
		{"DELE 1", notInState, ""},
		{"NOOP", notInState, ""},
		{"RSET", notInState, ""},
		{"TOP 1 1", notInState, ""},
		{"UIDL", notInState, ""},
		{"UIDL 1", notInState, ""},
		{"APOP alice 0123456789abcdef0123456789abcdef", unknown, ""},
		{"XYZZY", unknown, ""},
		{"", unknown, ""},
		{"NO", unknown, ""},
		{"CAPA x", "-ERR Syntax error: CAPA takes no argument", ""},
		{"QUIT x", "-ERR Syntax error: QUIT takes no argument", ""},
		// USER / PASS (RFC 1939 section 7).
		{"PASS secret", "-ERR No user name given, send USER first", ""},
		{"PASS", "-ERR Syntax error: PASS password", ""},
		{"USER", "-ERR Syntax error: USER name", ""},
		{"USER a b", "-ERR Syntax error: USER name", ""},
		{"USER alice", "+OK", ""},
		{"PASS wrong", authFailed, ""},
		// A failed PASS forgets the USER.
		{"PASS secret", "-ERR No user name given, send USER first", ""},
		// Unknown user: the same answer as a wrong password.
		{"USER nobody", "+OK", ""},
		{"PASS secret", authFailed, ""},
		// Keywords are case-insensitive; the client may retry.
		{"user alice", "+OK", ""},
		{"pAsS secret", "+OK Maildrop has 3 messages (134 octets)", ""},
		// Now in TRANSACTION: authorization commands are refused.
		{"USER alice", notInState, ""},
		{"PASS secret", notInState, ""},
		{"AUTH PLAIN", notInState, ""},
		{"AUTH", notInState, ""},
		{"STLS", notInState, ""},
		{"QUIT", "+OK pop.test POP3 server signing off (3 messages left)", ""},
	})
	c.expectEOF()
	if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
		t.Errorf("QUIT without DELE committed %v", commits)
	}
}

func TestQuitInAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.expect("USER alice", "+OK")
	c.expect("quit", "+OK pop.test POP3 server signing off")
	c.expectEOF()
	if opened, _, _, _ := e.be.snapshot(); opened != 0 {
		t.Errorf("maildrop opened %d times", opened)
	}
}

func TestPasswordWithSpaces(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	run(t, c, []step{
		{"USER bob", "+OK", ""},
		{"PASS hunter 2", "+OK Maildrop has 0 messages (0 octets)", ""},
		{"STAT", "+OK 0 0", ""},
		{"LIST", "+OK 0 messages (0 octets)", ".\r\n"},
		{"UIDL", "+OK Unique-ID listing follows", ".\r\n"},
		{"RETR 1", "-ERR No such message", ""},
		{"QUIT", "+OK pop.test POP3 server signing off (maildrop empty)", ""},
	})
	c.expectEOF()
}

func TestTransactionState(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	run(t, c, []step{
		{"STAT", "+OK 3 134", ""},
		{"STAT x", "-ERR Syntax error: STAT takes no argument", ""},
		{"LIST", "+OK 3 messages (134 octets)", "1 44\r\n2 56\r\n3 34\r\n.\r\n"},
		{"list 2", "+OK 2 56", ""},
		{"LIST 0", "-ERR No such message", ""},
		{"LIST 4", "-ERR No such message", ""},
		{"LIST 99999999999999999999999999", "-ERR No such message", ""},
		{"LIST x", "-ERR Invalid message number", ""},
		{"LIST -1", "-ERR Invalid message number", ""},
		{"LIST +1", "-ERR Invalid message number", ""},
		{"LIST 1 2", "-ERR Syntax error: LIST [msg]", ""},
		{"UIDL", "+OK Unique-ID listing follows", "1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"},
		{"UIDL 3", "+OK 3 uid-3", ""},
		{"UIDL 9", "-ERR No such message", ""},
		{"UIDL 1 2", "-ERR Syntax error: UIDL [msg]", ""},
		// RETR: exact bytes, byte-stuffing of "." and "..", 8-bit bytes
		// untouched, a missing final CRLF supplied before the terminator.
		{"RETR 1", "+OK 44 octets", stuffed1},
		{"RETR 2", "+OK 56 octets", stuffed2},
		{"retr 3", "+OK 34 octets", stuffed3},
		{"RETR", "-ERR Syntax error: RETR msg", ""},
		{"RETR 1 2", "-ERR Syntax error: RETR msg", ""},
		{"RETR 0", "-ERR No such message", ""},
		{"RETR x", "-ERR Invalid message number", ""},
		// TOP: header, blank line, n body lines (RFC 1939 section 7).
		{"TOP 1 0", "+OK Top of message follows", "Subject: one\r\n\r\n.\r\n"},
		{"TOP 1 2", "+OK Top of message follows", "Subject: one\r\n\r\nHello\r\n..\r\n.\r\n"},
		{"TOP 1 3", "+OK Top of message follows", "Subject: one\r\n\r\nHello\r\n..\r\n...\r\n.\r\n"},
		{"TOP 2 1", "+OK Top of message follows", "Subject: two\r\nX-Eight: caf\xc3\xa9 \xff\xfe\r\n\r\nline1\r\n.\r\n"},
		{"TOP 2 99999999999999999999", "+OK Top of message follows", stuffed2},
		{"TOP 3 5", "+OK Top of message follows", stuffed3},
		{"TOP 1", "-ERR Syntax error: TOP msg n", ""},
		{"TOP 1 2 3", "-ERR Syntax error: TOP msg n", ""},
		{"TOP 1 x", "-ERR Invalid number of lines", ""},
		{"TOP 1 -1", "-ERR Invalid number of lines", ""},
		{"TOP x 1", "-ERR Invalid message number", ""},
		{"TOP 9 1", "-ERR No such message", ""},
		// DELE and the invisibility of deleted messages.
		{"DELE", "-ERR Syntax error: DELE msg", ""},
		{"DELE 1 2", "-ERR Syntax error: DELE msg", ""},
		{"DELE 4", "-ERR No such message", ""},
		{"DELE 1", "+OK Message 1 deleted", ""},
		{"DELE 1", "-ERR Message 1 is deleted", ""},
		{"RETR 1", "-ERR Message 1 is deleted", ""},
		{"TOP 1 0", "-ERR Message 1 is deleted", ""},
		{"LIST 1", "-ERR Message 1 is deleted", ""},
		{"UIDL 1", "-ERR Message 1 is deleted", ""},
		{"STAT", "+OK 2 90", ""},
		{"LIST", "+OK 2 messages (90 octets)", "2 56\r\n3 34\r\n.\r\n"},
		{"UIDL", "+OK Unique-ID listing follows", "2 uid-2\r\n3 uid-3\r\n.\r\n"},
		{"NOOP", "+OK", ""},
		{"NOOP x", "-ERR Syntax error: NOOP takes no argument", ""},
		// RSET undeletes; numbers stay the same.
		{"RSET x", "-ERR Syntax error: RSET takes no argument", ""},
		{"RSET", "+OK Maildrop has 3 messages (134 octets)", ""},
		{"RETR 1", "+OK 44 octets", stuffed1},
		{"STAT", "+OK 3 134", ""},
		{"DELE 2", "+OK Message 2 deleted", ""},
		{"DELE 3", "+OK Message 3 deleted", ""},
		{"STAT", "+OK 1 44", ""},
		{"QUIT x", "-ERR Syntax error: QUIT takes no argument", ""},
		{"QUIT", "+OK pop.test POP3 server signing off (1 message left)", ""},
	})
	c.expectEOF()
	_, closed, _, commits := e.be.snapshot()
	if want := [][]int{{1, 2}}; !slices.EqualFunc(commits, want, slices.Equal) {
		t.Errorf("commits %v, want %v", commits, want)
	}
	if closed != 1 {
		t.Errorf("Maildrop.Close called %d times", closed)
	}
	// The next session sees the result.
	c = e.dial()
	c.login()
	c.expect("UIDL", "+OK Unique-ID listing follows")
	if got := c.multi(); got != "1 uid-1\r\n.\r\n" {
		t.Errorf("UIDL after commit: %q", got)
	}
}

// Sizes come from Message.Size: LIST, STAT and UIDL never open a body.
func TestListingsDoNotReadBodies(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	for _, cmd := range []string{"STAT", "LIST 1", "UIDL 2", "DELE 1", "RSET"} {
		if got := c.cmd(cmd); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("%s: %q", cmd, got)
		}
	}
	for _, cmd := range []string{"LIST", "UIDL"} {
		c.expect(cmd, map[string]string{"LIST": "+OK 3 messages (134 octets)", "UIDL": "+OK Unique-ID listing follows"}[cmd])
		c.multi()
	}
	if _, _, bodyOpens, _ := e.be.snapshot(); bodyOpens != 0 {
		t.Errorf("bodies opened %d times", bodyOpens)
	}
}

func TestQuitCommitsDeletedSet(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	run(t, c, []step{
		{"DELE 2", "+OK Message 2 deleted", ""},
		{"RSET", "+OK Maildrop has 3 messages (134 octets)", ""},
		{"DELE 3", "+OK Message 3 deleted", ""},
		{"DELE 1", "+OK Message 1 deleted", ""},
		{"QUIT", "+OK pop.test POP3 server signing off (1 message left)", ""},
	})
	c.expectEOF()
	opened, closed, _, commits := e.be.snapshot()
	if want := [][]int{{0, 2}}; !slices.EqualFunc(commits, want, slices.Equal) {
		t.Errorf("commits %v, want %v", commits, want)
	}
	if opened != 1 || closed != 1 {
		t.Errorf("opened %d closed %d", opened, closed)
	}
}

func TestDropWithoutQuitCommitsNothing(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	c.expect("DELE 1", "+OK Message 1 deleted")
	c.conn.Close()
	e.be.waitClosed(t, 1)
	if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
		t.Errorf("commits %v after a dropped connection", commits)
	}
}

func TestCommitFailure(t *testing.T) {
	e := newEnv(t, nil)
	e.be.set(func(b *fakeBackend) { b.commitErr = errors.New("disk full") })
	c := e.dial()
	c.login()
	c.expect("DELE 1", "+OK Message 1 deleted")
	c.expect("QUIT", "-ERR [SYS/TEMP] Deleted messages not removed, try again later.")
	c.expectEOF()
	e.be.waitClosed(t, 1)
	// Nothing is deleted: a new session sees all three messages.
	e.be.set(func(b *fakeBackend) { b.commitErr = nil })
	c = e.dial()
	c.login()
	c.expect("STAT", "+OK 3 134")
}

// TestLockLost: a session whose maildrop lock is lost (LeasedMaildrop)
// answers its next command, QUIT included, with -ERR [SYS/TEMP] and ends
// without committing its deletions; so does a QUIT whose commit finds the
// lock lost.
func TestLockLost(t *testing.T) {
	lost := fmt.Errorf("%w: lease ran out", ErrLockLost)
	for _, cmd := range []string{"QUIT", "RETR 2", "STAT", "NOOP"} {
		t.Run(cmd, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.dial()
			c.login()
			c.expect("DELE 1", "+OK Message 1 deleted")
			e.be.set(func(b *fakeBackend) { b.lockErr = lost })
			c.expect(cmd, respLockLost)
			c.expectEOF()
			e.be.waitClosed(t, 1)
			if _, _, bodyOpens, commits := e.be.snapshot(); len(commits) != 0 || bodyOpens != 0 {
				t.Errorf("after the lock was lost: commits %v, bodies opened %d", commits, bodyOpens)
			}
		})
	}
	t.Run("found at commit", func(t *testing.T) {
		e := newEnv(t, nil)
		e.be.set(func(b *fakeBackend) { b.commitErr = TempError{Err: lost} })
		c := e.dial()
		c.login()
		c.expect("DELE 1", "+OK Message 1 deleted")
		c.expect("QUIT", respLockLost)
		c.expectEOF()
		e.be.waitClosed(t, 1)
	})
}

func TestInUse(t *testing.T) {
	e := newEnv(t, nil)
	c1 := e.dial()
	c1.login()
	c2 := e.dial()
	c2.expect("USER alice", "+OK")
	c2.expect("PASS secret", "-ERR [IN-USE] Mailbox is locked by another POP3 session.")
	// Still in AUTHORIZATION: the client may try again later.
	c2.expect("STAT", notInState)
	c1.expect("QUIT", "+OK pop.test POP3 server signing off (3 messages left)")
	c1.expectEOF()
	c2.expect("USER alice", "+OK")
	c2.expect("PASS secret", "+OK Maildrop has 3 messages (134 octets)")
}

func TestBackendErrors(t *testing.T) {
	tests := []struct {
		name string
		set  func(b *fakeBackend)
		want string
	}{
		{"auth temp", func(b *fakeBackend) { b.authErr = TempError{errors.New("db down")} }, "-ERR [SYS/TEMP] Temporary server failure, try again later."},
		{"auth temp pointer", func(b *fakeBackend) { b.authErr = fmt.Errorf("x: %w", &TempError{errors.New("db down")}) }, "-ERR [SYS/TEMP] Temporary server failure, try again later."},
		{"auth perm", func(b *fakeBackend) { b.authErr = errors.New("corrupt") }, "-ERR [SYS/PERM] Internal server error."},
		{"auth wrapped", func(b *fakeBackend) { b.authErr = fmt.Errorf("ldap: %w", ErrAuthFailed) }, authFailed},
		{"open temp", func(b *fakeBackend) { b.openErr = TempError{errors.New("busy")} }, "-ERR [SYS/TEMP] Temporary server failure, try again later."},
		{"open perm", func(b *fakeBackend) { b.openErr = errors.New("no such table") }, "-ERR [SYS/PERM] Internal server error."},
		{"open in use", func(b *fakeBackend) { b.openErr = fmt.Errorf("lock: %w", ErrInUse) }, "-ERR [IN-USE] Mailbox is locked by another POP3 session."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.be.set(tt.set)
			c := e.dial()
			c.expect("USER alice", "+OK")
			c.expect("PASS secret", tt.want)
			c.expect("NOOP", notInState) // still AUTHORIZATION
			c.expect("QUIT", "+OK pop.test POP3 server signing off")
		})
	}
}

// TestListedLater: the login answers with the snapshot's counts without
// listing it (a big maildrop's list costs more than the rest of the
// login); the first command that needs the list lists it, once.
func TestListedLater(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	c.expectPrefix("STAT", "+OK 3 ")
	c.expectPrefix("RSET", "+OK Maildrop has 3 messages (")
	c.expect("NOOP", "+OK")
	if n := e.be.listCalls(); n != 0 {
		t.Fatalf("Messages called %d times before a command needed the list", n)
	}
	c.expect("DELE 2", "+OK Message 2 deleted")
	c.expectPrefix("STAT", "+OK 2 ")
	c.expect("UIDL 3", "+OK 3 uid-3")
	if n := e.be.listCalls(); n != 1 {
		t.Fatalf("Messages called %d times, want once", n)
	}
	c.expect("QUIT", "+OK pop.test POP3 server signing off (2 messages left)")
	e.be.waitClosed(t, 1)
	if _, _, _, commits := e.be.snapshot(); len(commits) != 1 || !slices.Equal(commits[0], []int{1}) {
		t.Errorf("commits = %v, want [[1]]", commits)
	}
}

// TestListErrors: a list that cannot be had, or that the session cannot
// trust (an invalid unique-id, other counts than the login's), ends the
// session at the command that needed it, deleting nothing.
func TestListErrors(t *testing.T) {
	tests := []struct {
		name string
		set  func(b *fakeBackend)
		want string
	}{
		{"temp", func(b *fakeBackend) { b.listErr = TempError{errors.New("busy")} }, "-ERR [SYS/TEMP] Temporary server failure, try again later."},
		{"perm", func(b *fakeBackend) { b.listErr = errors.New("no such table") }, "-ERR [SYS/PERM] Internal server error."},
		{"bad uid", func(b *fakeBackend) { b.badUID = true }, "-ERR [SYS/PERM] Internal server error."},
		{"other counts", func(b *fakeBackend) { b.listExtra = true }, "-ERR [SYS/TEMP] Temporary server failure, try again later."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.be.set(tt.set)
			c := e.dial()
			c.login()
			c.expectPrefix("STAT", "+OK 3 ")
			c.expect("DELE 1", tt.want)
			c.expectEOF()
			e.be.waitClosed(t, 1)
			if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
				t.Errorf("commits = %v, want none", commits)
			}
		})
	}
}

func TestMessageOpenErrors(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	e.be.set(func(b *fakeBackend) { b.bodyErr = TempError{errors.New("io")} })
	c.expect("RETR 1", "-ERR [SYS/TEMP] Temporary server failure, try again later.")
	e.be.set(func(b *fakeBackend) { b.bodyErr = errors.New("gone") })
	c.expect("TOP 1 1", "-ERR [SYS/PERM] Internal server error.")
	c.expect("NOOP", "+OK")
	// A body failing mid-way cannot be reported: the session ends and
	// nothing is committed.
	e.be.set(func(b *fakeBackend) { b.bodyErr = nil; b.failRead = true })
	c.expect("DELE 2", "+OK Message 2 deleted")
	c.expect("RETR 1", "+OK 44 octets")
	if got, _ := c.r.ReadString('\n'); got != "Subject: x\r\n" {
		t.Fatalf("partial body %q", got)
	}
	c.expectEOF()
	e.be.waitClosed(t, 1)
	if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
		t.Errorf("commits %v", commits)
	}
}

func TestOverlongLines(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	// The longest accepted command line, then one octet more.
	c.expect("USER "+strings.Repeat("a", maxCommandLine-5), "+OK")
	c.expect("USER "+strings.Repeat("a", maxCommandLine-4), "-ERR Line too long")
	// Far longer than the read buffer: discarded in pieces.
	c.expect("NOOP "+strings.Repeat("x", 200_000), "-ERR Line too long")
	c.login()
	c.expect("NOOP "+strings.Repeat("y", 5000), "-ERR Line too long")
	c.expect("NOOP", "+OK")
}

func TestBinaryGarbage(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	for _, g := range []string{"\x00", "\x00\x01\x02\xff", "NO\x00OP", "NOOP\x00", "\xff\xfe\xfd\xfc", "\x16\x03\x01\x02\x00\x01", "NOOP\t", "\x7f"} {
		c.write(g + "\r\n")
		if got := c.line(); got != unknown {
			t.Fatalf("%q: got %q", g, got)
		}
	}
	// A bare LF ends a line too.
	c.write("CAPA\n")
	if got := c.line(); got != "+OK Capability list follows" {
		t.Fatalf("CAPA with bare LF: %q", got)
	}
	c.multi()
	c.login()
	c.expect("NOOP", "+OK")
}

func TestTooManyBadCommands(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.MaxBadCommands = 4 })
	c := e.dial()
	c.login()
	c.expect("FOO", unknown)
	c.expect("USER alice", notInState)
	c.expect("NOOP "+strings.Repeat("z", 3000), "-ERR Line too long")
	// Valid commands, even failing ones, do not count.
	c.expect("RETR 9", "-ERR No such message")
	c.expect("NOOP", "+OK")
	c.expect("LIST x y", "-ERR Too many bad commands")
	c.expectEOF()
	e.be.waitClosed(t, 1)
	if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
		t.Errorf("commits %v", commits)
	}
}

func TestDefaultMaxBadCommands(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.MaxBadCommands = 0 })
	c := e.dial()
	for range DefaultMaxBadCommands - 1 {
		c.expect("BAD", unknown)
	}
	c.expect("BAD", "-ERR Too many bad commands")
	c.expectEOF()
}

func TestInactivityTimeout(t *testing.T) {
	e := newEnv(t, nil, func(c *Config) { c.InactivityTimeout = 200 * time.Millisecond })
	c := e.dial()
	c.login()
	c.expect("DELE 1", "+OK Message 1 deleted")
	// Send nothing more: the server gives up and applies no deletion.
	if got := c.line(); got != "-ERR Disconnected for inactivity." {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	e.be.waitClosed(t, 1)
	if _, _, _, commits := e.be.snapshot(); len(commits) != 0 {
		t.Errorf("commits %v after timeout", commits)
	}

	// Also inside a SASL exchange, and with a partial line sent.
	c = e.dial()
	c.expect("AUTH PLAIN", "+ ")
	c.write("AGFsaWNl")
	if got := c.line(); got != "-ERR Disconnected for inactivity." {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

func TestPipelining(t *testing.T) {
	var writes atomic.Int64
	e := newEnv(t, func(l net.Listener) net.Listener { return countingListener{l, &writes} })
	c := e.dial()
	c.login()
	cmds := []string{"STAT", "LIST", "UIDL", "RETR 1", "TOP 2 1", "DELE 3", "NOOP", "STAT", "RSET", "LIST 3", "CAPA", "UIDL 2"}
	before := writes.Load()
	c.write(strings.Join(cmds, "\r\n") + "\r\n")
	for _, want := range []step{
		{"", "+OK 3 134", ""},
		{"", "+OK 3 messages (134 octets)", "1 44\r\n2 56\r\n3 34\r\n.\r\n"},
		{"", "+OK Unique-ID listing follows", "1 uid-1\r\n2 uid-2\r\n3 uid-3\r\n.\r\n"},
		{"", "+OK 44 octets", stuffed1},
		{"", "+OK Top of message follows", "Subject: two\r\nX-Eight: caf\xc3\xa9 \xff\xfe\r\n\r\nline1\r\n.\r\n"},
		{"", "+OK Message 3 deleted", ""},
		{"", "+OK", ""},
		{"", "+OK 2 100", ""},
		{"", "+OK Maildrop has 3 messages (134 octets)", ""},
		{"", "+OK 3 34", ""},
		{"", "+OK Capability list follows", "USER\r\nTOP\r\nUIDL\r\nPIPELINING\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSASL PLAIN LOGIN\r\nUTF8 USER\r\nIMPLEMENTATION postoffice\r\n.\r\n"},
		{"", "+OK 2 uid-2", ""},
	} {
		if got := c.line(); got != want.want {
			t.Fatalf("got %q, want %q", got, want.want)
		}
		if want.multi != "" {
			if got := c.multi(); got != want.multi {
				t.Fatalf("multi got %q, want %q", got, want.multi)
			}
		}
	}
	// The answers were batched: fewer writes than commands.
	if n := writes.Load() - before; n >= int64(len(cmds)) {
		t.Errorf("%d writes for %d pipelined commands", n, len(cmds))
	}

	// Many commands in one go, more than the read buffer holds.
	var b strings.Builder
	for range 1000 {
		b.WriteString("RETR 2\r\n")
	}
	c.write(b.String())
	for range 1000 {
		if got := c.line(); got != "+OK 56 octets" {
			t.Fatalf("got %q", got)
		}
		if got := c.multi(); got != stuffed2 {
			t.Fatalf("got %q", got)
		}
	}
	c.write("DELE 1\r\nQUIT\r\n")
	if got := c.line(); got != "+OK Message 1 deleted" {
		t.Fatalf("got %q", got)
	}
	if got := c.line(); got != "+OK pop.test POP3 server signing off (2 messages left)" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

// A pipelined batch ending in a partial line must not hold back the
// answers to the complete commands before it.
func TestPipeliningPartialLine(t *testing.T) {
	e := newEnv(t, nil)
	c := e.dial()
	c.login()
	c.write("NOOP\r\nSTAT\r\nNO")
	if got := c.line(); got != "+OK" {
		t.Fatalf("got %q", got)
	}
	if got := c.line(); got != "+OK 3 134" {
		t.Fatalf("got %q", got)
	}
	c.write("OP\r\n")
	if got := c.line(); got != "+OK" {
		t.Fatalf("got %q", got)
	}
}

// RFC 6856: CAPA announces UTF8 (with USER: UTF-8 user names), the UTF8
// command is valid before login only, and a UTF-8 user name logs in;
// the message, UTF-8 header fields included, comes as stored.
func TestUTF8(t *testing.T) {
	e := newEnv(t, nil)
	e.be.mu.Lock()
	e.be.users["jürgen@example.org"] = "pässword"
	e.be.boxes["jürgen@example.org"] = []fakeMsg{{"uid-u", "Subject: Grüße\r\nFrom: jürgen@example.org\r\n\r\nÄrger\r\n"}}
	e.be.mu.Unlock()
	c := e.dial()
	if caps := c.cmd("CAPA"); caps != "+OK Capability list follows" || !slices.Contains(c.lines(), "UTF8 USER") {
		t.Fatal("CAPA without UTF8 USER")
	}
	run(t, c, []step{
		{"UTF8 now", "-ERR Syntax error: UTF8 takes no argument", ""},
		{"utf8", "+OK UTF-8 mode", ""},
		{"USER jürgen@example.org", "+OK", ""},
		{"PASS pässword", "+OK Maildrop has 1 messages (55 octets)", ""},
		{"UTF8", notInState, ""},
		{"RETR 1", "+OK 55 octets", "Subject: Grüße\r\nFrom: jürgen@example.org\r\n\r\nÄrger\r\n.\r\n"},
		{"QUIT", "+OK pop.test POP3 server signing off (1 message left)", ""},
	})
	if !strings.Contains(e.logs.String(), "utf8=true") {
		t.Error("the login does not log UTF-8 mode")
	}
}
