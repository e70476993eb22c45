package backup

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/atomicfile"
	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// ExportStore is what ExportMaildir reads.
type ExportStore interface {
	store.Directory
	store.Mailboxes
	NextUID(ctx context.Context, userID int64) (uint64, error)
}

// ExportStats counts what ExportMaildir wrote.
type ExportStats struct {
	Users, Messages int
	Bytes           int64
}

// ExportMaildir writes the mailbox of every user (or of the user with
// the address only, if not "") as a maildir (cr.yp.to/proto/maildir.html)
// at dir/DOMAIN/LOCALPART, the layout of Dovecot's
// mail_location = maildir:DIR/%d/%n: the subdirectories cur, new and tmp,
// each message in a file of its own in cur, written to tmp, synced and
// renamed into place, with the octets as stored (CRLF line ends, which
// Dovecot reads as they are), named uniquely with its size (S= and W=,
// Dovecot's extensions for the file's and the CRLF size). Beside them a
// dovecot-uidlist (version 3: the header's V is the mailbox's UID
// validity and N its next UID; each line a message's UID, its POP3 UIDL
// in the P extension and its size in W, then its file name) gives Dovecot
// the same UIDs, so that its POP3 UIDL shows the UIDLs postoffice showed:
// from P, or with pop3_uidl_format = %08Xv%08Xu, which is postoffice's
// own format. A user's maildir that exists already is refused.
func ExportMaildir(ctx context.Context, st ExportStore, dir, address, host string) (ExportStats, error) {
	var es ExportStats
	var users []store.User
	if address != "" {
		u, err := st.UserByAddress(ctx, address)
		if err != nil {
			return es, fmt.Errorf("user %s: %w", address, err)
		}
		users = []store.User{u}
	} else {
		var err error
		if users, err = st.ListUsers(ctx); err != nil {
			return es, err
		}
	}
	host = strings.NewReplacer("/", `\057`, ":", `\072`).Replace(host)
	if host == "" {
		host = "postoffice"
	}
	for _, u := range users {
		n, b, err := exportUser(ctx, st, dir, u, host)
		if err != nil {
			return es, fmt.Errorf("user %s: %w", u.Address, err)
		}
		es.Users++
		es.Messages += n
		es.Bytes += b
	}
	return es, nil
}

func exportUser(ctx context.Context, st ExportStore, dir string, u store.User, host string) (int, int64, error) {
	local, domain, ok := strings.Cut(u.Address, "@")
	if !ok || !safeName(local) || !safeName(domain) {
		return 0, 0, fmt.Errorf("address %q cannot name a directory", u.Address)
	}
	root := filepath.Join(dir, domain, local)
	if _, err := os.Stat(root); err == nil {
		return 0, 0, fmt.Errorf("%s exists already: export into a new directory", root)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return 0, 0, err
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, sub), 0o700); err != nil {
			return 0, 0, err
		}
	}
	msgs, err := st.List(ctx, u.ID, 0)
	if err != nil {
		return 0, 0, err
	}
	next, err := st.NextUID(ctx, u.ID)
	if err != nil {
		return 0, 0, err
	}
	var list strings.Builder
	// The mailbox GUID (G) is 128 bits in hex; one derived from the
	// address and UID validity names this mailbox the same in every export.
	guid := md5.Sum(fmt.Appendf(nil, "%s/%d", u.Address, u.UIDValidity))
	fmt.Fprintf(&list, "3 V%d N%d G%s\n", u.UIDValidity, next, hex.EncodeToString(guid[:]))
	var total int64
	n := 0
	for _, m := range msgs {
		if err := ctx.Err(); err != nil {
			return n, total, err
		}
		// S= the file's size, W= the size POP3's LIST shows (Dovecot's
		// virtual size): an imported message keeps its old server's.
		shown := maildrop.Shown(u, m)
		base := fmt.Sprintf("%d.P%dQ%d.%s,S=%d,W=%d", u.CreatedAt.Unix(), u.UIDValidity, m.UID, host, m.Size, shown.Size)
		size, err := exportMessage(ctx, st, root, base, u.ID, m.UID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return n, total, fmt.Errorf("message %d: %w", m.UID, err)
		}
		fmt.Fprintf(&list, "%d P%s W%d :%s\n", m.UID, shown.UID, shown.Size, base)
		total += size
		n++
	}
	if err := atomicfile.Sync(filepath.Join(root, "cur")); err != nil {
		return n, total, err
	}
	if err := atomicfile.Write(filepath.Join(root, "dovecot-uidlist"), []byte(list.String()), 0o600); err != nil {
		return n, total, err
	}
	return n, total, nil
}

// exportMessage writes one message into root/tmp and moves it to
// root/cur/base:2, (no flags).
func exportMessage(ctx context.Context, st ExportStore, root, base string, userID int64, uid uint64) (int64, error) {
	r, err := st.Open(ctx, userID, uid)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	tmp := filepath.Join(root, "tmp", base)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	size, err := io.Copy(f, r)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(root, "cur", base+":2,"))
	}
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return size, nil
}

// safeName reports whether s can be a path element as it is.
func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}
