package authguard

import (
	"fmt"
	"testing"
	"time"
)

func newTestGuard(cfg Config) (*Guard, *time.Time) {
	g := New(cfg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.now = func() time.Time { return now }
	return g, &now
}

func TestPenaltyGrowsThenBans(t *testing.T) {
	g, now := newTestGuard(Config{IPBanAfter: 5, NameBanAfter: 100, BaseDelay: time.Second, MaxDelay: 4 * time.Second})
	var delays []time.Duration
	for i := range 5 {
		if err := g.Check("198.51.100.7:1234", "alice@example.com"); err != nil {
			t.Fatalf("attempt %d refused before the ban: %v", i+1, err)
		}
		d, banned := g.Failed("198.51.100.7:1234", "alice@example.com")
		delays = append(delays, d)
		if banned != (i == 4) {
			t.Fatalf("attempt %d: banned=%v", i+1, banned)
		}
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	if fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Fatalf("delays %v, want %v", delays, want)
	}
	// Banned: any login name from that address, other port too.
	if err := g.Check("198.51.100.7:999", "bob@example.com"); err != ErrBanned {
		t.Fatalf("banned address allowed: %v", err)
	}
	// Other addresses are not.
	if err := g.Check("198.51.100.8:1", "bob@example.com"); err != nil {
		t.Fatal(err)
	}
	// Success does not lift a ban.
	g.Succeeded("198.51.100.7:1", "alice@example.com")
	if err := g.Check("198.51.100.7:1", "alice@example.com"); err != ErrBanned {
		t.Fatal("success lifted a ban")
	}
	*now = now.Add(16 * time.Minute)
	if err := g.Check("198.51.100.7:1", "alice@example.com"); err != nil {
		t.Fatalf("ban did not expire: %v", err)
	}
}

// Guessing one name from many addresses bans the name.
func TestDistributedGuessingBansName(t *testing.T) {
	g, _ := newTestGuard(Config{IPBanAfter: 100, NameBanAfter: 10})
	for i := range 10 {
		g.Failed(fmt.Sprintf("203.0.113.%d:5000", i), "ALICE@example.com")
	}
	if err := g.Check("192.0.2.200:1", "alice@example.com"); err != ErrBanned {
		t.Fatalf("name not banned after a distributed attack: %v", err)
	}
	if err := g.Check("192.0.2.200:1", "bob@example.com"); err != nil {
		t.Fatalf("other name banned: %v", err)
	}
}

// An IPv6 client is counted per /64.
func TestIPv6Slash64(t *testing.T) {
	g, _ := newTestGuard(Config{IPBanAfter: 3, NameBanAfter: 100})
	for i := range 3 {
		g.Failed(fmt.Sprintf("[2001:db8:1:2::%x]:25", i+1), fmt.Sprintf("u%d@example.com", i))
	}
	if err := g.Check("[2001:db8:1:2:ffff::1]:1", "x@example.com"); err != ErrBanned {
		t.Fatal("/64 not banned")
	}
	if err := g.Check("[2001:db8:1:3::1]:1", "x@example.com"); err != nil {
		t.Fatal("neighbouring /64 banned")
	}
}

func TestSuccessResetsAddressAndWindowForgets(t *testing.T) {
	g, now := newTestGuard(Config{IPBanAfter: 3, NameBanAfter: 100})
	g.Failed("192.0.2.1:1", "a@example.com")
	g.Failed("192.0.2.1:1", "a@example.com")
	g.Succeeded("192.0.2.1:1", "a@example.com")
	if _, banned := g.Failed("192.0.2.1:1", "b@example.com"); banned {
		t.Fatal("failures before a success still counted")
	}
	g.Failed("192.0.2.1:1", "c@example.com")
	*now = now.Add(time.Hour)
	if _, banned := g.Failed("192.0.2.1:1", "d@example.com"); banned {
		t.Fatal("old failures outside the window still counted")
	}
}

func TestDisabledAndBounded(t *testing.T) {
	g, _ := newTestGuard(Config{Disabled: true, IPBanAfter: 1})
	if d, banned := g.Failed("192.0.2.1:1", "a"); d != 0 || banned || g.Check("192.0.2.1:1", "a") != nil {
		t.Fatal("disabled guard acted")
	}
	g, _ = newTestGuard(Config{MaxEntries: 50, IPBanAfter: 1000, NameBanAfter: 1000})
	for i := range 1000 {
		g.Failed(fmt.Sprintf("10.0.%d.%d:1", i/256, i%256), fmt.Sprintf("u%d", i))
		if len(g.entries) > 52 {
			t.Fatalf("%d entries, bound 50", len(g.entries))
		}
	}
}
