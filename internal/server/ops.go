package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/admin"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/tlsutil"
)

// The operations of a running server, for the control socket and the web
// console (control.Controller and admin.Controller).

var (
	_ control.Controller = (*Server)(nil)
	_ admin.Controller   = (*Server)(nil)
)

// Status implements control.Controller.
func (s *Server) Status(ctx context.Context) (control.Status, error) {
	cfg := s.Config()
	st := control.Status{
		PID: os.Getpid(), Version: s.opts.Version, Started: s.started, DataDir: cfg.DataDir,
		ConfigFile: s.opts.ConfigPath, Hostname: cfg.Hostname,
	}
	for _, svc := range s.services {
		st.Services = append(st.Services, svc.status(cfg))
	}
	s.clusterStatus(ctx, cfg, &st)
	q, err := s.st.ListQueue(ctx)
	if err != nil {
		return st, err
	}
	st.Queue.Messages = len(q)
	for _, m := range q {
		if m.Held {
			st.Queue.Held++
		}
	}
	st.Console = s.consoleURL()
	st.Certificates = s.certificates()
	return st, nil
}

func (s *Server) lookup(name string) ([]*service, error) {
	if name == "all" {
		return s.services, nil
	}
	for _, svc := range s.services {
		if svc.name == name {
			return []*service{svc}, nil
		}
	}
	return nil, fmt.Errorf("unknown service %q (one of %s, all)", name, strings.Join(control.Services, ", "))
}

// StartService implements control.Controller.
func (s *Server) StartService(ctx context.Context, name string) ([]string, error) {
	svcs, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	cfg := s.Config()
	var notes []string
	var errs []error
	for _, svc := range svcs {
		if name == "all" && svc.isRunning() {
			continue
		}
		if err := svc.start(cfg, nil); err != nil {
			errs = append(errs, err)
			continue
		}
		notes = append(notes, svc.name+" started")
	}
	if len(notes) == 0 && len(errs) == 0 {
		notes = append(notes, "every service is running already")
	}
	return notes, errors.Join(errs...)
}

// StopService implements control.Controller: the services stop accepting,
// their sessions have grace to finish, then are closed; POP3 sessions
// closed so apply none of their deletions (RFC 1939 section 6).
func (s *Server) StopService(ctx context.Context, name string, grace time.Duration) ([]string, error) {
	svcs, err := s.lookup(name)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	var mu sync.Mutex
	var notes []string
	var errs []error
	var wg sync.WaitGroup
	for _, svc := range svcs {
		if name == "all" && !svc.isRunning() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := svc.stop(ctx)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, errNotRunning):
				errs = append(errs, fmt.Errorf("%s is not running", svc.name))
			case errors.Is(err, context.DeadlineExceeded):
				notes = append(notes, fmt.Sprintf("%s stopped; sessions still open after %v were closed (their deletions not applied)", svc.name, grace))
			case err != nil:
				errs = append(errs, fmt.Errorf("%s: %w", svc.name, err))
			default:
				notes = append(notes, svc.name+" stopped")
			}
		}()
	}
	wg.Wait()
	slices.Sort(notes)
	if len(notes) == 0 && len(errs) == 0 {
		notes = append(notes, "every service is stopped already")
	}
	return notes, errors.Join(errs...)
}

