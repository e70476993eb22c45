package maildrop

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/journal"
	"github.com/postoffice-mail/postoffice/internal/pop3"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// policyEnv is a Backend over a real store with a settable clock.
type policyEnv struct {
	t   *testing.T
	st  *sqlite.Store
	b   *Backend
	now time.Time
	bg  sync.WaitGroup // the backend's background writes, as in serve
}

func newPolicyEnv(t *testing.T, delay, expire time.Duration) *policyEnv {
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &policyEnv{t: t, st: st, now: time.Unix(1700000000, 0)}
	e.b = &Backend{Store: st, Logins: directory.NewLogins(directory.NewAuthenticatorTTL(st, 0), nil, slog.New(slog.DiscardHandler)), Holder: "test",
		Policy:  Policy{LoginDelay: delay, Expire: expire},
		Journal: journal.NewSyncWriter(st, slog.New(slog.DiscardHandler)), Log: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return e.now }, Background: &e.bg}
	t.Cleanup(e.bg.Wait) // before the store closes
	return e
}

func (e *policyEnv) user(addr string, msgs int) store.User {
	u, err := e.st.AddUser(context.Background(), store.User{Address: addr, Enabled: true})
	if err != nil {
		e.t.Fatal(err)
	}
	for range msgs {
		if _, err := e.st.Deliver(context.Background(), strings.NewReader("Subject: x\r\n\r\nbody\r\n"), []store.Delivery{{UserID: u.ID}}); err != nil {
			e.t.Fatal(err)
		}
	}
	return u
}

func (e *policyEnv) open(addr string) (pop3.Maildrop, error) {
	return e.b.OpenMaildrop(context.Background(), addr)
}

func (e *policyEnv) mustOpen(addr string) pop3.Maildrop {
	e.t.Helper()
	md, err := e.open(addr)
	if err != nil {
		e.t.Fatalf("OpenMaildrop(%s): %v", addr, err)
	}
	return md
}

// list lists md's snapshot, checking that it agrees with its Stat.
func (e *policyEnv) list(md pop3.Maildrop) []pop3.Message {
	e.t.Helper()
	msgs, err := md.Messages(context.Background())
	if err != nil {
		e.t.Fatalf("Messages: %v", err)
	}
	var size int64
	for _, m := range msgs {
		size += m.Size
	}
	if n, sz := md.Stat(); n != len(msgs) || sz != size {
		e.t.Errorf("Stat = %d, %d; the list has %d messages of %d octets", n, sz, len(msgs), size)
	}
	return msgs
}

// TestSnapshotAsOfLock: RFC 1939 section 4, the snapshot is the maildrop
// as of the lock, even when it is listed later: a message delivered in
// between is left for the next session.
func TestSnapshotAsOfLock(t *testing.T) {
	e := newPolicyEnv(t, 0, -1)
	u := e.user("x@example.com", 3)
	md := e.mustOpen("x@example.com")
	if _, err := e.st.Deliver(context.Background(), strings.NewReader("Subject: later\r\n\r\nbody\r\n"), []store.Delivery{{UserID: u.ID}}); err != nil {
		t.Fatal(err)
	}
	msgs := e.list(md)
	if len(msgs) != 3 {
		t.Fatalf("%d messages listed, want the 3 of the lock", len(msgs))
	}
	for i, m := range msgs {
		if want := UIDL(u.UIDValidity, uint64(i+1)); m.UID != want {
			t.Errorf("message %d: unique-id %q, want %q", i+1, m.UID, want)
		}
	}
	md.Close()
	md = e.mustOpen("x@example.com")
	if n := len(e.list(md)); n != 4 {
		t.Errorf("next session: %d messages, want 4", n)
	}
	md.Close()
}

func (e *policyEnv) events(user string) []string {
	es, err := e.st.QueryJournal(context.Background(), store.JournalQuery{User: user})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, en := range es {
		out = append(out, string(en.Event)+" "+en.Detail)
	}
	slices.Reverse(out)
	return out
}

// The login time is durable before the login succeeds when a login delay
// depends on it, and written in the background otherwise.
func TestLoginRecorded(t *testing.T) {
	for _, delay := range []time.Duration{0, time.Minute} {
		e := newPolicyEnv(t, delay, -1)
		u := e.user("r@example.com", 0)
		md := e.mustOpen("r@example.com")
		if delay > 0 {
			got, err := e.st.UserByID(context.Background(), u.ID)
			if err != nil || !got.LastLogin.Equal(e.now) {
				t.Errorf("delay %v: LastLogin %v (%v) when the login succeeds, want %v", delay, got.LastLogin, err, e.now)
			}
		}
		md.Close()
		e.bg.Wait()
		got, err := e.st.UserByID(context.Background(), u.ID)
		if err != nil || !got.LastLogin.Equal(e.now) {
			t.Errorf("delay %v: LastLogin %v (%v), want %v", delay, got.LastLogin, err, e.now)
		}
	}
}

