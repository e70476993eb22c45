package server

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/pop3"
	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/store"
)

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
			busy:     func(config.Config) string { return "-ERR [SYS/TEMP] Too many connections, try again later." },
			settings: func(c config.Config) any { return pop3SettingsOf(c) },
			newProto: s.newPOP3,
		}),
		newService(s, serviceDef{
			name:      "smtp",
			autostart: func(c config.Config) bool { return c.SMTP.Autostart },
			listeners: func(c config.Config) []listenSpec { return specs("smtp", c.SMTP.Listen, false) },
			limits:    func(c config.Config) config.Service { return c.SMTP.Service },
			busy:      func(c config.Config) string { return smtpBusy(c, c.SMTP.Service) },
			settings:  func(c config.Config) any { return smtpSettingsOf(c, false) },
			newProto:  func(c config.Config) protoServer { return s.newSMTP(c, false) },
		}),
		newService(s, serviceDef{
			name:      "submission",
			autostart: func(c config.Config) bool { return c.Submission.Autostart },
			listeners: func(c config.Config) []listenSpec {
				return append(specs("submission", c.Submission.Listen, false), specs("submissions", c.Submission.TLSListen, true)...)
			},
			limits:   func(c config.Config) config.Service { return c.Submission.Service },
			busy:     func(c config.Config) string { return smtpBusy(c, c.Submission.Service) },
			settings: func(c config.Config) any { return smtpSettingsOf(c, true) },
			newProto: func(c config.Config) protoServer { return s.newSMTP(c, true) },
		}),
		// The HTTP site (web.go): ACME challenges, autoconfig, MTA-STS.
		newService(s, serviceDef{
			name:      "http",
			autostart: func(config.Config) bool { return true },
			listeners: func(c config.Config) []listenSpec {
				return append(specs("http", c.HTTP.Listen, false), specs("https", c.HTTP.TLSListen, true)...)
			},
			limits: func(config.Config) config.Service { return httpLimits },
			busy: func(config.Config) string {
				return "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n"
			},
			settings: func(c config.Config) any { return s.webSettingsOf(c) },
			newProto: s.newWeb,
		}),
		newService(s, serviceDef{
			name:      "queue",
			autostart: func(c config.Config) bool { return c.Queue.Autostart },
			settings:  func(c config.Config) any { return queueSettings{c.Hostname, c.Queue} },
			newRunner: s.newQueue,
		}),
	}
}

// The settings a generation of a service is built from, and nothing else:
// reload compares them (reflect.DeepEqual) to decide whether new sessions
// need a new generation. Listeners, session limits and the PROXY protocol
// policy are applied to the running service instead.

type pop3Settings struct {
	hostname           string
	inactivityTimeout  time.Duration
	allowPlaintextAuth bool
	loginDelay         time.Duration
	expire             time.Duration
}

func pop3SettingsOf(c config.Config) pop3Settings {
	p := c.POP3
	return pop3Settings{
		hostname:           c.ServiceHostname(p.Service),
		inactivityTimeout:  time.Duration(p.InactivityTimeout),
		allowPlaintextAuth: p.AllowPlaintextAuth,
		loginDelay:         time.Duration(p.LoginDelay),
		expire:             p.Expire.Duration(),
	}
}

type smtpSettings struct {
	name, hostname     string
	maxMessageBytes    int64
	maxRecipients      int
	timeout            time.Duration
	noAuth             bool
	allowPlaintextAuth bool
	requireSenderMatch bool
	// The router's settings too: a new router needs a new generation
	// (newSMTP hands it the current one).
	router routerSettings
	// authChecks: the MX's checks, and the field of authenticated mail
	// (inboundauth.go).
	authChecks authCheckSettings
	// The milters and how spam is marked: new sessions see a change.
	milters milterSettings
}

// routerSettings are what the router is built from (newRouter).
type routerSettings struct {
	hostname     string
	minFreeSpace config.Size
}

