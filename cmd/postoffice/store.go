package main

import (
	"context"
	"os"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// openTimeout bounds connecting to (and migrating) a database server.
const openTimeout = 30 * time.Second

// openStore opens the configured backend ([store] backend) for a command
// other than serve. A failure is temporary for a delivery agent's caller
// (exit 75): the data directory or the database server may come back.
func openStore(cfg config.Config) (store.Store, error) {
	return openStoreAs(cfg, false)
}

// openStoreAs is openStore; serving, the process becomes its node's one
// live instance on PostgreSQL (postgres.Options.Join), which may wait up
// to the lease for a previous process of the node that died.
func openStoreAs(cfg config.Config, serving bool) (store.Store, error) {
	switch cfg.Store.Backend {
	case config.BackendPostgres:
		lease := time.Duration(cfg.Store.Lease) * time.Second
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
			// Background problems (lock renewals) in the format of the
			// process's other logs.
			Logger: newLogger(&env{stderr: os.Stderr}, cfg.Log),
		})
		if err != nil {
			return nil, fail(exitTempFail, "opening the PostgreSQL store (node %s): %v", cfg.Store.NodeName, err)
		}
		return st, nil
	default:
		st, err := sqlite.Open(cfg.DataDir)
		if err != nil {
			return nil, fail(exitTempFail, "opening the store in %s: %v", cfg.DataDir, err)
		}
		return st, nil
	}
}
