package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/authguard"
	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// logins is what every password login goes through, POP3 and SMTP AUTH
// alike: the ban check, the directory (with its cache of recent
// verifications), and the growing penalty for failures. One value is
// shared by all services so that failures count across protocols.
type logins struct {
	auth  *directory.Authenticator
	guard *authguard.Guard // nil when the penalty is off
	log   *slog.Logger
}

func newLogins(st store.Directory, c config.Auth, log *slog.Logger) *logins {
	l := &logins{auth: directory.NewAuthenticatorTTL(st, time.Duration(c.CacheTTL)), log: log}
	if c.Penalty {
		l.guard = authguard.New(authguard.Config{
			IPBanAfter:   c.IPBanAfter,
			NameBanAfter: c.NameBanAfter,
			BanFor:       time.Duration(c.BanTime),
		})
	}
	return l
}

// check authenticates login. It returns authguard.ErrBanned while the
// client or the name is banned (without looking at the password), an
// error wrapping directory.ErrAuthFailed after the penalty delay, or the
// user. The attempt counts against the ban thresholds from before the
// password is verified (authguard.Guard.Begin).
func (l *logins) check(ctx context.Context, login, password string) (store.User, error) {
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
	case errors.Is(err, directory.ErrAuthFailed):
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
	default:
		attempt.Cancel()
	}
	return u, err
}

// penalized reports whether the guard delays failures itself (then the
// POP3 server's own fixed delay is not needed).
func (l *logins) penalized() bool { return l.guard != nil }
