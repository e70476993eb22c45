package sqlite

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
)

// maxCachedStmts bounds the statement cache: queries are constants or built
// from a few optional clauses, so a few dozen are expected; past the bound
// queries simply run unprepared.
const maxCachedStmts = 256

// stmtDB is a *sql.DB whose queries outside transactions reuse prepared
// statements. The modernc.org/sqlite driver otherwise compiles the SQL text
// again on every call, which profiling showed to be a fifth of the CPU time
// of a POP3 login (user lookups, the message list). database/sql prepares a
// cached *sql.Stmt once per pooled connection and re-prepares it if a
// connection is replaced.
type stmtDB struct {
	*sql.DB
	mu    sync.Mutex
	stmts map[string]*sql.Stmt
	n     atomic.Int32 // len(stmts), read without the lock
}

func newStmtDB(db *sql.DB) *stmtDB {
	return &stmtDB{DB: db, stmts: make(map[string]*sql.Stmt)}
}

// stmt returns the cached statement for query, preparing it on first use;
// nil if it cannot be cached (full cache, or the SQL does not prepare: the
// caller then runs it unprepared and gets the error from there).
func (d *stmtDB) stmt(ctx context.Context, query string) *sql.Stmt {
	d.mu.Lock()
	st, ok := d.stmts[query]
	d.mu.Unlock()
	if ok {
		return st
	}
	if d.n.Load() >= maxCachedStmts {
		return nil
	}
	// Prepared outside the lock: it needs a connection, and a query on
	// another connection must not wait for it.
	st, err := d.DB.PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.stmts[query]; ok {
		st.Close() // another goroutine was first
		return old
	}
	if len(d.stmts) >= maxCachedStmts {
		st.Close()
		return nil
	}
	d.stmts[query] = st
	d.n.Store(int32(len(d.stmts)))
	return st
}

// QueryContext runs query with a cached prepared statement.
func (d *stmtDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query with a cached prepared statement.
func (d *stmtDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, query, args...)
}

// QueryRow is QueryRowContext without a context.
func (d *stmtDB) QueryRow(query string, args ...any) *sql.Row {
	return d.QueryRowContext(context.Background(), query, args...)
}

// ExecContext runs query with a cached prepared statement.
func (d *stmtDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := d.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.DB.ExecContext(ctx, query, args...)
}

// Close closes the statements, then the database.
func (d *stmtDB) Close() error {
	d.mu.Lock()
	for q, st := range d.stmts {
		st.Close()
		delete(d.stmts, q)
	}
	d.n.Store(0)
	d.mu.Unlock()
	return d.DB.Close()
}
