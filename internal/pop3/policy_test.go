package pop3

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// policyBackend adds to the fake backend what the RFC 2449 policies need:
// a login delay per user, per-user values and retrieval records.
type policyBackend struct {
	*fakeBackend
	mu        sync.Mutex
	delayed   map[string]bool // users refused with ErrLoginDelay
	userDelay time.Duration
	userExp   *time.Duration
	retrieved []string // "user:index"
}

func (b *policyBackend) OpenMaildrop(ctx context.Context, user string) (Maildrop, error) {
	b.mu.Lock()
	refuse := b.delayed[user]
	b.mu.Unlock()
	if refuse {
		return nil, fmt.Errorf("%s: %w", user, ErrLoginDelay)
	}
	d, err := b.fakeBackend.OpenMaildrop(ctx, user)
	if err != nil {
		return nil, err
	}
	return &policyDrop{Maildrop: d, b: b, user: user}, nil
}

func (b *policyBackend) retrievals() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.retrieved)
}

type policyDrop struct {
	Maildrop
	b    *policyBackend
	user string
}

func (d *policyDrop) Retrieved(i int) {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	d.b.retrieved = append(d.b.retrieved, fmt.Sprintf("%s:%d", d.user, i))
}

func (d *policyDrop) Policy() (time.Duration, *time.Duration) {
	return d.b.userDelay, d.b.userExp
}

func durp(d time.Duration) *time.Duration { return &d }

func newPolicyEnv(t *testing.T, mods ...func(*Config)) (*env, *policyBackend) {
	t.Helper()
	var pb *policyBackend
	e := newEnv(t, nil, append([]func(*Config){func(c *Config) {
		pb = &policyBackend{fakeBackend: c.Backend.(*fakeBackend), delayed: map[string]bool{}}
		c.Backend = pb
	}}, mods...)...)
	return e, pb
}

func TestCapaPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		delay     time.Duration
		expire    *time.Duration
		perUser   bool
		userDelay time.Duration
		userExp   *time.Duration
		before    []string // policy capabilities before login
		after     []string // and after
	}{
		{name: "none"},
		{name: "server values", delay: 90 * time.Second, expire: durp(30 * 24 * time.Hour),
			before: []string{"LOGIN-DELAY 90", "EXPIRE 30"}, after: []string{"LOGIN-DELAY 90", "EXPIRE 30"}},
		{name: "never", expire: durp(-1), before: []string{"EXPIRE NEVER"}, after: []string{"EXPIRE NEVER"}},
		// RFC 2449 section 6.7: whole days; less than one day is EXPIRE 0.
		{name: "partial days truncated", expire: durp(36 * time.Hour), before: []string{"EXPIRE 1"}, after: []string{"EXPIRE 1"}},
		{name: "zero", expire: durp(time.Second), before: []string{"EXPIRE 0"}, after: []string{"EXPIRE 0"}},
		// RFC 2449 sections 6.5 and 6.7: USER before login when values
		// vary per user, the user's own values after.
		{name: "per user", delay: 60 * time.Second, expire: durp(-1), perUser: true,
			userDelay: 300 * time.Second, userExp: durp(7 * 24 * time.Hour),
			before: []string{"LOGIN-DELAY 60 USER", "EXPIRE NEVER USER"}, after: []string{"LOGIN-DELAY 300", "EXPIRE 7"}},
		{name: "per user, user without delay", delay: 60 * time.Second, expire: durp(-1), perUser: true,
			userExp: durp(-1),
			before:  []string{"LOGIN-DELAY 60 USER", "EXPIRE NEVER USER"}, after: []string{"EXPIRE NEVER"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, pb := newPolicyEnv(t, func(c *Config) {
				c.LoginDelay, c.Expire, c.PolicyPerUser = tc.delay, tc.expire, tc.perUser
			})
			pb.userDelay, pb.userExp = tc.userDelay, tc.userExp
			c := e.dial()
			policy := func() []string {
				return slices.DeleteFunc(capa(t, c), func(s string) bool {
					return !strings.HasPrefix(s, "LOGIN-DELAY") && !strings.HasPrefix(s, "EXPIRE")
				})
			}
			if got := policy(); !slices.Equal(got, tc.before) {
				t.Errorf("before login: %q, want %q", got, tc.before)
			}
			c.login()
			if got := policy(); !slices.Equal(got, tc.after) {
				t.Errorf("after login: %q, want %q", got, tc.after)
			}
			c.expect("QUIT", "+OK pop.test POP3 server signing off (3 messages left)")
		})
	}
}

func TestLoginDelayRefused(t *testing.T) {
	e, pb := newPolicyEnv(t, func(c *Config) { c.LoginDelay = time.Minute })
	pb.delayed["alice"] = true
	c := e.dial()
	// A wrong password is [AUTH] as always: the delay is checked only for
	// a correct one (RFC 2449 section 8.1.1), so it reveals nothing.
	c.expect("USER alice", "+OK")
	c.expect("PASS wrong", "-ERR [AUTH] Authentication failed.")
	c.expect("USER alice", "+OK")
	c.expect("PASS secret", "-ERR [LOGIN-DELAY] Logged in too recently, try again later.")
	c.expect("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "-ERR [LOGIN-DELAY] Logged in too recently, try again later.")
	// Still in AUTHORIZATION: another user may log in.
	c.expect("STAT", "-ERR Command not valid in this state")
	c.expect("USER bob", "+OK")
	c.expect("PASS hunter 2", "+OK Maildrop has 0 messages (0 octets)")
	c.expect("QUIT", "+OK pop.test POP3 server signing off (maildrop empty)")
}

func TestRetrievedRecorded(t *testing.T) {
	e, pb := newPolicyEnv(t)
	c := e.dial()
	c.login()
	c.expect("TOP 1 0", "+OK Top of message follows")
	c.multi()
	c.expect("RETR 2", fmt.Sprintf("+OK %d octets", len(e.be.boxes["alice"][1].body)))
	c.multi()
	c.expect("RETR 9", "-ERR No such message")
	c.expect("DELE 3", "+OK Message 3 deleted")
	c.expect("RETR 3", "-ERR Message 3 is deleted")
	c.expect("QUIT", "+OK pop.test POP3 server signing off (2 messages left)")
	// Only the whole retrieval counts: TOP, refused and failed RETRs do not.
	if got := pb.retrievals(); !slices.Equal(got, []string{"alice:1"}) {
		t.Errorf("retrievals = %q, want [alice:1]", got)
	}
}
