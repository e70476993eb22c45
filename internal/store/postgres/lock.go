package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Lock implements store.Mailboxes with a row of mailbox_locks that holds
// across nodes: it is taken if absent or if its lease ran out (its holder
// died, or lost the database, for longer than the lease), and renewed by
// this Store every third of the lease while held. The lease is measured by
// the database's clock, so the nodes' clocks do not matter.
func (s *Store) Lock(ctx context.Context, userID int64, holder string) (store.Unlocker, error) {
	for attempt := 0; ; attempt++ {
		token := randomHex(12)
		var got string
		err := s.pool.QueryRow(ctx, `INSERT INTO mailbox_locks (user_id, token, holder, node, instance, acquired_at, expires_at)
			SELECT id, $2, $3, $4, $5, now(), now() + $6 * interval '1 millisecond' FROM users WHERE id = $1
			ON CONFLICT (user_id) DO UPDATE SET token = EXCLUDED.token, holder = EXCLUDED.holder, node = EXCLUDED.node,
				instance = EXCLUDED.instance, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
			WHERE mailbox_locks.expires_at <= now()
			RETURNING token`, userID, token, holder, s.node, s.instance, s.lease.Milliseconds()).Scan(&got)
		if err == nil {
			s.locksMu.Lock()
			s.locks[token] = userID
			s.locksMu.Unlock()
			return &lockHandle{s: s, userID: userID, token: token}, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		// No such user, or a live lock: say which, and whose.
		var by, node *string
		var since *time.Time
		err = s.pool.QueryRow(ctx, `SELECT l.holder, l.node, l.acquired_at FROM users u
			LEFT JOIN mailbox_locks l ON l.user_id = u.id AND l.expires_at > now() WHERE u.id = $1`, userID).Scan(&by, &node, &since)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("user %d: %w", userID, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if by != nil && node != nil && since != nil {
			return nil, fmt.Errorf("%w (held by %s on node %s since %s)", store.ErrLocked, *by, *node, since.UTC().Format(time.RFC3339))
		}
		// Released, or run out, between the two statements.
		if attempt == 2 {
			return nil, fmt.Errorf("%w (changing hands)", store.ErrLocked)
		}
	}
}

// lockHandle is one acquisition of a maildrop lock.
type lockHandle struct {
	s      *Store
	userID int64
	token  string
}

// Unlock deletes the lock's row if it is still this acquisition's: a
// second call, or one after the lease ran out and another session took
// the lock, releases nothing else. Should the database be unreachable,
// the lock ends with its lease, since it is no longer renewed.
func (h *lockHandle) Unlock() {
	h.s.locksMu.Lock()
	_, held := h.s.locks[h.token]
	delete(h.s.locks, h.token)
	h.s.locksMu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := h.s.pool.Exec(ctx, `DELETE FROM mailbox_locks WHERE user_id = $1 AND token = $2`, h.userID, h.token); err != nil {
		h.s.log.Warn("releasing maildrop lock (it ends with its lease)", "user", h.userID, "err", err)
	}
}

// renewLocks extends the lease of every lock this Store holds. A lock
// whose row is gone or taken is reported: its session went on longer than
// the lease without renewal (the database was unreachable), and another
// session may have the mailbox now.
func (s *Store) renewLocks(ctx context.Context) error {
	s.locksMu.Lock()
	tokens := make([]string, 0, len(s.locks))
	for t := range s.locks {
		tokens = append(tokens, t)
	}
	s.locksMu.Unlock()
	if len(tokens) == 0 {
		return nil
	}
	rows, err := s.pool.Query(ctx, `UPDATE mailbox_locks SET expires_at = now() + $2 * interval '1 millisecond'
		WHERE token = ANY($1) RETURNING token`, tokens, s.lease.Milliseconds())
	if err != nil {
		return err
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	if len(renewed) == len(tokens) {
		return nil
	}
	ok := make(map[string]bool, len(renewed))
	for _, t := range renewed {
		ok[t] = true
	}
	s.locksMu.Lock()
	defer s.locksMu.Unlock()
	for _, t := range tokens {
		if uid, held := s.locks[t]; held && !ok[t] {
			s.log.Error("maildrop lock", "user", uid, "err", errLockLost)
			delete(s.locks, t) // not ours to renew or release any more
		}
	}
	return nil
}
