package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// The store.Exporter and store.Importer of the cluster backend, for
// postoffice migrate.

var (
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// NextUID implements store.Exporter.
func (s *Store) NextUID(ctx context.Context, userID int64) (uint64, error) {
	var next int64
	err := s.pool.QueryRow(ctx, `SELECT next_uid FROM users WHERE id = $1`, userID).Scan(&next)
	return uint64(next), notFound(err, "user %d", userID)
}

// bodyKey writes a blob id so that keys sort as the ids do.
func bodyKey(id int64) string { return fmt.Sprintf("%020d", id) }

func parseBodyKey(key string) (int64, error) {
	if key == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(key, 10, 64)
	if err != nil || id < 0 {
		return 0, fmt.Errorf("body key %q: %w", key, store.ErrInvalid)
	}
	return id, nil
}

// ExportBodies implements store.Exporter; keys are blob ids.
func (s *Store) ExportBodies(ctx context.Context, after string, limit int) ([]store.ExportedBody, error) {
	from, err := parseBodyKey(after)
	if err != nil || limit <= 0 {
		return nil, err
	}
	var out []store.ExportedBody
	err = s.read(ctx, func(tx pgx.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `WITH page AS (
				SELECT DISTINCT blob_id FROM messages WHERE blob_id > $1 ORDER BY blob_id LIMIT $2)
			SELECT m.blob_id, b.size, m.user_id, m.uid, m.header, m.delivered_at, m.retrieved_at,
				coalesce(m.uidl, ''), coalesce(m.list_size, 0)
			FROM page JOIN messages m ON m.blob_id = page.blob_id JOIN blobs b ON b.id = m.blob_id
			ORDER BY m.blob_id, m.user_id, m.uid`, from, limit)
		if err != nil {
			return err
		}
		var id, size int64
		var c store.MessageCopy
		var retrieved *time.Time
		_, err = pgx.ForEachRow(rows, []any{&id, &size, &c.UserID, &c.UID, &c.Header, &c.DeliveredAt, &retrieved, &c.UIDL, &c.ListSize}, func() error {
			key := bodyKey(id)
			if len(out) == 0 || out[len(out)-1].Key != key {
				out = append(out, store.ExportedBody{Key: key, Size: size})
			}
			cp := c
			cp.Header = append([]byte(nil), c.Header...)
			cp.DeliveredAt = c.DeliveredAt.UTC()
			cp.RetrievedAt = optTime(retrieved)
			out[len(out)-1].Copies = append(out[len(out)-1].Copies, cp)
			return nil
		})
		return err
	})
	return out, err
}

// OpenBody implements store.Exporter.
func (s *Store) OpenBody(ctx context.Context, key string) (io.ReadCloser, error) {
	id, err := parseBodyKey(key)
	if err != nil {
		return nil, err
	}
	var size int64
	var first []byte
	err = s.pool.QueryRow(ctx, `SELECT b.size, c.data FROM blobs b
		LEFT JOIN blob_chunks c ON c.blob_id = b.id AND c.seq = 0 WHERE b.id = $1`, id).Scan(&size, &first)
	if err != nil {
		return nil, notFound(err, "body %s", key)
	}
	return s.blobs.Open(ctx, id, size, first)
}

