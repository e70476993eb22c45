package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
)

// Processes cut off from the database: a pgtest.Proxy between a Store and
// the test database is cut and restored (see its doc for why a proxy).

// TestNodeNameHeldOnce: a second process under a live node's name is
// refused with an error naming the holder, and leaves its queue claims
// alone; once the holder dies, a process under its name waits for the
// holder's lease to run out, then takes the name, and the dead process's
// claims (made for an hour) are due again at once.
func TestNodeNameHeldOnce(t *testing.T) {
	a, dsn := open(t, "node-a")
	ctx := t.Context()
	const n = 6
	for i := range n {
		if _, err := a.Enqueue(ctx, store.QueueEnvelope{From: "", To: []string{fmt.Sprintf("r%d@remote.example", i)}}, strings.NewReader("m\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().Add(time.Second)
	claimed, err := a.ClaimQueued(ctx, now, time.Hour, n)
	if err != nil || len(claimed) != n {
		t.Fatalf("A claims %d messages, %v", len(claimed), err)
	}

	started := time.Now()
	octx, cancel := context.WithTimeout(ctx, 4*a.lease)
	defer cancel()
	twin, err := OpenWith(octx, dsn, "node-a", Options{Lease: a.lease, Join: true})
	if err == nil {
		twin.Close()
		t.Fatal("a second process under node-a's name joined while node-a lives")
	}
	if !strings.Contains(err.Error(), a.Instance()) || !strings.Contains(err.Error(), "node_name") {
		t.Errorf("refusal %q does not name the holder %s and the setting", err, a.Instance())
	}
	t.Logf("namesake of a live node refused after %v: %v", time.Since(started).Round(10*time.Millisecond), err)
	b := openDSN(t, dsn, "node-b")
	if got, err := b.ClaimQueued(ctx, now, time.Hour, n); err != nil || len(got) != 0 {
		t.Errorf("after the refused namesake node-b claims %d messages (%v): A's claims were ended", len(got), err)
	}

	a.crash()
	died := time.Now()
	a2 := openDSN(t, dsn, "node-a")
	t.Logf("namesake of a killed node joined %v after the kill (lease %v)", time.Since(died).Round(10*time.Millisecond), a.lease)
	ns, err := b.Instances(ctx)
	if err != nil || len(ns) != 2 || ns[0].Instance != a2.Instance() || !ns[0].Alive {
		t.Errorf("Instances after the takeover = %+v, %v; want node-a held by %s", ns, err, a2.Instance())
	}
	got, err := a2.ClaimQueued(ctx, now, time.Hour, n)
	if err != nil || len(got) != n {
		t.Errorf("the new node-a claims %d of the dead one's %d messages (%v)", len(got), n, err)
	}
}

// TestLockLostToOutage: node A loses the database while it holds a
// maildrop lock, for longer than the lease; node B takes the mailbox.
// When A is back its lock is lost: its Delete deletes nothing, while B's
// deletions stand.
func TestLockLostToOutage(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	a := openDSN(t, viaProxy, "node-a")
	b := openDSN(t, dsn, "node-b")
	ctx := t.Context()
	u := addUser(t, b, "alice@example.com")
	var uids []uint64
	for i := range 3 {
		got, err := b.Deliver(ctx, strings.NewReader(fmt.Sprintf("m%d\r\n", i)), []store.Delivery{{UserID: u.ID}})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, got...)
	}
	la, err := a.Lock(ctx, u.ID, "session on A")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	cut := time.Now()
	var lb store.MaildropLock
	if !within(4*a.lease, func() bool {
		lb, err = b.Lock(ctx, u.ID, "session on B")
		return err == nil
	}) {
		t.Fatalf("B never got the mailbox of A, cut off: %v", err)
	}
	t.Logf("B took the mailbox %v after A was cut off (lease %v)", time.Since(cut).Round(10*time.Millisecond), a.lease)
	proxy.Restore()
	// A's renewals resume: they must not revive its lock.
	time.Sleep(a.lease / 2)
	if err := la.Err(); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("Err of A's lock after the outage = %v, want ErrLockLost", err)
	}
	if err := la.Delete(ctx, uids[:1]); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("Delete with A's lost lock = %v, want ErrLockLost", err)
	}
	if err := lb.Delete(ctx, uids[1:2]); err != nil {
		t.Errorf("Delete with B's lock: %v", err)
	}
	ms, err := b.List(ctx, u.ID, 0)
	if err != nil || len(ms) != 2 || ms[0].UID != uids[0] || ms[1].UID != uids[2] {
		t.Errorf("mailbox after both deletions = %+v, %v; want UIDs %d and %d", ms, err, uids[0], uids[2])
	}
	la.Unlock() // must not release B's lock
	if _, err := a.Lock(ctx, u.ID, "another session on A"); !errors.Is(err, store.ErrLocked) {
		t.Errorf("Lock on A while B holds the mailbox: %v, want ErrLocked", err)
	}
	lb.Unlock()
}

