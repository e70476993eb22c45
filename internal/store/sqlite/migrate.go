package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// The store.Exporter and store.Importer of the embedded backend, for
// postoffice migrate.

var (
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// NextUID implements store.Exporter.
func (s *Store) NextUID(ctx context.Context, userID int64) (uint64, error) {
	var next uint64
	err := s.r.QueryRowContext(ctx, `SELECT next_uid FROM users WHERE id = ?`, userID).Scan(&next)
	return next, notFound(err, "user %d", userID)
}

// ExportBodies implements store.Exporter; keys are blob ids, in their
// (byte) order.
func (s *Store) ExportBodies(ctx context.Context, after string, limit int) ([]store.ExportedBody, error) {
	if limit <= 0 {
		return nil, nil
	}
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	ids, err := queryStrings(ctx, tx, `SELECT DISTINCT blob_id FROM messages WHERE blob_id > ? ORDER BY blob_id LIMIT ?`, after, limit)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := tx.QueryContext(ctx, `SELECT m.blob_id, b.size, m.user_id, m.uid, m.header, m.delivered_at, m.retrieved_at,
			coalesce(m.uidl, ''), coalesce(m.list_size, 0)
		FROM messages m JOIN blobs b ON b.id = m.blob_id
		WHERE m.blob_id IN (?`+strings.Repeat(`, ?`, len(ids)-1)+`)
		ORDER BY m.blob_id, m.user_id, m.uid`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.ExportedBody
	for rows.Next() {
		var key string
		var size, delivered int64
		var retrieved sql.NullInt64
		var c store.MessageCopy
		if err := rows.Scan(&key, &size, &c.UserID, &c.UID, &c.Header, &delivered, &retrieved, &c.UIDL, &c.ListSize); err != nil {
			return nil, err
		}
		// The blob holds the body alone; size here is the blob's.
		c.DeliveredAt = unixTime(delivered)
		if retrieved.Valid {
			c.RetrievedAt = unixTime(retrieved.Int64)
		}
		if len(out) == 0 || out[len(out)-1].Key != key {
			out = append(out, store.ExportedBody{Key: key, Size: size})
		}
		out[len(out)-1].Copies = append(out[len(out)-1].Copies, c)
	}
	return out, rows.Err()
}

// OpenBody implements store.Exporter.
func (s *Store) OpenBody(ctx context.Context, key string) (io.ReadCloser, error) {
	var data []byte
	var inFile bool
	err := s.r.QueryRowContext(ctx, `SELECT typeof(data) = 'null', data FROM blobs WHERE id = ?`, key).Scan(&inFile, &data)
	if err != nil {
		return nil, notFound(err, "body %s", key)
	}
	f, err := s.openBlob(key, inFile, data)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("body %s: %w", key, store.ErrNotFound)
	}
	return f, err
}

// ImportDomain implements store.Importer.
func (s *Store) ImportDomain(ctx context.Context, d store.Domain) error {
	name, err := address.NormalizeDomain(d.Name)
	if err != nil {
		return store.Invalid(err)
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO domains (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING`, name, d.CreatedAt.Unix())
	return err
}

// ImportUser implements store.Importer. AUTOINCREMENT remembers the
// largest ID inserted, so an imported ID is never handed out again.
func (s *Store) ImportUser(ctx context.Context, u store.User, nextUID uint64) error {
	addr, err := address.Normalize(u.Address)
	if err != nil {
		return store.Invalid(err)
	}
	if u.ID <= 0 || u.UIDValidity == 0 || nextUID == 0 || nextUID > math.MaxInt64 {
		return fmt.Errorf("user %s: ID %d, UID validity %d, next UID %d: %w", addr, u.ID, u.UIDValidity, nextUID, store.ErrInvalid)
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		var have string
		var validity uint32
		err := tx.QueryRowContext(ctx, `SELECT address, uid_validity FROM users WHERE id = ?`, u.ID).Scan(&have, &validity)
		switch {
		case err == nil && have == addr && validity == u.UIDValidity:
			_, err := tx.ExecContext(ctx, `UPDATE users SET next_uid = max(next_uid, ?) WHERE id = ?`, nextUID, u.ID)
			return err
		case err == nil:
			return fmt.Errorf("user ID %d is %s here: %w", u.ID, have, store.ErrExists)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if err := checkFree(ctx, tx, addr); err != nil {
			return err
		}
		if err := addDomainTx(ctx, tx, domainOf(addr)); err != nil {
			return err
		}
		var lastLogin int64
		if !u.LastLogin.IsZero() {
			lastLogin = u.LastLogin.Unix()
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO users
			(id, address, domain, display_name, password_hash, enabled, quota_bytes, created_at, uid_validity,
				login_delay, expire, last_login, next_uid, spam_reject_score)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			u.ID, addr, domainOf(addr), u.DisplayName, u.PasswordHash, u.Enabled, u.QuotaBytes, u.CreatedAt.Unix(), u.UIDValidity,
			secondsOf(u.LoginDelay), secondsOf(u.Expire), lastLogin, nextUID, u.SpamRejectScore); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE meta SET value = max(value, ?) WHERE key = 'last_uid_validity'`, u.UIDValidity)
		return err
	})
}

