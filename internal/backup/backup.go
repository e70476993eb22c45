// Package backup takes consistent backups of a store of either backend
// while postoffice serves from it, checks them, restores them into an
// empty store, and exports mailboxes as standard maildirs.
//
// A backup is a directory:
//
//	DIR/manifest.json  what the backup holds: counts, and the size and
//	                   SHA-256 of every message body and queued message
//	DIR/store/         a data directory of the embedded (SQLite) backend
//
// The store is the source as it was at one instant: the embedded backend
// copies its database with VACUUM INTO and exactly the message files that
// copy refers to (sqlite.Store.Backup); PostgreSQL is read in one
// REPEATABLE READ transaction (postgres.Store.Snapshot) and written into
// the embedded backend by internal/migrate, which restore uses too, in the
// other direction: one way to copy each thing.
package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/postoffice-mail/postoffice/internal/atomicfile"
	"github.com/postoffice-mail/postoffice/internal/migrate"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// Names inside a backup directory.
const (
	ManifestName = "manifest.json"
	StoreDir     = "store"
)

// Format is the version of the manifest this package writes.
const Format = 1

// Manifest describes a backup.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// Source is the backend the backup was taken of: "sqlite" or
	// "postgres".
	Source string         `json:"source"`
	Counts migrate.Counts `json:"counts"`
	// Bodies are the message bodies by their key in the backup's store.
	Bodies []Sum `json:"bodies"`
	// Queue are the queued messages by their ID.
	Queue []Sum `json:"queue"`
}

// Sum is the size and SHA-256 of one body.
type Sum struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Options tune Backup and Restore.
type Options struct {
	// Progress, if set, receives a line now and then.
	Progress func(format string, args ...any)
}

// backupAttempts bounds the attempts of an embedded store's copy.
const backupAttempts = 5

func (o Options) progress(format string, args ...any) {
	if o.Progress != nil {
		o.Progress(format, args...)
	}
}

