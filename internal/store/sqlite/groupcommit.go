package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
)

// groupCommit runs the small write transactions of concurrent callers
// together, in one SQLite transaction with one commit and so one fsync
// (group commit). Every caller still returns only once its change is
// durable, or with an error if it is not: acknowledging early is not
// allowed (the project's rule of durability first: an acknowledgement only
// after the change is on disk; group commit yes, early acknowledgement
// never).
//
// Each caller's function runs inside a SAVEPOINT, so that one that fails
// is undone alone and its caller gets its own error while the others
// commit. Batches form by themselves: the callers that arrive while a
// batch commits make up the next one, so a lone caller waits for nothing.
// One of the waiting callers' goroutines commits each batch (the leader);
// when its own change is done it hands the next batch to another waiter.
type groupCommit struct {
	mu      sync.Mutex
	pending []*groupReq
	running bool // a leader is committing or about to
}

type groupReq struct {
	ctx  context.Context
	fn   func(context.Context, *sql.Tx) error
	err  error
	done chan error    // the outcome, once
	lead chan struct{} // this caller is to commit the next batch
}

// writeGrouped runs fn in a write transaction shared with other callers
// of writeGrouped, and returns once the transaction is durable (fn's
// changes with it) or fn or the commit failed (fn's changes undone).
//
// fn runs inside its own savepoint; it must not commit or roll back, and
// it sees its own changes and those of earlier members of the batch. It
// must run its statements with the context it is given: ctx without its
// cancellation, because SQLite may abort the whole transaction when a
// statement is interrupted. A caller whose ctx is done before fn starts
// gets ctx.Err() and fn does not run.
func (s *Store) writeGrouped(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	g := &s.group
	req := &groupReq{ctx: ctx, fn: fn, done: make(chan error, 1), lead: make(chan struct{}, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, req)
	if !g.running {
		g.running = true
		req.lead <- struct{}{}
	}
	g.mu.Unlock()
	for {
		select {
		case err := <-req.done:
			return err
		case <-req.lead:
			g.mu.Lock()
			batch := g.pending
			g.pending = nil
			g.mu.Unlock()
			s.commitBatch(batch)
			g.mu.Lock()
			if len(g.pending) > 0 {
				g.pending[0].lead <- struct{}{}
			} else {
				g.running = false
			}
			g.mu.Unlock()
		}
	}
}

// commitBatch runs the batch in one transaction and tells each member its
// outcome.
func (s *Store) commitBatch(batch []*groupReq) {
	// The transaction is the batch's, not any caller's: one caller going
	// away must not roll back the others.
	ctx := context.Background()
	finish := func(err error) {
		for _, r := range batch {
			if r.err != nil {
				r.done <- r.err
			} else {
				r.done <- err
			}
		}
	}
	live := 0
	for _, r := range batch {
		if r.ctx.Err() == nil {
			live++
		}
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		finish(err)
		return
	}
	for _, r := range batch {
		if r.err = r.ctx.Err(); r.err != nil {
			continue
		}
		if live == 1 {
			// Alone in the transaction: no savepoint, which would copy
			// every page the caller changes to the statement journal; a
			// failure rolls back the transaction, which holds nothing
			// else.
			if r.err = r.fn(context.WithoutCancel(r.ctx), tx); r.err != nil {
				_ = tx.Rollback()
				finish(nil)
				return
			}
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT grouped`); err != nil {
			_ = tx.Rollback()
			finish(err)
			return
		}
		if r.err = r.fn(context.WithoutCancel(r.ctx), tx); r.err == nil {
			_, err = tx.ExecContext(ctx, `RELEASE grouped`)
		} else {
			_, err = tx.ExecContext(ctx, `ROLLBACK TO grouped`)
			if err == nil {
				_, err = tx.ExecContext(ctx, `RELEASE grouped`)
			}
		}
		if err != nil {
			// The transaction is unusable (SQLite rolled it back, the
			// disk is full...): nothing of the batch is committed.
			_ = tx.Rollback()
			finish(fmt.Errorf("group commit: %w", err))
			return
		}
	}
	finish(tx.Commit())
}
