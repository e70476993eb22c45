package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Deliver implements store.Mailboxes. A large body goes to one durable
// file first (a small one is written inline, see InlineMax); then one
// transaction stores the blob, assigns a UID in every mailbox, checks the
// quotas and references the blob. Each copy's header is kept in its
// messages row and counted in its size.
func (s *Store) Deliver(ctx context.Context, body io.Reader, rcpts []store.Delivery) ([]uint64, error) {
	if len(rcpts) == 0 {
		return nil, fmt.Errorf("delivery without recipients: %w", store.ErrInvalid)
	}
	seen := make(map[int64]bool, len(rcpts))
	for _, r := range rcpts {
		if seen[r.UserID] {
			return nil, fmt.Errorf("user %d listed twice: %w", r.UserID, store.ErrInvalid)
		}
		seen[r.UserID] = true
		if reason := store.HeaderProblem(r.Header); reason != "" {
			return nil, fmt.Errorf("header for user %d %s: %w", r.UserID, reason, store.ErrInvalid)
		}
	}

	b, err := s.putBody(ctx, body)
	if err != nil {
		return nil, fmt.Errorf("storing message body: %w", err)
	}
	blobID, size := b.id, b.size
	uids := make([]uint64, len(rcpts))
	// Grouped: concurrent deliveries (SMTP sessions) share a commit and
	// its fsync; each still returns only once its own rows are durable.
	err = s.writeGrouped(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := time.Now().Unix()
		if err := b.insert(ctx, tx, now); err != nil {
			return err
		}
		for i, r := range rcpts {
			copySize := size + int64(len(r.Header))
			var addr string
			var quota, used int64
			err := tx.QueryRowContext(ctx, `UPDATE users
				SET next_uid = next_uid + 1, msg_count = msg_count + 1, msg_bytes = msg_bytes + ?
				WHERE id = ? RETURNING address, next_uid - 1, quota_bytes, msg_bytes`,
				copySize, r.UserID).Scan(&addr, &uids[i], &quota, &used)
			if err != nil {
				return notFound(err, "user %d", r.UserID)
			}
			if quota > 0 && used > quota {
				return fmt.Errorf("%s: %d bytes over a quota of %d: %w", addr, used-quota, quota, store.ErrQuota)
			}
			// A nil slice would be bound as NULL.
			header := r.Header
			if header == nil {
				header = []byte{}
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (user_id, uid, blob_id, size, delivered_at, header)
				VALUES (?, ?, ?, ?, ?, ?)`, r.UserID, uids[i], blobID, copySize, now, header); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.discard(b)
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
			s.log.Warn("removing message file", "blob", id, "err", err)
		}
	}
}

// dropUnreferenced deletes the rows of the given blobs that no message and
// no queue entry references any longer and returns the ids of those whose
// body is in a file, for removal after commit. One statement for them all:
// a QUIT that deletes a whole mailbox passes hundreds.
func dropUnreferenced(ctx context.Context, tx *sql.Tx, blobIDs []string) ([]string, error) {
	if len(blobIDs) == 0 {
		return nil, nil
	}
	ids, err := json.Marshal(blobIDs)
	if err != nil {
		return nil, err
	}
	// Which are files first: typeof() needs only the column's type, not
	// its content, where a RETURNING of the deleted rows would read every
	// inline body whole (BenchmarkDelete; the figures are in
	// bench/RESULTS.md).
	const unreferenced = `id IN (SELECT value FROM json_each(?1))
		AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = blobs.id)
		AND NOT EXISTS (SELECT 1 FROM queue WHERE blob_id = blobs.id)`
	dropped, err := queryStrings(ctx, tx, `SELECT id FROM blobs WHERE typeof(data) = 'null' AND `+unreferenced, string(ids))
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM blobs WHERE `+unreferenced, string(ids)); err != nil {
		return nil, err
	}
	return dropped, nil
}

// List implements store.Mailboxes. It reads only the index, never bodies,
// as one text value of "uid size" pairs built inside SQLite: a row per
// message through database/sql cost about 0.8 us each, most of a login to
// a 100,000-message mailbox (BenchmarkList; the figures are in
// bench/RESULTS.md).
func (s *Store) List(ctx context.Context, userID int64, before uint64) ([]store.MessageInfo, error) {
	if before == 0 || before > math.MaxInt64 {
		before = math.MaxInt64
	}
	// The scan of the primary key (user_id, uid) gives the UIDs in order;
	// parseList checks that rather than having SQLite sort (ORDER BY inside
	// group_concat sorts even then: four times slower).
	var text []byte
	err := s.r.QueryRowContext(ctx, `SELECT group_concat(uid || ' ' || size, ' ')
		FROM messages WHERE user_id = ? AND uid < ?`, userID, int64(before)).Scan(&text)
	if err != nil {
		return nil, err
	}
	if len(text) == 0 {
		return nil, userExists(ctx, s.r, userID)
	}
	ms, err := parseList(text)
	if err != nil {
		return nil, err
	}
	// The imported messages' own UIDLs and LIST sizes: one probe of the
	// partial index messages_uidl when there are none. INDEXED BY: left
	// to itself the planner prefers the primary key, which covers the
	// columns but reads every message of the user (10 ms for 100,000).
	rows, err := s.r.QueryContext(ctx, `SELECT uid, uidl, coalesce(list_size, 0) FROM messages INDEXED BY messages_uidl
		WHERE user_id = ? AND uidl IS NOT NULL AND uid < ?`, userID, int64(before))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var imported []store.MessageInfo
	for rows.Next() {
		var m store.MessageInfo
		if err := rows.Scan(&m.UID, &m.UIDL, &m.ListSize); err != nil {
			return nil, err
		}
		imported = append(imported, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	store.WithImported(ms, imported)
	return ms, nil
}

// parseList parses List's "uid size uid size..." into UID order.
func parseList(text []byte) ([]store.MessageInfo, error) {
	ms := make([]store.MessageInfo, 0, (bytes.Count(text, []byte{' '})+1)/2)
	sorted := true
	for len(text) > 0 {
		var uid, size uint64
		var ok bool
		if uid, text, ok = parseUint(text); !ok {
			return nil, fmt.Errorf("message list: bad UID near %.20q", text)
		}
		if size, text, ok = parseUint(text); !ok || size > math.MaxInt64 {
			return nil, fmt.Errorf("message list: bad size near %.20q", text)
		}
		if n := len(ms); n > 0 && ms[n-1].UID >= uid {
			sorted = false
		}
		ms = append(ms, store.MessageInfo{UID: uid, Size: int64(size)})
	}
	if !sorted {
		slices.SortFunc(ms, func(a, b store.MessageInfo) int { return cmp.Compare(a.UID, b.UID) })
	}
	return ms, nil
}

// parseUint parses the decimal number at the start of b and skips the one
// space after it.
func parseUint(b []byte) (n uint64, rest []byte, ok bool) {
	i := 0
	for ; i < len(b) && '0' <= b[i] && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if n > (math.MaxUint64-d)/10 {
			return 0, b, false
		}
		n = n*10 + d
	}
	if i == 0 {
		return 0, b, false
	}
	if i < len(b) {
		if b[i] != ' ' || i+1 == len(b) {
			return 0, b, false
		}
		i++
	}
	return n, b[i:], true
}

// Summary implements store.Mailboxes.
func (s *Store) Summary(ctx context.Context, userID int64) (store.MailboxSummary, error) {
	var m store.MailboxSummary
	// The imported messages' LIST sizes in place of their stored ones,
	// read in the same statement: one probe of the partial index
	// messages_uidl when there are none (INDEXED BY, as in List: the
	// primary key would read every message, 10 to 70 ms of a login to a
	// 100,000-message mailbox).
	err := s.r.QueryRowContext(ctx, `SELECT msg_count, msg_bytes + (SELECT coalesce(sum(coalesce(list_size, size) - size), 0)
			FROM messages INDEXED BY messages_uidl WHERE user_id = ?1 AND uidl IS NOT NULL), next_uid
		FROM users WHERE id = ?1`, userID).
		Scan(&m.Count, &m.Bytes, &m.NextUID)
	return m, notFound(err, "user %d", userID)
}

// Open implements store.Mailboxes: the copy's header, then the shared body,
// both read by one query when the body is inline.
func (s *Store) Open(ctx context.Context, userID int64, uid uint64) (io.ReadCloser, error) {
	if uid > math.MaxInt64 {
		return nil, fmt.Errorf("message %d of user %d: %w", uid, userID, store.ErrNotFound)
	}
	const q = `SELECT m.blob_id, m.header, typeof(b.data) = 'null', b.data
		FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE m.user_id = ? AND m.uid = ?`
	var blobID string
	var header []byte
	var inFile bool
	buf := inlineBufs.Get().(*[]byte)
	data, err := s.queryBody(ctx, q, []any{userID, uid}, (*buf)[:0], &blobID, &header, &inFile)
	if err != nil {
		inlineBufs.Put(buf)
		return nil, notFound(err, "message %d of user %d", uid, userID)
	}
	if !inFile {
		// The pooled buffer goes back when the reader is closed.
		return withHeader(header, &pooledBody{Reader: bytes.NewReader(data), buf: buf}), nil
	}
	inlineBufs.Put(buf)
	f, err := s.blobs.Open(blobID)
	if errors.Is(err, fs.ErrNotExist) {
		// Most likely a Delete of the last reference ran in between.
		var data []byte
		if err2 := s.r.QueryRowContext(ctx, q, userID, uid).Scan(&blobID, &header, &inFile, &data); errors.Is(err2, sql.ErrNoRows) {
			return nil, fmt.Errorf("message %d of user %d: %w", uid, userID, store.ErrNotFound)
		}
		return nil, fmt.Errorf("message %d of user %d: body file missing: %w", uid, userID, err)
	}
	if err != nil {
		return nil, err
	}
	return withHeader(header, f), nil
}

// queryBody runs q, which selects the columns of dest followed by a blob
// column, and returns that blob appended to buf: the driver's copy is read
// as sql.RawBytes and copied once into buf (a pooled buffer) instead of
// being cloned into a new allocation by database/sql. sql.ErrNoRows if q
// finds nothing.
func (s *Store) queryBody(ctx context.Context, q string, args []any, buf []byte, dest ...any) ([]byte, error) {
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, err
		}
		return nil, sql.ErrNoRows
	}
	var raw sql.RawBytes
	if err := rows.Scan(append(dest, &raw)...); err != nil {
		return nil, err
	}
	buf = append(buf, raw...)
	return buf, rows.Close()
}

