package mailauth

import (
	"context"
	"sync"
	"time"
)

// KeyCache is a KeyStore that keeps each domain's keys for a while, so
// that signing does not ask the store for every message: a new key
// signs, and a retired one stops, within TTL on every node sharing the
// store, at once on a node whose cache is Forgotten. Changes made
// through the cache itself forget the domain at once. A failed lookup is
// not kept.
type KeyCache struct {
	Store KeyStore
	TTL   time.Duration    // how long keys are kept; DefaultKeyCacheTTL if 0
	Now   func() time.Time // the clock; time.Now if nil

	mu      sync.Mutex
	entries map[string]cachedKeys
}

// DefaultKeyCacheTTL is how long a KeyCache keeps a domain's keys.
const DefaultKeyCacheTTL = time.Minute

type cachedKeys struct {
	keys    []Key
	fetched time.Time
}

func (c *KeyCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// DKIMKeys implements KeyStore.
func (c *KeyCache) DKIMKeys(ctx context.Context, domain string) ([]Key, error) {
	ttl := c.TTL
	if ttl <= 0 {
		ttl = DefaultKeyCacheTTL
	}
	now := c.now()
	c.mu.Lock()
	e, ok := c.entries[domain]
	c.mu.Unlock()
	if ok && now.Sub(e.fetched) < ttl && !now.Before(e.fetched) {
		return e.keys, nil
	}
	keys, err := c.Store.DKIMKeys(ctx, domain)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cachedKeys{}
	}
	c.entries[domain] = cachedKeys{keys: keys, fetched: now}
	c.mu.Unlock()
	return keys, nil
}

// AddDKIMKey implements KeyStore.
func (c *KeyCache) AddDKIMKey(ctx context.Context, k Key) error {
	defer c.Forget()
	return c.Store.AddDKIMKey(ctx, k)
}

// RetireDKIMKey implements KeyStore.
func (c *KeyCache) RetireDKIMKey(ctx context.Context, domain, selector string, at time.Time) error {
	defer c.Forget()
	return c.Store.RetireDKIMKey(ctx, domain, selector, at)
}

// Forget drops every kept key: the next lookups ask the store.
func (c *KeyCache) Forget() {
	c.mu.Lock()
	c.entries = nil
	c.mu.Unlock()
}
