package server

import (
	"context"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/smtpclient"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// newQueueRunner builds the outbound queue runner from [queue]. Its
// notifications go through rt(), the router serve builds after it (the
// router wakes the runner when it queues a message).
func newQueueRunner(cfg config.Config, st store.Store, log *slog.Logger, rt func() *router.Router, onEvent func(queue.Event)) *queue.Runner {
	q := cfg.Queue
	qc := queue.Config{
		Hostname: cfg.Hostname,
		Store:    st,
		Logger:   log.With("service", "queue"),
		Bounce: func(ctx context.Context, to string, msg []byte) error {
			return queue.RouterBouncer(rt())(ctx, to, msg)
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
	if q.DNSServer != "" {
		qc.Resolver = queue.DNSResolver(q.DNSServer)
	} else {
		qc.Resolver = queue.SystemResolver()
	}
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
