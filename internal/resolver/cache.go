package resolver

import (
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of the answer cache. Positive answers live for their TTL, at
// most MaxTTL, so that a changed SPF, DKIM or DMARC record is seen within
// the hour whatever TTL it was published with (unbound's cache-max-ttl is
// a day; mail checks want changes sooner). Negative answers live for what
// RFC 2308 section 5 gives (the SOA record's TTL, at most its MINIMUM
// field), at most MaxNegativeTTL, and are not cached without an SOA
// (section 5: "Negative responses without SOA records SHOULD NOT be
// cached"). Failures (SERVFAIL, timeouts) are never cached: the next
// question asks again (section 7 allows a short cache; asking again is
// what a message retried later needs).
const (
	MaxTTL         = time.Hour
	MaxNegativeTTL = 15 * time.Minute
	// CacheEntries bounds the cache's size; past it, expired entries go
	// first, then arbitrary ones.
	CacheEntries = 10_000
)

// cache holds the answers of one DNS server: for each question (name in
// lower case, type), the records of that type in the answer, or the
// knowledge that there are none (nil rrs, notFound).
type cache struct {
	now func() time.Time

	mu      sync.Mutex
	entries map[question]cached
}

type question struct {
	name  string
	qtype uint16
}

type cached struct {
	rrs      []dns.RR // the records of the type asked; nil for a negative answer
	nxdomain bool     // negative: the name does not exist (else NODATA)
	expires  time.Time
}

func newCache() *cache {
	return &cache{now: time.Now, entries: map[question]cached{}}
}

func key(name string, qtype uint16) question {
	return question{strings.ToLower(dns.Fqdn(name)), qtype}
}

// The methods of a nil *cache cache nothing.

// get returns the cached answer to a question, if it has not expired.
// The records are shared: callers only read them.
func (c *cache) get(name string, qtype uint16) (cached, bool) {
	if c == nil {
		return cached{}, false
	}
	k := key(name, qtype)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return cached{}, false
	}
	if !c.now().Before(e.expires) {
		delete(c.entries, k)
		return cached{}, false
	}
	return e, true
}

// putAnswer caches the records of a positive answer for the smallest TTL
// of the answer section, at most MaxTTL: the records of the type asked
// and the CNAMEs that led to them, so that no link of a chain is kept
// past its own TTL.
func (c *cache) putAnswer(name string, qtype uint16, answer, rrs []dns.RR) {
	if c == nil {
		return
	}
	ttl := MaxTTL
	for _, rr := range answer {
		ttl = min(ttl, time.Duration(rr.Header().Ttl)*time.Second)
	}
	c.put(name, qtype, cached{rrs: rrs}, ttl)
}

// putNegative caches an NXDOMAIN or NODATA answer for the TTL RFC 2308
// section 5 gives it: the lesser of the SOA record's TTL and its MINIMUM
// field, at most MaxNegativeTTL; not at all without an SOA in the
// authority section.
func (c *cache) putNegative(name string, qtype uint16, nxdomain bool, authority []dns.RR) {
	if c == nil {
		return
	}
	for _, rr := range authority {
		if soa, ok := rr.(*dns.SOA); ok {
			ttl := time.Duration(min(soa.Hdr.Ttl, soa.Minttl)) * time.Second
			c.put(name, qtype, cached{nxdomain: nxdomain}, min(ttl, MaxNegativeTTL))
			return
		}
	}
}

func (c *cache) put(name string, qtype uint16, e cached, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	now := c.now()
	e.expires = now.Add(ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= CacheEntries {
		c.evict(now)
	}
	c.entries[key(name, qtype)] = e
}

// evict makes room: it drops the expired entries and, if that freed less
// than a tenth of the cache, arbitrary others (Go's map order) until it
// has. c.mu is held.
func (c *cache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	for k := range c.entries {
		if len(c.entries) < CacheEntries*9/10 {
			break
		}
		delete(c.entries, k)
	}
}
