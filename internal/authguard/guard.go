// Package authguard slows and then bans password guessing, for POP3 and
// SMTP AUTH alike. Failures are counted per client address (an IPv6
// client per /64, since one host usually owns a whole /64) and per login
// name, so that guessing one account from many addresses is slowed too
// (like Dovecot's auth_penalty and Stalwart's IP and name bans).
//
// An attempt counts from the moment it begins, before its password is
// verified: attempts made in parallel take slots up to the thresholds and
// wait for one beyond them, so that no burst gets more passwords verified
// than a ban allows. The penalty delays the answer to a failed attempt,
// never a successful one; a ban refuses attempts without checking the
// password at all. A success clears the failures of its own name from its
// own address only.
package authguard

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"
)

// ErrBanned: too many failures; the client must wait (POP3 -ERR [SYS/TEMP],
// SMTP 454 4.7.0 / 421).
var ErrBanned = errors.New("too many failed logins, try again later")

// BannedError is the error Begin returns for a ban: it wraps ErrBanned
// and says when the ban ends.
type BannedError struct{ Until time.Time }

func (e *BannedError) Error() string { return ErrBanned.Error() }
func (e *BannedError) Unwrap() error { return ErrBanned }

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
	// Now is the clock; default time.Now.
	Now func() time.Time
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
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

type entry struct {
	failures    int // within the window
	inflight    int // attempts begun and not yet ended
	last        time.Time
	bannedUntil time.Time
}

// pairKey names the failures of one login name from one address: what a
// success of that name from that address clears.
type pairKey struct{ ip, name string }

type pair struct {
	failures int
	last     time.Time
}

// Guard is safe for concurrent use.
type Guard struct {
	cfg Config
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*entry
	pairs   map[pairKey]*pair
	// wake is closed (and replaced) whenever an attempt ends: attempts
	// waiting for a slot look again.
	wake chan struct{}
}

