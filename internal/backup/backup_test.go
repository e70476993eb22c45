package backup

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/migrate"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

func openSQLite(t testing.TB, dir string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t testing.TB) *postgres.Store {
	t.Helper()
	_, dsn := pgtest.Schema(t)
	s, err := postgres.Open(context.Background(), dsn, "backup-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// bigBody is larger than sqlite.InlineMax: the embedded backend keeps it
// in a file of its own.
func bigBody(i int) string {
	return fmt.Sprintf("Subject: big %d\r\n\r\n", i) + strings.Repeat(fmt.Sprintf("%07d line of a big message\r\n", i), 3000)
}

// populate gives st two users, an extra address, aliases, messages small
// and big (one shared by both mailboxes, with headers of their own), a
// deleted one, a queued message and a secret.
func populate(t *testing.T, st migrate.Store) {
	t.Helper()
	ctx := t.Context()
	var ids []int64
	for _, a := range []string{"ann@example.com", "bob@example.org"} {
		u, err := st.AddUser(ctx, store.User{Address: a, Enabled: true, PasswordHash: "$argon2id$x"})
		must(t, err, "AddUser")
		ids = append(ids, u.ID)
	}
	must(t, st.AddAddress(ctx, ids[0], "anne@example.com"), "AddAddress")
	must(t, st.SetAlias(ctx, store.Alias{Address: "team@example.com", Targets: []string{"ann@example.com", "x@remote.example"}}), "SetAlias")
	must(t, st.SetAlias(ctx, store.Alias{Address: "@example.org", Targets: []string{"bob@example.org"}}), "SetAlias")
	for i := range 6 {
		body := fmt.Sprintf("Subject: %d\r\n\r\nhello %d\r\n", i, i)
		if i%3 == 2 {
			body = bigBody(i)
		}
		_, err := st.Deliver(ctx, strings.NewReader(body), []store.Delivery{
			{UserID: ids[0], Header: []byte("Delivered-To: ann@example.com\r\n")}, {UserID: ids[1]}})
		must(t, err, "Deliver")
	}
	l, err := st.List(ctx, ids[0], 0)
	must(t, err, "List")
	must(t, st.Delete(ctx, ids[0], []uint64{l[1].UID}), "Delete")
	// A message imported from another server keeps its UIDL and LIST
	// size (issue 20): backups, restores and exports keep them too.
	next, err := st.NextUID(ctx, ids[1])
	must(t, err, "NextUID")
	_, err = st.ImportMessage(ctx, func() (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("Subject: imported\r\n\r\nfrom Dovecot\r\n")), nil
	}, []store.MessageCopy{{UserID: ids[1], UID: next, DeliveredAt: time.Unix(1700000000, 0), UIDL: "00000007656f2a10", ListSize: 41}})
	must(t, err, "ImportMessage")
	_, err = st.Enqueue(ctx, store.QueueEnvelope{From: "ann@example.com", To: []string{"x@remote.example"}}, strings.NewReader("queued\r\n"))
	must(t, err, "Enqueue")
	_, err = st.Secret(ctx, "profile-link")
	must(t, err, "Secret")
}

// mailboxes reads every mailbox of st: address -> UIDL -> body.
func mailboxes(t *testing.T, st store.Store) map[string]map[string]string {
	t.Helper()
	ctx := t.Context()
	us, err := st.ListUsers(ctx)
	must(t, err, "ListUsers")
	out := map[string]map[string]string{}
	for _, u := range us {
		l, err := st.List(ctx, u.ID, 0)
		must(t, err, "List")
		out[u.Address] = map[string]string{}
		for _, m := range l {
			r, err := st.Open(ctx, u.ID, m.UID)
			must(t, err, "Open")
			b, err := io.ReadAll(r)
			r.Close()
			must(t, err, "read")
			if int64(len(b)) != m.Size {
				t.Errorf("%s %d: LIST size %d, %d octets read", u.Address, m.UID, m.Size, len(b))
			}
			shown := maildrop.Shown(u, m)
			out[u.Address][fmt.Sprintf("%s %d", shown.UID, shown.Size)] = string(b)
		}
	}
	return out
}

// sameStores checks that b holds what a does: counts, directory, every
// message with its UIDL and octets, the queue and the secrets.
func sameStores(t *testing.T, a, b migrate.Store) {
	t.Helper()
	ctx := t.Context()
	ca, err := migrate.Count(ctx, a)
	must(t, err, "Count")
	cb, err := migrate.Count(ctx, b)
	must(t, err, "Count")
	if ca != cb {
		t.Errorf("counts differ:\n%+v\n%+v", ca, cb)
	}
	if ca.Messages == 0 {
		t.Fatal("nothing to compare")
	}
	ma, mb := mailboxes(t, a), mailboxes(t, b)
	for addr, msgs := range ma {
		for uidl, body := range msgs {
			if got, ok := mb[addr][uidl]; !ok {
				t.Errorf("%s: message %s missing", addr, uidl)
			} else if got != body {
				t.Errorf("%s: message %s differs", addr, uidl)
			}
		}
		if len(mb[addr]) != len(msgs) {
			t.Errorf("%s: %d messages, want %d", addr, len(mb[addr]), len(msgs))
		}
	}
	aa, _ := a.ListAliases(ctx)
	ab, _ := b.ListAliases(ctx)
	if fmt.Sprint(aa) != fmt.Sprint(ab) {
		t.Errorf("aliases %v, %v", aa, ab)
	}
	sa, _ := a.Secret(ctx, "profile-link")
	sb, _ := b.Secret(ctx, "profile-link")
	if !bytes.Equal(sa, sb) {
		t.Error("the secret differs")
	}
	qa, _ := a.ListQueue(ctx)
	qb, _ := b.ListQueue(ctx)
	if len(qa) != len(qb) || len(qa) > 0 && (qa[0].ID != qb[0].ID || qa[0].From != qb[0].From) {
		t.Errorf("queue %+v, %+v", qa, qb)
	}
}

// sources are the backends a backup is taken of.
func sources(t *testing.T) map[string]func(t *testing.T) migrate.Store {
	return map[string]func(t *testing.T) migrate.Store{
		"sqlite":   func(t *testing.T) migrate.Store { return openSQLite(t, t.TempDir()) },
		"postgres": func(t *testing.T) migrate.Store { return openPostgres(t) },
	}
}

// TestBackupRestore: a backup of either backend verifies, and restores
// into a new data directory and into an empty PostgreSQL schema with
// every message, UIDL, octet, alias, queued message and secret.
func TestBackupRestore(t *testing.T) {
	for name, open := range sources(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			src := open(t)
			populate(t, src)
			dir := filepath.Join(t.TempDir(), "backup")
			m, err := Backup(ctx, src, dir, Options{})
			must(t, err, "Backup")
			if m.Source != name || len(m.Bodies) != 7 || len(m.Queue) != 1 || m.Counts.Messages != 12 {
				t.Errorf("manifest: %s, %d bodies, %d queued, counts %+v", m.Source, len(m.Bodies), len(m.Queue), m.Counts)
			}
			if _, problems, err := Verify(ctx, dir); err != nil {
				t.Fatalf("Verify: %v %q", err, problems)
			}
			for tname, target := range sources(t) {
				t.Run("into "+tname, func(t *testing.T) {
					dst := target(t)
					_, err := Restore(ctx, dir, dst, Options{})
					must(t, err, "Restore")
					sameStores(t, src, dst)
				})
			}
		})
	}
}

