package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"syscall"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// openTimeout bounds connecting to (and migrating) a database server.
const openTimeout = 30 * time.Second

// needs is what a command opens before it can work: its column of the
// command table.
//
// Which commands create a store: like Postfix's and Dovecot's own tools,
// only those that set a server up do: serve, and the commands that add the
// first things to it (domain add, user add, alias add, admin add, and
// migrate's target). The others (lists, changes, deletions, the queue, the
// journal, deliver) need the store to exist: pointed at a data directory
// where there is none (a relative data_dir from another directory, a
// mistyped --config) they say so and exit 66 instead of showing an empty
// new store. deliver in particular never creates one: a delivery agent
// pointed at the wrong place must not answer "unknown user" (67), which
// makes the MTA bounce the mail; it exits 75 so that the mail waits.
type needs int

const (
	// needsNothing: help, version, and migrate, which reads the
	// configurations it is given.
	needsNothing needs = iota
	// needsConfig: the configuration (--config, or the defaults, and the
	// settings changed at run time).
	needsConfig
	needsStore    // the configuration and the store, which must exist
	needsNewStore // the configuration and the store, created when absent
	// needsServe: the store created when absent, and on PostgreSQL the
	// node's one live instance (postgres.Options.Join), which may wait up
	// to the lease for a previous process of the node that died.
	needsServe
)

// openStore opens the configured backend ([store] backend), which logs its
// background work to log. A store that cannot be opened is a temporary
// failure (exit 75: the data directory or the database server may come
// back), except when it is absent (66) or may not be read (77, EX_NOPERM).
func openStore(cfg config.Config, use needs, log *slog.Logger) (store.Store, error) {
	switch cfg.Store.Backend {
	case config.BackendPostgres:
		// The store is the database's tables, created (or migrated) by
		// whichever command connects first.
		lease := time.Duration(cfg.Store.Lease)
		serving := use == needsServe
		timeout := openTimeout
		if serving {
			timeout += lease
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		st, err := postgres.OpenWith(ctx, cfg.Store.PostgresDSN, cfg.Store.NodeName, postgres.Options{
			Password: cfg.Store.PostgresPassword,
			Lease:    lease,
			Join:     serving,
			Logger:   log,
		})
		if err != nil {
			return nil, fail(exitTempFail, "opening the PostgreSQL store (node %s): %v", cfg.Store.NodeName, err)
		}
		return st, nil
	default:
		if err := notAsRoot(cfg.DataDir); err != nil {
			return nil, err
		}
		if use == needsStore {
			ok, err := sqlite.Exists(cfg.DataDir)
			switch {
			case errors.Is(err, os.ErrPermission):
				return nil, fail(exitNoPerm, "cannot read the store in %s: %v (run as the user postoffice serve runs as)", cfg.DataDir, err)
			case err != nil:
				return nil, fail(exitTempFail, "opening the store in %s: %v", cfg.DataDir, err)
			case !ok:
				return nil, fail(exitNoInput, "no store in %s (data_dir): check --config and data_dir; 'postoffice serve' or 'postoffice user add' creates one", cfg.DataDir)
			}
		}
		st, err := sqlite.OpenWith(cfg.DataDir, sqlite.Options{Logger: log})
		if errors.Is(err, os.ErrPermission) {
			return nil, fail(exitNoPerm, "opening the store in %s: %v (run as the user postoffice serve runs as)", cfg.DataDir, err)
		}
		if err != nil {
			return nil, fail(exitTempFail, "opening the store in %s: %v", cfg.DataDir, err)
		}
		return st, nil
	}
}

// notAsRoot refuses to open, as root, a data directory that belongs to
// another user (the service's, as the package installs it): the database
// files root would create or change there could not be written by the
// service afterwards.
func notAsRoot(dataDir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Stat(dataDir)
	if err != nil {
		return nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil
	}
	name := fmt.Sprint(st.Uid)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	return fail(exitNoPerm, "the data directory %s belongs to the user %s: run the command as that user (sudo -u %s postoffice ...), so that the files it writes stay the service's", dataDir, name, name)
}
