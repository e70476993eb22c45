package postgres

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Deliver implements store.Mailboxes in one transaction: the body is
// written once, then the recipients' rows are locked in ID order (two
// deliveries to the same mailboxes never deadlock, whichever nodes make
// them), each gets the next UID of its mailbox and its quota is checked.
func (s *Store) Deliver(ctx context.Context, body io.Reader, rcpts []store.Delivery) ([]uint64, error) {
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("delivery without recipients: %w", store.ErrInvalid)
	}
	ids := make([]int64, len(rcpts))
	seen := make(map[int64]bool, len(rcpts))
	for i, r := range rcpts {
		if seen[r.UserID] {
			return nil, fmt.Errorf("user %d listed twice: %w", r.UserID, store.ErrInvalid)
		}
		seen[r.UserID] = true
		ids[i] = r.UserID
		if reason := store.HeaderProblem(r.Header); reason != "" {
			return nil, fmt.Errorf("header for user %d %s: %w", r.UserID, reason, store.ErrInvalid)
		}
	}
	slices.Sort(ids)

	uids := make([]uint64, len(rcpts))
	// The body is read inside the transaction: it cannot be replayed.
	err := s.write(ctx, false, func(tx pgx.Tx) error {
		blobID, size, err := s.newBlob(ctx, tx, len(rcpts), body)
		if err != nil {
			return fmt.Errorf("storing message body: %w", err)
		}
		rows, err := tx.Query(ctx, `SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		if len(found) != len(ids) {
			for _, r := range rcpts {
				if !slices.Contains(found, r.UserID) {
					return fmt.Errorf("user %d: %w", r.UserID, store.ErrNotFound)
				}
			}
		}
		now := sec(time.Now())
		batch := &pgx.Batch{}
		for _, r := range rcpts {
			batch.Queue(`UPDATE users
				SET next_uid = next_uid + 1, msg_count = msg_count + 1, msg_bytes = msg_bytes + $1
				WHERE id = $2 RETURNING address, next_uid - 1, quota_bytes, msg_bytes`, size+int64(len(r.Header)), r.UserID)
		}
		br := tx.SendBatch(ctx, batch)
		for i := range rcpts {
			var addr string
			var uid, quota, used int64
			if err := br.QueryRow().Scan(&addr, &uid, &quota, &used); err != nil {
				br.Close()
				return err
			}
			if quota > 0 && used > quota {
				br.Close()
				return fmt.Errorf("%s: %d bytes over a quota of %d: %w", addr, used-quota, quota, store.ErrQuota)
			}
			uids[i] = uint64(uid)
		}
		if err := br.Close(); err != nil {
			return err
		}
		batch = &pgx.Batch{}
		for i, r := range rcpts {
			header := r.Header
			if header == nil {
				header = []byte{}
			}
			batch.Queue(`INSERT INTO messages (user_id, uid, blob_id, header, size, delivered_at)
				VALUES ($1, $2, $3, $4, $5, $6)`, r.UserID, int64(uids[i]), blobID, header, size+int64(len(header)), now)
		}
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		return nil, err
	}
	return uids, nil
}

// List implements store.Mailboxes. It reads only the index, never bodies.
func (s *Store) List(ctx context.Context, userID int64, before uint64) ([]store.MessageInfo, error) {
	if before == 0 || before > math.MaxInt64 {
		before = math.MaxInt64
	}
	// Two arrays in one row rather than a row per message: pgx decodes
	// them in binary at once (see the SQLite store's List for the cost of
	// a row per message).
	var uids, sizes []int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(array_agg(uid ORDER BY uid), '{}'), coalesce(array_agg(size ORDER BY uid), '{}')
		FROM messages WHERE user_id = $1 AND uid < $2`, userID, int64(before)).Scan(&uids, &sizes)
	if err != nil {
		return nil, err
	}
	if len(uids) != len(sizes) {
		return nil, fmt.Errorf("message list of user %d: %d UIDs, %d sizes", userID, len(uids), len(sizes))
	}
	if len(uids) == 0 {
		return nil, s.userExists(ctx, userID)
	}
	ms := make([]store.MessageInfo, len(uids))
	for i := range uids {
		ms[i] = store.MessageInfo{UID: uint64(uids[i]), Size: sizes[i]}
	}
	// The imported messages' own UIDLs and LIST sizes: one probe of the
	// partial index messages_uidl when there are none.
	rows, err := s.pool.Query(ctx, `SELECT uid, uidl, coalesce(list_size, 0) FROM messages
		WHERE user_id = $1 AND uidl IS NOT NULL AND uid < $2`, userID, int64(before))
	if err != nil {
		return nil, err
	}
	imported, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.MessageInfo, error) {
		var m store.MessageInfo
		err := r.Scan(&m.UID, &m.UIDL, &m.ListSize)
		return m, err
	})
	if err != nil {
		return nil, err
	}
	store.WithImported(ms, imported)
	return ms, nil
}

