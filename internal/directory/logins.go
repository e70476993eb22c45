package directory

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/authguard"
	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Logins is what every password login goes through, POP3 and SMTP AUTH
// alike: the ban check, the directory (with its cache of recent
// verifications), and the growing penalty for failures. One value is
// shared by all services so that failures count across protocols.
type Logins struct {
	auth  *Authenticator
	guard *authguard.Guard // nil when the penalty is off
	log   *slog.Logger
}

// NewLogins checks passwords with auth; guard (nil for none) bans and
// delays clients and names that fail too often.
func NewLogins(auth *Authenticator, guard *authguard.Guard, log *slog.Logger) *Logins {
	return &Logins{auth: auth, guard: guard, log: log}
}

// Check authenticates login. It returns authguard.ErrBanned while the
// client or the name is banned (without looking at the password), an
// error wrapping ErrAuthFailed after the penalty delay, or the
// user. The attempt counts against the ban thresholds from before the
// password is verified (authguard.Guard.Begin).
func (l *Logins) Check(ctx context.Context, login, password string) (store.User, error) {
	remote := clientinfo.Remote(ctx)
	attempt, err := l.guard.Begin(ctx, remote, login)
	if err != nil {
		if errors.Is(err, authguard.ErrBanned) {
			l.log.Warn("login refused: banned", "remote", remote, "login", login)
		}
		return store.User{}, err
	}
	u, err := l.auth.Authenticate(ctx, login, password)
	switch {
	case errors.Is(err, ErrAuthFailed):
		delay, banned := attempt.Failed()
		if banned {
			l.log.Warn("too many failed logins: banned", "remote", remote, "login", login)
		}
		// The answer to a failure waits; a success never does.
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		return store.User{}, err
	case err == nil:
		attempt.Succeeded()
		if NeedsRehash(u.PasswordHash) {
			// A hash imported from another server: the password given
			// matched it, so our own replaces it (Dovecot users keep their
			// passwords, and the old scheme goes at their next login).
			if nu, err := l.auth.rehash(ctx, u, password); err != nil {
				l.log.Warn("could not replace an imported password hash", "user", u.Address, "err", err)
			} else {
				u = nu
				l.log.Info("imported password hash replaced", "user", u.Address)
			}
		}
	default:
		attempt.Cancel()
	}
	return u, err
}

// Penalized reports whether the guard delays failures itself (then the
// POP3 server's own fixed delay is not needed).
func (l *Logins) Penalized() bool { return l.guard != nil }
