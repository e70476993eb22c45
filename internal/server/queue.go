package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/smtpclient"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// newQueueRunner builds the outbound queue runner from [queue]. Its
// notifications go through rt(), the router serve builds after it (the
// router wakes the runner when it queues a message).
func newQueueRunner(cfg config.Config, st store.Store, res resolver.Resolver, log *slog.Logger, rt func() *router.Router, onEvent func(queue.Event)) *queue.Runner {
	q := cfg.Queue
	qc := queue.Config{
		Hostname: cfg.Hostname,
		Store:    st,
		Logger:   log.With("service", "queue"),
		Bounce: func(ctx context.Context, to string, msg []byte) error {
			return RouterBouncer(rt())(ctx, to, msg)
		},
		Routes:        q.Routes,
		MXPort:        q.MXPort,
		TLS:           smtpclient.TLSLevel(q.TLS),
		RetryInitial:  time.Duration(q.RetryInitial),
		RetryMax:      time.Duration(q.RetryMax),
		MaxLifetime:   time.Duration(q.MaxLifetime),
		DelayWarning:  time.Duration(q.DelayWarning),
		PollInterval:  time.Duration(q.PollInterval),
		MaxConcurrent: q.MaxConcurrent,
		MaxPerHost:    q.MaxPerHost,
	}
	qc.Resolver = queue.NewResolver(res)
	if q.MTASTS {
		// The policies are found with the queue's DNS (TXT records and
		// the policy host's address) and fetched over HTTPS with the
		// system's roots (RFC 8461 section 3.3).
		if txt, ok := qc.Resolver.(mtasts.Resolver); ok {
			qc.MTASTS = &mtasts.Fetcher{Resolver: txt, Client: queue.PolicyClient(qc.Resolver, nil, nil)}
		}
	}
	if q.RelayHost != "" {
		qc.Relay = &queue.Relay{Addr: q.RelayHost, User: q.RelayUser, Password: q.RelayPassword, TLS: smtpclient.TLSLevel(q.RelayTLS)}
	}
	qc.OnEvent = onEvent // the mail journal
	return queue.New(qc)
}

// RouterBouncer returns a queue.Bouncer that routes notifications through
// rt like the router's own bounces (Source "bounce", the null sender):
// into the sender's mailbox when it is local, into the queue otherwise. A
// permanent refusal is queue.ErrUndeliverable.
func RouterBouncer(rt *router.Router) queue.Bouncer {
	return func(ctx context.Context, to string, msg []byte) error {
		env := &router.Envelope{From: "", To: []string{to}, Protocol: "local", Source: "bounce"}
		err := rt.Route(ctx, env, bytes.NewReader(msg))
		if r, ok := smtpreply.As(err); ok && r.Permanent() {
			return fmt.Errorf("%w: %v", queue.ErrUndeliverable, err)
		}
		return err
	}
}
