package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/server"
)

const serveSummary = "run the mail services in the foreground until SIGINT or SIGTERM"

const serveHelp = serveSummary + `.

Starts every service whose autostart is true (pop3, smtp, submission and the
outbound queue by default), the control socket DATA_DIR/control.sock used by
'postoffice status', 'start', 'stop' and 'reload', and the web console with
/metrics when [admin] listen is set.

Signals:
  SIGTERM, SIGINT  stop accepting, let sessions finish for 10 seconds, then
                   close them (a POP3 session closed so deletes nothing)
  SIGHUP           reload the configuration file and the certificates
                   without dropping sessions (like 'postoffice reload')

With the PostgreSQL store, serve holds its node name ([store] node_name)
for as long as it runs: a second serve under the same name is refused (exit
75) while the first renews its lease, and waits for the lease of one that
died (at most [store] lease). A serve that lost its node name to another
process, while cut off from the database for longer than the lease, stops
(exit 75).

Logs go to standard error, as text or JSON ([log] format), one line per
event, each session's lines carrying its session or conn id; passwords
never appear in them.`

// shutdownGrace is how long sessions may take to finish on SIGTERM before
// they are closed (without applying their deletions).
const shutdownGrace = 10 * time.Second

func runServe(c *call) error {
	if c.cpuProfile != "" {
		stop, err := startCPUProfile(c.cpuProfile)
		if err != nil {
			return fail(exitFailure, "cpu profile: %v", err)
		}
		defer stop()
	}
	if c.allocProfile != "" {
		// Checked now, written at shutdown: a path that cannot be
		// created fails the start, not the end.
		f, err := os.Create(c.allocProfile)
		if err != nil {
			return fail(exitFailure, "allocation profile: %v", err)
		}
		defer writeAllocProfile(f)
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	log, _ := c.logger()
	for _, w := range cfg.Warnings() {
		log.Warn(w)
	}
	st, err := c.store()
	if err != nil {
		return err
	}

	cfgPath := c.configPath
	if cfgPath != "" {
		if abs, err := filepath.Abs(cfgPath); err == nil {
			cfgPath = abs
		}
	}
	srv, err := server.New(cfg, st, log, server.Options{ConfigPath: cfgPath, Version: version()})
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	if err := srv.Start(); err != nil {
		if errors.Is(err, control.ErrRunning) {
			return fail(exitTempFail, "%v", err)
		}
		return fail(exitFailure, "%v", err)
	}
	if users, err := st.ListUsers(context.Background()); err == nil && len(users) == 0 {
		log.Info("no users yet: create one with 'postoffice user add you@example.com'")
	}
	log.Info("postoffice ready", "data_dir", cfg.DataDir, "hostname", cfg.Hostname, "version", version(),
		"control", control.SocketPath(cfg.DataDir))

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	// A store shared by several nodes tells when another process has
	// taken this one's node name (it was cut off from the database for
	// longer than the lease): then this process stops.
	var lost <-chan struct{}
	if l, ok := st.(nodeLoser); ok {
		lost = l.Lost()
	}
	var lostErr error
wait:
	for {
		select {
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				break wait
			}
			notes, err := srv.Reload(context.Background())
			if err != nil {
				log.Error("reload failed", "err", err, "notes", strings.Join(notes, "; "))
			}
		case <-lost:
			lostErr = st.(nodeLoser).LostErr()
			log.Error("stopping: this process no longer holds its node name", "err", lostErr)
			break wait
		}
	}
	log.Info("shutting down", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("sessions closed at the end of the grace period", "err", err)
	}
	if lostErr != nil {
		return fail(exitTempFail, "%v", lostErr)
	}
	return nil
}

// nodeLoser is a store whose node name another process can take over
// (postgres.Store).
type nodeLoser interface {
	Lost() <-chan struct{}
	LostErr() error
}

// startCPUProfile profiles the process into path until the returned
// function is called: for measuring the server under a benchmark's load.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeAllocProfile writes the allocations made since the start (the
// runtime's sampled "allocs" profile; go tool pprof -sample_index
// alloc_space) to f and closes it.
func writeAllocProfile(f *os.File) {
	runtime.GC() // the profile is as of the last collection
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		fmt.Fprintf(os.Stderr, "allocation profile: %v\n", err)
	}
	f.Close()
}

// newLogger makes the process's one logger from [log]: serve hands it to
// everything it starts, the store included.
func newLogger(w io.Writer, c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