// New returns a guard.
func New(cfg Config) *Guard {
	cfg = cfg.withDefaults()
	return &Guard{cfg: cfg, now: cfg.Now, entries: map[string]*entry{}, pairs: map[pairKey]*pair{},
		wake: make(chan struct{})}
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

// Attempt is one login attempt between Begin and its end: Failed,
// Succeeded or Cancel, exactly one of them. A nil *Attempt (the guard is
// off) does nothing.
type Attempt struct {
	g        *Guard
	ip, name string
	ended    bool
}

// Begin starts a login attempt from remote (the client's host:port, or
// host) for login, before its password is looked at. It returns ErrBanned
// (a *BannedError) while the address or the name is banned. Otherwise it takes a slot: an
// attempt counts against the thresholds from now on, as a failure would,
// so that attempts made in parallel cannot have more passwords verified
// than IPBanAfter (or NameBanAfter) allows. When every slot is taken by
// attempts in flight, Begin waits until one ends (a failure may ban, a
// success frees it) or ctx is done.
func (g *Guard) Begin(ctx context.Context, remote, login string) (*Attempt, error) {
	if g == nil || g.cfg.Disabled {
		return nil, nil
	}
	ipk, nk := ipKey(remote), nameKey(login)
	for {
		g.mu.Lock()
		now := g.now()
		g.prune(now)
		ip, name := g.entry(ipk, now), g.entry(nk, now)
		if now.Before(ip.bannedUntil) || now.Before(name.bannedUntil) {
			until := ip.bannedUntil
			if name.bannedUntil.After(until) {
				until = name.bannedUntil
			}
			g.mu.Unlock()
			return nil, &BannedError{Until: until}
		}
		if ip.failures+ip.inflight < g.cfg.IPBanAfter && name.failures+name.inflight < g.cfg.NameBanAfter {
			ip.inflight++
			name.inflight++
			g.mu.Unlock()
			return &Attempt{g: g, ip: ipk, name: nk}, nil
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// entry returns the live entry for k, creating it, and forgets its
// failures once the last is older than the window (a ban outlives them).
// Under g.mu.
func (g *Guard) entry(k string, now time.Time) *entry {
	e := g.entries[k]
	if e == nil {
		e = &entry{}
		g.entries[k] = e
	}
	if e.failures > 0 && now.Sub(e.last) > g.cfg.Window {
		e.failures = 0
	}
	return e
}

// end releases the attempt's slot and wakes the attempts waiting for one.
// Under g.mu.
func (a *Attempt) end(now time.Time) (ip, name *entry) {
	a.ended = true
	ip, name = a.g.entry(a.ip, now), a.g.entry(a.name, now)
	ip.inflight = max(ip.inflight-1, 0)
	name.inflight = max(name.inflight-1, 0)
	close(a.g.wake)
	a.g.wake = make(chan struct{})
	return ip, name
}

// Failed records that the password was wrong and returns how long to wait
// before answering, and whether the failure caused (or fell into) a ban.
func (a *Attempt) Failed() (delay time.Duration, banned bool) {
	if a == nil || a.ended {
		return 0, false
	}
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	ip, name := a.end(now)
	worst := 0
	for _, k := range []struct {
		e     *entry
		banAt int
	}{{ip, g.cfg.IPBanAfter}, {name, g.cfg.NameBanAfter}} {
		k.e.failures++
		k.e.last = now
		if k.e.failures >= k.banAt {
			k.e.bannedUntil = now.Add(g.cfg.BanFor)
			banned = true
		}
		worst = max(worst, k.e.failures)
	}
	pk := pairKey{a.ip, a.name}
	p := g.pairs[pk]
	if p == nil || now.Sub(p.last) > g.cfg.Window {
		p = &pair{}
		g.pairs[pk] = p
	}
	p.failures++
	p.last = now
	delay = g.cfg.BaseDelay
	for i := 1; i < worst && delay < g.cfg.MaxDelay; i++ {
		delay *= 2
	}
	return min(delay, g.cfg.MaxDelay), banned
}

// Succeeded records a successful login. It forgets the failures of this
// name from this address (a user who mistyped), and only those: failures
// for other names from the address, or for this name from elsewhere, go
// on counting, so that logging in to one's own account now and then does
// not reset a guessing attack on others. It lifts no ban.
func (a *Attempt) Succeeded() {
	if a == nil || a.ended {
		return
	}
	g := a.g
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	ip, name := a.end(now)
	pk := pairKey{a.ip, a.name}
	if p := g.pairs[pk]; p != nil {
		if now.Sub(p.last) <= g.cfg.Window {
			ip.failures = max(ip.failures-p.failures, 0)
			name.failures = max(name.failures-p.failures, 0)
		}
		delete(g.pairs, pk)
	}
}

// Cancel ends an attempt that was neither a success nor a failure (the
// directory could not be read, the client went away): it counts nothing.
func (a *Attempt) Cancel() {
	if a == nil || a.ended {
		return
	}
	a.g.mu.Lock()
	defer a.g.mu.Unlock()
	a.end(a.g.now())
}

// prune keeps memory bounded: forgotten entries go first, then, if still
// over the limit, unbanned ones; an entry with attempts in flight stays.
// Under g.mu.
func (g *Guard) prune(now time.Time) {
	if len(g.entries)+len(g.pairs) < g.cfg.MaxEntries {
		return
	}
	for k, p := range g.pairs {
		if now.Sub(p.last) > g.cfg.Window {
			delete(g.pairs, k)
		}
	}
	for k, e := range g.entries {
		if e.inflight == 0 && now.Sub(e.last) > g.cfg.Window && !now.Before(e.bannedUntil) {
			delete(g.entries, k)
		}
	}
	for k := range g.pairs {
		if len(g.entries)+len(g.pairs) < g.cfg.MaxEntries {
			break
		}
		delete(g.pairs, k)
	}
	for k, e := range g.entries {
		if len(g.entries)+len(g.pairs) < g.cfg.MaxEntries {
			break
		}
		if e.inflight == 0 && !now.Before(e.bannedUntil) {
			delete(g.entries, k)
		}
	}
}
