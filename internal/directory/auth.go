package directory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// ErrAuthFailed is returned (wrapped, with the reason for the logs) for an
// unknown login, a wrong password, an unusable stored hash or a disabled
// account. Callers must answer all of them alike.
var ErrAuthFailed = errors.New("authentication failed")

// Authenticator checks login names and passwords against a directory.
type Authenticator struct {
	dir   store.Directory
	cache *verifyCache
	now   func() time.Time
	// flight joins concurrent verifications of the same login, password
	// and hash (a client opening several connections at once, a pool of
	// an application's sender) into one: argon2id's 19 MiB and its time
	// once, not once per connection, which on a busy machine also makes
	// each of them slower (they compete for the memory bandwidth).
	flight singleflight.Group
}

// verify is VerifyPassword; tests count its calls.
var verify = VerifyPassword

// Defaults of the cache of successful verifications.
const (
	DefaultCacheTTL = 5 * time.Minute
	defaultCacheMax = 100_000
)

// NewAuthenticator returns an Authenticator reading users from dir, with
// a cache of successful verifications for DefaultCacheTTL.
func NewAuthenticator(dir store.Directory) *Authenticator {
	return NewAuthenticatorTTL(dir, DefaultCacheTTL)
}

// NewAuthenticatorTTL is NewAuthenticator with another cache lifetime; 0
// turns the cache off.
func NewAuthenticatorTTL(dir store.Directory, ttl time.Duration) *Authenticator {
	a := &Authenticator{dir: dir, now: time.Now}
	if ttl > 0 {
		a.cache = newVerifyCache(ttl, defaultCacheMax)
	}
	return a
}

// dummyHash is verified instead of a real one when there is none, so that
// an unknown login costs as much time as a wrong password and the response
// time does not tell an attacker which logins exist.
var dummyHash = sync.OnceValues(func() (string, error) {
	return HashPassword("postoffice timing equalizer")
})

func burnTime(password string) {
	if h, err := dummyHash(); err == nil {
		_, _ = VerifyPassword(h, password)
	}
}

// Authenticate returns the enabled user whose primary address is login
// (normalized as by address.Normalize) and whose password hash matches
// password. Extra addresses are not login names. Failures that the client
// caused wrap ErrAuthFailed; any other error is a directory failure the
// caller should report as temporary.
func (a *Authenticator) Authenticate(ctx context.Context, login, password string) (store.User, error) {
	addr, err := address.Normalize(login)
	if err != nil {
		burnTime(password)
		return store.User{}, fmt.Errorf("%w: malformed login name", ErrAuthFailed)
	}
	u, err := a.dir.UserByAddress(ctx, addr)
	if errors.Is(err, store.ErrNotFound) || err == nil && u.Address != addr {
		burnTime(password)
		return store.User{}, fmt.Errorf("%w: no user %s", ErrAuthFailed, addr)
	}
	if err != nil {
		return store.User{}, fmt.Errorf("looking up %s: %w", addr, err)
	}
	// The user row is read every time (cheap), so a disabled or deleted
	// account or a changed password takes effect at once; only the slow
	// hash is skipped for a recently verified, unchanged password.
	if a.cache != nil && u.Enabled && a.cache.hit(addr, password, u.PasswordHash, a.now()) {
		return u, nil
	}
	ok, err := a.verifyJoined(addr, password, u.PasswordHash)
	switch {
	case err != nil:
		burnTime(password)
		return store.User{}, fmt.Errorf("%w: user %s: %v", ErrAuthFailed, addr, err)
	case !ok:
		return store.User{}, fmt.Errorf("%w: wrong password for %s", ErrAuthFailed, addr)
	case !u.Enabled:
		// Checked after the password so that a disabled account cannot be
		// told apart by its speed.
		return store.User{}, fmt.Errorf("%w: user %s is disabled", ErrAuthFailed, addr)
	}
	if a.cache != nil {
		a.cache.add(addr, password, u.PasswordHash, a.now())
	}
	return u, nil
}

// verifyJoined is verify, one at a time for the same login, password and
// hash while the cache is on: the callers that arrive while one
// verification is in flight get its outcome (the cache's key names the
// flight, so no password is kept).
func (a *Authenticator) verifyJoined(login, password, hash string) (bool, error) {
	if a.cache == nil {
		return verify(hash, password)
	}
	k := a.cache.id(login, password, hash)
	v, err, _ := a.flight.Do(string(k[:]), func() (any, error) {
		return verify(hash, password)
	})
	return v.(bool), err
}

// rehash replaces u's password hash with HashPassword's of password, which
// has just been verified against it.
func (a *Authenticator) rehash(ctx context.Context, u store.User, password string) (store.User, error) {
	h, err := HashPassword(password)
	if err != nil {
		return u, err
	}
	u.PasswordHash = h
	if err := a.dir.UpdateUser(ctx, u); err != nil {
		return u, err
	}
	if a.cache != nil {
		a.cache.add(u.Address, password, u.PasswordHash, a.now())
	}
	return u, nil
}
