package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// MarkRetrieved implements store.Retention.
func (s *Store) MarkRetrieved(ctx context.Context, userID int64, uids []uint64, t time.Time) error {
	if len(uids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE messages SET retrieved_at = $1
		WHERE user_id = $2 AND uid = ANY($3) AND retrieved_at IS NULL`, sec(t), userID, validUIDs(uids))
	return err
}

// ExpireRetrieved implements store.Retention.
func (s *Store) ExpireRetrieved(ctx context.Context, userID int64, before time.Time) ([]store.MessageInfo, error) {
	cut := sec(before)
	// A cheap read first: most sweeps find nothing and need no lock.
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM messages
		WHERE user_id = $1 AND retrieved_at IS NOT NULL AND retrieved_at < $2`, userID, cut).Scan(&n); err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, s.userExists(ctx, userID)
	}
	var gone []store.MessageInfo
	err := s.write(ctx, true, func(tx pgx.Tx) error {
		gone = gone[:0]
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		return s.deleteWhere(ctx, tx, userID, &gone, `retrieved_at IS NOT NULL AND retrieved_at < $2`, cut)
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(gone, func(a, b store.MessageInfo) int {
		switch {
		case a.UID < b.UID:
			return -1
		case a.UID > b.UID:
			return 1
		}
		return 0
	})
	return gone, nil
}

// RecordLogin implements store.Retention.
func (s *Store) RecordLogin(ctx context.Context, userID int64, t time.Time) error {
	return execOne(ctx, s.pool, fmt.Sprintf("user %d", userID), `UPDATE users SET last_login = $1 WHERE id = $2`, sec(t), userID)
}

// AppendJournal implements store.Journal: one statement for the batch.
// Each entry records the node that wrote it.
func (s *Store) AppendJournal(ctx context.Context, entries []store.JournalEntry) error {
	if len(entries) == 0 {
		return nil
	}
	now := time.Now()
	n := len(entries)
	at := make([]time.Time, n)
	event, msgID, txID, from, rcpts, user, client, detail := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	size := make([]int64, n)
	for i, e := range entries {
		if e.Event == "" {
			return fmt.Errorf("journal entry without an event: %w", store.ErrInvalid)
		}
		t := e.Time
		if t.IsZero() {
			t = now
		}
		at[i] = t.Truncate(time.Millisecond).UTC()
		event[i], msgID[i], txID[i], from[i] = string(e.Event), e.MessageID, e.TxID, e.From
		// An array of arrays must be rectangular: the recipients travel
		// as one string each, split in SQL.
		rcpts[i] = strings.Join(e.To, "\n")
		user[i], size[i], client[i], detail[i] = strings.ToLower(e.User), e.Size, e.Client, e.Detail
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO journal
		(at, event, message_id, tx_id, sender, recipients, mailbox, size, client, detail, node)
		SELECT at, event, message_id, tx_id, sender,
			CASE WHEN rcpts = '' THEN '{}'::text[] ELSE string_to_array(rcpts, E'\n') END,
			mailbox, size, client, detail, $12
		FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
			$8::bigint[], $9::text[], $10::text[], $11::integer[])
			AS e (at, event, message_id, tx_id, sender, rcpts, mailbox, size, client, detail, ord)
		ORDER BY ord`,
		at, event, msgID, txID, from, rcpts, user, size, client, detail, ordinals(n), s.node)
	return err
}

func ordinals(n int) []int32 {
	o := make([]int32, n)
	for i := range o {
		o[i] = int32(i)
	}
	return o
}

// QueryJournal implements store.Journal.
func (s *Store) QueryJournal(ctx context.Context, q store.JournalQuery) ([]store.JournalEntry, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if !q.Since.IsZero() {
		where = append(where, "at >= "+arg(q.Since.Truncate(time.Millisecond)))
	}
	if !q.Until.IsZero() {
		where = append(where, "at < "+arg(q.Until.Truncate(time.Millisecond)))
	}
	if q.Event != "" {
		where = append(where, "event = "+arg(string(q.Event)))
	}
	if q.BeforeID > 0 {
		where = append(where, "id < "+arg(q.BeforeID))
	}
	if u := strings.ToLower(strings.TrimSpace(q.User)); u != "" {
		p := arg(u)
		where = append(where, `(mailbox = `+p+` OR lower(sender) = `+p+
			` OR EXISTS (SELECT 1 FROM unnest(recipients) AS r WHERE lower(r) = `+p+`))`)
	}
	if t := strings.TrimSpace(q.Text); t != "" {
		p := arg("%" + likeEscape(strings.ToLower(t)) + "%")
		var ors []string
		for _, c := range []string{"message_id", "tx_id", "sender", "array_to_string(recipients, E'\\n')", "mailbox", "client", "detail"} {
			ors = append(ors, "lower("+c+") LIKE "+p+` ESCAPE '\'`)
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
	query += " ORDER BY id DESC LIMIT " + arg(limit)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, scanJournal)
}

