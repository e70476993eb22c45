package directory

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// verifyCache remembers successful password verifications for a short
// time, so that clients polling every minute do not pay a full argon2id
// hash each time (like Dovecot's auth_cache). Entries are keyed on an HMAC
// of the login, the password and the stored hash string under a random
// per-process key: the cache never holds a password, and a password
// change (a new hash string) misses the cache at once, whichever process
// made the change.
type verifyCache struct {
	key     [32]byte
	ttl     time.Duration
	max     int
	mu      sync.Mutex
	entries map[[32]byte]time.Time // key -> expiry
}

func newVerifyCache(ttl time.Duration, max int) *verifyCache {
	c := &verifyCache{ttl: ttl, max: max, entries: make(map[[32]byte]time.Time)}
	rand.Read(c.key[:])
	return c
}

func (c *verifyCache) id(login, password, hash string) [32]byte {
	m := hmac.New(sha256.New, c.key[:])
	for _, s := range []string{login, password, hash} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// hit reports whether the triple was verified within the TTL.
func (c *verifyCache) hit(login, password, hash string, now time.Time) bool {
	k := c.id(login, password, hash)
	c.mu.Lock()
	defer c.mu.Unlock()
	exp, ok := c.entries[k]
	if ok && now.After(exp) {
		delete(c.entries, k)
		return false
	}
	return ok
}

func (c *verifyCache) add(login, password, hash string, now time.Time) {
	k := c.id(login, password, hash)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop expired entries; if still full, drop everything (simple and
		// bounded: a full cache only costs some re-hashing).
		for k, exp := range c.entries {
			if now.After(exp) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			clear(c.entries)
		}
	}
	c.entries[k] = now.Add(c.ttl)
}