// TestLockExpiresUnused: a lock whose lease ran out in the database while
// its holder was cut off is not renewed when the database is back, even
// though no one took it.
func TestLockExpiresUnused(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	a := openDSN(t, viaProxy, "node-a")
	ctx := t.Context()
	u := addUser(t, a, "alice@example.com")
	uids, err := a.Deliver(ctx, strings.NewReader("m\r\n"), []store.Delivery{{UserID: u.ID}})
	if err != nil {
		t.Fatal(err)
	}
	la, err := a.Lock(ctx, u.ID, "session")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	time.Sleep(a.lease + a.lease/3)
	proxy.Restore()
	time.Sleep(a.lease / 2) // a renewal
	if err := la.Delete(ctx, uids); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("Delete with a lock that ran out during an outage = %v, want ErrLockLost", err)
	}
	if ms, _ := a.List(ctx, u.ID, 0); len(ms) != 1 {
		t.Errorf("mailbox = %+v, want its message", ms)
	}
	la.Unlock()
}

// TestLockReleasedAfterOutage: a lock released while its node is cut off
// from the database (the release fails) is released once the database is
// back, long before its lease would end it: another node gets the mailbox.
func TestLockReleasedAfterOutage(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	const lease = 30 * time.Second
	a, err := OpenWith(t.Context(), viaProxy, "node-a", Options{Lease: lease, Join: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := OpenWith(t.Context(), dsn, "node-b", Options{Lease: lease, Join: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := t.Context()
	u := addUser(t, b, "alice@example.com")
	la, err := a.Lock(ctx, u.ID, "session on A")
	if err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	la.Unlock() // fails: the database is out of reach
	if _, err := b.Lock(ctx, u.ID, "session on B"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Lock on B during the outage: %v, want ErrLocked (A's row stays)", err)
	}
	time.Sleep(time.Second)
	proxy.Restore()
	back := time.Now()
	var lb store.MaildropLock
	if !within(lease/2, func() bool {
		lb, err = b.Lock(ctx, u.ID, "session on B")
		return err == nil
	}) {
		t.Fatalf("B still refused %v after the database came back (lease %v): %v", time.Since(back), lease, err)
	}
	t.Logf("lock released %v after the database came back (lease %v)", time.Since(back).Round(10*time.Millisecond), lease)
	lb.Unlock()
}

// TestClaimOfLapsedProcess: node A claims a message and is cut off from
// the database for longer than the lease; node B takes the message. When
// A is back and records the outcome of its attempt, the outcome counts but
// B's claim stays: no third runner gets the message while B works on it.
func TestClaimOfLapsedProcess(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	proxy, viaProxy := pgtest.NewProxy(t, dsn)
	a := openDSN(t, viaProxy, "node-a")
	b := openDSN(t, dsn, "node-b")
	c := openDSN(t, dsn, "node-c")
	ctx := t.Context()
	id, err := b.Enqueue(ctx, store.QueueEnvelope{From: "", To: []string{"r@remote.example", "s@remote.example"}}, strings.NewReader("m\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Second)
	if got, err := a.ClaimQueued(ctx, now, time.Hour, 1); err != nil || len(got) != 1 {
		t.Fatalf("A claims %d, %v", len(got), err)
	}
	proxy.Cut()
	if !within(4*a.lease, func() bool {
		got, err := b.ClaimQueued(ctx, now, time.Hour, 1)
		if err != nil {
			t.Fatal(err)
		}
		return len(got) == 1
	}) {
		t.Fatal("B never took the message A claimed before it was cut off")
	}
	proxy.Restore()
	if !within(4*a.lease, func() bool {
		return a.UpdateQueued(ctx, id, store.QueueUpdate{Recipients: []store.QueueRecipient{
			{Address: "r@remote.example", State: store.QueueDelivered, Status: "2.0.0"}}, Attempted: true, At: time.Now()}) == nil
	}) {
		t.Fatal("A could not record its outcome once back")
	}
	m, err := b.QueuedMessage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if m.Attempts != 1 || m.Recipients[0].State != store.QueueDelivered {
		t.Errorf("A's outcome not recorded: %+v", m)
	}
	if m.ClaimedUntil.IsZero() {
		t.Errorf("A's update ended B's claim")
	}
	if err := c.ReleaseClaims(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ClaimQueued(ctx, now, time.Hour, 1); err != nil || len(got) != 0 {
		t.Errorf("node C claims %d (%v) while B works on the message", len(got), err)
	}
	if err := b.UpdateQueued(ctx, id, store.QueueUpdate{}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ClaimQueued(ctx, now, time.Hour, 1); err != nil || len(got) != 1 {
		t.Errorf("node C claims %d (%v) once B is done", len(got), err)
	}
}
