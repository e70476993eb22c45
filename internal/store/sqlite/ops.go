package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// durationOf reads a nullable column of seconds.
func durationOf(v sql.NullInt64) *time.Duration {
	if !v.Valid {
		return nil
	}
	d := time.Duration(v.Int64) * time.Second
	return &d
}

// secondsOf writes a nullable duration as whole seconds; any negative
// value is stored as -1 ("never").
func secondsOf(d *time.Duration) any {
	if d == nil {
		return nil
	}
	if *d < 0 {
		return int64(-1)
	}
	return int64(*d / time.Second)
}

// MarkRetrieved implements store.Retention.
func (s *Store) MarkRetrieved(ctx context.Context, userID int64, uids []uint64, t time.Time) error {
	if len(uids) == 0 {
		return nil
	}
	return s.writeGrouped(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE messages SET retrieved_at = ?
			WHERE user_id = ? AND uid IN (SELECT value FROM json_each(?)) AND retrieved_at IS NULL`,
			t.Unix(), userID, uidList(uids))
		return err
	})
}

// ExpireRetrieved implements store.Retention.
func (s *Store) ExpireRetrieved(ctx context.Context, userID int64, before time.Time) ([]store.MessageInfo, error) {
	// A cheap read first: most sweeps find nothing and need no write.
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM messages
		WHERE user_id = ? AND retrieved_at IS NOT NULL AND retrieved_at < ?`, userID, before.Unix()).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, userExists(ctx, s.r, userID)
	}
	var gone []store.MessageInfo
	var dropped []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		gone = gone[:0]
		rows, err := tx.QueryContext(ctx, `DELETE FROM messages
			WHERE user_id = ? AND retrieved_at IS NOT NULL AND retrieved_at < ?
			RETURNING uid, size, blob_id`, userID, before.Unix())
		if err != nil {
			return err
		}
		var blobIDs []string
		var bytes int64
		for rows.Next() {
			var m store.MessageInfo
			var blobID string
			if err := rows.Scan(&m.UID, &m.Size, &blobID); err != nil {
				rows.Close()
				return err
			}
			gone = append(gone, m)
			bytes += m.Size
			blobIDs = append(blobIDs, blobID)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if len(gone) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE users SET msg_count = msg_count - ?, msg_bytes = msg_bytes - ? WHERE id = ?`,
			len(gone), bytes, userID); err != nil {
			return err
		}
		dropped, err = dropUnreferenced(ctx, tx, blobIDs)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.removeBlobs(dropped)
	sortInfos(gone)
	return gone, nil
}

func sortInfos(ms []store.MessageInfo) {
	sort.Slice(ms, func(i, j int) bool { return ms[i].UID < ms[j].UID })
}

// RecordLogin implements store.Retention.
func (s *Store) RecordLogin(ctx context.Context, userID int64, t time.Time) error {
	// Every POP3 login writes this: grouped, concurrent logins share a
	// commit and its fsync.
	return s.writeGrouped(ctx, func(ctx context.Context, tx *sql.Tx) error {
		return deleteOrUpdateOne(ctx, tx, `UPDATE users SET last_login = ? WHERE id = ?`, []any{t.Unix(), userID}, fmt.Sprintf("user %d", userID))
	})
}

// deleteOrUpdateOne runs a statement meant to change one row and reports
// ErrNotFound about what if it changed none.
func deleteOrUpdateOne(ctx context.Context, e execer, query string, args []any, what string) error {
	res, err := e.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// AppendJournal implements store.Journal.
func (s *Store) AppendJournal(ctx context.Context, entries []store.JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		if e.Event == "" {
			return fmt.Errorf("journal entry without an event: %w", store.ErrInvalid)
		}
	}
	// Grouped: the journal's batches share the commit (and the fsync) of
	// the deliveries and logins they record.
	return s.writeGrouped(ctx, func(ctx context.Context, tx *sql.Tx) error {
		now := time.Now()
		args := make([]any, 0, journalRowsPerInsert*journalColumns)
		for len(entries) > 0 {
			n := min(len(entries), journalRowsPerInsert)
			args = args[:0]
			for _, e := range entries[:n] {
				at := e.Time
				if at.IsZero() {
					at = now
				}
				args = append(args, at.UnixMilli(), string(e.Event), e.MessageID, e.TxID, e.From,
					strings.Join(e.To, "\n"), strings.ToLower(e.User), e.Size, e.Client, e.Detail)
			}
			if _, err := tx.ExecContext(ctx, journalInserts[n], args...); err != nil {
				return err
			}
			entries = entries[n:]
		}
		return nil
	})
}

// Journal rows go in multi-row INSERTs: one statement step for many
// entries costs far less than a step per entry.
const (
	journalColumns       = 10
	journalRowsPerInsert = 64
)

// journalInserts[n] is the INSERT of n journal rows.
var journalInserts = func() (q [journalRowsPerInsert + 1]string) {
	row := "(?" + strings.Repeat(", ?", journalColumns-1) + ")"
	for n := 1; n <= journalRowsPerInsert; n++ {
		q[n] = `INSERT INTO journal (at, event, message_id, tx_id, sender, recipients, mailbox, size, client, detail) VALUES ` +
			row + strings.Repeat(", "+row, n-1)
	}
	return q
}()

// QueryJournal implements store.Journal.
func (s *Store) QueryJournal(ctx context.Context, q store.JournalQuery) ([]store.JournalEntry, error) {
	var where []string
	var args []any
	if !q.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, q.Since.UnixMilli())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, q.Until.UnixMilli())
	}
	if q.Event != "" {
		where, args = append(where, "event = ?"), append(args, string(q.Event))
	}
	if q.BeforeID > 0 {
		where, args = append(where, "id < ?"), append(args, q.BeforeID)
	}
	if u := strings.ToLower(strings.TrimSpace(q.User)); u != "" {
		// recipients is a newline-separated list: match a whole line.
		where = append(where, `(mailbox = ? OR lower(sender) = ? OR instr(char(10) || lower(recipients) || char(10), char(10) || ? || char(10)) > 0)`)
		args = append(args, u, u, u)
	}
	if t := strings.TrimSpace(q.Text); t != "" {
		pat := "%" + likeEscape(strings.ToLower(t)) + "%"
		cols := []string{"message_id", "tx_id", "sender", "recipients", "mailbox", "client", "detail"}
		var ors []string
		for _, c := range cols {
			ors = append(ors, "lower("+c+`) LIKE ? ESCAPE '\'`)
			args = append(args, pat)
		}
		where = append(where, "("+strings.Join(ors, " OR ")+")")
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	query := `SELECT id, at, event, message_id, tx_id, sender, recipients, mailbox, size, client, detail FROM journal`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT " + fmt.Sprint(limit)
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.JournalEntry
	for rows.Next() {
		var e store.JournalEntry
		var at int64
		var event, rcpts string
		if err := rows.Scan(&e.ID, &at, &event, &e.MessageID, &e.TxID, &e.From, &rcpts, &e.User, &e.Size, &e.Client, &e.Detail); err != nil {
			return nil, err
		}
		e.Time = time.UnixMilli(at).UTC()
		e.Event = store.JournalEvent(event)
		if rcpts != "" {
			e.To = strings.Split(rcpts, "\n")
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// likeEscape escapes LIKE's wildcards.
func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(s)
}

// CountJournal implements store.Journal.
func (s *Store) CountJournal(ctx context.Context, since time.Time) (map[store.JournalEvent]int64, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT event, count(*) FROM journal WHERE at >= ? GROUP BY event`, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[store.JournalEvent]int64{}
	for rows.Next() {
		var ev string
		var n int64
		if err := rows.Scan(&ev, &n); err != nil {
			return nil, err
		}
		out[store.JournalEvent(ev)] = n
	}
	return out, rows.Err()
}

// JournalHistogram implements store.Journal.
func (s *Store) JournalHistogram(ctx context.Context, since time.Time, step time.Duration, n int) (map[store.JournalEvent][]int64, error) {
	if step < time.Millisecond || n <= 0 {
		return nil, fmt.Errorf("journal histogram: step %v, %d periods: %w", step, n, store.ErrInvalid)
	}
	from, ms := since.UnixMilli(), step.Milliseconds()
	rows, err := s.r.QueryContext(ctx, `SELECT event, (at - ?1) / ?2, count(*) FROM journal
		WHERE at >= ?1 AND at < ?3 GROUP BY 1, 2`, from, ms, from+ms*int64(n))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[store.JournalEvent][]int64{}
	for rows.Next() {
		var ev string
		var i, c int64
		if err := rows.Scan(&ev, &i, &c); err != nil {
			return nil, err
		}
		e := store.JournalEvent(ev)
		if out[e] == nil {
			out[e] = make([]int64, n)
		}
		out[e][i] = c
	}
	return out, rows.Err()
}

// PruneJournal implements store.Journal.
func (s *Store) PruneJournal(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.w.ExecContext(ctx, `DELETE FROM journal WHERE at < ?`, before.UnixMilli())
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

var adminName = regexp.MustCompile(`^[A-Za-z0-9._@-]{1,64}$`)

func checkAdminName(name string) error {
	if !adminName.MatchString(name) {
		return fmt.Errorf("admin name %q: use 1 to 64 letters, digits, '.', '_', '@' or '-': %w", name, store.ErrInvalid)
	}
	return nil
}

// AddAdmin implements store.Admins.
func (s *Store) AddAdmin(ctx context.Context, a store.Admin) error {
	if err := checkAdminName(a.Name); err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `INSERT INTO admins (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		a.Name, a.PasswordHash, time.Now().Unix())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("admin %s: %w", a.Name, store.ErrExists)
	}
	return nil
}

