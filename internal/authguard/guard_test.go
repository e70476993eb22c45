package authguard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestGuard(cfg Config) (*Guard, *time.Time) {
	g := New(cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	return g, &now
}

// fail makes one attempt that fails.
func fail(t *testing.T, g *Guard, remote, login string) (time.Duration, bool) {
	t.Helper()
	a, err := g.Begin(context.Background(), remote, login)
	if err != nil {
		t.Fatalf("attempt %s %s refused: %v", remote, login, err)
	}
	return a.Failed()
}

func succeed(t *testing.T, g *Guard, remote, login string) {
	t.Helper()
	a, err := g.Begin(context.Background(), remote, login)
	if err != nil {
		t.Fatalf("attempt %s %s refused: %v", remote, login, err)
	}
	a.Succeeded()
}

func banned(g *Guard, remote, login string) bool {
	a, err := g.Begin(context.Background(), remote, login)
	if err != nil {
		return errors.Is(err, ErrBanned)
	}
	a.Cancel()
	return false
}

func TestPenaltyGrowsThenBans(t *testing.T) {
	g, now := newTestGuard(Config{IPBanAfter: 5, NameBanAfter: 100, BaseDelay: time.Second, MaxDelay: 4 * time.Second})
	var delays []time.Duration
	for i := range 5 {
		d, b := fail(t, g, "198.51.100.7:1234", "alice@example.com")
		delays = append(delays, d)
		if b != (i == 4) {
			t.Fatalf("attempt %d: banned=%v", i+1, b)
		}
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	if fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", delays, want)
	}
	// Banned: any login name from that address, other port too.
	if !banned(g, "198.51.100.7:999", "bob@example.com") {
		t.Fatal("banned address allowed")
	}
	// Other addresses are not.
	if banned(g, "198.51.100.8:1", "bob@example.com") {
		t.Fatal("another address banned")
	}
	*now = now.Add(16 * time.Minute)
	if banned(g, "198.51.100.7:1", "alice@example.com") {
		t.Fatal("ban did not expire")
	}
}

// Guessing one name from many addresses bans the name.
func TestDistributedGuessingBansName(t *testing.T) {
	g, _ := newTestGuard(Config{IPBanAfter: 100, NameBanAfter: 10})
	for i := range 10 {
		fail(t, g, fmt.Sprintf("203.0.113.%d:5000", i), "ALICE@example.com")
	}
	if !banned(g, "192.0.2.200:1", "alice@example.com") {
		t.Fatal("name not banned after a distributed attack")
	}
	if banned(g, "192.0.2.200:1", "bob@example.com") {
		t.Fatal("other name banned")
	}
}

// An IPv6 client is counted per /64.
func TestIPv6Slash64(t *testing.T) {
	g, _ := newTestGuard(Config{IPBanAfter: 3, NameBanAfter: 100})
	for i := range 3 {
		fail(t, g, fmt.Sprintf("[2001:db8:1:2::%x]:25", i+1), fmt.Sprintf("u%d@example.com", i))
	}
	if !banned(g, "[2001:db8:1:2:ffff::1]:1", "x@example.com") {
		t.Fatal("/64 not banned")
	}
	if banned(g, "[2001:db8:1:3::1]:1", "x@example.com") {
		t.Fatal("neighbouring /64 banned")
	}
}

// A success clears the failures of its own name from its own address,
// and only those; a ban stays; old failures are forgotten.
func TestSuccessClearsOnlyItsOwnFailures(t *testing.T) {
	g, _ := newTestGuard(Config{IPBanAfter: 3, NameBanAfter: 100})
	fail(t, g, "192.0.2.1:1", "a@example.com")
	fail(t, g, "192.0.2.1:1", "a@example.com")
	succeed(t, g, "192.0.2.1:1", "a@example.com") // the owner mistyped twice
	if _, b := fail(t, g, "192.0.2.1:1", "b@example.com"); b {
		t.Fatal("a's failures still counted after a's success")
	}

	// Failures on a victim's name, then a success on the attacker's own
	// account, from the same address: nothing is cleared.
	g, _ = newTestGuard(Config{IPBanAfter: 10, NameBanAfter: 100})
	var b bool
	rounds := 0
	for !b && rounds < 4 {
		rounds++
		for range 8 {
			if banned(g, "192.0.2.9:1", "victim@example.com") {
				b = true
				break
			}
			fail(t, g, "192.0.2.9:1", "victim@example.com")
		}
		if !b {
			succeed(t, g, "192.0.2.9:1", "own@example.com")
		}
	}
	if !b || rounds != 2 {
		t.Fatalf("banned %v after %d rounds of 8 failures and an own success, want a ban in round 2", b, rounds)
	}
	// The ban holds for the attacker's own account too.
	if !banned(g, "192.0.2.9:2", "own@example.com") {
		t.Fatal("a success lifted the ban")
	}

	g, now := newTestGuard(Config{IPBanAfter: 3, NameBanAfter: 100})
	fail(t, g, "192.0.2.1:1", "c@example.com")
	fail(t, g, "192.0.2.1:1", "c@example.com")
	*now = now.Add(time.Hour)
	if _, b := fail(t, g, "192.0.2.1:1", "d@example.com"); b {
		t.Fatal("old failures outside the window still counted")
	}
}

// Attempts in parallel count from their start: of 40 wrong passwords sent
// at once from one address, at most IPBanAfter are verified; the rest
// wait for a slot and find the address banned.
func TestParallelAttemptsCount(t *testing.T) {
	g := New(Config{IPBanAfter: 10, NameBanAfter: 1000})
	var verified, refused atomic.Int32
	var inflight, most atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a, err := g.Begin(context.Background(), "198.51.100.1:1", fmt.Sprintf("u%d@example.com", i%3))
			if err != nil {
				if !errors.Is(err, ErrBanned) {
					t.Errorf("Begin: %v", err)
				}
				refused.Add(1)
				return
			}
			n := inflight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			verified.Add(1)
			time.Sleep(5 * time.Millisecond) // the hash
			inflight.Add(-1)
			a.Failed()
		}()
	}
	close(start)
	wg.Wait()
	if verified.Load() > 10 || verified.Load()+refused.Load() != 40 {
		t.Fatalf("%d verified, %d refused; want at most 10 verified", verified.Load(), refused.Load())
	}
	if most.Load() > 10 {
		t.Fatalf("%d verifications at once", most.Load())
	}
}

