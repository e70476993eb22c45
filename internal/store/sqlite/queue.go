package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Enqueue implements store.Queue like Deliver: the body goes to one durable
// file first, then one transaction references it from the queue entry and
// inserts its recipients, all pending.
func (s *Store) Enqueue(ctx context.Context, env store.QueueEnvelope, body io.Reader) (int64, error) {
	if err := store.CheckQueueEnvelope(env); err != nil {
		return 0, err
	}

	b, err := s.putBody(ctx, body)
	if err != nil {
		return 0, fmt.Errorf("storing message body: %w", err)
	}
	blobID, size := b.id, b.size
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		if err := b.insert(ctx, tx, now); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO queue (sender, blob_id, size, created_at, next_attempt, ret, envid)
			VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`, env.From, blobID, size, now, now, env.Ret, env.EnvID).Scan(&id)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO queue_recipients (queue_id, position, address, state, notify, orcpt_type, orcpt)
			VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, r := range env.To {
			p := env.RcptDSN(i)
			if _, err := stmt.ExecContext(ctx, id, i, r, string(store.QueuePending), p.NotifyString(), p.ORcptType, p.ORcpt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.discard(b)
		return 0, err
	}
	return id, nil
}

const queueColumns = `id, sender, size, created_at, next_attempt, attempts, held, last_attempt, warned, claimed_until, ret, envid`

func scanQueued(row interface{ Scan(...any) error }) (store.QueuedMessage, error) {
	var m store.QueuedMessage
	var created, next, last, claimed int64
	err := row.Scan(&m.ID, &m.From, &m.Size, &created, &next, &m.Attempts, &m.Held, &last, &m.Warned, &claimed, &m.Ret, &m.EnvID)
	m.CreatedAt, m.NextAttempt = unixTime(created), unixTime(next)
	m.LastAttempt, m.ClaimedUntil = optionalTime(last), optionalTime(claimed)
	return m, err
}

// optionalTime reads a time column where 0 stands for "never".
func optionalTime(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return unixTime(sec)
}

const recipientColumns = `queue_id, address, state, last_error, status, remote_mta, notified,
	notify, orcpt_type, orcpt, reply_code, reply_status, reply_text, reply_command, reply_host`

// scanRecipient reads recipientColumns.
func scanRecipient(rows *sql.Rows) (int64, store.QueueRecipient, error) {
	var id int64
	var r store.QueueRecipient
	var notify, status, text string
	err := rows.Scan(&id, &r.Address, &r.State, &r.LastError, &r.Status, &r.RemoteMTA, &r.Notified,
		&notify, &r.DSN.ORcptType, &r.DSN.ORcpt, &r.Remote.Reply.Code, &status, &text, &r.Remote.Command, &r.Remote.Host)
	r.DSN.Notify = dsn.ParseNotify(notify)
	if r.Remote.Reply.Code != 0 {
		r.Remote.Reply.Status, _ = smtpreply.ParseStatus(status)
		r.Remote.Reply.Text = strings.Split(text, "\n")
	}
	return id, r, err
}

// replyColumns are the values of reply_code, reply_status, reply_text,
// reply_command and reply_host for r.
func replyColumns(r store.RemoteReply) []any {
	if r.IsZero() {
		return []any{0, "", "", "", ""}
	}
	return []any{r.Reply.Code, r.Reply.Status.String(), strings.Join(r.Reply.Text, "\n"), r.Command, r.Host}
}

// queryQueued runs a query returning queueColumns and adds the recipients
// of each entry, in the order given to Enqueue; all within tx, so that the
// entries and their recipients are of the same moment.
func queryQueued(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]store.QueuedMessage, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []store.QueuedMessage
	index := make(map[int64]int)
	for rows.Next() {
		m, err := scanQueued(rows)
		if err != nil {
			return nil, err
		}
		index[m.ID] = len(ms)
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	if len(ms) == 0 {
		return nil, nil
	}

	var rq string
	var rargs []any
	if len(ms) == 1 {
		rq, rargs = `SELECT `+recipientColumns+` FROM queue_recipients WHERE queue_id = ? ORDER BY position`, []any{ms[0].ID}
	} else {
		// The whole table in one pass is cheaper than one query per entry.
		rq = `SELECT ` + recipientColumns + ` FROM queue_recipients ORDER BY queue_id, position`
	}
	rows, err = tx.QueryContext(ctx, rq, rargs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		id, r, err := scanRecipient(rows)
		if err != nil {
			return nil, err
		}
		if i, ok := index[id]; ok {
			ms[i].Recipients = append(ms[i].Recipients, r)
		}
	}
	return ms, rows.Err()
}

// ListQueue implements store.Queue, oldest first (by ID among entries of
// the same second).
func (s *Store) ListQueue(ctx context.Context) ([]store.QueuedMessage, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	return queryQueued(ctx, tx, `SELECT `+queueColumns+` FROM queue ORDER BY created_at, id`)
}

// QueuedMessage implements store.Queue.
func (s *Store) QueuedMessage(ctx context.Context, id int64) (store.QueuedMessage, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return store.QueuedMessage{}, err
	}
	defer tx.Rollback()
	ms, err := queryQueued(ctx, tx, `SELECT `+queueColumns+` FROM queue WHERE id = ?`, id)
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
	const q = `SELECT q.blob_id, typeof(b.data) = 'null', b.data FROM queue q JOIN blobs b ON b.id = q.blob_id WHERE q.id = ?`
	var blobID string
	var data []byte
	var inFile bool
	if err := s.r.QueryRowContext(ctx, q, id).Scan(&blobID, &inFile, &data); err != nil {
		return nil, notFound(err, "queued message %d", id)
	}
	f, err := s.openBlob(blobID, inFile, data)
	if errors.Is(err, fs.ErrNotExist) {
		// Most likely a DeleteQueued ran in between.
		if err2 := s.r.QueryRowContext(ctx, q, id).Scan(&blobID, &inFile, &data); errors.Is(err2, sql.ErrNoRows) {
			return nil, fmt.Errorf("queued message %d: %w", id, store.ErrNotFound)
		}
		return nil, fmt.Errorf("queued message %d: body file missing: %w", id, err)
	}
	return f, err
}

// DeleteQueued implements store.Queue; the file goes after the commit if
// nothing else references it.
func (s *Store) DeleteQueued(ctx context.Context, id int64) error {
	var dropped []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		var blobID string
		// Cascades to the recipients.
		err := tx.QueryRowContext(ctx, `DELETE FROM queue WHERE id = ? RETURNING blob_id`, id).Scan(&blobID)
		if err != nil {
			return notFound(err, "queued message %d", id)
		}
		dropped, err = dropUnreferenced(ctx, tx, []string{blobID})
		return err
	})
	if err != nil {
		return err
	}
	s.removeBlobs(dropped)
	return nil
}

// ClaimQueued implements store.Queue: one write transaction picks the due
// entries and marks them claimed, so that two runners (or two processes)
// never claim the same entry at once.
func (s *Store) ClaimQueued(ctx context.Context, now time.Time, lease time.Duration, max int) ([]store.QueuedMessage, error) {
	if max <= 0 {
		return nil, nil
	}
	until := now.Add(lease).Unix()
	if until <= now.Unix() {
		until = now.Unix() + 1
	}
	var ms []store.QueuedMessage
	err := s.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE queue SET claimed_until = ?
			WHERE id IN (SELECT id FROM queue
				WHERE held = 0 AND next_attempt <= ? AND claimed_until <= ?
				ORDER BY next_attempt, id LIMIT ?)
			RETURNING id`, until, now.Unix(), now.Unix(), max)
		if err != nil {
			return err
		}
		var ids []any
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		ms, err = queryQueued(ctx, tx, `SELECT `+queueColumns+` FROM queue WHERE id IN (?`+
			strings.Repeat(`, ?`, len(ids)-1)+`) ORDER BY next_attempt, id`, ids...)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ms, nil
}

