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
	"unicode/utf8"

	"postoffice/internal/store"
)

// Enqueue implements store.Queue like Deliver: the body goes to one durable
// file first, then one transaction references it from the queue entry and
// inserts its recipients, all pending.
func (s *Store) Enqueue(ctx context.Context, from string, rcpts []string, body io.Reader) (int64, error) {
	if len(rcpts) == 0 {
		return 0, fmt.Errorf("queued message without recipients: %w", store.ErrInvalid)
	}
	if from != "" {
		if reason := queueAddressProblem(from); reason != "" {
			return 0, fmt.Errorf("sender %q %s: %w", from, reason, store.ErrInvalid)
		}
	}
	seen := make(map[string]bool, len(rcpts))
	for _, r := range rcpts {
		if reason := queueAddressProblem(r); reason != "" {
			return 0, fmt.Errorf("recipient %q %s: %w", r, reason, store.ErrInvalid)
		}
		if seen[r] {
			return 0, fmt.Errorf("recipient %q listed twice: %w", r, store.ErrInvalid)
		}
		seen[r] = true
	}

	blobID, size, err := s.blobs.Put(ctx, body)
	if err != nil {
		return 0, fmt.Errorf("storing message body: %w", err)
	}
	var id int64
	err = s.write(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, size, created_at) VALUES (?, ?, ?)`, blobID, size, now); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, `INSERT INTO queue (sender, blob_id, size, created_at, next_attempt)
			VALUES (?, ?, ?, ?, ?) RETURNING id`, from, blobID, size, now, now).Scan(&id)
		if err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO queue_recipients (queue_id, position, address, state)
			VALUES (?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i, r := range rcpts {
			if _, err := stmt.ExecContext(ctx, id, i, r, string(store.QueuePending)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.removeIfUnreferenced(blobID)
		return 0, err
	}
	return id, nil
}

// queueAddressProblem says what is wrong with a remote address, "" if
// nothing. It checks only what would break the SMTP dialogue: a remote
// address is the remote host's business (its local part may be case
// sensitive or quoted), so it is kept as given.
func queueAddressProblem(a string) string {
	switch {
	case a == "":
		return "is empty"
	case !utf8.ValidString(a):
		return "is not valid UTF-8"
	case !strings.Contains(a, "@"):
		return "has no @"
	}
	for _, r := range a {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

const queueColumns = `id, sender, size, created_at, next_attempt, attempts, held`

func scanQueued(row interface{ Scan(...any) error }) (store.QueuedMessage, error) {
	var m store.QueuedMessage
	var created, next int64
	err := row.Scan(&m.ID, &m.From, &m.Size, &created, &next, &m.Attempts, &m.Held)
	m.CreatedAt, m.NextAttempt = unixTime(created), unixTime(next)
	return m, err
}

// ListQueue implements store.Queue, oldest first (by ID among entries of
// the same second).
func (s *Store) ListQueue(ctx context.Context) ([]store.QueuedMessage, error) {
	// One read transaction, so that the entries and their recipients are
	// of the same moment.
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()

	rows, err := tx.QueryContext(ctx, `SELECT `+queueColumns+` FROM queue ORDER BY created_at, id`)
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

	rows, err = tx.QueryContext(ctx, `SELECT queue_id, address, state, last_error
		FROM queue_recipients ORDER BY queue_id, position`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var r store.QueueRecipient
		if err := rows.Scan(&id, &r.Address, &r.State, &r.LastError); err != nil {
			return nil, err
		}
		if i, ok := index[id]; ok {
			ms[i].Recipients = append(ms[i].Recipients, r)
		}
	}
	return ms, rows.Err()
}

// QueuedMessage implements store.Queue.
func (s *Store) QueuedMessage(ctx context.Context, id int64) (store.QueuedMessage, error) {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return store.QueuedMessage{}, err
	}
	defer tx.Rollback()

	m, err := scanQueued(tx.QueryRowContext(ctx, `SELECT `+queueColumns+` FROM queue WHERE id = ?`, id))
	if err != nil {
		return store.QueuedMessage{}, notFound(err, "queued message %d", id)
	}
	rows, err := tx.QueryContext(ctx, `SELECT address, state, last_error
		FROM queue_recipients WHERE queue_id = ? ORDER BY position`, id)
	if err != nil {
		return store.QueuedMessage{}, err
	}
	defer rows.Close()
	for rows.Next() {
		var r store.QueueRecipient
		if err := rows.Scan(&r.Address, &r.State, &r.LastError); err != nil {
			return store.QueuedMessage{}, err
		}
		m.Recipients = append(m.Recipients, r)
	}
	if err := rows.Err(); err != nil {
		return store.QueuedMessage{}, err
	}
	return m, nil
}

// OpenQueued implements store.Queue.
func (s *Store) OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error) {
	const q = `SELECT blob_id FROM queue WHERE id = ?`
	var blobID string
	if err := s.r.QueryRowContext(ctx, q, id).Scan(&blobID); err != nil {
		return nil, notFound(err, "queued message %d", id)
	}
	f, err := s.blobs.Open(blobID)
	if errors.Is(err, fs.ErrNotExist) {
		// Most likely a DeleteQueued ran in between.
		if err2 := s.r.QueryRowContext(ctx, q, id).Scan(&blobID); errors.Is(err2, sql.ErrNoRows) {
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