// TestVerifyFindsDamage: a message file changed and another removed are
// both reported, and restore refuses the backup.
func TestVerifyFindsDamage(t *testing.T) {
	ctx := t.Context()
	src := openSQLite(t, t.TempDir())
	populate(t, src)
	_, err := src.Deliver(ctx, strings.NewReader(bigBody(99)), []store.Delivery{{UserID: 1}})
	must(t, err, "Deliver")
	dir := filepath.Join(t.TempDir(), "backup")
	_, err = Backup(ctx, src, dir, Options{})
	must(t, err, "Backup")
	var files []string
	filepath.WalkDir(filepath.Join(dir, StoreDir, "blobs"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && len(d.Name()) == 32 {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 3 {
		t.Fatalf("%d message files in the backup, want 3", len(files))
	}
	data, err := os.ReadFile(files[0])
	must(t, err, "read")
	data[len(data)/2] ^= 1
	must(t, os.WriteFile(files[0], data, 0o600), "corrupt")
	must(t, os.Remove(files[1]), "remove")

	_, problems, err := Verify(ctx, dir)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("Verify: %v, want ErrDamaged", err)
	}
	joined := strings.Join(problems, "\n")
	if !strings.Contains(joined, filepath.Base(files[0])+": checksum") || !strings.Contains(joined, filepath.Base(files[1])+": body") {
		t.Errorf("problems do not name the changed and the missing file:\n%s", joined)
	}
	if _, err := Restore(ctx, dir, openSQLite(t, t.TempDir()), Options{}); !errors.Is(err, ErrDamaged) {
		t.Errorf("Restore of a damaged backup: %v", err)
	}
}

// TestRestoreRefusesNonEmpty: a target with a user of its own is left
// alone.
func TestRestoreRefusesNonEmpty(t *testing.T) {
	for name, open := range sources(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			src := openSQLite(t, t.TempDir())
			populate(t, src)
			dir := filepath.Join(t.TempDir(), "backup")
			_, err := Backup(ctx, src, dir, Options{})
			must(t, err, "Backup")
			dst := open(t)
			_, err = dst.AddUser(ctx, store.User{Address: "mine@example.net", Enabled: true})
			must(t, err, "AddUser")
			if _, err := Restore(ctx, dir, dst, Options{}); !errors.Is(err, ErrNotEmpty) {
				t.Fatalf("Restore into a store with a user: %v, want ErrNotEmpty", err)
			}
			if us, _ := dst.ListUsers(ctx); len(us) != 1 {
				t.Errorf("the target has %d users after the refusal", len(us))
			}
		})
	}
}

