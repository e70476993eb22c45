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

	"github.com/postoffice-mail/postoffice/internal/authguard"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/diskspace"
	"github.com/postoffice-mail/postoffice/internal/journal"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/tlsutil"
)

// Server runs every configured service of one postoffice process: each
// can be started, stopped and reloaded on its own (see service.go), and
// the control socket and the web console drive them (see ops.go).
type Server struct {
	log     *slog.Logger
	st      store.Store
	opts    Options
	started time.Time
	holder  string // who holds maildrop locks, for diagnostics
	// tlsBase serves the configured or self-signed certificate; tlsCfg,
	// which every TLS listener uses, the ACME manager's over it (web.go).
	tlsBase *tls.Config
	tlsCfg  *tls.Config
	metrics *metrics.Metrics
	journal *journal.Writer
	logins  *directory.Logins // shared by POP3 and SMTP AUTH: one cache, one penalty
	// background tracks writes that outlive the session that asked for
	// them (login times); Shutdown waits for them.
	background sync.WaitGroup

	services []*service // pop3, smtp, submission, queue
	reloadMu sync.Mutex // serializes reloads and configuration changes

	mu     sync.Mutex
	cfg    config.Config
	tls    *tlsutil.Source
	router *router.Router
	queue  *queue.Runner // the running queue runner, nil when stopped

	acmeMu sync.Mutex
	acme   *acmeRun // the running ACME manager, nil without [acme]

	control *control.Server
	console *console
	dkim    *dkimSigner // the router's signing step, kept across reloads
	dns     sharedResolver
	sweep   chan struct{} // closed to stop the sweeper
	swept   chan struct{}
}

// Options are the settings of a Server that do not come from the
// configuration file.
type Options struct {
	// ConfigPath is the file Reload reads again; "" means the defaults.
	ConfigPath string
	// Version is reported by status and /metrics.
	Version string
}

// New prepares the services; nothing listens until Start.
func New(cfg config.Config, st store.Store, log *slog.Logger, opts Options) (*Server, error) {
	src, err := tlsutil.Load(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.DataDir, cfg.Hostname)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	s := &Server{cfg: cfg, log: log, st: st, tls: src, opts: opts, holder: fmt.Sprintf("%s pid %d", host, os.Getpid())}
	s.logins = newLogins(st, cfg.Auth, log.With("service", "auth"))
	// One TLS configuration for the process, whose certificate is always
	// that of the current Source, or of the running ACME manager (web.go):
	// a reload swaps either under every listener.
	s.tlsBase = tlsutil.ServerConfig(func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return s.currentTLS().Config().GetCertificate(h)
	})
	s.tlsCfg = s.tlsBase.Clone()
	s.tlsCfg.GetConfigForClient = s.configForClient
	s.metrics = metrics.New(opts.Version, func(ctx context.Context) (int, error) {
		q, err := st.ListQueue(ctx)
		return len(q), err
	})
	s.journal = journal.NewWriter(st, log.With("service", "journal"), s.metrics.Journal)
	s.dkim = newDKIMSigner(st, st, log, s.metrics)
	s.router = newRouter(cfg, st, log, s.journal.RecordBatch, s.kickQueue, s.dkim)
	s.services = s.serviceDefs()
	if s.acme, err = s.newACME(cfg); err != nil {
		return nil, fmt.Errorf("acme: %w", err)
	}
	return s, nil
}

// NewRouter builds the mail pipeline over the store: serve and the
// commands (deliver, queue delete --bounce) share it, so that every
// message takes the same path. record receives its journal entries; nil
// writes them at once (a command does not live long). onQueued, when
// set, runs for each message it queues (serve wakes the queue runner).
func NewRouter(cfg config.Config, st store.Store, log *slog.Logger, record func(context.Context, []store.JournalEntry), onQueued func()) *router.Router {
	return newRouter(cfg, st, log, record, onQueued, newDKIMSigner(st, st, log, nil))
}

// newRouter is NewRouter with the DKIM signing step given: serve keeps
// one, with its key cache and metrics, across reloads.
func newRouter(cfg config.Config, st store.Store, log *slog.Logger, record func(context.Context, []store.JournalEntry), onQueued func(), sign *dkimSigner) *router.Router {
	if record == nil {
		record = journal.NewSyncWriter(st, log).RecordBatch
	}
	opt := router.Options{
		Hostname: cfg.Hostname,
		Store:    st,
		Logger:   log.With("service", "router"),
		CatchAll: true,
		SpoolDir: os.TempDir(),
		Record:   record,
	}
	if cfg.Store.Backend == config.BackendSQLite {
		// The embedded store keeps everything in data_dir: intake stops
		// while its file system is short of room (PostgreSQL's disk is
		// the database server's to watch).
		dir := cfg.DataDir
		opt.FreeSpace = func() (int64, error) { return diskspace.Available(dir) }
		opt.MinFree = int64(cfg.MinFreeSpace)
	}
	if onQueued != nil {
		opt.OnQueued = func(int64) { onQueued() }
	}
	// DKIM signing comes last: it signs the message as every other step
	// left it.
	opt.ExtraEnvelopeProcessors = append(opt.ExtraEnvelopeProcessors, sign)
	return router.New(opt)
}

