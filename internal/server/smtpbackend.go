package server

import (
	"context"
	"errors"
	"io"

	"github.com/postoffice-mail/postoffice/internal/authguard"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// smtpBackend adapts the router and the directory to the small interface
// the SMTP server depends on. One value serves MX and submission alike.
type smtpBackend struct {
	logins             *directory.Logins
	router             *router.Router
	requireSenderMatch bool
	metrics            *metrics.Metrics
	checks             *inboundChecks // the MX's SPF, DKIM, DMARC (inboundauth.go)
	milters            *milterStage   // nil: no milter for this service
}

func (b *smtpBackend) Authenticate(ctx context.Context, login, password string) (string, error) {
	u, err := b.logins.Check(ctx, login, password)
	if err != nil {
		if errors.Is(err, directory.ErrAuthFailed) {
			b.metrics.Login("smtp", false)
			return "", smtpd.ErrAuthFailed
		}
		if errors.Is(err, authguard.ErrBanned) {
			// RFC 4954 section 6: 454 4.7.0 temporary authentication failure.
			return "", smtpreply.New(454, "4.7.0", "Too many failed logins, try again later")
		}
		return "", err
	}
	b.metrics.Login("smtp", true)
	return u.Address, nil
}

// CheckSender applies the router's rule for authenticated senders
// (router.CheckSender) to every authenticated session whichever service
// it came in by (submission, or the MX service with AUTH switched on).
func (b *smtpBackend) CheckSender(ctx context.Context, env *smtpd.Envelope) error {
	// The router's envelope lives as long as the transaction, so that the
	// recipients resolved at RCPT time are not resolved again at DATA.
	renv := routerEnvelope(env)
	env.Backend = renv
	b.checks.atMail(ctx, env, renv)
	if err := b.router.CheckSender(ctx, renv, b.requireSenderMatch); err != nil {
		return replyOf(err)
	}
	// RFC 1870 section 6: the declared SIZE is checked against the
	// room left as well (452 4.3.1, temporary).
	return replyOf(b.router.CheckSpace(env.Size))
}

func (b *smtpBackend) CheckRecipient(ctx context.Context, env *smtpd.Envelope, rcpt string) error {
	return replyOf(b.router.CheckRecipient(ctx, transaction(env), rcpt))
}

func (b *smtpBackend) Deliver(ctx context.Context, env *smtpd.Envelope, body io.Reader) error {
	body, release, err := b.checks.atData(ctx, env, body)
	if err != nil {
		return err
	}
	defer release()
	renv := transaction(env)
	renv.To = env.To
	renv.Ret, renv.EnvID, renv.DSN = env.Ret, env.EnvID, rcptDSN(env.DSN)
	// The milters' end of message (milters.go); a nil body: discarded.
	filtered, releaseFiltered, err := b.milterEnd(ctx, env, renv, body)
	if err != nil || filtered == nil {
		return err
	}
	defer releaseFiltered()
	return replyOf(b.router.Route(ctx, renv, filtered))
}

// rcptDSN is the recipients' DSN parameters as the router keeps them
// (nil when no recipient gave any).
func rcptDSN(ds []smtpd.RcptDSN) []dsn.RcptParams {
	var out []dsn.RcptParams
	given := false
	for _, d := range ds {
		out = append(out, dsn.RcptParams{Notify: d.Notify, ORcptType: d.ORcptType, ORcpt: d.ORcpt})
		given = given || d.Notify != nil || d.ORcpt != ""
	}
	if !given {
		return nil
	}
	return out
}

// transaction returns the router's envelope of the transaction that
// CheckSender began (a new one if, unexpectedly, it did not).
func transaction(env *smtpd.Envelope) *router.Envelope {
	if renv, ok := env.Backend.(*router.Envelope); ok {
		return renv
	}
	renv := routerEnvelope(env)
	env.Backend = renv
	return renv
}

func routerEnvelope(env *smtpd.Envelope) *router.Envelope {
	// RFC 3848: the "with" protocol type records TLS (S) and AUTH (A);
	// RFC 6531 section 3.7.3: UTF8SMTP for a transaction with SMTPUTF8.
	proto := "ESMTP"
	if env.SMTPUTF8 {
		proto = "UTF8SMTP"
	}
	if env.TLS != "" {
		proto += "S"
	}
	if env.AuthUser != "" {
		proto += "A"
	}
	source := "smtp"
	if env.Submission {
		source = "submission"
	}
	return &router.Envelope{
		ID: env.ID, From: env.From, To: env.To, Helo: env.Helo, RemoteAddr: env.RemoteAddr,
		TLS: env.TLS, AuthUser: env.AuthUser, Protocol: proto, Source: source,
	}
}

// replyOf turns a router refusal into the SMTP reply it stands for. A
// failure of smtpd's own body reader (size limit, bare LF) is found inside
// the router's error and passed back as it was.
func replyOf(err error) error {
	if err == nil {
		return nil
	}
	if r, ok := smtpreply.As(err); ok {
		return r
	}
	return err
}