// TestBackupDuringWrites: a backup taken while messages are delivered
// and deleted (small and big ones) verifies, holds every message that was
// there before it began and was not deleted, and nothing half-written.
func TestBackupDuringWrites(t *testing.T) {
	for name, open := range sources(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			src := open(t)
			u, err := src.AddUser(ctx, store.User{Address: "load@example.com", Enabled: true})
			must(t, err, "AddUser")
			keep, err := src.AddUser(ctx, store.User{Address: "keep@example.com", Enabled: true})
			must(t, err, "AddUser")
			before := map[string]string{}
			for i := range 40 {
				body := fmt.Sprintf("Subject: %d\r\n\r\nbefore\r\n", i)
				if i%4 == 0 {
					body = bigBody(i)
				}
				uids, err := src.Deliver(ctx, strings.NewReader(body), []store.Delivery{{UserID: u.ID}, {UserID: keep.ID}})
				must(t, err, "Deliver")
				before[fmt.Sprintf("%s %d", maildrop.UIDL(keep.UIDValidity, uids[1]), len(body))] = body
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load(); i++ {
					body := fmt.Sprintf("Subject: during %d\r\n\r\nduring\r\n", i)
					if i%3 == 0 {
						body = bigBody(i)
					}
					if _, err := src.Deliver(ctx, strings.NewReader(body), []store.Delivery{{UserID: u.ID}}); err != nil {
						t.Error(err)
						return
					}
					l, err := src.List(ctx, u.ID, 0)
					if err != nil || len(l) < 2 {
						continue
					}
					if err := src.Delete(ctx, u.ID, []uint64{l[0].UID, l[1].UID}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			dir := filepath.Join(t.TempDir(), "backup")
			_, err = Backup(ctx, src, dir, Options{})
			stop.Store(true)
			wg.Wait()
			must(t, err, "Backup")
			if _, problems, err := Verify(ctx, dir); err != nil {
				t.Fatalf("Verify: %v %q", err, problems)
			}
			dst := openSQLite(t, t.TempDir())
			_, err = Restore(ctx, dir, dst, Options{})
			must(t, err, "Restore")
			got := mailboxes(t, dst)
			for uidl, body := range before {
				if got["keep@example.com"][uidl] != body {
					t.Errorf("keep@example.com %s: missing or different in the restored store", uidl)
				}
			}
			for uidl, body := range got["load@example.com"] {
				if !strings.HasPrefix(body, "Subject: ") || !strings.HasSuffix(body, "\r\n") {
					t.Errorf("load@example.com %s: %q", uidl, body[:min(len(body), 40)])
				}
			}
		})
	}
}

// TestExportMaildir: the maildir of each user has every message as
// stored in cur, and a dovecot-uidlist whose UID validity, UIDs and P
// (POP3 UIDL) fields are the store's, naming those files.
func TestExportMaildir(t *testing.T) {
	ctx := t.Context()
	src := openSQLite(t, t.TempDir())
	populate(t, src)
	dir := t.TempDir()
	es, err := ExportMaildir(ctx, src, dir, "", "mail.example.com")
	must(t, err, "ExportMaildir")
	if es.Users != 2 || es.Messages != 12 {
		t.Errorf("exported %+v", es)
	}
	want := mailboxes(t, src)
	for addr, msgs := range want {
		local, domain, _ := strings.Cut(addr, "@")
		root := filepath.Join(dir, domain, local)
		u, err := src.UserByAddress(ctx, addr)
		must(t, err, "UserByAddress")
		next, _ := src.NextUID(ctx, u.ID)
		got := readUIDList(t, root, u.UIDValidity, next)
		if len(got) != len(msgs) {
			t.Errorf("%s: uidlist has %d messages, want %d", addr, len(got), len(msgs))
		}
		for uidl, body := range msgs {
			if got[uidl] != body {
				t.Errorf("%s: message %s missing or different in the maildir", addr, uidl)
			}
		}
		for _, sub := range []string{"new", "tmp"} {
			if es, err := os.ReadDir(filepath.Join(root, sub)); err != nil || len(es) != 0 {
				t.Errorf("%s/%s: %v %v", root, sub, es, err)
			}
		}
	}
	// Again into the same directory: refused, nothing overwritten.
	if _, err := ExportMaildir(ctx, src, dir, "ann@example.com", "h"); err == nil {
		t.Error("a second export into the same maildir was not refused")
	}
}

// readUIDList parses root/dovecot-uidlist (version 3) and returns the
// messages by their P field, read from the files it names in cur.
func readUIDList(t *testing.T, root string, validity uint32, next uint64) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "dovecot-uidlist"))
	must(t, err, "open dovecot-uidlist")
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatal("empty dovecot-uidlist")
	}
	head := strings.Fields(sc.Text())
	if len(head) < 4 || head[0] != "3" || head[1] != fmt.Sprintf("V%d", validity) || head[2] != fmt.Sprintf("N%d", next) || !strings.HasPrefix(head[3], "G") {
		t.Errorf("header %q, want 3 V%d N%d G...", sc.Text(), validity, next)
	}
	out := map[string]string{}
	var lastUID uint64
	for sc.Scan() {
		fields, name, ok := strings.Cut(sc.Text(), " :")
		if !ok {
			t.Fatalf("line without a file name: %q", sc.Text())
		}
		var uid uint64
		var uidl, vsize string
		for i, f := range strings.Fields(fields) {
			if i == 0 {
				fmt.Sscan(f, &uid)
			} else if strings.HasPrefix(f, "P") {
				uidl = f[1:]
			} else if strings.HasPrefix(f, "W") {
				vsize = f[1:]
			}
		}
		if uid <= lastUID || uid >= next {
			t.Errorf("UID %d after %d, next %d", uid, lastUID, next)
		}
		lastUID = uid
		if !strings.Contains(name, ",W="+vsize) {
			t.Errorf("%s: W%s in the uidlist, another W= in the name", name, vsize)
		}
		matches, _ := filepath.Glob(filepath.Join(root, "cur", name+":2,*"))
		if len(matches) != 1 {
			t.Fatalf("%s: %d files in cur", name, len(matches))
		}
		data, err := os.ReadFile(matches[0])
		must(t, err, "read message")
		if !strings.Contains(name, fmt.Sprintf(",S=%d,", len(data))) {
			t.Errorf("%s: S= is not the file's size %d", name, len(data))
		}
		// Keyed as mailboxes keys: the UIDL and the LIST size POP3 shows.
		out[uidl+" "+vsize] = string(data)
	}
	return out
}

