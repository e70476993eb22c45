package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/argon2"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// hashCosts are the argon2id parameters of the benchmark's password hash.
var hashCosts = map[string]struct{ m, t uint32 }{
	// postoffice's own (directory.HashPassword): OWASP's first argon2id
	// configuration.
	"production": {m: 19 * 1024, t: 2},
	// Nearly free: takes the hash out of the comparison, as an auth cache
	// hit would.
	"cheap": {m: 64, t: 1},
}

// makeHash returns an argon2id PHC string ($argon2id$v=19$m=M,t=T,p=1$...)
// that both postoffice and Dovecot's ARGON2ID scheme (libsodium) verify.
func makeHash(password, cost string) (string, error) {
	c, ok := hashCosts[cost]
	if !ok {
		return "", fmt.Errorf("hash cost %q: want production or cheap", cost)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, c.t, c.m, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=1$%s$%s", argon2.Version, c.m, c.t,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// addPostofficeUsers creates the users through the store's API, all with
// the same hash, and returns their IDs by address.
func addPostofficeUsers(ctx context.Context, dataDir string, users []account, hash string) (map[string]int64, error) {
	st, err := sqlite.Open(dataDir)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	ids := make(map[string]int64, len(users))
	for _, u := range users {
		su, err := st.AddUser(ctx, store.User{Address: u.Name, PasswordHash: hash, Enabled: true})
		if err != nil {
			return nil, fmt.Errorf("adding %s: %w", u.Name, err)
		}
		ids[u.Name] = su.ID
	}
	return ids, nil
}

// mailItem is one message to load into one mailbox.
type mailItem struct {
	user string
	body []byte // canonical CRLF form
}

// bulkDeliver loads messages into postoffice's SQLite store much faster
// than one Deliver per message: it writes the bodies as Deliver would
// (inline up to sqlite.InlineMax octets, else in a body file), in one
// transaction,
// and syncs the file system once at the end. It writes the store's schema
// directly, so it first checks the columns it uses; the result is what
// Deliver makes, without per-copy trace headers. It is safe while serve
// runs on the same directory (SQLite locking).
func bulkDeliver(ctx context.Context, dataDir string, ids map[string]int64, items []mailItem) error {
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "postoffice.db")+"?_pragma=busy_timeout(30000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := checkSchema(ctx, db); err != nil {
		return fmt.Errorf("bulk loader: %w (use --loader api)", err)
	}
	blobIDs := make([]string, len(items))
	for i, it := range items {
		raw := make([]byte, 16)
		rand.Read(raw)
		id := hex.EncodeToString(raw)
		if len(it.body) > sqlite.InlineMax {
			p := filepath.Join(dataDir, "blobs", id[:2], id)
			if err := os.WriteFile(p, it.body, 0o600); err != nil {
				return err
			}
		}
		blobIDs[i] = id
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := time.Now().Unix()
	insBlob, err := tx.PrepareContext(ctx, `INSERT INTO blobs (id, size, created_at, data) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	insMsg, err := tx.PrepareContext(ctx, `INSERT INTO messages (user_id, uid, blob_id, size, delivered_at, header)
		VALUES (?, ?, ?, ?, ?, x'')`)
	if err != nil {
		return err
	}
	nextUID := map[int64]int64{}
	count := map[int64]int64{}
	bytes := map[int64]int64{}
	for i, it := range items {
		uid, ok := ids[it.user]
		if !ok {
			return fmt.Errorf("unknown user %s", it.user)
		}
		if _, ok := nextUID[uid]; !ok {
			var n int64
			if err := tx.QueryRowContext(ctx, `SELECT next_uid FROM users WHERE id = ?`, uid).Scan(&n); err != nil {
				return fmt.Errorf("user %s: %w", it.user, err)
			}
			nextUID[uid] = n
		}
		size := int64(len(it.body))
		var data []byte // NULL: in the file
		if size <= sqlite.InlineMax {
			data = it.body
		}
		if _, err := insBlob.ExecContext(ctx, blobIDs[i], size, now, data); err != nil {
			return err
		}
		if _, err := insMsg.ExecContext(ctx, uid, nextUID[uid], blobIDs[i], size, now); err != nil {
			return err
		}
		nextUID[uid]++
		count[uid]++
		bytes[uid] += size
	}
	for uid, n := range nextUID {
		if _, err := tx.ExecContext(ctx, `UPDATE users SET next_uid = ?, msg_count = msg_count + ?, msg_bytes = msg_bytes + ?
			WHERE id = ?`, n, count[uid], bytes[uid], uid); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// checkSchema checks that the tables bulkDeliver writes have the columns
// it writes.
func checkSchema(ctx context.Context, db *sql.DB) error {
	want := map[string][]string{
		"blobs":    {"id", "size", "created_at", "data"},
		"messages": {"user_id", "uid", "blob_id", "size", "delivered_at", "header"},
		"users":    {"id", "next_uid", "msg_count", "msg_bytes"},
	}
	for table, cols := range want {
		rows, err := db.QueryContext(ctx, `SELECT name FROM pragma_table_info(?)`, table)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				rows.Close()
				return err
			}
			have[n] = true
		}
		rows.Close()
		for _, c := range cols {
			if !have[c] {
				return fmt.Errorf("the store's table %s has no column %s", table, c)
			}
		}
	}
	return nil
}

// apiDeliver loads messages through the store's Deliver, one durable
// delivery each: slow, but independent of the schema.
func apiDeliver(ctx context.Context, dataDir string, ids map[string]int64, items []mailItem) error {
	st, err := sqlite.Open(dataDir)
	if err != nil {
		return err
	}
	defer st.Close()
	for _, it := range items {
		if _, err := st.Deliver(ctx, strings.NewReader(string(it.body)), []store.Delivery{{UserID: ids[it.user]}}); err != nil {
			return err
		}
	}
	return nil
}

// maildirSeq makes maildir file names unique within the process.
var maildirSeq atomic.Int64

// writeMaildir stores messages as a delivery agent would (LF line endings,
// in new/), with the sizes in the name as Dovecot's own LDA and LMTP write
// them: S= the file size, W= the size with CRLF line endings (what POP3
// LIST reports), so that neither server needs to read a body to list it.
// dir is below root, the mail root, which already belongs to the mail uid.
func writeMaildir(root, dir string, msgs [][]byte) error {
	for _, sub := range []string{"", "cur", "new", "tmp"} {
		p := filepath.Join(dir, sub)
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
	}
	// The user's directories down from the mail root, for the mail uid.
	if !strings.HasPrefix(dir, root+string(filepath.Separator)) {
		return fmt.Errorf("maildir %s is not below %s", dir, root)
	}
	for p := dir; p != root; p = filepath.Dir(p) {
		if err := os.Chown(p, mailUID, mailGID); err != nil {
			return err
		}
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.Chown(filepath.Join(dir, sub), mailUID, mailGID); err != nil {
			return err
		}
	}
	now := time.Now().Unix()
	for _, m := range msgs {
		lf := toLF(m)
		name := fmt.Sprintf("%d.M%dP%d.bench,S=%d,W=%d", now, maildirSeq.Add(1), os.Getpid(), len(lf), len(m))
		tmp := filepath.Join(dir, "tmp", name)
		if err := os.WriteFile(tmp, lf, 0o600); err != nil {
			return err
		}
		if err := os.Chown(tmp, mailUID, mailGID); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, "new", name)); err != nil {
			return err
		}
	}
	return nil
}

// dropDovecotIndexes removes Dovecot's index and uidlist files from a
// maildir, so that the next login is a first login: Dovecot scans the
// directory and assigns UIDs again, as for mail a foreign MTA delivered.
func dropDovecotIndexes(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "dovecot") {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