// copyAgain runs run, the copy of an embedded store into dir, until it
// succeeds, fails otherwise than with sqlite.ErrBodyGone, or has failed
// backupAttempts times. A message delivered after the files were linked
// and deleted before they were copied leaves its file out of reach: the
// attempt fails whole and is made again, into an emptied directory; under
// load the window is short.
func copyAgain(run func() error, dir string, o Options) error {
	for attempt := 1; ; attempt++ {
		err := run()
		if err == nil {
			return nil
		}
		if !errors.Is(err, sqlite.ErrBodyGone) || attempt == backupAttempts {
			return err
		}
		o.progress("a message file went away during the copy: again")
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
}

// Backup writes a backup of src into dir, which must not exist or be
// empty; src is a *sqlite.Store or a *postgres.Store, and may be in use
// by other processes (postoffice serve) meanwhile. On an error, dir holds
// no manifest: what it holds is not a backup.
func Backup(ctx context.Context, src store.Store, dir string, o Options) (Manifest, error) {
	if err := atomicfile.EmptyDir(dir); err != nil {
		return Manifest{}, fmt.Errorf("%w (a backup goes into a new directory)", err)
	}
	m := Manifest{Format: Format, Created: time.Now().UTC()}
	storeDir := filepath.Join(dir, StoreDir)
	var want *migrate.Counts
	switch s := src.(type) {
	case *sqlite.Store:
		m.Source = "sqlite"
		o.progress("copying the database and its message files")
		if err := copyAgain(func() error { return s.Backup(ctx, storeDir) }, storeDir, o); err != nil {
			return m, err
		}
	case *postgres.Store:
		m.Source = "postgres"
		view, err := s.Snapshot(ctx)
		if err != nil {
			return m, fmt.Errorf("backup: starting the snapshot: %w", err)
		}
		defer view.Close()
		dst, err := sqlite.Open(storeDir)
		if err != nil {
			return m, err
		}
		_, err = migrate.Copy(ctx, view, dst, migrate.Options{Progress: o.Progress})
		if cerr := dst.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return m, fmt.Errorf("backup: %w", err)
		}
		c, err := migrate.Count(ctx, view)
		if err != nil {
			return m, fmt.Errorf("backup: counting the snapshot: %w", err)
		}
		want = &c
	default:
		return m, fmt.Errorf("backup: the %T backend cannot be backed up", src)
	}

	o.progress("computing checksums")
	bk, err := sqlite.Open(storeDir)
	if err != nil {
		return m, err
	}
	defer bk.Close()
	if m.Counts, err = migrate.Count(ctx, bk); err != nil {
		return m, err
	}
	if want != nil && *want != m.Counts {
		return m, fmt.Errorf("backup: the copy holds %+v, the snapshot %+v", m.Counts, *want)
	}
	if m.Bodies, err = bodySums(ctx, bk, nil); err != nil {
		return m, err
	}
	if m.Queue, err = queueSums(ctx, bk, nil); err != nil {
		return m, err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	if err := atomicfile.Write(filepath.Join(dir, ManifestName), append(data, '\n'), 0o600); err != nil {
		return m, err
	}
	return m, nil
}

// bodySums hashes every body of st that has mailbox copies; a body that
// cannot be read is passed to bad (or fails the call when bad is nil).
func bodySums(ctx context.Context, st *sqlite.Store, bad func(key string, err error)) ([]Sum, error) {
	var out []Sum
	after := ""
	for {
		page, err := st.ExportBodies(ctx, after, 500)
		if err != nil {
			return nil, err
		}
		if len(page) == 0 {
			return out, nil
		}
		for _, b := range page {
			s, err := sum(b.Key, func() (io.ReadCloser, error) { return st.OpenBody(ctx, b.Key) })
			if err != nil {
				if bad == nil {
					return nil, fmt.Errorf("body %s: %w", b.Key, err)
				}
				bad(b.Key, err)
				continue
			}
			out = append(out, s)
		}
		after = page[len(page)-1].Key
	}
}

// queueSums hashes every queued message of st, like bodySums.
func queueSums(ctx context.Context, st *sqlite.Store, bad func(key string, err error)) ([]Sum, error) {
	q, err := st.ListQueue(ctx)
	if err != nil {
		return nil, err
	}
	var out []Sum
	for _, m := range q {
		key := fmt.Sprint(m.ID)
		s, err := sum(key, func() (io.ReadCloser, error) { return st.OpenQueued(ctx, m.ID) })
		if err != nil {
			if bad == nil {
				return nil, fmt.Errorf("queued message %s: %w", key, err)
			}
			bad(key, err)
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

func sum(key string, open func() (io.ReadCloser, error)) (Sum, error) {
	r, err := open()
	if err != nil {
		return Sum{}, err
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Sum{}, err
	}
	return Sum{Key: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

// ReadManifest reads the manifest of the backup in dir.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if errors.Is(err, fs.ErrNotExist) {
		return m, fmt.Errorf("%s is not a backup (no %s: the backup did not finish, or this is another directory)", dir, ManifestName)
	}
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestName), err)
	}
	if m.Format != Format {
		return m, fmt.Errorf("%s: format %d, this version reads %d", filepath.Join(dir, ManifestName), m.Format, Format)
	}
	return m, nil
}

// ErrDamaged: a backup does not hold what its manifest says.
var ErrDamaged = errors.New("the backup is damaged")

// Verify checks the backup in dir: the manifest reads, the database opens,
// every body and queued message is there with its size and checksum and
// there is none besides, and the counts are those of the manifest. It
// returns the problems found (with an error wrapping ErrDamaged if any).
func Verify(ctx context.Context, dir string) (Manifest, []string, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return m, nil, err
	}
	bk, err := openBackupStore(dir)
	if err != nil {
		return m, []string{err.Error()}, fmt.Errorf("%w: %v", ErrDamaged, err)
	}
	defer bk.Close()
	var problems []string
	bad := func(what string) func(string, error) {
		return func(key string, err error) { problems = append(problems, fmt.Sprintf("%s %s: %v", what, key, err)) }
	}
	bodies, err := bodySums(ctx, bk, bad("body"))
	if err != nil {
		return m, problems, err
	}
	problems = append(problems, compareSums("body", m.Bodies, bodies)...)
	queue, err := queueSums(ctx, bk, bad("queued message"))
	if err != nil {
		return m, problems, err
	}
	problems = append(problems, compareSums("queued message", m.Queue, queue)...)
	c, err := migrate.Count(ctx, bk)
	if err != nil {
		problems = append(problems, "counting: "+err.Error())
	} else if c != m.Counts {
		problems = append(problems, fmt.Sprintf("the store holds %+v, the manifest says %+v", c, m.Counts))
	}
	if len(problems) > 0 {
		return m, problems, fmt.Errorf("%s: %w: %d problems", dir, ErrDamaged, len(problems))
	}
	return m, nil, nil
}

