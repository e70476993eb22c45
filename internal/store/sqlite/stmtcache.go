package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"

	"modernc.org/sqlite"
)

// maxCachedStmts bounds each connection's statement cache: queries are
// constants or built from a few optional clauses, so a few dozen are
// expected (the journal's INSERTs of 1 to journalRowsPerInsert rows
// among them); past the bound queries simply run unprepared.
const maxCachedStmts = 256

// openDB opens the database at dsn (modernc.org/sqlite's connection
// string) with connections that keep the statements they run prepared.
//
// The driver otherwise compiles the SQL text again on every call. That was
// a fifth of the CPU time of a POP3 login (user lookups, the message list)
// and, inside the write transactions where database/sql offers no reuse,
// the group commit's SAVEPOINTs and the journal's INSERTs. A cache per
// connection serves both: a connection runs one statement at a time, as
// database/sql guarantees.
func openDB(dsn string) *sql.DB {
	return sql.OpenDB(connector{dsn: dsn})
}

// driverConn is what database/sql uses of a modernc.org/sqlite connection.
type driverConn interface {
	driver.Conn
	driver.ConnBeginTx
	driver.ConnPrepareContext
	driver.ExecerContext
	driver.QueryerContext
	driver.SessionResetter
	driver.Validator
	driver.Pinger
}

// driverStmt is what a modernc.org/sqlite prepared statement offers.
type driverStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

var sqliteDriver = new(sqlite.Driver) // the zero Driver is ready to use

type connector struct{ dsn string }

func (c connector) Connect(context.Context) (driver.Conn, error) {
	dc, err := sqliteDriver.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	inner, ok := dc.(driverConn)
	if !ok {
		dc.Close()
		return nil, errors.New("sqlite: the driver's connection lacks the context methods")
	}
	return &cachingConn{driverConn: inner, stmts: make(map[string]*cachedStmt)}, nil
}

func (c connector) Driver() driver.Driver { return sqliteDriver }

// cachingConn runs ExecContext and QueryContext with a prepared statement
// per SQL text, prepared on first use. Prepare (database/sql's own prepared
// statements, which it closes itself) and scripts of several statements
// still go to the driver as they are.
type cachingConn struct {
	driverConn
	stmts map[string]*cachedStmt
}

type cachedStmt struct {
	driverStmt
	// busy: rows of the statement are open. A second query with the same
	// text before they close (a nested loop in a transaction) runs
	// unprepared rather than reset them.
	busy bool
}

// stmt returns the cached statement for query, preparing it on first use;
// nil when it is busy or cannot be cached (the caller then runs query
// unprepared, and gets any error in the SQL from there).
func (c *cachingConn) stmt(ctx context.Context, query string) *cachedStmt {
	if st, ok := c.stmts[query]; ok {
		if st.busy {
			return nil
		}
		return st
	}
	if len(c.stmts) >= maxCachedStmts {
		return nil
	}
	ds, err := c.driverConn.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	s, ok := ds.(driverStmt)
	if !ok {
		ds.Close()
		return nil
	}
	st := &cachedStmt{driverStmt: s}
	c.stmts[query] = st
	return st
}

func (c *cachingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args)
	}
	return c.driverConn.ExecContext(ctx, query, args)
}

func (c *cachingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	st := c.stmt(ctx, query)
	if st == nil {
		return c.driverConn.QueryContext(ctx, query, args)
	}
	rows, err := st.QueryContext(ctx, args)
	if err != nil {
		return nil, err
	}
	st.busy = true
	return &cachedRows{Rows: rows, st: st}, nil
}

// Close closes the cached statements, then the connection.
func (c *cachingConn) Close() error {
	var errs []error
	for q, st := range c.stmts {
		errs = append(errs, st.Close())
		delete(c.stmts, q)
	}
	return errors.Join(append(errs, c.driverConn.Close())...)
}

// cachedRows are the rows of a cached statement, which Close frees for the
// next query.
type cachedRows struct {
	driver.Rows
	st *cachedStmt
}

func (r *cachedRows) Close() error {
	err := r.Rows.Close() // resets the statement
	if r.st != nil {
		r.st.busy = false
		r.st = nil
	}
	return err
}
