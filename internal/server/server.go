// Package server wires the configured services to their listeners and the
// store, and starts and stops them. It holds no protocol logic.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"postoffice/internal/config"
	"postoffice/internal/directory"
	"postoffice/internal/pop3"
	"postoffice/internal/router"
	"postoffice/internal/smtpd"
	"postoffice/internal/store"
	"postoffice/internal/tlsutil"
)

// Server runs every configured service of one postoffice process.
type Server struct {
	cfg config.Config
	log *slog.Logger
	st  store.Store
	tls *tlsutil.Source

	pop3       *pop3.Server
	mx         *smtpd.Server
	submission *smtpd.Server
	router     *router.Router

	mu    sync.Mutex
	addrs map[string][]net.Addr // service name -> bound addresses
	wg    sync.WaitGroup
}

// New prepares the services; nothing listens until Start.
func New(cfg config.Config, st store.Store, log *slog.Logger) (*Server, error) {
	src, err := tlsutil.Load(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.DataDir, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s := &Server{cfg: cfg, log: log, st: st, tls: src, addrs: map[string][]net.Addr{}}
	auth := directory.NewAuthenticator(st)
	s.router = NewRouter(cfg, st, log)
	s.pop3 = pop3.NewServer(pop3.Config{
		Hostname: cfg.Hostname,
		Backend: &pop3Backend{
			st:     st,
			auth:   auth,
			holder: fmt.Sprintf("%s pid %d", host, os.Getpid()),
		},
		TLSConfig:          src.Config(),
		InactivityTimeout:  time.Duration(cfg.POP3.InactivityTimeout) * time.Second,
		AllowPlaintextAuth: cfg.POP3.AllowPlaintextAuth,
		Logger:             log.With("service", "pop3"),
	})
	sb := &smtpBackend{st: st, auth: auth, router: s.router, requireSenderMatch: cfg.Submission.RequireSenderMatch}
	smtpConfig := func(service string, submission bool) smtpd.Config {
		return smtpd.Config{
			Hostname:           cfg.Hostname,
			Backend:            sb,
			TLSConfig:          src.Config(),
			Submission:         submission,
			AllowPlaintextAuth: cfg.SMTP.AllowPlaintextAuth,
			MaxMessageBytes:    cfg.SMTP.MaxMessageSize,
			MaxRecipients:      cfg.SMTP.MaxRecipients,
			ReadTimeout:        time.Duration(cfg.SMTP.Timeout) * time.Second,
			WriteTimeout:       time.Duration(cfg.SMTP.Timeout) * time.Second,
			Logger:             log.With("service", service),
		}
	}
	s.mx = smtpd.NewServer(smtpConfig("smtp", false))
	s.submission = smtpd.NewServer(smtpConfig("submission", true))
	return s, nil
}

// NewRouter builds the mail pipeline over the store; serve and the deliver
// command share it so that every message takes the same path.
func NewRouter(cfg config.Config, st store.Store, log *slog.Logger) *router.Router {
	return router.New(router.Options{
		Hostname: cfg.Hostname,
		Store:    st,
		Logger:   log.With("service", "router"),
		CatchAll: true,
		SpoolDir: os.TempDir(),
	})
}

// Start binds every listener first, so that a port that cannot be bound
// fails the start as a whole with a message naming it, then serves.
func (s *Server) Start() error {
	type server interface{ Serve(net.Listener) error }
	type bound struct {
		service string
		l       net.Listener
		tls     bool
		srv     server
	}
	var all []bound
	fail := func(err error) error {
		for _, b := range all {
			b.l.Close()
		}
		return err
	}
	for _, spec := range []struct {
		service string
		addrs   []string
		tls     bool
		srv     server
	}{
		{"pop3", s.cfg.POP3.Listen, false, s.pop3},
		{"pop3s", s.cfg.POP3.TLSListen, true, s.pop3},
		{"smtp", s.cfg.SMTP.Listen, false, s.mx},
		{"submission", s.cfg.Submission.Listen, false, s.submission},
		{"submissions", s.cfg.Submission.TLSListen, true, s.submission},
	} {
		for _, a := range spec.addrs {
			l, err := net.Listen("tcp", a)
			if err != nil {
				return fail(fmt.Errorf("%s: cannot listen on %s: %w", spec.service, a, unwrapSyscall(err)))
			}
			all = append(all, bound{spec.service, l, spec.tls, spec.srv})
		}
	}
	for _, b := range all {
		l := b.l
		s.mu.Lock()
		s.addrs[b.service] = append(s.addrs[b.service], l.Addr())
		s.mu.Unlock()
		s.log.Info("listening", "service", b.service, "addr", l.Addr().String())
		if b.tls {
			// RFC 8314 section 3.3: implicit TLS, the handshake comes first.
			l = tls.NewListener(l, s.tls.Config())
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := b.srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, pop3.ErrServerClosed) {
				s.log.Error("serve failed", "service", b.service, "err", err)
			}
		}()
	}
	return nil
}

// Addrs returns the bound addresses of a service ("pop3", "pop3s", "smtp",
// "submission", "submissions").
func (s *Server) Addrs(service string) []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs[service]...)
}

// Shutdown stops accepting, lets sessions finish until ctx is done, then
// closes what is left without applying their deletions.
func (s *Server) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i, srv := range []interface{ Shutdown(context.Context) error }{s.pop3, s.mx, s.submission} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
	s.wg.Wait()
	return errors.Join(errs...)
}

// unwrapSyscall keeps "bind: address already in use" and drops the
// repetition of the address that net.OpError adds.
func unwrapSyscall(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return fmt.Errorf("%s: %w", op.Op, op.Err)
	}
	return err
}