// ImportMessage implements store.Importer like Deliver: the body file
// first, then one transaction.
func (s *Store) ImportMessage(ctx context.Context, open func() (io.ReadCloser, error), copies []store.MessageCopy) (int, error) {
	var missing []store.MessageCopy
	for _, c := range copies {
		if c.UID == 0 || c.UID > math.MaxInt64 {
			return 0, fmt.Errorf("UID %d: %w", c.UID, store.ErrInvalid)
		}
		if reason := store.HeaderProblem(c.Header); reason != "" {
			return 0, fmt.Errorf("header of UID %d of user %d %s: %w", c.UID, c.UserID, reason, store.ErrInvalid)
		}
		if err := store.CheckImportedCopy(c); err != nil {
			return 0, err
		}
		var one int
		err := s.r.QueryRowContext(ctx, `SELECT 1 FROM messages WHERE user_id = ? AND (uid = ? OR uidl = ?) LIMIT 1`,
			c.UserID, c.UID, nullString(c.UIDL)).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			missing = append(missing, c)
		} else if err != nil {
			return 0, err
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	body, err := open()
	if err != nil {
		return 0, err
	}
	b, err := s.putBody(ctx, body)
	body.Close()
	if err != nil {
		return 0, fmt.Errorf("storing message body: %w", err)
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := b.insert(ctx, tx, time.Now().Unix()); err != nil {
			return err
		}
		for _, c := range missing {
			copySize := b.size + int64(len(c.Header))
			res, err := tx.ExecContext(ctx, `UPDATE users SET next_uid = max(next_uid, ?), msg_count = msg_count + 1,
				msg_bytes = msg_bytes + ? WHERE id = ?`, c.UID+1, copySize, c.UserID)
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("user %d: %w", c.UserID, store.ErrNotFound)
			}
			header := c.Header
			if header == nil {
				header = []byte{}
			}
			var retrieved any
			if !c.RetrievedAt.IsZero() {
				retrieved = c.RetrievedAt.Unix()
			}
			var listSize any
			if c.ListSize > 0 {
				listSize = c.ListSize
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO messages (user_id, uid, blob_id, size, delivered_at, header, retrieved_at,
				uidl, list_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, c.UserID, c.UID, b.id, copySize, c.DeliveredAt.Unix(), header, retrieved,
				nullString(c.UIDL), listSize); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.discard(b)
		return 0, err
	}
	return len(missing), nil
}

// ImportQueued implements store.Importer.
func (s *Store) ImportQueued(ctx context.Context, m store.QueuedMessage, body io.Reader) error {
	if m.ID <= 0 || len(m.Recipients) == 0 {
		return fmt.Errorf("queued message %d with %d recipients: %w", m.ID, len(m.Recipients), store.ErrInvalid)
	}
	var one int
	err := s.r.QueryRowContext(ctx, `SELECT 1 FROM queue WHERE id = ?`, m.ID).Scan(&one)
	if err == nil {
		return fmt.Errorf("queued message %d: %w", m.ID, store.ErrExists)
	} else if !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	b, err := s.putBody(ctx, body)
	if err != nil {
		return fmt.Errorf("storing message body: %w", err)
	}
	optional := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.Unix()
	}
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := b.insert(ctx, tx, time.Now().Unix()); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO queue (id, sender, blob_id, size, created_at, next_attempt, attempts, held,
			last_attempt, warned, claimed_until, ret, envid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`,
			m.ID, m.From, b.id, b.size, m.CreatedAt.Unix(), m.NextAttempt.Unix(), m.Attempts, m.Held,
			optional(m.LastAttempt), m.Warned, m.Ret, m.EnvID); err != nil {
			return err
		}
		for i, r := range m.Recipients {
			args := append([]any{m.ID, i, r.Address, string(r.State), r.LastError, r.Status, r.RemoteMTA, r.Notified,
				r.DSN.NotifyString(), r.DSN.ORcptType, r.DSN.ORcpt}, replyColumns(r.Remote)...)
			if _, err := tx.ExecContext(ctx, `INSERT INTO queue_recipients
				(queue_id, position, address, state, last_error, status, remote_mta, notified, notify, orcpt_type, orcpt,
				reply_code, reply_status, reply_text, reply_command, reply_host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		s.discard(b)
		return err
	}
	return nil
}

// ImportJournal implements store.Importer.
func (s *Store) ImportJournal(ctx context.Context, entries []store.JournalEntry) (int, error) {
	var n int
	err := s.write(ctx, func(tx *sql.Tx) error {
		n = 0
		for _, e := range entries {
			if e.ID <= 0 || e.Event == "" {
				return fmt.Errorf("journal entry %d %q: %w", e.ID, e.Event, store.ErrInvalid)
			}
			res, err := tx.ExecContext(ctx, `INSERT INTO journal
				(id, at, event, message_id, tx_id, sender, recipients, mailbox, size, client, detail)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
				e.ID, e.Time.UnixMilli(), string(e.Event), e.MessageID, e.TxID, e.From,
				strings.Join(e.To, "\n"), strings.ToLower(e.User), e.Size, e.Client, e.Detail)
			if err != nil {
				return err
			}
			if k, err := res.RowsAffected(); err != nil {
				return err
			} else {
				n += int(k)
			}
		}
		return nil
	})
	return n, err
}

// ImportAdmin implements store.Importer.
func (s *Store) ImportAdmin(ctx context.Context, a store.Admin) error {
	if err := checkAdminName(a.Name); err != nil {
		return err
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO admins (name, password_hash, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`,
		a.Name, a.PasswordHash, a.CreatedAt.Unix())
	return err
}

// nullString is NULL for "", s otherwise.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
