package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"time"

	"postoffice/internal/store"
)

// Deliver implements store.Mailboxes. The body goes to one durable file
// first; then one transaction assigns a UID in every mailbox, checks the
// quotas and references the file.
func (s *Store) Deliver(ctx context.Context, body io.Reader, userIDs []int64) ([]uint64, error) {
	if len(userIDs) == 0 {
		return nil, fmt.Errorf("delivery without recipients: %w", store.ErrInvalid)
	}
	seen := make(map[int64]bool, len(userIDs))
	for _, id := range userIDs {
		if seen[id] {
			return nil, fmt.Errorf("user %d listed twice: %w", id, store.ErrInvalid)
		}
		seen[id] = true
	}

	blobID, size, err := s.blobs.Put(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("storing message body: %w", err)
	}
	uids := make([]uint64, len(userIDs))
	err = s.write(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		if _, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, size, created_at) VALUES (?, ?, ?)`, blobID, size, now); err != nil {
			return err
		}
		for i, id := range userIDs {
			var addr string
			var quota, used int64
			err := tx.QueryRowContext(ctx, `UPDATE users
				SET next_uid = next_uid + 1, msg_count = msg_count + 1, msg_bytes = msg_bytes + ?
				WHERE id = ? RETURNING address, next_uid - 1, quota_bytes, msg_bytes`,
				size, id).Scan(&addr, &uids[i], &quota, &used)
			if err != nil {
				return notFound(err, "user %d", id)
			}
			if quota > 0 && used > quota {
				return fmt.Errorf("%s: %d bytes over a quota of %d: %w", addr, used-quota, quota, store.ErrQuota)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (user_id, uid, blob_id, size, delivered_at)
				VALUES (?, ?, ?, ?, ?)`, id, uids[i], blobID, size, now); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.removeIfUnreferenced(blobID)
		return nil, err
	}
	return uids, nil
}

// removeIfUnreferenced removes the file of a delivery that failed. It asks
// the database rather than assuming the transaction rolled back: a failed
// COMMIT may still have reached the disk, and then the file is needed.
func (s *Store) removeIfUnreferenced(blobID string) {
	var one int
	err := s.r.QueryRow(`SELECT 1 FROM blobs WHERE id = ?`, blobID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		s.removeBlobs([]string{blobID})
	}
	// Otherwise it is referenced, or unknown: the orphan sweep decides later.
}

// removeBlobs removes files whose last reference is committed gone. A
// failure only leaves an orphan, which the next Open removes.
func (s *Store) removeBlobs(ids []string) {
	for _, id := range ids {
		if err := s.blobs.Remove(id); err != nil {
			slog.Warn("removing message file", "blob", id, "err", err)
		}
	}
}

// dropUnreferenced deletes the rows of the given blobs that no message
// references any longer and returns their ids, for removal after commit.
func dropUnreferenced(ctx context.Context, tx *sql.Tx, blobIDs []string) ([]string, error) {
	var dropped []string
	for _, id := range blobIDs {
		res, err := tx.ExecContext(ctx, `DELETE FROM blobs
			WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?1)`, id)
		if err != nil {
			return nil, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return nil, err
		} else if n > 0 {
			dropped = append(dropped, id)
		}
	}
	return dropped, nil
}

// List implements store.Mailboxes. It reads only the index, never bodies.
func (s *Store) List(ctx context.Context, userID int64) ([]store.MessageInfo, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT uid, size FROM messages WHERE user_id = ? ORDER BY uid`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ms []store.MessageInfo
	for rows.Next() {
		var m store.MessageInfo
		if err := rows.Scan(&m.UID, &m.Size); err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(ms) == 0 {
		return nil, userExists(ctx, s.r, userID)
	}
	return ms, nil
}

// Open implements store.Mailboxes.
func (s *Store) Open(ctx context.Context, userID int64, uid uint64) (io.ReadCloser, error) {
	if uid > math.MaxInt64 {
		return nil, fmt.Errorf("message %d of user %d: %w", uid, userID, store.ErrNotFound)
	}
	const q = `SELECT blob_id FROM messages WHERE user_id = ? AND uid = ?`
	var blobID string
	if err := s.r.QueryRowContext(ctx, q, userID, uid).Scan(&blobID); err != nil {
		return nil, notFound(err, "message %d of user %d", uid, userID)
	}
	f, err := s.blobs.Open(blobID)
	if errors.Is(err, fs.ErrNotExist) {
		// Most likely a Delete of the last reference ran in between.
		if err2 := s.r.QueryRowContext(ctx, q, userID, uid).Scan(&blobID); errors.Is(err2, sql.ErrNoRows) {
			return nil, fmt.Errorf("message %d of user %d: %w", uid, userID, store.ErrNotFound)
		}
		return nil, fmt.Errorf("message %d of user %d: body file missing: %w", uid, userID, err)
	}
	return f, err
}

// Delete implements store.Mailboxes; files that lose their last reference
// are removed after the commit.
func (s *Store) Delete(ctx context.Context, userID int64, uids []uint64) error {
	var dropped []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := userExists(ctx, tx, userID); err != nil {
			return err
		}
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM messages WHERE user_id = ? AND uid = ? RETURNING blob_id, size`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		var count, bytes int64
		var blobIDs []string
		for _, uid := range uids {
			if uid > math.MaxInt64 {
				continue // never assigned
			}
			var blobID string
			var size int64
			err := stmt.QueryRowContext(ctx, userID, uid).Scan(&blobID, &size)
			if errors.Is(err, sql.ErrNoRows) {
				continue // already gone
			} else if err != nil {
				return err
			}
			count++
			bytes += size
			blobIDs = append(blobIDs, blobID)
		}
		if count == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET msg_count = msg_count - ?, msg_bytes = msg_bytes - ? WHERE id = ?`,
			count, bytes, userID); err != nil {
			return err
		}
		dropped, err = dropUnreferenced(ctx, tx, blobIDs)
		return err
	})
	if err != nil {
		return err
	}
	s.removeBlobs(dropped)
	return nil
}

// Usage implements store.Mailboxes from the counters Deliver and Delete
// maintain.
func (s *Store) Usage(ctx context.Context, userID int64) (count int, bytes int64, err error) {
	err = s.r.QueryRowContext(ctx, `SELECT msg_count, msg_bytes FROM users WHERE id = ?`, userID).Scan(&count, &bytes)
	return count, bytes, notFound(err, "user %d", userID)
}

// Lock implements store.Mailboxes with a lock held in this process's
// memory: it cannot outlive the process, and it does not exclude sessions
// of another process serving the same data directory.
func (s *Store) Lock(ctx context.Context, userID int64, holder string) (store.Unlocker, error) {
	if err := userExists(ctx, s.r, userID); err != nil {
		return nil, err
	}
	return s.locks.lock(userID, holder)
}