// AdminByName implements store.Admins.
func (s *Store) AdminByName(ctx context.Context, name string) (store.Admin, error) {
	var a store.Admin
	var created int64
	err := s.r.QueryRowContext(ctx, `SELECT name, password_hash, created_at FROM admins WHERE name = ?`, name).
		Scan(&a.Name, &a.PasswordHash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("admin %s: %w", name, store.ErrNotFound)
	}
	a.CreatedAt = unixTime(created)
	return a, err
}

// ListAdmins implements store.Admins.
func (s *Store) ListAdmins(ctx context.Context) ([]store.Admin, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT name, password_hash, created_at FROM admins ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Admin
	for rows.Next() {
		var a store.Admin
		var created int64
		if err := rows.Scan(&a.Name, &a.PasswordHash, &created); err != nil {
			return nil, err
		}
		a.CreatedAt = unixTime(created)
		out = append(out, a)
	}
	return out, rows.Err()
}

// SetAdminPassword implements store.Admins.
func (s *Store) SetAdminPassword(ctx context.Context, name, hash string) error {
	return deleteOrUpdateOne(ctx, s.w, `UPDATE admins SET password_hash = ? WHERE name = ?`, []any{hash, name}, "admin "+name)
}

// DeleteAdmin implements store.Admins.
func (s *Store) DeleteAdmin(ctx context.Context, name string) error {
	return deleteOne(ctx, s.w, `DELETE FROM admins WHERE name = ?`, name, "admin "+name)
}