// ImportDomain implements store.Importer.
func (s *Store) ImportDomain(ctx context.Context, d store.Domain) error {
	name, err := address.NormalizeDomain(d.Name)
	if err != nil {
		return store.Invalid(err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO domains (name, created_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, name, sec(d.CreatedAt))
	return err
}

// advanceIdentity moves the identity sequence of table's id column past
// id, never back, so that an imported ID is not handed out again.
func advanceIdentity(ctx context.Context, tx pgx.Tx, table string, id int64) error {
	_, err := tx.Exec(ctx, `SELECT setval(seq, greatest($1, coalesce(pg_sequence_last_value(seq), 1)))
		FROM (SELECT pg_get_serial_sequence($2, 'id')::regclass AS seq) AS s`, id, table)
	return err
}

// ImportUser implements store.Importer.
func (s *Store) ImportUser(ctx context.Context, u store.User, nextUID uint64) error {
	addr, err := address.Normalize(u.Address)
	if err != nil {
		return store.Invalid(err)
	}
	if u.ID <= 0 || u.UIDValidity == 0 || nextUID == 0 || nextUID > math.MaxInt64 {
		return fmt.Errorf("user %s: ID %d, UID validity %d, next UID %d: %w", addr, u.ID, u.UIDValidity, nextUID, store.ErrInvalid)
	}
	return s.write(ctx, true, func(tx pgx.Tx) error {
		if err := lockAddr(ctx, tx, addr); err != nil {
			return err
		}
		var have string
		var validity int64
		err := tx.QueryRow(ctx, `SELECT address, uid_validity FROM users WHERE id = $1 FOR UPDATE`, u.ID).Scan(&have, &validity)
		switch {
		case err == nil && have == addr && validity == int64(u.UIDValidity):
			_, err := tx.Exec(ctx, `UPDATE users SET next_uid = greatest(next_uid, $1) WHERE id = $2`, int64(nextUID), u.ID)
			return err
		case err == nil:
			return fmt.Errorf("user ID %d is %s here: %w", u.ID, have, store.ErrExists)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if err := claimAddress(ctx, tx, addr); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users
			(id, address, domain, display_name, password_hash, enabled, quota_bytes, created_at, uid_validity,
				login_delay, expire, last_login, next_uid, spam_reject_score)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)`,
			u.ID, addr, domainOf(addr), u.DisplayName, u.PasswordHash, u.Enabled, u.QuotaBytes, sec(u.CreatedAt),
			int64(u.UIDValidity), secondsOf(u.LoginDelay), secondsOf(u.Expire), nullTime(u.LastLogin), int64(nextUID),
			u.SpamRejectScore); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE meta SET value = greatest(value, $1) WHERE key = 'last_uid_validity'`, int64(u.UIDValidity)); err != nil {
			return err
		}
		return advanceIdentity(ctx, tx, "users", u.ID)
	})
}

// ImportMessage implements store.Importer in one transaction, like
// Deliver.
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
		err := s.pool.QueryRow(ctx, `SELECT 1 FROM messages WHERE user_id = $1 AND (uid = $2 OR uidl = $3) LIMIT 1`,
			c.UserID, int64(c.UID), nullString(c.UIDL)).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
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
	defer body.Close()
	err = s.write(ctx, false, func(tx pgx.Tx) error {
		blobID, size, err := s.newBlob(ctx, tx, len(missing), body)
		if err != nil {
			return fmt.Errorf("storing message body: %w", err)
		}
		for _, c := range missing {
			copySize := size + int64(len(c.Header))
			tag, err := tx.Exec(ctx, `UPDATE users SET next_uid = greatest(next_uid, $1), msg_count = msg_count + 1,
				msg_bytes = msg_bytes + $2 WHERE id = $3`, int64(c.UID)+1, copySize, c.UserID)
			if err != nil {
				return err
			}
			if tag.RowsAffected() == 0 {
				return fmt.Errorf("user %d: %w", c.UserID, store.ErrNotFound)
			}
			header := c.Header
			if header == nil {
				header = []byte{}
			}
			var listSize *int64
			if c.ListSize > 0 {
				listSize = &c.ListSize
			}
			if _, err := tx.Exec(ctx, `INSERT INTO messages (user_id, uid, blob_id, header, size, delivered_at, retrieved_at,
				uidl, list_size) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, c.UserID, int64(c.UID), blobID, header, copySize,
				sec(c.DeliveredAt), nullTime(c.RetrievedAt), nullString(c.UIDL), listSize); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(missing), nil
}

// ImportQueued implements store.Importer.
func (s *Store) ImportQueued(ctx context.Context, m store.QueuedMessage, body io.Reader) error {
	if m.ID <= 0 || len(m.Recipients) == 0 {
		return fmt.Errorf("queued message %d with %d recipients: %w", m.ID, len(m.Recipients), store.ErrInvalid)
	}
	err := s.write(ctx, false, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM queue WHERE id = $1`, m.ID).Scan(&one)
		if err == nil {
			return fmt.Errorf("queued message %d: %w", m.ID, store.ErrExists)
		} else if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		blobID, size, err := s.newBlob(ctx, tx, 1, body)
		if err != nil {
			return fmt.Errorf("storing message body: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO queue (id, sender, blob_id, size, created_at, next_attempt, attempts, held,
			last_attempt, warned, ret, envid) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			m.ID, m.From, blobID, size, sec(m.CreatedAt), sec(m.NextAttempt), m.Attempts, m.Held,
			nullTime(m.LastAttempt), m.Warned, m.Ret, m.EnvID); err != nil {
			return err
		}
		for i, r := range m.Recipients {
			code, rstatus, text, command, host := replyColumns(r.Remote)
			if _, err := tx.Exec(ctx, `INSERT INTO queue_recipients
				(queue_id, position, address, state, last_error, status, remote_mta, notified, notify, orcpt_type, orcpt,
				reply_code, reply_status, reply_text, reply_command, reply_host)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
				m.ID, i, r.Address, string(r.State), r.LastError, r.Status, r.RemoteMTA, r.Notified,
				r.DSN.NotifyString(), r.DSN.ORcptType, r.DSN.ORcpt, code, rstatus, text, command, host); err != nil {
				return err
			}
		}
		return advanceIdentity(ctx, tx, "queue", m.ID)
	})
	if isUniqueViolation(err) {
		err = fmt.Errorf("queued message %d: %w", m.ID, store.ErrExists)
	}
	return err
}

// ImportJournal implements store.Importer.
func (s *Store) ImportJournal(ctx context.Context, entries []store.JournalEntry) (int, error) {
	var n int
	err := s.write(ctx, true, func(tx pgx.Tx) error {
		n = 0
		var maxID int64
		for _, e := range entries {
			if e.ID <= 0 || e.Event == "" {
				return fmt.Errorf("journal entry %d %q: %w", e.ID, e.Event, store.ErrInvalid)
			}
			to := e.To
			if to == nil {
				to = []string{}
			}
			tag, err := tx.Exec(ctx, `INSERT INTO journal
				(id, at, event, message_id, tx_id, sender, recipients, mailbox, size, client, detail)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING`,
				e.ID, e.Time.Truncate(time.Millisecond), string(e.Event), e.MessageID, e.TxID, e.From, to,
				strings.ToLower(e.User), e.Size, e.Client, e.Detail)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
			maxID = max(maxID, e.ID)
		}
		if maxID == 0 {
			return nil
		}
		return advanceIdentity(ctx, tx, "journal", maxID)
	})
	return n, err
}

// ImportAdmin implements store.Importer.
func (s *Store) ImportAdmin(ctx context.Context, a store.Admin) error {
	if err := checkAdminName(a.Name); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO admins (name, password_hash, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		a.Name, a.PasswordHash, sec(a.CreatedAt))
	return err
}

// nullString is NULL for "", s otherwise.
func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
