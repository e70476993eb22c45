package mailauth

import (
	"context"
	"errors"
	"testing"
	"time"
)

// countingKeys is a KeyStore in memory that counts lookups.
type countingKeys struct {
	keys    map[string][]Key
	lookups int
	err     error
}

func (s *countingKeys) DKIMKeys(_ context.Context, domain string) ([]Key, error) {
	s.lookups++
	if s.err != nil {
		return nil, s.err
	}
	return s.keys[domain], nil
}

func (s *countingKeys) AddDKIMKey(_ context.Context, k Key) error {
	s.keys[k.Domain] = append(s.keys[k.Domain], k)
	return nil
}

func (s *countingKeys) RetireDKIMKey(_ context.Context, domain, selector string, at time.Time) error {
	for i, k := range s.keys[domain] {
		if k.Selector == selector {
			s.keys[domain][i].Retired = at
			return nil
		}
	}
	return ErrKeyNotFound
}

func TestKeyCache(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	st := &countingKeys{keys: map[string][]Key{"example.com": {{Domain: "example.com", Selector: "a"}}}}
	c := &KeyCache{Store: st, TTL: time.Minute, Now: func() time.Time { return now }}
	lookup := func(want int) []Key {
		t.Helper()
		ks, err := c.DKIMKeys(ctx, "example.com")
		if err != nil {
			t.Fatal(err)
		}
		if st.lookups != want {
			t.Fatalf("store asked %d times, want %d", st.lookups, want)
		}
		return ks
	}
	lookup(1)
	now = now.Add(59 * time.Second)
	lookup(1) // kept
	now = now.Add(time.Second)
	lookup(2) // the TTL ran out
	// A change through the cache is seen at once.
	if err := c.RetireDKIMKey(ctx, "example.com", "a", now); err != nil {
		t.Fatal(err)
	}
	if ks := lookup(3); len(ks) != 1 || ks[0].Active() {
		t.Fatalf("after retiring through the cache: %+v", ks)
	}
	if err := c.AddDKIMKey(ctx, Key{Domain: "example.com", Selector: "b"}); err != nil {
		t.Fatal(err)
	}
	if ks := lookup(4); len(ks) != 2 {
		t.Fatalf("after adding through the cache: %d keys", len(ks))
	}
	// Forget: another process changed the store.
	c.Forget()
	lookup(5)
	// A clock that went back does not keep stale keys.
	now = now.Add(-time.Hour)
	lookup(6)
	// A failure is returned, and not kept.
	now = now.Add(time.Hour)
	st.err = errors.New("database down")
	if _, err := c.DKIMKeys(ctx, "example.com"); err == nil {
		t.Fatal("a failed lookup returned no error")
	}
	st.err = nil
	lookup(8)
}
