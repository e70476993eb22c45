package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// newQueueRunner builds the outbound queue runner from [queue]. Its
// notifications go through rt(), the router serve builds after it (the
// router wakes the runner when it queues a message).
func newQueueRunner(cfg config.Config, st store.Store, log *slog.Logger, rt func() *router.Router, onEvent func(queue.Event)) *queue.Runner {
	q := cfg.Queue
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	qc := queue.Config{
		Hostname: cfg.Hostname,
		Store:    st,
		Logger:   log.With("service", "queue"),
		Bounce: func(ctx context.Context, to string, msg []byte) error {
			return RouterBouncer(rt())(ctx, to, msg)
		},
		Routes:        q.Routes,
		MXPort:        q.MXPort,
		TLS:           queue.TLSLevel(q.TLS),
		RetryInitial:  sec(q.RetryInitial),
		RetryMax:      sec(q.RetryMax),
		MaxLifetime:   sec(q.MaxLifetime),
		DelayWarning:  sec(q.DelayWarning),
		PollInterval:  sec(q.PollInterval),
		MaxConcurrent: q.MaxConcurrent,
		MaxPerHost:    q.MaxPerHost,
	}
	if q.DNSServer != "" {
		qc.Resolver = queue.DNSResolver(q.DNSServer)
	}
	if q.RelayHost != "" {
		qc.Relay = &queue.Relay{Addr: q.RelayHost, User: q.RelayUser, Password: q.RelayPassword, TLS: queue.TLSLevel(q.RelayTLS)}
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
		var re *router.Error
		if errors.As(err, &re) && !re.Temporary() {
			return fmt.Errorf("%w: %v", queue.ErrUndeliverable, err)
		}
		return err
	}
}