// Summary implements store.Mailboxes.
func (s *Store) Summary(ctx context.Context, userID int64) (store.MailboxSummary, error) {
	var m store.MailboxSummary
	var next int64
	// The imported messages' LIST sizes in place of their stored ones,
	// read in the same statement: one probe of the partial index
	// messages_uidl when there are none.
	err := s.pool.QueryRow(ctx, `SELECT msg_count, msg_bytes + (SELECT coalesce(sum(coalesce(list_size, size) - size), 0)
			FROM messages WHERE user_id = $1 AND uidl IS NOT NULL)::bigint, next_uid
		FROM users WHERE id = $1`, userID).
		Scan(&m.Count, &m.Bytes, &next)
	if err != nil {
		return m, notFound(err, "user %d", userID)
	}
	m.NextUID = uint64(next)
	return m, nil
}

// Open implements store.Mailboxes: the copy's header, then the shared
// body. The first chunk of the body comes with the index row, so that a
// message of up to chunkSize octets takes one round trip.
func (s *Store) Open(ctx context.Context, userID int64, uid uint64) (io.ReadCloser, error) {
	if uid > math.MaxInt64 {
		return nil, fmt.Errorf("message %d of user %d: %w", uid, userID, store.ErrNotFound)
	}
	var blobID, size int64
	var header, first []byte
	err := s.pool.QueryRow(ctx, `SELECT m.blob_id, m.header, b.size, c.data
		FROM messages m JOIN blobs b ON b.id = m.blob_id
			LEFT JOIN blob_chunks c ON c.blob_id = m.blob_id AND c.seq = 0
		WHERE m.user_id = $1 AND m.uid = $2`, userID, int64(uid)).Scan(&blobID, &header, &size, &first)
	if err != nil {
		return nil, notFound(err, "message %d of user %d", uid, userID)
	}
	if size > 0 && first == nil {
		return nil, fmt.Errorf("message %d of user %d: body content missing", uid, userID)
	}
	rc, err := s.blobs.Open(ctx, blobID, size, first)
	if err != nil {
		return nil, err
	}
	return withHeader(header, rc), nil
}

// withHeader returns rc's content preceded by header.
func withHeader(header []byte, rc io.ReadCloser) io.ReadCloser {
	if len(header) == 0 {
		return rc
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(header), rc), rc}
}

// validUIDs drops UIDs that were never assigned (beyond bigint).
func validUIDs(uids []uint64) []int64 {
	out := make([]int64, 0, len(uids))
	for _, u := range uids {
		if u <= math.MaxInt64 {
			out = append(out, int64(u))
		}
	}
	return out
}

// Delete implements store.Mailboxes in one transaction; bodies that lose
// their last reference go with it.
func (s *Store) Delete(ctx context.Context, userID int64, uids []uint64) error {
	return s.write(ctx, true, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		return s.deleteWhere(ctx, tx, userID, nil, `uid = ANY($2)`, validUIDs(uids))
	})
}

// deleteWhere deletes the user's messages matching cond (with $2 bound to
// arg), under the user's row lock, keeps the counters and releases the
// bodies. gone, if not nil, receives what was deleted.
func (s *Store) deleteWhere(ctx context.Context, tx pgx.Tx, userID int64, gone *[]store.MessageInfo, cond string, arg any) error {
	rows, err := tx.Query(ctx, `DELETE FROM messages WHERE user_id = $1 AND `+cond+` RETURNING uid, size, blob_id`, userID, arg)
	if err != nil {
		return err
	}
	refs := map[int64]int{}
	var count, total int64
	var m store.MessageInfo
	var blobID int64
	if _, err := pgx.ForEachRow(rows, []any{&m.UID, &m.Size, &blobID}, func() error {
		count++
		total += m.Size
		refs[blobID]++
		if gone != nil {
			*gone = append(*gone, m)
		}
		return nil
	}); err != nil {
		return err
	}
	if count == 0 {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE users SET msg_count = msg_count - $1, msg_bytes = msg_bytes - $2 WHERE id = $3`,
		count, total, userID); err != nil {
		return err
	}
	return s.releaseBlobs(ctx, tx, refs)
}

// Usage implements store.Mailboxes from the counters Deliver and Delete
// maintain.
func (s *Store) Usage(ctx context.Context, userID int64) (count int, bytes int64, err error) {
	err = s.pool.QueryRow(ctx, `SELECT msg_count, msg_bytes FROM users WHERE id = $1`, userID).Scan(&count, &bytes)
	return count, bytes, notFound(err, "user %d", userID)
}