// TestCopyAgain: an embedded store's copy that lost a message file to a
// deletion (sqlite.ErrBodyGone) is made again into an emptied directory,
// at most backupAttempts times; any other error ends it at once.
func TestCopyAgain(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	var said []string
	o := Options{Progress: func(format string, args ...any) { said = append(said, fmt.Sprintf(format, args...)) }}
	calls := 0
	gone := func(fail int) func() error {
		return func() error {
			calls++
			if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("attempt %d: %s left from the attempt before (%v)", calls, dir, err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(dir, "part"), []byte("half a copy"), 0o600); err != nil {
				return err
			}
			if calls <= fail {
				return fmt.Errorf("backup: message file x: %w", sqlite.ErrBodyGone)
			}
			return nil
		}
	}
	if err := copyAgain(gone(2), dir, o); err != nil || calls != 3 || len(said) != 2 {
		t.Errorf("two lost files: %v after %d attempts, said %q; want success at the third, said twice", err, calls, said)
	}

	os.RemoveAll(dir)
	calls = 0
	if err := copyAgain(gone(100), dir, o); !errors.Is(err, sqlite.ErrBodyGone) || calls != backupAttempts {
		t.Errorf("always lost: %v after %d attempts, want ErrBodyGone after %d", err, calls, backupAttempts)
	}

	calls = 0
	other := errors.New("disk full")
	if err := copyAgain(func() error { calls++; return other }, dir, o); err != other || calls != 1 {
		t.Errorf("another error: %v after %d attempts, want it after 1", err, calls)
	}
}
