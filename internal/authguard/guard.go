// Package authguard slows and then bans password guessing, for POP3 and
// SMTP AUTH alike. Failures are counted per client address (an IPv6
// client per /64, since one host usually owns a whole /64) and per login
// name, so that guessing one account from many addresses is slowed too
// (like Dovecot's auth_penalty and Stalwart's IP and name bans).
//
// The penalty delays the answer to a failed attempt, never a successful
// one; a ban refuses attempts without checking the password at all.
package authguard

import (
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrBanned: too many failures; the client must wait (POP3 -ERR [SYS/TEMP],
// SMTP 454 4.7.0 / 421).
var ErrBanned = errors.New("too many failed logins, try again later")

// Config tunes the guard; zero fields take the defaults.
type Config struct {
	Disabled bool
	// Window: failures older than this are forgotten.
	Window time.Duration // default 15 min
	// IPBanAfter failures from one address (or IPv6 /64) ban it.
	IPBanAfter int // default 10
	// NameBanAfter failures for one login name ban that name (set higher
	// than IPBanAfter: the real owner is locked out too while it lasts).
	NameBanAfter int // default 30
	// BanFor is how long a ban lasts.
	BanFor time.Duration // default 15 min
	// MaxDelay caps the penalty: 2^(failures-1) × BaseDelay.
	BaseDelay time.Duration // default 250 ms
	MaxDelay  time.Duration // default 15 s
	// MaxEntries bounds memory; the oldest-looking entries are dropped.
	MaxEntries int // default 100,000
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Window, 15*time.Minute)
	def(&c.BanFor, 15*time.Minute)
	def(&c.BaseDelay, 250*time.Millisecond)
	def(&c.MaxDelay, 15*time.Second)
	if c.IPBanAfter <= 0 {
		c.IPBanAfter = 10
	}
	if c.NameBanAfter <= 0 {
		c.NameBanAfter = 30
	}
	if c.MaxEntries <= 0 {
		c.MaxEntries = 100_000
	}
	return c
}

type entry struct {
	failures    int
	last        time.Time
	bannedUntil time.Time
}

// Guard is safe for concurrent use.
type Guard struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
}

// New returns a guard.
func New(cfg Config) *Guard {
	return &Guard{cfg: cfg.withDefaults(), now: time.Now, entries: map[string]*entry{}}
}

// ipKey is the client's address, or its /64 for IPv6.
func ipKey(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return "ip:" + host
	}
	if v4 := ip.To4(); v4 != nil {
		return "ip:" + v4.String()
	}
	return "ip6:" + ip.Mask(net.CIDRMask(64, 128)).String()
}

func nameKey(login string) string { return "name:" + strings.ToLower(strings.TrimSpace(login)) }

// Check returns ErrBanned when the client address or the login name is
// banned. remote is the client's host:port (or host).
func (g *Guard) Check(remote, login string) error {
	if g == nil || g.cfg.Disabled {
		return nil
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range []string{ipKey(remote), nameKey(login)} {
		if e := g.entries[k]; e != nil && now.Before(e.bannedUntil) {
			return ErrBanned
		}
	}
	return nil
}

// Failed records a failed attempt and returns how long to wait before
// answering it, and whether it caused (or fell into) a ban.
func (g *Guard) Failed(remote, login string) (delay time.Duration, banned bool) {
	if g == nil || g.cfg.Disabled {
		return 0, false
	}
	now := g.now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.prune(now)
	worst := 0
	for _, k := range []struct {
		key   string
		banAt int
	}{{ipKey(remote), g.cfg.IPBanAfter}, {nameKey(login), g.cfg.NameBanAfter}} {
		e := g.entries[k.key]
		if e == nil || now.Sub(e.last) > g.cfg.Window {
			e = &entry{}
			g.entries[k.key] = e
		}
		e.failures++
		e.last = now
		if e.failures >= k.banAt {
			e.bannedUntil = now.Add(g.cfg.BanFor)
			banned = true
		}
		worst = max(worst, e.failures)
	}
	delay = g.cfg.BaseDelay
	for i := 1; i < worst && delay < g.cfg.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, g.cfg.MaxDelay), banned
}

// Succeeded forgets the client address's failures (not the name's: a
// distributed attack on that name goes on counting).
func (g *Guard) Succeeded(remote, login string) {
	if g == nil || g.cfg.Disabled {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if e := g.entries[ipKey(remote)]; e != nil && !g.now().Before(e.bannedUntil) {
		delete(g.entries, ipKey(remote))
	}
}

// prune keeps memory bounded: forgotten entries go first, then, if still
// over the limit, unbanned ones.
func (g *Guard) prune(now time.Time) {
	if len(g.entries) < g.cfg.MaxEntries {
		return
	}
	for k, e := range g.entries {
		if now.Sub(e.last) > g.cfg.Window && !now.Before(e.bannedUntil) {
			delete(g.entries, k)
		}
	}
	for k, e := range g.entries {
		if len(g.entries) < g.cfg.MaxEntries {
			break
		}
		if !now.Before(e.bannedUntil) {
			delete(g.entries, k)
		}
	}
}
