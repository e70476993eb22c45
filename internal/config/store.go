package config

import (
	"fmt"
	"strings"
)

// Storage backends.
const (
	BackendSQLite   = "sqlite"   // the embedded default: everything in data_dir
	BackendPostgres = "postgres" // shared by several nodes
)

// Store selects the storage backend.
type Store struct {
	// Backend is "sqlite" (the embedded store in data_dir) or "postgres"
	// (one database that several nodes share).
	Backend string `toml:"backend"`
	// PostgresDSN is the connection string, URL or key=value
	// ("postgres://postoffice@db.example.com:5432/postoffice").
	PostgresDSN string `toml:"postgres_dsn"`
	// PostgresPassword, when set, is used instead of a password in the
	// connection string. PGPASSWORD and ~/.pgpass work too.
	PostgresPassword string `toml:"postgres_password"`
	// NodeName names this node in maildrop lock holders, queue claims,
	// the journal and status; each node needs its own. Default: the
	// machine's host name.
	NodeName string `toml:"node_name"`
	// Lease is how many seconds a node that died keeps its maildrop locks
	// and queue claims (postgres only).
	Lease int `toml:"lease"`
}

// DefaultStore returns the [store] defaults for a machine called host.
func DefaultStore(host string) Store {
	return Store{Backend: BackendSQLite, NodeName: host, Lease: 30}
}

func (s Store) validate() error {
	switch s.Backend {
	case BackendSQLite:
	case BackendPostgres:
		if strings.TrimSpace(s.PostgresDSN) == "" {
			return fmt.Errorf(`key "store.postgres_dsn": must be set when store.backend is %q`, BackendPostgres)
		}
		if strings.ContainsAny(s.PostgresDSN, "\r\n") {
			return fmt.Errorf(`key "store.postgres_dsn": must be one line`)
		}
	default:
		return fmt.Errorf(`key "store.backend": %q is not %q or %q`, s.Backend, BackendSQLite, BackendPostgres)
	}
	if n := s.NodeName; n == "" || len(n) > 64 || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf(`key "store.node_name": %q must be 1 to 64 characters without spaces or control characters`, n)
	}
	if s.Lease < 3 || s.Lease > 3600 {
		return fmt.Errorf(`key "store.lease": must be between 3 and 3600 seconds, got %d`, s.Lease)
	}
	return nil
}
