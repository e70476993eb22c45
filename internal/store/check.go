package store

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/dsn"
)

// Checks every backend applies to its arguments in the same way, so that
// what one refuses (ErrInvalid) the other refuses too.

// HeaderProblem says what is wrong with a per-copy header of a Delivery,
// "" if nothing: it must be empty or lines in canonical form, each ending
// in CRLF, or it would run into the first line of the body.
func HeaderProblem(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	if !bytes.HasSuffix(h, []byte("\r\n")) {
		return "does not end in CRLF"
	}
	if bytes.Count(h, []byte("\r")) != bytes.Count(h, []byte("\n")) || bytes.Count(h, []byte("\r\n")) != bytes.Count(h, []byte("\n")) {
		return "has a bare CR or LF"
	}
	return ""
}

// QueueAddressProblem says what is wrong with an address given to
// Enqueue, "" if nothing. It checks only what would break the SMTP
// dialogue: a remote address is the remote host's business (its local
// part may be case sensitive or quoted), so it is kept as given.
func QueueAddressProblem(a string) string {
	switch {
	case a == "":
		return "is empty"
	case !utf8.ValidString(a):
		return "is not valid UTF-8"
	case !strings.Contains(a, "@"):
		return "has no @"
	}
	for _, r := range a {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

// DomainInUseError is DeleteDomain's refusal of a domain that still has
// users, extra addresses or aliases. It is ErrExists for errors.Is.
type DomainInUseError struct {
	Domain                    string
	Users, Addresses, Aliases int
}

func (e *DomainInUseError) Error() string {
	var parts []string
	for _, c := range []struct {
		n           int
		one, plural string
	}{{e.Users, "user", "users"}, {e.Addresses, "extra address", "extra addresses"}, {e.Aliases, "alias", "aliases"}} {
		switch {
		case c.n == 1:
			parts = append(parts, "1 "+c.one)
		case c.n > 1:
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.plural))
		}
	}
	list := strings.Join(parts, ", ")
	if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " and " + list[i+2:]
	}
	return fmt.Sprintf("domain %s is still in use by %s: delete those first", e.Domain, list)
}

// Is makes the error ErrExists.
func (e *DomainInUseError) Is(target error) bool { return target == ErrExists }

// CheckQueueEnvelope is what Enqueue refuses (ErrInvalid, wrapped, with
// the reason): no recipient, a recipient twice, an address that
// QueueAddressProblem finds wrong, DSN parameters not parallel to the
// recipients or not as RFC 3461 allows them.
func CheckQueueEnvelope(env QueueEnvelope) error {
	if len(env.To) == 0 {
		return fmt.Errorf("queued message without recipients: %w", ErrInvalid)
	}
	if env.From != "" {
		if reason := QueueAddressProblem(env.From); reason != "" {
			return fmt.Errorf("sender %q %s: %w", env.From, reason, ErrInvalid)
		}
	}
	seen := make(map[string]bool, len(env.To))
	for _, r := range env.To {
		if reason := QueueAddressProblem(r); reason != "" {
			return fmt.Errorf("recipient %q %s: %w", r, reason, ErrInvalid)
		}
		if seen[r] {
			return fmt.Errorf("recipient %q listed twice: %w", r, ErrInvalid)
		}
		seen[r] = true
	}
	if env.DSN != nil && len(env.DSN) != len(env.To) {
		return fmt.Errorf("DSN parameters for %d of %d recipients: %w", len(env.DSN), len(env.To), ErrInvalid)
	}
	for i, p := range env.DSN {
		if err := p.Check(); err != nil {
			return fmt.Errorf("recipient %q: %v: %w", env.To[i], err, ErrInvalid)
		}
	}
	if err := dsn.CheckRet(env.Ret); err != nil {
		return fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	if err := dsn.CheckEnvID(env.EnvID); err != nil {
		return fmt.Errorf("%v: %w", err, ErrInvalid)
	}
	return nil
}

// RcptDSN is the DSN parameters of the i-th recipient of env.
func (env QueueEnvelope) RcptDSN(i int) dsn.RcptParams {
	if i < len(env.DSN) {
		return env.DSN[i]
	}
	return dsn.RcptParams{}
}

// SpamScoreProblem says what is wrong with a user's SpamRejectScore, ""
// if nothing: a number (negative scores are rspamd's too), not NaN or
// infinite.
func SpamScoreProblem(score *float64) string {
	if score != nil && (math.IsNaN(*score) || math.IsInf(*score, 0)) {
		return "is not a number"
	}
	return ""
}