func scanJournal(r pgx.CollectableRow) (store.JournalEntry, error) {
	var e store.JournalEntry
	var event string
	err := r.Scan(&e.ID, &e.Time, &event, &e.MessageID, &e.TxID, &e.From, &e.To, &e.User, &e.Size, &e.Client, &e.Detail)
	e.Time = e.Time.UTC()
	e.Event = store.JournalEvent(event)
	if len(e.To) == 0 {
		e.To = nil
	}
	return e, err
}

// likeEscape escapes LIKE's wildcards.
func likeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// CountJournal implements store.Journal.
func (s *Store) CountJournal(ctx context.Context, since time.Time) (map[store.JournalEvent]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT event, count(*) FROM journal WHERE at >= $1 GROUP BY event`, since.Truncate(time.Millisecond))
	if err != nil {
		return nil, err
	}
	out := map[store.JournalEvent]int64{}
	var ev string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&ev, &n}, func() error {
		out[store.JournalEvent(ev)] = n
		return nil
	})
	return out, err
}

// JournalHistogram implements store.Journal.
func (s *Store) JournalHistogram(ctx context.Context, since time.Time, step time.Duration, n int) (map[store.JournalEvent][]int64, error) {
	if step < time.Millisecond || n <= 0 {
		return nil, fmt.Errorf("journal histogram: step %v, %d periods: %w", step, n, store.ErrInvalid)
	}
	since = since.Truncate(time.Millisecond)
	ms := step.Milliseconds()
	rows, err := s.pool.Query(ctx, `SELECT event, floor(extract(epoch FROM at - $1) * 1000 / $2)::bigint, count(*) FROM journal
		WHERE at >= $1 AND at < $3 GROUP BY 1, 2`, since, ms, since.Add(time.Duration(ms*int64(n))*time.Millisecond))
	if err != nil {
		return nil, err
	}
	out := map[store.JournalEvent][]int64{}
	var ev string
	var i, c int64
	_, err = pgx.ForEachRow(rows, []any{&ev, &i, &c}, func() error {
		e := store.JournalEvent(ev)
		if out[e] == nil {
			out[e] = make([]int64, n)
		}
		if i >= 0 && i < int64(n) {
			out[e][i] = c
		}
		return nil
	})
	return out, err
}

// PruneJournal implements store.Journal.
func (s *Store) PruneJournal(ctx context.Context, before time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM journal WHERE at < $1`, before.Truncate(time.Millisecond))
	return tag.RowsAffected(), err
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
	tag, err := s.pool.Exec(ctx, `INSERT INTO admins (name, password_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		a.Name, a.PasswordHash, sec(time.Now()))
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("admin %s: %w", a.Name, store.ErrExists)
	}
	return nil
}

func scanAdmin(r pgx.Row) (store.Admin, error) {
	var a store.Admin
	err := r.Scan(&a.Name, &a.PasswordHash, &a.CreatedAt)
	a.CreatedAt = a.CreatedAt.UTC()
	return a, err
}

// AdminByName implements store.Admins.
func (s *Store) AdminByName(ctx context.Context, name string) (store.Admin, error) {
	a, err := scanAdmin(s.pool.QueryRow(ctx, `SELECT name, password_hash, created_at FROM admins WHERE name = $1`, name))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Admin{}, fmt.Errorf("admin %s: %w", name, store.ErrNotFound)
	}
	return a, err
}

// ListAdmins implements store.Admins.
func (s *Store) ListAdmins(ctx context.Context) ([]store.Admin, error) {
	rows, err := s.pool.Query(ctx, `SELECT name, password_hash, created_at FROM admins ORDER BY name`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Admin, error) { return scanAdmin(r) })
}

// SetAdminPassword implements store.Admins.
func (s *Store) SetAdminPassword(ctx context.Context, name, hash string) error {
	return execOne(ctx, s.pool, "admin "+name, `UPDATE admins SET password_hash = $1 WHERE name = $2`, hash, name)
}

// DeleteAdmin implements store.Admins.
func (s *Store) DeleteAdmin(ctx context.Context, name string) error {
	return execOne(ctx, s.pool, "admin "+name, `DELETE FROM admins WHERE name = $1`, name)
}