// ReleaseClaims implements store.Queue: it ends every claim, since the
// only queue runner of a data directory is that of its one serve process
// (a second serve is refused: internal/control).
func (s *Store) ReleaseClaims(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE queue SET claimed_until = 0 WHERE claimed_until != 0`)
		return err
	})
}

// UpdateQueued implements store.Queue. The rules of QueueUpdate (a final
// state is never undone, only a failed recipient is notified) are applied
// here, on the state read inside the transaction.
func (s *Store) UpdateQueued(ctx context.Context, id int64, u store.QueueUpdate) error {
	for _, r := range u.Recipients {
		switch r.State {
		case store.QueuePending, store.QueueDelivered, store.QueueFailed:
		default:
			return fmt.Errorf("recipient %q: unknown state %q: %w", r.Address, r.State, store.ErrInvalid)
		}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRowContext(ctx, `SELECT 1 FROM queue WHERE id = ?`, id).Scan(&one); err != nil {
			return notFound(err, "queued message %d", id)
		}
		for _, r := range u.Recipients {
			var state store.QueueState
			var notified bool
			err := tx.QueryRowContext(ctx, `SELECT state, notified FROM queue_recipients
				WHERE queue_id = ? AND address = ?`, id, r.Address).Scan(&state, &notified)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("queued message %d has no recipient %q: %w", id, r.Address, store.ErrInvalid)
			}
			if err != nil {
				return err
			}
			if state == store.QueuePending {
				args := append([]any{string(r.State), r.LastError, r.Status, r.RemoteMTA}, replyColumns(r.Remote)...)
				_, err = tx.ExecContext(ctx, `UPDATE queue_recipients
					SET state = ?, last_error = ?, status = ?, remote_mta = ?,
						reply_code = ?, reply_status = ?, reply_text = ?, reply_command = ?, reply_host = ?
					WHERE queue_id = ? AND address = ?`, append(args, id, r.Address)...)
				if err != nil {
					return err
				}
				state = r.State
			}
			if r.Notified && !notified && (state == store.QueueFailed || state == store.QueueDelivered) {
				_, err = tx.ExecContext(ctx, `UPDATE queue_recipients SET notified = 1
					WHERE queue_id = ? AND address = ?`, id, r.Address)
				if err != nil {
					return err
				}
			}
		}
		set := `claimed_until = 0, warned = warned OR ?`
		args := []any{u.Warned}
		if u.Attempted {
			set += `, attempts = attempts + 1, last_attempt = ?`
			args = append(args, u.At.Unix())
		}
		if !u.NextAttempt.IsZero() {
			set += `, next_attempt = ?`
			args = append(args, u.NextAttempt.Unix())
		}
		_, err := tx.ExecContext(ctx, `UPDATE queue SET `+set+` WHERE id = ?`, append(args, id)...)
		return err
	})
}

// HoldQueued implements store.Queue.
func (s *Store) HoldQueued(ctx context.Context, id int64, held bool) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE queue SET held = ? WHERE id = ?`, held, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("queued message %d: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// RetryQueued implements store.Queue.
func (s *Store) RetryQueued(ctx context.Context, id int64, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		var res sql.Result
		var err error
		if id == 0 {
			res, err = tx.ExecContext(ctx, `UPDATE queue SET next_attempt = ?`, now.Unix())
		} else {
			res, err = tx.ExecContext(ctx, `UPDATE queue SET next_attempt = ? WHERE id = ?`, now.Unix(), id)
		}
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		if id != 0 && n == 0 {
			return fmt.Errorf("queued message %d: %w", id, store.ErrNotFound)
		}
		return nil
	})
	return int(n), err
}