// Reload implements control.Controller: the configuration file and the
// certificates are read again and applied without dropping sessions.
func (s *Server) Reload(ctx context.Context) ([]string, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := config.Load(s.opts.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("%v (nothing changed)", err)
	}
	old := s.Config()
	notes := cfg.Warnings()
	for _, w := range notes {
		s.log.Warn(w)
	}
	if cfg.DataDir != old.DataDir {
		notes = append(notes, fmt.Sprintf("data_dir: restart postoffice serve to use %s (still on %s)", cfg.DataDir, old.DataDir))
		cfg.DataDir = old.DataDir
	}
	if cfg.Log != old.Log {
		notes = append(notes, "log: restart postoffice serve to apply the new log settings")
	}
	if cfg.Store != old.Store {
		// The store is opened once, by serve: it keeps the old one.
		notes = append(notes, "store: restart postoffice serve to apply the new [store] settings")
		cfg.Store = old.Store
	}
	// Certificates: a new pair of files, or the same files read again
	// (renewed in place); said only when the certificate changed.
	src := s.currentTLS()
	was := leaf(src)
	if cfg.TLS != old.TLS {
		if src, err = tlsutil.Load(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.DataDir, cfg.Hostname); err != nil {
			return nil, fmt.Errorf("%v (nothing changed)", err)
		}
	} else if err := src.Reload(); err != nil {
		return nil, fmt.Errorf("%v (nothing changed)", err)
	}
	if now := leaf(src); !bytes.Equal(now, was) {
		notes = append(notes, "certificate reloaded: new certificate in use")
	}
	s.mu.Lock()
	s.cfg, s.tls = cfg, src
	if cfg.Hostname != old.Hostname || cfg.MinFreeSpace != old.MinFreeSpace {
		s.router = newRouter(cfg, s.st, s.log, s.journal.RecordBatch, s.kickQueue, s.dkim)
	}
	s.mu.Unlock()

	var errs []error
	// The ACME manager first: a new one serves from the services' next
	// handshakes, and the HTTP site answers its challenges.
	if n, err := s.reloadACME(cfg); err != nil {
		errs = append(errs, err)
	} else {
		notes = append(notes, n...)
	}
	for _, svc := range s.services {
		n, err := svc.reload(cfg)
		notes = append(notes, n...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	// Hosts and the metrics token are read by the running console at
	// each request: only a new address or TLS setting restarts it.
	if cfg.Admin.Listen != old.Admin.Listen || cfg.Admin.TLS != old.Admin.TLS {
		n, err := s.moveConsole(cfg, old)
		notes = append(notes, n...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	s.log.Info("configuration reloaded", "notes", strings.Join(notes, "; "), "errors", len(errs))
	return notes, errors.Join(errs...)
}

// leaf is the DER of the certificate src serves, nil without one.
func leaf(src *tlsutil.Source) []byte {
	c, err := src.Config().GetCertificate(nil)
	if err != nil || c == nil || len(c.Certificate) == 0 {
		return nil
	}
	return c.Certificate[0]
}

// SetConfig implements admin.Controller: keys changed at run time
// together (in the overlay in the data directory, config.SetMany), then a
// reload.
func (s *Server) SetConfig(ctx context.Context, changes []config.Change) ([]string, error) {
	s.reloadMu.Lock()
	before, after, err := config.SetMany(s.opts.ConfigPath, changes)
	s.reloadMu.Unlock()
	if err != nil {
		return nil, err
	}
	var notes []string
	for _, c := range changes {
		notes = append(notes, config.DescribeChange(before, after, c.Key))
	}
	more, err := s.Reload(ctx)
	return append(notes, more...), err
}

// ConfigLayers implements admin.Controller: the configuration files as
// they are now, and where each key comes from.
func (s *Server) ConfigLayers() (*config.Layers, error) {
	return config.LoadLayers(s.opts.ConfigPath)
}

// console is the running web console.
type console struct {
	srv  *http.Server
	url  string
	done chan struct{}
}

// moveConsole applies a change of [admin]. The old console is shut down
// in the background: the request that asked for the change (a console
// page) may still be running on it.
func (s *Server) moveConsole(cfg, old config.Config) ([]string, error) {
	s.mu.Lock()
	prev := s.console
	s.console = nil
	s.mu.Unlock()
	if cfg.Admin.Listen == old.Admin.Listen && cfg.Admin.Listen != "" {
		// Same address: it must be free before the new console binds it.
		go func() {
			s.shutdownConsole(prev)
			if err := s.startConsole(cfg); err != nil {
				s.log.Error("restarting the web console", "err", err)
			}
		}()
		return []string{"web console restarting on " + cfg.Admin.Listen}, nil
	}
	err := s.startConsole(cfg)
	if err != nil {
		// Keep the old one.
		s.mu.Lock()
		s.console = prev
		s.mu.Unlock()
		return nil, err
	}
	go s.shutdownConsole(prev)
	if cfg.Admin.Listen == "" {
		return []string{"web console switched off"}, nil
	}
	return []string{"web console now at " + s.consoleURL()}, nil
}

// startConsole serves the web console and /metrics on [admin] listen.
func (s *Server) startConsole(cfg config.Config) error {
	if cfg.Admin.Listen == "" {
		s.log.Info("web console off (set [admin] listen to switch it on)")
		return nil
	}
	log := s.log.With("service", "admin")
	h, err := admin.New(admin.Options{
		Store: s.st, Controller: s, Metrics: s.metrics.Handler(), Logger: log,
		Secure: cfg.Admin.TLS, Version: s.opts.Version, LoginMetric: func(ok bool) { s.metrics.Login("admin", ok) },
	})
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("admin: cannot listen on %s: %w", cfg.Admin.Listen, unwrapSyscall(err))
	}
	scheme := "http"
	if cfg.Admin.TLS {
		scheme = "https"
		l = tls.NewListener(l, s.tlsConfig())
	}
	c := &console{
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
			WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute,
			// net/http's own messages (a failed TLS handshake, a panic)
			// in the format of the other logs.
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)},
		url:  scheme + "://" + l.Addr().String() + "/",
		done: make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		if err := c.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("web console failed", "err", err)
		}
	}()
	s.mu.Lock()
	s.console = c
	s.mu.Unlock()
	s.log.Info("listening", "service", "admin", "addr", l.Addr().String(), "url", c.url)
	if admins, err := s.st.ListAdmins(context.Background()); err == nil && len(admins) == 0 {
		s.log.Warn("no admin account yet: create one with 'postoffice admin add NAME' to sign in to the web console")
	}
	return nil
}

