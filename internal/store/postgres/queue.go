package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Enqueue implements store.Queue in one transaction: the body, the entry
// and its recipients, all pending.
func (s *Store) Enqueue(ctx context.Context, env store.QueueEnvelope, body io.Reader) (int64, error) {
	if err := store.CheckQueueEnvelope(env); err != nil {
		return 0, err
	}
	notify := make([]string, len(env.To))
	otype := make([]string, len(env.To))
	orcpt := make([]string, len(env.To))
	for i := range env.To {
		p := env.RcptDSN(i)
		notify[i], otype[i], orcpt[i] = p.NotifyString(), p.ORcptType, p.ORcpt
	}
	var id int64
	err := s.write(ctx, false, func(tx pgx.Tx) error {
		blobID, size, err := s.newBlob(ctx, tx, 1, body)
		if err != nil {
			return fmt.Errorf("storing message body: %w", err)
		}
		now := sec(time.Now())
		err = tx.QueryRow(ctx, `INSERT INTO queue (sender, blob_id, size, created_at, next_attempt, ret, envid)
			VALUES ($1, $2, $3, $4, $4, $5, $6) RETURNING id`, env.From, blobID, size, now, env.Ret, env.EnvID).Scan(&id)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO queue_recipients (queue_id, position, address, state, notify, orcpt_type, orcpt)
			SELECT $1, r.position - 1, r.address, 'pending', r.notify, r.otype, r.orcpt
			FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS r (address, notify, otype, orcpt, position)`,
			id, env.To, notify, otype, orcpt)
		return err
	})
	if err != nil {
		return 0, err
	}
	return id, nil
}

const queueColumns = `id, sender, size, created_at, next_attempt, attempts, held, last_attempt, warned, claimed_until, ret, envid`

func scanQueued(row pgx.Row) (store.QueuedMessage, error) {
	var m store.QueuedMessage
	var last, claimed *time.Time
	err := row.Scan(&m.ID, &m.From, &m.Size, &m.CreatedAt, &m.NextAttempt, &m.Attempts, &m.Held, &last, &m.Warned, &claimed, &m.Ret, &m.EnvID)
	m.CreatedAt, m.NextAttempt = m.CreatedAt.UTC(), m.NextAttempt.UTC()
	m.LastAttempt, m.ClaimedUntil = optTime(last), optTime(claimed)
	return m, err
}

// queryQueued runs a query returning queueColumns and adds the recipients
// of each entry, in the order given to Enqueue, read in the same
// transaction (a snapshot under REPEATABLE READ).
func queryQueued(ctx context.Context, q pgx.Tx, query string, args ...any) ([]store.QueuedMessage, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	ms, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.QueuedMessage, error) { return scanQueued(r) })
	if err != nil || len(ms) == 0 {
		return nil, err
	}
	index := make(map[int64]int, len(ms))
	ids := make([]int64, len(ms))
	for i, m := range ms {
		index[m.ID] = i
		ids[i] = m.ID
	}
	rows, err = q.Query(ctx, `SELECT queue_id, address, state, last_error, status, remote_mta, notified,
			notify, orcpt_type, orcpt, reply_code, reply_status, reply_text, reply_command, reply_host
		FROM queue_recipients WHERE queue_id = ANY($1) ORDER BY queue_id, position`, ids)
	if err != nil {
		return nil, err
	}
	var id int64
	var r store.QueueRecipient
	var notify, status string
	var text []string
	_, err = pgx.ForEachRow(rows, []any{&id, &r.Address, &r.State, &r.LastError, &r.Status, &r.RemoteMTA, &r.Notified,
		&notify, &r.DSN.ORcptType, &r.DSN.ORcpt, &r.Remote.Reply.Code, &status, &text, &r.Remote.Command, &r.Remote.Host}, func() error {
		rc := r
		rc.DSN.Notify = dsn.ParseNotify(notify)
		if rc.Remote.Reply.Code != 0 {
			rc.Remote.Reply.Status, _ = smtpreply.ParseStatus(status)
			rc.Remote.Reply.Text = slices.Clone(text)
		}
		if i, ok := index[id]; ok {
			ms[i].Recipients = append(ms[i].Recipients, rc)
		}
		return nil
	})
	return ms, err
}

// replyColumns are the values of reply_code, reply_status, reply_text,
// reply_command and reply_host for r.
func replyColumns(r store.RemoteReply) (int, string, []string, string, string) {
	if r.IsZero() {
		return 0, "", []string{}, "", ""
	}
	text := r.Reply.Text
	if text == nil {
		text = []string{}
	}
	return r.Reply.Code, r.Reply.Status.String(), text, r.Command, r.Host
}

// read runs fn in a read-only REPEATABLE READ transaction: one snapshot
// for all its statements.
func (s *Store) read(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// ListQueue implements store.Queue, oldest first.
func (s *Store) ListQueue(ctx context.Context) ([]store.QueuedMessage, error) {
	var ms []store.QueuedMessage
	err := s.read(ctx, func(tx pgx.Tx) error {
		var err error
		ms, err = queryQueued(ctx, tx, `SELECT `+queueColumns+` FROM queue ORDER BY created_at, id`)
		return err
	})
	return ms, err
}

// QueuedMessage implements store.Queue.
func (s *Store) QueuedMessage(ctx context.Context, id int64) (store.QueuedMessage, error) {
	var ms []store.QueuedMessage
	err := s.read(ctx, func(tx pgx.Tx) error {
		var err error
		ms, err = queryQueued(ctx, tx, `SELECT `+queueColumns+` FROM queue WHERE id = $1`, id)
		return err
	})
	if err != nil {
		return store.QueuedMessage{}, err
	}
	if len(ms) == 0 {
		return store.QueuedMessage{}, fmt.Errorf("queued message %d: %w", id, store.ErrNotFound)
	}
	return ms[0], nil
}

// OpenQueued implements store.Queue.
func (s *Store) OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error) {
	var blobID, size int64
	var first []byte
	err := s.pool.QueryRow(ctx, `SELECT q.blob_id, b.size, c.data
		FROM queue q JOIN blobs b ON b.id = q.blob_id
			LEFT JOIN blob_chunks c ON c.blob_id = q.blob_id AND c.seq = 0
		WHERE q.id = $1`, id).Scan(&blobID, &size, &first)
	if err != nil {
		return nil, notFound(err, "queued message %d", id)
	}
	if size > 0 && first == nil {
		return nil, fmt.Errorf("queued message %d: body content missing", id)
	}
	return s.blobs.Open(ctx, blobID, size, first)
}

// DeleteQueued implements store.Queue; the body goes with the entry if
// nothing else refers to it.
func (s *Store) DeleteQueued(ctx context.Context, id int64) error {
	return s.write(ctx, true, func(tx pgx.Tx) error {
		var blobID int64
		// Cascades to the recipients.
		if err := tx.QueryRow(ctx, `DELETE FROM queue WHERE id = $1 RETURNING blob_id`, id).Scan(&blobID); err != nil {
			return notFound(err, "queued message %d", id)
		}
		return s.releaseBlobs(ctx, tx, map[int64]int{blobID: 1})
	})
}

// ClaimQueued implements store.Queue across nodes. Due entries are locked
// with FOR UPDATE SKIP LOCKED, so that runners on several nodes claiming
// at once each get different entries without waiting for one another, and
// marked claimed by this instance in the same statement. An entry whose
// claim has not run out is claimable anyway when the instance that made it
// no longer holds its node name's lease (it died, or lost the database for
// longer than the lease): a claim lasts at most the lease beyond the last
// heartbeat of its process, however long the claim was made for. A
// process whose own lease ran out claims nothing until it has renewed it.
func (s *Store) ClaimQueued(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.QueuedMessage, error) {
	if limit <= 0 {
		return nil, nil
	}
	if err := s.member(); err != nil {
		return nil, err
	}
	now = sec(now)
	until := sec(now.Add(lease))
	if !until.After(now) {
		until = now.Add(time.Second)
	}
	var ms []store.QueuedMessage
	err := s.write(ctx, true, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `WITH due AS (
				SELECT id FROM queue q
				WHERE NOT held AND next_attempt <= $1
					AND (claimed_until IS NULL OR claimed_until <= $1
						OR NOT EXISTS (SELECT 1 FROM nodes n
							WHERE n.instance = q.claimed_by AND n.expires_at > now()))
					AND EXISTS (SELECT 1 FROM nodes WHERE instance = $4 AND expires_at > now())
				ORDER BY next_attempt, id
				LIMIT $2
				FOR UPDATE SKIP LOCKED)
			UPDATE queue SET claimed_until = $3, claimed_by = $4 FROM due WHERE queue.id = due.id
			RETURNING queue.id`, now, limit, until, s.instance)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(ids) == 0 {
			ms = nil
			return err
		}
		ms, err = queryQueued(ctx, tx, `SELECT `+queueColumns+` FROM queue WHERE id = ANY($1) ORDER BY next_attempt, id`, ids)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// ReleaseClaims implements store.Queue across nodes: it ends this
// instance's claims and those of the instances that no longer hold their
// node name's lease (which ClaimQueued treats as void already), never
// those of another live process, whatever its node name.
func (s *Store) ReleaseClaims(ctx context.Context) error {
	if err := s.member(); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `UPDATE queue q SET claimed_until = NULL, claimed_by = NULL
		WHERE claimed_by = $1 OR (claimed_by IS NOT NULL
			AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.instance = q.claimed_by AND n.expires_at > now()))`, s.instance)
	return err
}

// UpdateQueued implements store.Queue. The rules of QueueUpdate (a final
// state is never undone, only a failed recipient is notified) are applied
// on the state read under the entry's row lock.
func (s *Store) UpdateQueued(ctx context.Context, id int64, u store.QueueUpdate) error {
	for _, r := range u.Recipients {
		switch r.State {
		case store.QueuePending, store.QueueDelivered, store.QueueFailed:
		default:
			return fmt.Errorf("recipient %q: unknown state %q: %w", r.Address, r.State, store.ErrInvalid)
		}
	}
	return s.write(ctx, true, func(tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM queue WHERE id = $1 FOR UPDATE`, id).Scan(&one); err != nil {
			return notFound(err, "queued message %d", id)
		}
		for _, r := range u.Recipients {
			var state store.QueueState
			var notified bool
			err := tx.QueryRow(ctx, `SELECT state, notified FROM queue_recipients WHERE queue_id = $1 AND address = $2`,
				id, r.Address).Scan(&state, &notified)
			if errors.Is(err, pgx.ErrNoRows) {
				return fmt.Errorf("queued message %d has no recipient %q: %w", id, r.Address, store.ErrInvalid)
			}
			if err != nil {
				return err
			}
			if state == store.QueuePending {
				code, rstatus, text, command, host := replyColumns(r.Remote)
				if _, err := tx.Exec(ctx, `UPDATE queue_recipients SET state = $1, last_error = $2, status = $3, remote_mta = $4,
						reply_code = $5, reply_status = $6, reply_text = $7, reply_command = $8, reply_host = $9
					WHERE queue_id = $10 AND address = $11`,
					string(r.State), r.LastError, r.Status, r.RemoteMTA, code, rstatus, text, command, host, id, r.Address); err != nil {
					return err
				}
				state = r.State
			}
			if r.Notified && !notified && (state == store.QueueFailed || state == store.QueueDelivered) {
				if _, err := tx.Exec(ctx, `UPDATE queue_recipients SET notified = true WHERE queue_id = $1 AND address = $2`,
					id, r.Address); err != nil {
					return err
				}
			}
		}
		var last, next *time.Time
		if u.Attempted {
			t := sec(u.At)
			last = &t
		}
		if !u.NextAttempt.IsZero() {
			t := sec(u.NextAttempt)
			next = &t
		}
		// The claim ends if it is this instance's or void; the live claim
		// of another (made while this process was cut off from the
		// database for longer than the lease) stays.
		const ends = `(claimed_by IS NULL OR claimed_by = $6 OR NOT EXISTS (SELECT 1 FROM nodes n
			WHERE n.instance = queue.claimed_by AND n.expires_at > now()))`
		_, err := tx.Exec(ctx, `UPDATE queue SET warned = warned OR $1,
			attempts = attempts + CASE WHEN $2 THEN 1 ELSE 0 END,
			last_attempt = coalesce($3, last_attempt),
			next_attempt = coalesce($4, next_attempt),
			claimed_until = CASE WHEN `+ends+` THEN NULL ELSE claimed_until END,
			claimed_by = CASE WHEN `+ends+` THEN NULL ELSE claimed_by END
			WHERE id = $5`, u.Warned, u.Attempted, last, next, id, s.instance)
		return err
	})
}

// HoldQueued implements store.Queue.
func (s *Store) HoldQueued(ctx context.Context, id int64, held bool) error {
	return execOne(ctx, s.pool, fmt.Sprintf("queued message %d", id), `UPDATE queue SET held = $1 WHERE id = $2`, held, id)
}

// RetryQueued implements store.Queue.
func (s *Store) RetryQueued(ctx context.Context, id int64, now time.Time) (int, error) {
	if id == 0 {
		// Every row: run again should two nodes lock them in different
		// orders.
		var n int
		err := s.write(ctx, true, func(tx pgx.Tx) error {
			tag, err := tx.Exec(ctx, `UPDATE queue SET next_attempt = $1`, sec(now))
			n = int(tag.RowsAffected())
			return err
		})
		return n, err
	}
	err := execOne(ctx, s.pool, fmt.Sprintf("queued message %d", id), `UPDATE queue SET next_attempt = $1 WHERE id = $2`, sec(now), id)
	if err != nil {
		return 0, err
	}
	return 1, nil
}
