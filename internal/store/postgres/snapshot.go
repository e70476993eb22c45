package postgres

import (
	"context"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgdb is what the store asks of its connections: a *pgxpool.Pool, or
// the one transaction of a Snapshot.
type pgdb interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Begin(ctx context.Context) (pgx.Tx, error)
	BeginTx(ctx context.Context, o pgx.TxOptions) (pgx.Tx, error)
	Close()
}

// Snapshot returns a read-only view of the store as it is at one instant,
// for a backup while other processes keep writing: every read of the view
// runs in one REPEATABLE READ READ ONLY transaction, which sees one
// snapshot of the whole database for all its statements (PostgreSQL
// documentation, "Transaction Isolation", section 13.2.2), so that the
// directory, every mailbox and the bodies they refer to agree. The
// view's reads (the store.Store and store.Exporter methods) are to be
// made one at a time, each result read to its end before the next call;
// writes fail. Close ends the transaction; it does not close s.
func (s *Store) Snapshot(ctx context.Context) (*Store, error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, err
	}
	// The snapshot is taken by the transaction's first statement.
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
		tx.Rollback(ctx)
		return nil, err
	}
	db := &snapshotDB{tx: tx}
	v := &Store{
		pool:     db,
		node:     s.node,
		instance: s.instance,
		lease:    s.lease,
		log:      s.log,
		blobs:    dbBlobs{q: db},
		locks:    map[string]*lockHandle{},
		releases: map[string]release{},
		lost:     make(chan struct{}),
		stop:     make(chan struct{}),
	}
	return v, nil
}

// snapshotDB runs everything in one transaction: the store's own
// transactions become savepoints in it (pgx.Tx.Begin), which keep its
// snapshot.
type snapshotDB struct {
	tx   pgx.Tx
	once sync.Once
}

func (d *snapshotDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return d.tx.Exec(ctx, sql, args...)
}

func (d *snapshotDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return d.tx.Query(ctx, sql, args...)
}

func (d *snapshotDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return d.tx.QueryRow(ctx, sql, args...)
}

func (d *snapshotDB) Begin(ctx context.Context) (pgx.Tx, error) { return d.tx.Begin(ctx) }

// BeginTx ignores the options: the snapshot's transaction has them.
func (d *snapshotDB) BeginTx(ctx context.Context, _ pgx.TxOptions) (pgx.Tx, error) {
	return d.tx.Begin(ctx)
}

// Close ends the transaction, which read only.
func (d *snapshotDB) Close() {
	d.once.Do(func() { d.tx.Rollback(context.Background()) })
}
