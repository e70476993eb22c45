package server

import (
	"context"
	"fmt"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/pop3"
	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/store"
)

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// serviceDefs wires each service to the configuration.
func (s *Server) serviceDefs() []*service {
	specs := func(label string, addrs []string, tls bool) []listenSpec {
		out := make([]listenSpec, len(addrs))
		for i, a := range addrs {
			out[i] = listenSpec{label: label, addr: a, tls: tls}
		}
		return out
	}
	// RFC 5321 section 3.8: a server that cannot take the connection may
	// greet with 421 and close.
	smtpBusy := func(c config.Config, svc config.Service) string {
		return "421 4.7.0 " + c.ServiceHostname(svc) + " Too many connections, try again later"
	}
	return []*service{
		newService(s, serviceDef{
			name:      "pop3",
			autostart: func(c config.Config) bool { return c.POP3.Autostart },
			listeners: func(c config.Config) []listenSpec {
				return append(specs("pop3", c.POP3.Listen, false), specs("pop3s", c.POP3.TLSListen, true)...)
			},
			limits: func(c config.Config) config.Service { return c.POP3.Service },
			// RFC 3206 section 4: [SYS/TEMP], a temporary server problem.
			busy: func(config.Config) string { return "-ERR [SYS/TEMP] Too many connections, try again later." },
			settings: func(c config.Config) string {
				p := c.POP3
				return fmt.Sprint(c.ServiceHostname(p.Service), p.InactivityTimeout, p.AllowPlaintextAuth, p.LoginDelay, p.Expire)
			},
			newProto: s.newPOP3,
		}),
		newService(s, serviceDef{
			name:      "smtp",
			autostart: func(c config.Config) bool { return c.SMTP.Autostart },
			listeners: func(c config.Config) []listenSpec { return specs("smtp", c.SMTP.Listen, false) },
			limits:    func(c config.Config) config.Service { return c.SMTP.Service },
			busy:      func(c config.Config) string { return smtpBusy(c, c.SMTP.Service) },
			settings: func(c config.Config) string {
				m := c.SMTP
				// The router's settings too: a new router needs a new
				// generation (newSMTP hands it the current one).
				return fmt.Sprint(c.Hostname, c.MinFreeSpace, c.ServiceHostname(m.Service), m.MaxMessageSize, m.MaxRecipients, m.Timeout,
					m.AllowAuth, m.AllowPlaintextAuth, c.Submission.RequireSenderMatch)
			},
			newProto: func(c config.Config) protoServer { return s.newSMTP(c, false) },
		}),
		newService(s, serviceDef{
			name:      "submission",
			autostart: func(c config.Config) bool { return c.Submission.Autostart },
			listeners: func(c config.Config) []listenSpec {
				return append(specs("submission", c.Submission.Listen, false), specs("submissions", c.Submission.TLSListen, true)...)
			},
			limits: func(c config.Config) config.Service { return c.Submission.Service },
			busy:   func(c config.Config) string { return smtpBusy(c, c.Submission.Service) },
			settings: func(c config.Config) string {
				m := c.Submission
				return fmt.Sprint(c.Hostname, c.MinFreeSpace, c.ServiceHostname(m.Service), c.SubmissionMaxMessageSize(), c.SMTP.MaxRecipients,
					c.SubmissionTimeout(), c.SMTP.AllowPlaintextAuth, m.RequireSenderMatch)
			},
			newProto: func(c config.Config) protoServer { return s.newSMTP(c, true) },
		}),
		newService(s, serviceDef{
			name:      "queue",
			autostart: func(c config.Config) bool { return c.Queue.Autostart },
			settings:  func(c config.Config) string { return fmt.Sprintf("%s %+v", c.Hostname, c.Queue) },
			newRunner: s.newQueue,
		}),
	}
}

