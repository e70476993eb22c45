package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"postoffice/internal/server"
)

const serveSummary = "run the mail services in the foreground until SIGINT or SIGTERM"

var serveCommand = &command{name: "serve", summary: serveSummary, run: runServe}

// shutdownGrace is how long sessions may take to finish on SIGTERM before
// they are closed (without applying their deletions).
const shutdownGrace = 10 * time.Second

func runServe(e *env, args []string) error {
	fs := newFlags(e, "serve", "", serveSummary)
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(e.stderr, nil))
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()

	srv, err := server.New(cfg, st, log)
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	if err := srv.Start(); err != nil {
		return fail(exitFailure, "%v", err)
	}
	if users, err := st.ListUsers(context.Background()); err == nil && len(users) == 0 {
		log.Info("no users yet: create one with 'postoffice user add you@example.com'")
	}
	log.Info("postoffice ready", "data_dir", cfg.DataDir, "hostname", cfg.Hostname)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down", "grace", shutdownGrace)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("sessions closed at the end of the grace period", "err", err)
	}
	return nil
}
