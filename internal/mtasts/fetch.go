package mtasts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// MaxPolicySize bounds a policy body; a larger one is refused. RFC 8461
// sets no limit; 64 KiB is what Google documents for its own and far more
// than a policy needs.
const MaxPolicySize = 64 << 10

// FetchTimeout bounds one policy fetch (RFC 8461 section 3.3 suggests one
// minute).
const FetchTimeout = time.Minute

// Resolver looks up TXT records; *net.Resolver is one.
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
}

// FetchPolicy fetches a domain's policy from its policy host (RFC 8461
// section 3.3): HTTPS with the client's certificate checks, the response
// valid only with status 200 (redirects are not followed, whatever the
// client's CheckRedirect), no HTTP cache, media type text/plain (section
// 3.2's SHOULD), at most MaxPolicySize octets, parsed strictly.
func FetchPolicy(ctx context.Context, client *http.Client, domain string) (*Policy, error) {
	c := &http.Client{Timeout: FetchTimeout}
	if client != nil {
		*c = *client
		if c.Timeout == 0 {
			c.Timeout = FetchTimeout
		}
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, PolicyURL(domain), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Cache-Control", "no-cache")
	res, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("mta-sts policy of %s: %w", domain, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("mta-sts policy of %s: HTTP status %s", domain, res.Status)
	}
	mt, params, err := mime.ParseMediaType(res.Header.Get("Content-Type"))
	if err != nil || mt != "text/plain" {
		return nil, fmt.Errorf("mta-sts policy of %s: media type %q, want text/plain", domain, res.Header.Get("Content-Type"))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		return nil, fmt.Errorf("mta-sts policy of %s: charset %q", domain, cs)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxPolicySize+1))
	if err != nil {
		return nil, fmt.Errorf("mta-sts policy of %s: %w", domain, err)
	}
	if len(body) > MaxPolicySize {
		return nil, fmt.Errorf("mta-sts policy of %s: larger than %d octets", domain, MaxPolicySize)
	}
	return Parse(string(body))
}

// Fetcher discovers, fetches and caches the policies of the domains mail
// goes to (RFC 8461 sections 3 and 5.1). It is safe for concurrent use.
type Fetcher struct {
	// Resolver looks up the _mta-sts records; nil means net.DefaultResolver.
	Resolver Resolver
	// Client fetches policies; nil means a client with the system's roots.
	Client *http.Client
	// RetryAfter is how long a failed fetch of one policy id is not
	// repeated (RFC 8461 section 3.3 suggests five minutes or more);
	// default five minutes.
	RetryAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu    sync.Mutex
	cache map[string]*cached
}

type cached struct {
	policy  *Policy // nil: none fetched yet
	id      string
	fetched time.Time
	// A failed fetch of failedID is not tried again before retryAt.
	failedID string
	retryAt  time.Time
	lastErr  error
}

// Result is a domain's policy as the Fetcher knows it.
type Result struct {
	Policy *Policy // nil: the domain has no usable policy
	ID     string
	// Fetched is when the policy was fetched; it expires at Fetched plus
	// its MaxAge.
	Fetched time.Time
	// Cached is set when the cached policy was used because the record's
	// id is unchanged, or because discovery or fetching failed (Err says
	// why).
	Cached bool
	// Err is why a new policy could not be had, also when a cached one
	// was used instead; nil when all went well or there is no record.
	Err error
}

// Get returns the policy to apply for mail to domain (RFC 8461 section
// 5.1): with a record whose id is that of the cached, unexpired policy,
// that policy; with a new id, the policy fetched anew, or the cached one
// if fetching fails; without a record (or when DNS fails), the cached one
// until it expires: a withdrawn record does not withdraw a cached policy
// (section 8.3 withdraws by publishing mode none). Without any, Policy
// is nil: deliver as if the domain had no MTA-STS.
func (f *Fetcher) Get(ctx context.Context, domain string) Result {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	now := f.now()
	f.mu.Lock()
	if f.cache == nil {
		f.cache = map[string]*cached{}
	}
	c := f.cache[domain]
	if c == nil {
		c = &cached{}
		f.cache[domain] = c
	}
	f.mu.Unlock()

	cachedResult := func(err error) Result {
		f.mu.Lock()
		defer f.mu.Unlock()
		if c.policy != nil && now.Before(c.fetched.Add(c.policy.MaxAge)) {
			return Result{Policy: c.policy, ID: c.id, Fetched: c.fetched, Cached: true, Err: err}
		}
		return Result{Err: err}
	}

	rec, err := f.lookup(ctx, domain)
	if errors.Is(err, ErrNoRecord) {
		return cachedResult(nil)
	}
	if err != nil {
		return cachedResult(err)
	}
	f.mu.Lock()
	fresh := c.policy != nil && c.id == rec.ID && now.Before(c.fetched.Add(c.policy.MaxAge))
	// A policy still in use is refreshed before it expires (section 5.1
	// allows checking for a new policy at any time), so that a short
	// outage of the policy host at its expiry does not drop it; here once
	// half its max_age has passed.
	stale := fresh && !now.Before(c.fetched.Add(c.policy.MaxAge/2))
	backoff := c.failedID == rec.ID && now.Before(c.retryAt)
	lastErr := c.lastErr
	f.mu.Unlock()
	if fresh && (!stale || backoff) {
		return cachedResult(nil)
	}
	if backoff {
		return cachedResult(lastErr)
	}
	p, err := FetchPolicy(ctx, f.Client, domain)
	f.mu.Lock()
	if err != nil {
		c.failedID, c.retryAt, c.lastErr = rec.ID, now.Add(f.retryAfter()), err
		f.mu.Unlock()
		return cachedResult(err)
	}
	c.policy, c.id, c.fetched, c.failedID, c.lastErr = p, rec.ID, now, "", nil
	f.mu.Unlock()
	return Result{Policy: p, ID: rec.ID, Fetched: now}
}

func (f *Fetcher) lookup(ctx context.Context, domain string) (Record, error) {
	r := f.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	txts, err := r.LookupTXT(ctx, RecordName(domain))
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return Record{}, ErrNoRecord
	}
	if err != nil {
		return Record{}, fmt.Errorf("mta-sts record of %s: %w", domain, err)
	}
	return SelectRecord(txts)
}

func (f *Fetcher) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fetcher) retryAfter() time.Duration {
	if f.RetryAfter > 0 {
		return f.RetryAfter
	}
	return 5 * time.Minute
}