func (s *Server) stopConsole() {
	s.mu.Lock()
	c := s.console
	s.console = nil
	s.mu.Unlock()
	s.shutdownConsole(c)
}

func (s *Server) shutdownConsole(c *console) {
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.srv.Shutdown(ctx); err != nil {
		c.srv.Close()
	}
	<-c.done
}

func (s *Server) consoleURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.console == nil {
		return ""
	}
	return s.console.url
}

// sweepInterval is how often expired messages and old journal entries are
// removed in the background (logins expire a user's messages at once).
const sweepInterval = time.Hour

func (s *Server) startSweeper() {
	s.sweep, s.swept = make(chan struct{}), make(chan struct{})
	s.SampleQueue(context.Background())
	go func() {
		defer close(s.swept)
		t := time.NewTimer(time.Minute)
		defer t.Stop()
		// The queue's size, for the console's chart, once a minute.
		sample := time.NewTicker(sampleInterval)
		defer sample.Stop()
		for {
			select {
			case <-s.sweep:
				return
			case <-sample.C:
				s.SampleQueue(context.Background())
				continue
			case <-t.C:
			}
			s.Sweep(context.Background())
			t.Reset(sweepInterval)
		}
	}()
}

// sampleInterval is how often the queue's size is sampled for the
// console's chart of it.
const sampleInterval = time.Minute

// SampleQueue records the outbound queue's size now in the hourly
// history (metrics.Hours).
func (s *Server) SampleQueue(ctx context.Context) {
	q, err := s.st.ListQueue(ctx)
	if err != nil {
		return
	}
	s.metrics.QueueSample(time.Now(), len(q))
}

// Hours implements admin.Controller: logins and queue sizes per hour, as
// this process saw them; the queue is sampled first, so that the current
// hour shows its size now.
func (s *Server) Hours(now time.Time, n int) []metrics.Hour {
	s.SampleQueue(context.Background())
	return s.metrics.Hours(now, n)
}

func (s *Server) stopSweeper() {
	if s.sweep != nil {
		close(s.sweep)
		<-s.swept
		s.sweep = nil
	}
}

// Sweep removes the messages whose retention (RFC 2449 section 6.7,
// EXPIRE) has run out in every mailbox not in use, and the journal entries
// older than [journal] retention_days.
func (s *Server) Sweep(ctx context.Context) {
	cfg := s.Config()
	now := time.Now()
	policy := maildrop.Policy{LoginDelay: time.Duration(cfg.POP3.LoginDelay), Expire: cfg.POP3.Expire.Duration()}
	if err := maildrop.Sweep(ctx, s.st, s.journal, policy, s.holder+" (expire sweep)", now, s.log); err != nil {
		s.log.Error("sweep: listing users", "err", err)
		return
	}
	if days := cfg.Journal.RetentionDays; days > 0 {
		n, err := s.st.PruneJournal(ctx, now.Add(-time.Duration(days)*24*time.Hour))
		if err != nil {
			s.log.Error("sweep: pruning the journal", "err", err)
		} else if n > 0 {
			s.log.Info("journal entries removed", "count", n, "older_than_days", days)
		}
	}
}

// QueueRetry makes a queued message (or all, id 0) due now and wakes the
// runner.
func (s *Server) QueueRetry(ctx context.Context, id int64) (int, error) {
	n, err := s.st.RetryQueued(ctx, id, time.Now())
	if err == nil {
		s.kickQueue()
	}
	return n, err
}
