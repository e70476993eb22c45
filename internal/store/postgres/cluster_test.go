package postgres

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
)

// Two Stores on one schema are two nodes of a cluster.

// crash stops s as a killed process would: no more renewals, nothing
// released. Its rows stay until their leases run out.
func (s *Store) crash() {
	s.once.Do(func() {
		close(s.stop)
		s.bg.Wait()
		s.pool.Close()
	})
}

// within polls cond every 100ms until it holds or d has passed.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func addUser(t *testing.T, s *Store, addr string) store.User {
	t.Helper()
	u, err := s.AddUser(t.Context(), store.User{Address: addr, Enabled: true})
	if err != nil {
		t.Fatalf("AddUser(%s): %v", addr, err)
	}
	return u
}

// TestLockAcrossNodes: a lock taken on node A refuses node B, names its
// holder, is kept past its lease while A lives (renewed), and goes within
// the lease once A dies.
func TestLockAcrossNodes(t *testing.T) {
	a, dsn := open(t, "node-a")
	b := openDSN(t, dsn, "node-b")
	u := addUser(t, a, "alice@example.com")

	la, err := a.Lock(t.Context(), u.ID, "session 1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Lock(t.Context(), u.ID, "session 2")
	if !errors.Is(err, store.ErrLocked) || !strings.Contains(err.Error(), "node-a") || !strings.Contains(err.Error(), "session 1") {
		t.Fatalf("Lock on node B while A holds it: %v; want ErrLocked naming node-a and session 1", err)
	}
	// Well past the lease (3s): A renews it.
	time.Sleep(a.lease + a.lease/2)
	if _, err := b.Lock(t.Context(), u.ID, "session 3"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Lock on node B after a lease with A alive: %v; want ErrLocked (renewed)", err)
	}
	la.Unlock()
	lb, err := b.Lock(t.Context(), u.ID, "session 4")
	if err != nil {
		t.Fatalf("Lock on node B after A's Unlock: %v", err)
	}
	la.Unlock() // stale: must not release B's lock
	if _, err := a.Lock(t.Context(), u.ID, "session 5"); !errors.Is(err, store.ErrLocked) {
		t.Fatalf("Lock on A after a stale Unlock: %v; want ErrLocked", err)
	}
	lb.Unlock()

	// A takes the lock and dies.
	if _, err := a.Lock(t.Context(), u.ID, "session 6"); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	a.crash()
	var lc store.MaildropLock
	if !within(3*b.lease, func() bool {
		lc, err = b.Lock(t.Context(), u.ID, "session 7")
		return err == nil
	}) {
		t.Fatalf("node B could not take the lock of dead node A: %v", err)
	}
	t.Logf("lock of a dead node taken over after %v (lease %v)", time.Since(died).Round(100*time.Millisecond), b.lease)
	lc.Unlock()
}

// TestClaimsAcrossNodes: two nodes claiming at once never get the same
// message; a dead node's claims go to the other node within the lease,
// although the claim's own lease is an hour; ReleaseClaims on one node
// leaves the other's claims alone.
func TestClaimsAcrossNodes(t *testing.T) {
	a, dsn := open(t, "node-a")
	b := openDSN(t, dsn, "node-b")
	ctx := t.Context()
	const n = 60
	for i := range n {
		if _, err := a.Enqueue(ctx, store.QueueEnvelope{From: "", To: []string{fmt.Sprintf("r%d@remote.example", i)}}, strings.NewReader("m\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().Add(time.Second)
	var mu sync.Mutex
	owner := map[int64]string{}
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			for {
				ms, err := s.ClaimQueued(ctx, now, time.Hour, 4)
				if err != nil {
					t.Errorf("ClaimQueued: %v", err)
					return
				}
				if len(ms) == 0 {
					return
				}
				mu.Lock()
				for _, m := range ms {
					if prev, dup := owner[m.ID]; dup {
						t.Errorf("message %d claimed by %s and again by %s", m.ID, prev, s.node)
					}
					owner[m.ID] = s.node
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(owner) != n {
		t.Fatalf("%d messages claimed, want %d", len(owner), n)
	}
	var ofA, ofB []int64
	for id, node := range owner {
		if node == "node-a" {
			ofA = append(ofA, id)
		} else {
			ofB = append(ofB, id)
		}
	}
	t.Logf("claims: node-a %d, node-b %d", len(ofA), len(ofB))

	// B restarts its runner: only its own claims end, not those of A,
	// a live process.
	if err := b.ReleaseClaims(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := b.ClaimQueued(ctx, now, time.Hour, n)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, m := range got {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	slices.Sort(ofB)
	if !slices.Equal(ids, ofB) {
		t.Errorf("after B's ReleaseClaims B claims %v, want only its own %v", ids, ofB)
	}

	// A dies: its claims (an hour long) go to B once A's liveness ends.
	a.crash()
	var taken []store.QueuedMessage
	if !within(3*b.lease, func() bool {
		ms, err := b.ClaimQueued(ctx, now, time.Hour, n)
		if err != nil {
			t.Fatal(err)
		}
		taken = append(taken, ms...)
		return len(taken) == len(ofA)
	}) {
		t.Fatalf("B took %d of dead A's %d claims", len(taken), len(ofA))
	}
}

// TestUIDsAcrossNodes: deliveries to the same mailboxes from two nodes at
// once get unique, increasing UIDs, and both nodes list the same UIDLs.
func TestUIDsAcrossNodes(t *testing.T) {
	a, dsn := open(t, "node-a")
	b := openDSN(t, dsn, "node-b")
	ctx := t.Context()
	u1 := addUser(t, a, "one@example.com")
	u2, err := b.UserByAddress(ctx, "one@example.com")
	if err != nil || u2.ID != u1.ID || u2.UIDValidity != u1.UIDValidity {
		t.Fatalf("user added on A seen on B as %+v, %v", u2, err)
	}
	other := addUser(t, b, "two@example.com")
	if other.UIDValidity == u1.UIDValidity {
		t.Errorf("users added on two nodes share UID validity %d", other.UIDValidity)
	}
	var mu sync.Mutex
	seen := map[[2]uint64]bool{}
	var wg sync.WaitGroup
	for w, s := range []*Store{a, b, a, b} {
		wg.Go(func() {
			for i := range 10 {
				// Alternate the order of recipients: row locks are taken
				// in ID order, so this cannot deadlock.
				ds := []store.Delivery{{UserID: u1.ID}, {UserID: other.ID}}
				if i%2 == 1 {
					ds[0], ds[1] = ds[1], ds[0]
				}
				uids, err := s.Deliver(ctx, strings.NewReader(fmt.Sprintf("%d/%d\r\n", w, i)), ds)
				if err != nil {
					t.Errorf("Deliver: %v", err)
					return
				}
				mu.Lock()
				for j, d := range ds {
					k := [2]uint64{uint64(d.UserID), uids[j]}
					if seen[k] {
						t.Errorf("UID %d given twice in mailbox %d", uids[j], d.UserID)
					}
					seen[k] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	la, _ := a.List(ctx, u1.ID, 0)
	lb, _ := b.List(ctx, u1.ID, 0)
	if len(la) != 40 || !slices.Equal(la, lb) {
		t.Errorf("node A lists %d messages, node B %d; want the same 40", len(la), len(lb))
	}
}

// TestDirectoryAcrossNodes: a change on one node is seen on the other at
// once, and the address namespace holds across nodes adding at once.
func TestDirectoryAcrossNodes(t *testing.T) {
	a, dsn := open(t, "node-a")
	b := openDSN(t, dsn, "node-b")
	ctx := t.Context()
	u := addUser(t, a, "dir@example.com")
	u.PasswordHash = "$argon2id$changed"
	if err := a.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	if got, err := b.UserByAddress(ctx, "dir@example.com"); err != nil || got.PasswordHash != u.PasswordHash {
		t.Errorf("B sees %+v, %v after A's password change", got, err)
	}
	if err := b.DeleteUser(ctx, u.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.UserByID(ctx, u.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("A after B deleted the user: %v", err)
	}

	// The same address as a user on A and an alias on B at once: one wins.
	for i := range 10 {
		addr := fmt.Sprintf("race%d@example.com", i)
		var wg sync.WaitGroup
		var errUser, errAlias error
		wg.Go(func() { _, errUser = a.AddUser(ctx, store.User{Address: addr}) })
		wg.Go(func() { errAlias = b.SetAlias(ctx, store.Alias{Address: addr, Targets: []string{"x@remote.example"}}) })
		wg.Wait()
		if (errUser == nil) == (errAlias == nil) {
			t.Errorf("%s: user %v, alias %v; want exactly one to succeed", addr, errUser, errAlias)
		}
		for _, err := range []error{errUser, errAlias} {
			if err != nil && !errors.Is(err, store.ErrExists) {
				t.Errorf("%s: %v, want ErrExists", addr, err)
			}
		}
	}
}

// TestMigrationsOnce: nodes starting together on an empty schema migrate
// it once; a schema newer than the program is refused.
func TestMigrationsOnce(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() { openDSN(t, dsn, fmt.Sprintf("node-%d", i)) })
	}
	wg.Wait()
	conn, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var n, v int
	if err := conn.QueryRow(t.Context(), `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &v); err != nil || n != len(migrations) || v != len(migrations) {
		t.Fatalf("schema_migrations: %d rows up to %d, %v; want %d", n, v, err, len(migrations))
	}
	if _, err := conn.Exec(t.Context(), `INSERT INTO schema_migrations (version, description) VALUES ($1, 'future')`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	if s, err := Open(t.Context(), dsn, "node-new"); err == nil {
		s.Close()
		t.Fatal("Open of a schema newer than the program succeeded")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open of a newer schema: %v", err)
	}
}

// TestBodiesStoredOnce: copies share one blob, which goes with the last
// reference, mailbox or queue; a large body is chunked and read back
// exactly; a body removed while read ends the read with an error, not
// short.
func TestBodiesStoredOnce(t *testing.T) {
	s, _ := open(t, "node-a")
	ctx := t.Context()
	a, b := addUser(t, s, "a@example.com"), addUser(t, s, "b@example.com")
	count := func(table string) int {
		var n int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	big := bytes.Repeat([]byte("0123456789abcdef\r\n\x00\xff"), 3*chunkSize/20+7)
	uids, err := s.Deliver(ctx, bytes.NewReader(big), []store.Delivery{{UserID: a.ID}, {UserID: b.ID, Header: []byte("X: y\r\n")}})
	if err != nil {
		t.Fatal(err)
	}
	if count("blobs") != 1 || count("blob_chunks") != 4 {
		t.Errorf("%d blobs, %d chunks for one %d-octet body to two mailboxes; want 1 and 4", count("blobs"), count("blob_chunks"), len(big))
	}
	rc, err := s.Open(ctx, b.ID, uids[1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, append([]byte("X: y\r\n"), big...)) {
		t.Errorf("read back %d octets, %v; want the header and the %d-octet body", len(got), err, len(big))
	}

	// A read under way when the last copy goes.
	rc, err = s.Open(ctx, a.ID, uids[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(rc, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, a.ID, uids[:1]); err != nil {
		t.Fatal(err)
	}
	if count("blobs") != 1 {
		t.Errorf("the body went while b still has a copy")
	}
	if err := s.DeleteUser(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if count("blobs") != 0 || count("blob_chunks") != 0 {
		t.Errorf("%d blobs, %d chunks once no copy is left", count("blobs"), count("blob_chunks"))
	}
	if _, err := io.ReadAll(rc); !errors.Is(err, errBodyGone) {
		t.Errorf("reading on after the body went: %v, want errBodyGone", err)
	}
	rc.Close()

	id, err := s.Enqueue(ctx, store.QueueEnvelope{From: "", To: []string{"x@remote.example"}}, strings.NewReader("q\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if count("blobs") != 1 {
		t.Errorf("no blob for a queued message")
	}
	if err := s.DeleteQueued(ctx, id); err != nil {
		t.Fatal(err)
	}
	if count("blobs") != 0 {
		t.Errorf("a queued message's blob outlived it")
	}
}

// TestInstances: each joined Store holds its node name as a live
// instance, and leaves at Close; a Store that has not joined does not
// show, and may not lock or claim.
func TestInstances(t *testing.T) {
	a, dsn := open(t, "node-a")
	b := openDSN(t, dsn, "node-b")
	c, err := Open(t.Context(), dsn, "node-c")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ns, err := a.Instances(t.Context())
	if err != nil || len(ns) != 2 || ns[0].Node != "node-a" || ns[1].Node != "node-b" ||
		ns[0].Instance != a.Instance() || ns[1].Instance != b.Instance() || !ns[0].Alive || !ns[1].Alive {
		t.Fatalf("Instances = %+v, %v", ns, err)
	}
	b.Close()
	if ns, _ := a.Instances(t.Context()); len(ns) != 1 {
		t.Errorf("Instances after B's Close = %+v", ns)
	}
	u := addUser(t, c, "carol@example.com")
	if _, err := c.Lock(t.Context(), u.ID, "session"); !errors.Is(err, errNotMember) {
		t.Errorf("Lock on a store that has not joined: %v", err)
	}
	if _, err := c.ClaimQueued(t.Context(), time.Now(), time.Hour, 1); !errors.Is(err, errNotMember) {
		t.Errorf("ClaimQueued on a store that has not joined: %v", err)
	}
	if _, err := Open(t.Context(), dsn, " "); err == nil {
		t.Errorf("Open with an empty node name succeeded")
	}
}

// TestSharedAcrossNodes: what one node's ACME manager stores the other
// reads, the issuing lock holds across nodes until its holder releases it
// or its lease runs out (the holder died), and both nodes get one secret.
func TestSharedAcrossNodes(t *testing.T) {
	a, dsn := open(t, "node-a")
	b := openDSN(t, dsn, "node-b")
	ctx := t.Context()
	sa, sb := a.ACMEStorage(), b.ACMEStorage()
	if err := sa.Put(ctx, "acme/ca/cert/mail.example.com", []byte("chain")); err != nil {
		t.Fatal(err)
	}
	if got, err := sb.Get(ctx, "acme/ca/cert/mail.example.com"); err != nil || string(got) != "chain" {
		t.Fatalf("node b reads %q, %v", got, err)
	}
	if ok, err := sa.TryLock(ctx, "acme/ca/lock", "node-a", time.Hour); err != nil || !ok {
		t.Fatalf("node a TryLock: %v, %v", ok, err)
	}
	if ok, err := sb.TryLock(ctx, "acme/ca/lock", "node-b", time.Hour); err != nil || ok {
		t.Fatalf("node b took the lock node a holds: %v, %v", ok, err)
	}
	if err := sa.Unlock(ctx, "acme/ca/lock", "node-a"); err != nil {
		t.Fatal(err)
	}
	if ok, err := sb.TryLock(ctx, "acme/ca/lock", "node-b", 2*time.Second); err != nil || !ok {
		t.Fatalf("node b after node a released: %v, %v", ok, err)
	}
	// Node b dies holding it: node a gets it once the lease has run out.
	b.crash()
	if ok, _ := sa.TryLock(ctx, "acme/ca/lock", "node-a", time.Hour); ok {
		t.Fatal("node a took the lock within node b's lease")
	}
	if !within(30*time.Second, func() bool {
		ok, err := sa.TryLock(ctx, "acme/ca/lock", "node-a", time.Hour)
		return err == nil && ok
	}) {
		t.Fatal("the lock of a dead node was never free")
	}
	c := openDSN(t, dsn, "node-c")
	s1, err1 := a.Secret(ctx, "profile-link")
	s2, err2 := c.Secret(ctx, "profile-link")
	if err1 != nil || err2 != nil || !bytes.Equal(s1, s2) || len(s1) != store.SecretSize {
		t.Fatalf("secrets of two nodes: %x, %v / %x, %v", s1, err1, s2, err2)
	}
}