// TestLoginDelay: RFC 2449 section 6.5, one login per delay, the user's
// own value overriding the server's.
func TestLoginDelay(t *testing.T) {
	e := newPolicyEnv(t, time.Minute, -1)
	u := e.user("d@example.com", 0)
	e.mustOpen("d@example.com").Close()
	e.now = e.now.Add(30 * time.Second)
	if _, err := e.open("d@example.com"); !errors.Is(err, pop3.ErrLoginDelay) {
		t.Fatalf("second login after 30s: %v, want ErrLoginDelay", err)
	}
	e.now = e.now.Add(31 * time.Second)
	md := e.mustOpen("d@example.com")
	if delay, _ := md.(pop3.PolicyMaildrop).Policy(); delay != time.Minute {
		t.Errorf("Policy delay = %v, want the server's 1m", delay)
	}
	md.Close()
	// A refused login does not count as one: the delay runs from the last
	// successful login.
	e.now = e.now.Add(59 * time.Second)
	if _, err := e.open("d@example.com"); !errors.Is(err, pop3.ErrLoginDelay) {
		t.Fatalf("login after 59s: %v", err)
	}
	e.now = e.now.Add(2 * time.Second)
	e.mustOpen("d@example.com").Close()

	// The user's own delay of 0 lets it log in at once.
	zero := time.Duration(0)
	u.LoginDelay = &zero
	if err := e.st.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	md = e.mustOpen("d@example.com")
	if delay, _ := md.(pop3.PolicyMaildrop).Policy(); delay != 0 {
		t.Errorf("Policy delay = %v, want the user's 0", delay)
	}
	md.Close()
	e.mustOpen("d@example.com").Close()
}

// TestExpireRetrieved: RFC 2449 section 6.7, messages retrieved longer
// ago than the retention period are removed at the next login; those not
// retrieved stay; the journal records retrieval, deletion and expiry.
func TestExpireRetrieved(t *testing.T) {
	e := newPolicyEnv(t, 0, 24*time.Hour)
	e.user("x@example.com", 3)

	md := e.mustOpen("x@example.com")
	if n := len(e.list(md)); n != 3 {
		t.Fatalf("%d messages", n)
	}
	for _, i := range []int{0, 1} {
		rc, err := md.Open(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
		md.(pop3.RetrievalRecorder).Retrieved(i)
	}
	if err := md.Commit(context.Background(), []int{1}); err != nil {
		t.Fatal(err)
	}
	md.Close()

	e.now = e.now.Add(23 * time.Hour)
	md = e.mustOpen("x@example.com")
	if n := len(e.list(md)); n != 2 {
		t.Errorf("after 23h: %d messages, want 2 (nothing expired yet)", n)
	}
	md.Close()
	e.now = e.now.Add(2 * time.Hour)
	md = e.mustOpen("x@example.com")
	if n := len(e.list(md)); n != 1 {
		t.Errorf("after 25h: %d messages, want 1 (the retrieved one expired, the unread one kept)", n)
	}
	if _, exp := md.(pop3.PolicyMaildrop).Policy(); exp == nil || *exp != 24*time.Hour {
		t.Errorf("Policy expire = %v", exp)
	}
	md.Close()
	want := []string{"retrieved uid 1", "retrieved uid 2", "deleted uid 2", "expired uid 1"}
	if got := e.events("x@example.com"); !slices.Equal(got, want) {
		t.Errorf("journal %q, want %q", got, want)
	}
}

// TestExpireNeverForUser: a user's "never" wins over the server's expire.
func TestExpireNeverForUser(t *testing.T) {
	e := newPolicyEnv(t, 0, 0)
	u := e.user("n@example.com", 1)
	never := time.Duration(-1)
	u.Expire = &never
	if err := e.st.UpdateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	md := e.mustOpen("n@example.com")
	e.list(md) // as a session does before RETR
	md.(pop3.RetrievalRecorder).Retrieved(0)
	md.Close()
	e.now = e.now.Add(1000 * time.Hour)
	md = e.mustOpen("n@example.com")
	if n := len(e.list(md)); n != 1 {
		t.Errorf("%d messages, want 1 (never expires)", n)
	}
	md.Close()
}