// pooledBody reads an inline body from a buffer of inlineBufs, which Close
// returns to the pool.
type pooledBody struct {
	*bytes.Reader
	buf *[]byte
}

func (p *pooledBody) Close() error {
	if p.buf != nil {
		p.Reader.Reset(nil)
		inlineBufs.Put(p.buf)
		p.buf = nil
	}
	return nil
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

// Delete implements store.Mailboxes; files that lose their last reference
// are removed after the commit. Grouped: the QUITs of concurrent POP3
// sessions share a commit.
func (s *Store) Delete(ctx context.Context, userID int64, uids []uint64) error {
	var dropped []string
	err := s.writeGrouped(ctx, func(ctx context.Context, tx *sql.Tx) error {
		if err := userExists(ctx, tx, userID); err != nil {
			return err
		}
		// One statement for the whole list (RFC 1939 section 6: QUIT
		// removes every message marked deleted).
		rows, err := tx.QueryContext(ctx, `DELETE FROM messages
			WHERE user_id = ? AND uid IN (SELECT value FROM json_each(?))
			RETURNING blob_id, size`, userID, uidList(uids))
		if err != nil {
			return err
		}
		var count, bytes int64
		var blobIDs []string
		for rows.Next() {
			var blobID string
			var size int64
			if err := rows.Scan(&blobID, &size); err != nil {
				rows.Close()
				return err
			}
			count++
			bytes += size
			blobIDs = append(blobIDs, blobID)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
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

// uidList is uids as a JSON array for json_each, which lets one statement
// act on a whole list of messages: a statement per message costs far more
// in the driver than in SQLite. UIDs past int64 were never assigned and are
// left out.
func uidList(uids []uint64) string {
	b := make([]byte, 0, 2+8*len(uids))
	b = append(b, '[')
	for _, uid := range uids {
		if uid > math.MaxInt64 {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uid, 10)
	}
	return string(append(b, ']'))
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
func (s *Store) Lock(ctx context.Context, userID int64, holder string) (store.MaildropLock, error) {
	if err := userExists(ctx, s.r, userID); err != nil {
		return nil, err
	}
	return s.lock(userID, holder)
}