// newPOP3 is a POP3 server for one generation of the pop3 service.
func (s *Server) newPOP3(cfg config.Config) protoServer {
	p := cfg.POP3
	expire := p.Expire.Duration()
	return pop3.NewServer(pop3.Config{
		Hostname: cfg.ServiceHostname(p.Service),
		Backend: &maildrop.Backend{
			Store:      s.st,
			Logins:     s.logins,
			Holder:     s.holder,
			Policy:     maildrop.Policy{LoginDelay: seconds(p.LoginDelay), Expire: expire},
			Journal:    s.journal,
			Metrics:    s.metrics,
			Log:        s.log.With("service", "pop3"),
			Background: &s.background,
		},
		TLSConfig:          s.tlsConfig(),
		InactivityTimeout:  seconds(p.InactivityTimeout),
		AllowPlaintextAuth: p.AllowPlaintextAuth,
		Logger:             s.log.With("service", "pop3"),
		AuthFailureDelay:   authFailureDelay(s.logins),
		LoginDelay:         seconds(p.LoginDelay),
		Expire:             &expire,
		PolicyPerUser:      true,
	})
}

// newSMTP is an SMTP server for one generation of the smtp (MX) or the
// submission service.
func (s *Server) newSMTP(cfg config.Config, submission bool) protoServer {
	name, svc, size, timeout := "smtp", cfg.SMTP.Service, int64(cfg.SMTP.MaxMessageSize), cfg.SMTP.Timeout
	if submission {
		name, svc, size, timeout = "submission", cfg.Submission.Service, cfg.SubmissionMaxMessageSize(), cfg.SubmissionTimeout()
	}
	sb := &smtpBackend{logins: s.logins, router: s.currentRouter(),
		requireSenderMatch: cfg.Submission.RequireSenderMatch, metrics: s.metrics}
	return smtpd.NewServer(smtpd.Config{
		Hostname:           cfg.ServiceHostname(svc),
		Backend:            sb,
		TLSConfig:          s.tlsConfig(),
		Submission:         submission,
		NoAuth:             !submission && !cfg.SMTP.AllowAuth,
		AllowPlaintextAuth: cfg.SMTP.AllowPlaintextAuth,
		MaxMessageBytes:    size,
		MaxRecipients:      cfg.SMTP.MaxRecipients,
		ReadTimeout:        seconds(timeout),
		WriteTimeout:       seconds(timeout),
		Logger:             s.log.With("service", name),
	})
}

// newQueue is a queue runner for one start of the queue service; its
// events go to the journal.
func (s *Server) newQueue(cfg config.Config) runner {
	r := newQueueRunner(cfg, s.st, s.log, s.currentRouter, s.queueEvent)
	return &queueService{s: s, r: r}
}

// queueService registers the running runner so that the router can wake
// it.
type queueService struct {
	s *Server
	r *queue.Runner
}

func (q *queueService) Start() error {
	if err := q.r.Start(); err != nil {
		return err
	}
	q.s.mu.Lock()
	q.s.queue = q.r
	q.s.mu.Unlock()
	return nil
}

func (q *queueService) Shutdown(ctx context.Context) error {
	q.s.mu.Lock()
	if q.s.queue == q.r {
		q.s.queue = nil
	}
	q.s.mu.Unlock()
	return q.r.Shutdown(ctx)
}

// queueEvent records an outcome of the queue runner in the journal.
func (s *Server) queueEvent(ev queue.Event) {
	e := store.JournalEntry{
		Event: store.JournalEvent(ev.Kind), MessageID: ev.MessageID, From: ev.From, To: []string{ev.To},
		Size: ev.Size, Client: ev.Remote,
	}
	e.Detail = fmt.Sprintf("queue %d", ev.QueueID)
	if ev.Status != "" {
		e.Detail += ", " + ev.Status
	}
	if ev.Detail != "" {
		e.Detail += ": " + ev.Detail
	}
	s.journal.Record(e)
}

// authFailureDelay: when the login guard delays failures (growing with
// them), the POP3 server adds no fixed delay of its own.
func authFailureDelay(l *directory.Logins) time.Duration {
	if l.Penalized() {
		return -1
	}
	return 0 // the POP3 server's default
}
