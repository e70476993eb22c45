package directory

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// oneUser is a minimal in-memory directory for the cache tests.
type oneUser struct {
	store.Directory
	u store.User
}

func (d *oneUser) UserByAddress(ctx context.Context, addr string) (store.User, error) {
	if addr != d.u.Address {
		return store.User{}, store.ErrNotFound
	}
	return d.u, nil
}

func TestVerificationCache(t *testing.T) {
	calls := 0
	verify = func(h, pw string) (bool, error) { calls++; return VerifyPassword(h, pw) }
	defer func() { verify = VerifyPassword }()

	h1, _ := HashPassword("first")
	dir := &oneUser{u: store.User{ID: 1, Address: "a@example.com", PasswordHash: h1, Enabled: true}}
	a := NewAuthenticatorTTL(dir, time.Minute)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	ctx := context.Background()

	login := func(pw string) error { _, err := a.Authenticate(ctx, "a@example.com", pw); return err }
	for range 3 {
		if err := login("first"); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 1 {
		t.Fatalf("3 logins hashed %d times, want 1 (cached)", calls)
	}
	// A wrong password is never answered from the cache, nor cached.
	for range 2 {
		if err := login("wrong"); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("wrong password: %v", err)
		}
	}
	if calls != 3 {
		t.Fatalf("wrong passwords hashed %d times, want 2", calls-1)
	}
	// Disabling takes effect at once.
	dir.u.Enabled = false
	if err := login("first"); !errors.Is(err, ErrAuthFailed) {
		t.Fatal("disabled user logged in from the cache")
	}
	dir.u.Enabled = true
	// A password change invalidates the entry at once.
	dir.u.PasswordHash, _ = HashPassword("second")
	if err := login("first"); !errors.Is(err, ErrAuthFailed) {
		t.Fatal("old password accepted from the cache after a change")
	}
	if err := login("second"); err != nil {
		t.Fatal(err)
	}
	// Entries expire.
	before := calls
	login("second")
	if calls != before {
		t.Fatal("fresh entry not used")
	}
	now = now.Add(2 * time.Minute)
	login("second")
	if calls != before+1 {
		t.Fatal("expired entry still used")
	}
}

func TestCacheBounded(t *testing.T) {
	c := newVerifyCache(time.Minute, 10)
	now := time.Now()
	for i := range 25 {
		c.add("u", string(rune('a'+i)), "h", now)
		if len(c.entries) > 10 {
			t.Fatalf("cache grew to %d entries, max 10", len(c.entries))
		}
	}
	if !c.hit("u", string(rune('a'+24)), "h", now) {
		t.Fatal("latest entry missing")
	}
}

// TestConcurrentLoginsVerifyOnce: logins with the same password that
// arrive while its verification is in flight share it.
func TestConcurrentLoginsVerifyOnce(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	verify = func(h, pw string) (bool, error) {
		calls.Add(1)
		<-release
		return VerifyPassword(h, pw)
	}
	defer func() { verify = VerifyPassword }()
	h, _ := HashPassword("secret")
	a := NewAuthenticator(&oneUser{u: store.User{ID: 1, Address: "a@example.com", PasswordHash: h, Enabled: true}})
	ctx := context.Background()
	const n = 8
	errs := make(chan error, n+1)
	for range n {
		go func() { _, err := a.Authenticate(ctx, "a@example.com", "secret"); errs <- err }()
	}
	// A wrong password is a flight of its own, and fails.
	go func() { _, err := a.Authenticate(ctx, "a@example.com", "wrong"); errs <- err }()
	for calls.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // let the others join the flights
	close(release)
	failed := 0
	for range n + 1 {
		if err := <-errs; errors.Is(err, ErrAuthFailed) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if failed != 1 {
		t.Errorf("%d logins failed, want 1 (the wrong password)", failed)
	}
	if got := calls.Load(); got != 2 {
		t.Errorf("%d concurrent logins with 2 distinct passwords verified %d times, want 2", n+1, got)
	}
}