func (s *Server) currentRouter() *router.Router {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.router
}

func (s *Server) currentTLS() *tlsutil.Source {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tls
}

func (s *Server) tlsConfig() *tls.Config { return s.tlsCfg }

// Config returns the configuration in effect.
func (s *Server) Config() config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// kickQueue wakes the queue runner, if it runs, after a message was queued.
func (s *Server) kickQueue() {
	s.mu.Lock()
	q := s.queue
	s.mu.Unlock()
	if q != nil {
		q.Kick()
	}
}

// Start opens the control socket, binds the listeners of every service
// with autostart first, so that a port that cannot be bound fails the
// start as a whole with a message naming it; then opens the web console
// and serves.
func (s *Server) Start() error {
	cfg := s.Config()
	s.started = time.Now()
	type prepared struct {
		svc   *service
		bound []*boundListener
	}
	var all []prepared
	fail := func(err error) error {
		for _, p := range all {
			for _, bl := range p.bound {
				bl.l.Close()
			}
		}
		if s.control != nil {
			s.control.Close()
			s.control = nil
		}
		return err
	}
	// Everything postoffice creates in the data directory is owner-only;
	// a directory others may enter exposes whatever it is given later.
	if fi, err := os.Stat(cfg.DataDir); err == nil && fi.Mode().Perm()&0o077 != 0 {
		s.log.Warn("the data directory is accessible to other users: make it owner-only (chmod 700)",
			"data_dir", cfg.DataDir, "mode", fi.Mode().Perm().String())
	}
	// The control socket first: a second serve on the data directory is
	// told so, rather than that its ports are taken.
	ctl, err := control.Listen(control.SocketPath(cfg.DataDir), s, s.log.With("service", "control"))
	switch {
	case errors.Is(err, control.ErrRunning):
		return err
	case err != nil:
		// E.g. a data directory whose path is too long for a unix socket:
		// serve runs, without status, start, stop and reload.
		s.log.Error("no control socket: postoffice status, start, stop and reload will not reach this server", "err", err)
	default:
		s.control = ctl
	}
	for _, svc := range s.services {
		if !svc.autostart(cfg) {
			s.log.Info("not started (autostart = false)", "service", svc.name)
			continue
		}
		bound, err := svc.prepare(cfg)
		if err != nil {
			return fail(err)
		}
		all = append(all, prepared{svc, bound})
	}
	if err := s.startConsole(cfg); err != nil {
		return fail(err)
	}
	for i, p := range all {
		// Already running: started through the control socket meanwhile.
		if err := p.svc.start(cfg, p.bound); err != nil && !errors.Is(err, errAlreadyRunning) {
			all = all[i+1:]
			s.Shutdown(context.Background())
			return fail(err)
		}
	}
	s.startSweeper()
	// ACME last: the HTTP listener that answers the CA is up.
	s.runACME(s.acmeNow())
	return nil
}

// Addrs returns the bound addresses of a listener ("pop3", "pop3s",
// "smtp", "submission", "submissions").
func (s *Server) Addrs(label string) []net.Addr {
	var out []net.Addr
	for _, svc := range s.services {
		out = append(out, svc.addrs(label)...)
	}
	return out
}

// Shutdown stops accepting, lets sessions finish until ctx is done, then
// closes what is left without applying their deletions; then it commits
// the journal.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.control != nil {
		s.control.Close()
	}
	s.stopConsole()
	s.stopSweeper()
	s.stopACME()
	var wg sync.WaitGroup
	errs := make([]error, len(s.services))
	for i, svc := range s.services {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := svc.stop(ctx); err != nil && !errors.Is(err, errNotRunning) {
				errs[i] = fmt.Errorf("%s: %w", svc.name, err)
			}
		}()
	}
	wg.Wait()
	s.background.Wait()
	s.journal.Close()
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

// newLogins is the login check of [auth] that POP3 and SMTP AUTH share.
func newLogins(st store.Directory, c config.Auth, log *slog.Logger) *directory.Logins {
	var guard *authguard.Guard
	if c.Penalty {
		guard = authguard.New(authguard.Config{
			IPBanAfter:   c.IPBanAfter,
			NameBanAfter: c.NameBanAfter,
			BanFor:       time.Duration(c.BanTime),
		})
	}
	return directory.NewLogins(directory.NewAuthenticatorTTL(st, time.Duration(c.CacheTTL)), guard, log)
}