func smtpSettingsOf(c config.Config, submission bool) smtpSettings {
	m := smtpSettings{
		name: "smtp", hostname: c.ServiceHostname(c.SMTP.Service),
		maxMessageBytes: int64(c.SMTP.MaxMessageSize), maxRecipients: c.SMTP.MaxRecipients, timeout: time.Duration(c.SMTP.Timeout),
		noAuth: !c.SMTP.AllowAuth, allowPlaintextAuth: c.SMTP.AllowPlaintextAuth, requireSenderMatch: c.Submission.RequireSenderMatch,
		router: routerSettings{c.Hostname, c.MinFreeSpace}, authChecks: authCheckSettingsOf(c), milters: milterSettingsOf(c),
	}
	if submission {
		m.name, m.hostname = "submission", c.ServiceHostname(c.Submission.Service)
		m.maxMessageBytes, m.timeout, m.noAuth = c.SubmissionMaxMessageSize(), c.SubmissionTimeout(), false
	}
	return m
}

// queueSettings: any change of [queue] restarts the runner.
type queueSettings struct {
	hostname string
	queue    config.Queue
}

// newPOP3 is a POP3 server for one generation of the pop3 service.
func (s *Server) newPOP3(cfg config.Config) protoServer {
	p := pop3SettingsOf(cfg)
	return pop3.NewServer(pop3.Config{
		Hostname: p.hostname,
		Backend: &maildrop.Backend{
			Store:      s.st,
			Logins:     s.logins,
			Holder:     s.holder,
			Policy:     maildrop.Policy{LoginDelay: p.loginDelay, Expire: p.expire},
			Journal:    s.journal,
			Metrics:    s.metrics,
			Log:        s.log.With("service", "pop3"),
			Background: &s.background,
		},
		TLSConfig:          s.tlsConfig(),
		InactivityTimeout:  p.inactivityTimeout,
		AllowPlaintextAuth: p.allowPlaintextAuth,
		Logger:             s.log.With("service", "pop3"),
		AuthFailureDelay:   authFailureDelay(s.logins),
		LoginDelay:         p.loginDelay,
		Expire:             &p.expire,
		PolicyPerUser:      true,
	})
}

// newSMTP is an SMTP server for one generation of the smtp (MX) or the
// submission service.
func (s *Server) newSMTP(cfg config.Config, submission bool) protoServer {
	m := smtpSettingsOf(cfg, submission)
	sb := &smtpBackend{logins: s.logins, router: s.currentRouter(),
		requireSenderMatch: m.requireSenderMatch, metrics: s.metrics, milters: s.newMilterStage(cfg, submission)}
	sb.checks = s.newInboundChecks(cfg)
	return smtpd.NewServer(smtpd.Config{
		Hostname:           m.hostname,
		Backend:            sb,
		TLSConfig:          s.tlsConfig(),
		Submission:         submission,
		NoAuth:             m.noAuth,
		AllowPlaintextAuth: m.allowPlaintextAuth,
		MaxMessageBytes:    m.maxMessageBytes,
		MaxRecipients:      m.maxRecipients,
		ReadTimeout:        m.timeout,
		WriteTimeout:       m.timeout,
		Logger:             s.log.With("service", m.name),
	})
}

// newQueue is a queue runner for one start of the queue service; its
// events go to the journal.
func (s *Server) newQueue(cfg config.Config) runner {
	r := newQueueRunner(cfg, s.st, s.dns.get(cfg), s.log, s.currentRouter, s.queueEvent)
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
	// The remote reply rendered as Postfix writes it, from its parts.
	e.Detail = fmt.Sprintf("queue %d", ev.QueueID)
	if ev.Status != "" {
		e.Detail += ", " + ev.Status
	}
	var what []string
	for _, s := range []string{ev.Reply.String(), ev.Detail} {
		if s != "" {
			what = append(what, s)
		}
	}
	if len(what) > 0 {
		e.Detail += ": " + strings.Join(what, "; ")
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
