package config

import "strings"

// Storage backends.
const (
	BackendSQLite   = "sqlite"   // the embedded default: everything in data_dir
	BackendPostgres = "postgres" // shared by several nodes
)

// Store selects the storage backend.
type Store struct {
	Backend string `toml:"backend" default:"sqlite" check:"oneof=sqlite|postgres" doc:"sqlite (everything in data_dir) or postgres (shared by several nodes); restart serve to change"`
	// PostgresDSN is a URL or key=value
	// ("postgres://postoffice@db.example.com:5432/postoffice").
	PostgresDSN string `toml:"postgres_dsn" check:"oneline" doc:"PostgreSQL connection string (keep the password in postgres_password or ~/.pgpass)"`
	// PostgresPassword, when set, is used instead of a password in the
	// connection string. PGPASSWORD and ~/.pgpass work too.
	PostgresPassword string `toml:"postgres_password" doc:"PostgreSQL password, added to postgres_dsn"`
	// NodeName names this node in maildrop lock holders, queue claims,
	// the journal and status. Default: the machine's host name (set by
	// Default).
	NodeName string `toml:"node_name" check:"nodename" doc:"this node's name in locks, queue claims, the journal and status; unique per node (default: this machine's host name)"`
	// Lease is how long a node that died keeps its maildrop locks and
	// queue claims (postgres only).
	Lease Duration `toml:"lease" default:"30s" check:"min=3s,max=1h" doc:"how long a dead node keeps its mailbox locks and queue claims (postgres)"`
}

func (s *Store) check(k keyNames) error {
	if s.Backend == BackendPostgres && strings.TrimSpace(s.PostgresDSN) == "" {
		return k.errorf(&s.PostgresDSN, "must be set when %s is %q", k.of(&s.Backend), BackendPostgres)
	}
	return nil
}