// A waiting attempt gets its slot when a success frees one, and gives up
// when its context ends.
func TestWaitForSlot(t *testing.T) {
	g := New(Config{IPBanAfter: 2, NameBanAfter: 1000})
	ctx := context.Background()
	a1, _ := g.Begin(ctx, "192.0.2.1:1", "a@example.com")
	a2, _ := g.Begin(ctx, "192.0.2.1:1", "b@example.com")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := g.Begin(short, "192.0.2.1:1", "c@example.com"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third attempt with two in flight: %v, want to wait", err)
	}
	got := make(chan error, 1)
	go func() {
		a3, err := g.Begin(ctx, "192.0.2.1:1", "c@example.com")
		a3.Cancel()
		got <- err
	}()
	a1.Succeeded()
	if err := <-got; err != nil {
		t.Fatalf("after a success: %v", err)
	}
	a2.Cancel()
	a2.Failed() // after the end: nothing
	if banned(g, "192.0.2.1:1", "d@example.com") {
		t.Fatal("banned without failures")
	}
}

func TestDisabledAndBounded(t *testing.T) {
	g, _ := newTestGuard(Config{Disabled: true, IPBanAfter: 1})
	a, err := g.Begin(context.Background(), "192.0.2.1:1", "a")
	if d, b := a.Failed(); err != nil || d != 0 || b || banned(g, "192.0.2.1:1", "a") {
		t.Fatal("disabled guard acted")
	}
	g, _ = newTestGuard(Config{MaxEntries: 50, IPBanAfter: 1000, NameBanAfter: 1000})
	for i := range 1000 {
		fail(t, g, fmt.Sprintf("10.0.%d.%d:1", i/256, i%256), fmt.Sprintf("u%d", i))
		if n := len(g.entries) + len(g.pairs); n > 53 {
			t.Fatalf("%d entries, bound 50", n)
		}
	}
}