// compareSums lists the differences between what the manifest says and
// what was read (bodies that could not be read at all are not in got and
// were reported already).
func compareSums(what string, want, got []Sum) []string {
	have := make(map[string]Sum, len(got))
	for _, s := range got {
		have[s.Key] = s
	}
	var out []string
	seen := make(map[string]bool, len(want))
	for _, w := range want {
		seen[w.Key] = true
		g, ok := have[w.Key]
		switch {
		case !ok:
			continue
		case g.Size != w.Size:
			out = append(out, fmt.Sprintf("%s %s: %d octets, the manifest says %d", what, w.Key, g.Size, w.Size))
		case g.SHA256 != w.SHA256:
			out = append(out, fmt.Sprintf("%s %s: checksum %s, the manifest says %s", what, w.Key, g.SHA256, w.SHA256))
		}
	}
	for _, g := range got {
		if !seen[g.Key] {
			out = append(out, fmt.Sprintf("%s %s: not in the manifest", what, g.Key))
		}
	}
	return out
}

// openBackupStore opens the store of a backup, which must be there (Open
// would create an empty one).
func openBackupStore(dir string) (*sqlite.Store, error) {
	storeDir := filepath.Join(dir, StoreDir)
	ok, err := sqlite.Exists(storeDir)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no database in %s", storeDir)
	}
	return sqlite.Open(storeDir)
}

// ErrNotEmpty: restore's target holds data already.
var ErrNotEmpty = errors.New("the target store is not empty")

// Restore verifies the backup in dir and copies it into target, which
// must be empty (ErrNotEmpty otherwise); at the end the target's counts
// must be the manifest's.
func Restore(ctx context.Context, dir string, target migrate.Store, o Options) (migrate.Stats, error) {
	o.progress("verifying the backup")
	m, problems, err := Verify(ctx, dir)
	if err != nil {
		for _, p := range problems {
			o.progress("%s", p)
		}
		return migrate.Stats{}, err
	}
	c, err := migrate.Count(ctx, target)
	if err != nil {
		return migrate.Stats{}, err
	}
	if c != (migrate.Counts{}) {
		return migrate.Stats{}, fmt.Errorf("%w: it holds %d domains, %d users, %d aliases, %d messages, %d queued messages, %d journal entries: restore only into a new data directory or an empty database",
			ErrNotEmpty, c.Domains, c.Users, c.Aliases, c.Messages, c.Queue, c.Journal)
	}
	bk, err := openBackupStore(dir)
	if err != nil {
		return migrate.Stats{}, err
	}
	defer bk.Close()
	st, err := migrate.Copy(ctx, bk, target, migrate.Options{Progress: o.Progress})
	if err != nil {
		return st, err
	}
	if c, err = migrate.Count(ctx, target); err != nil {
		return st, err
	}
	if c != m.Counts {
		return st, fmt.Errorf("restore: the target holds %+v, the backup %+v", c, m.Counts)
	}
	return st, nil
}
