package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/atomicfile"
)

// ErrBodyGone: Backup found a message file that the database of its
// snapshot refers to already removed (see Backup).
var ErrBodyGone = errors.New("a message file of the snapshot was removed meanwhile")

// Backup writes a consistent copy of the store, as it is at one instant,
// into dir, which becomes a data directory of its own (Open opens it):
// the database copied by VACUUM INTO, which reads it in one transaction
// and so copies one snapshot of it (SQLite documentation, "VACUUM INTO"),
// and exactly the message files that snapshot refers to, copied and
// synced. Other processes keep delivering and deleting meanwhile.
//
// A file the snapshot refers to could be removed (its message deleted)
// before it is copied: so every message file is first linked into a
// directory of the data directory's own (.backup-*), which keeps it when
// it is removed from blobs/; the files written after the links were made
// are copied from blobs/. A file written after the links and removed
// before its copy makes Backup fail with ErrBodyGone: running it again
// takes a new snapshot.
//
// dir must not exist, or be empty.
func (s *Store) Backup(ctx context.Context, dir string) error {
	fb, ok := s.blobs.(*fileBlobs)
	if !ok {
		return errors.New("backup: message files are not in a directory")
	}
	if strings.ContainsAny(dir, "?'") {
		return fmt.Errorf("backup directory %q: ' and ? not supported in the path", dir)
	}
	if err := atomicfile.EmptyDir(dir); err != nil {
		return err
	}
	removeStaleLinks(filepath.Dir(fb.dir), time.Now().Add(-staleLinks))
	links, err := os.MkdirTemp(filepath.Dir(fb.dir), ".backup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(links)
	err = fb.Walk(ctx, func(id string, _ time.Time) error {
		err := os.Link(filepath.Join(fb.dir, id[:2], id), filepath.Join(links, id))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile: not in the snapshot either
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("backup: linking message files: %w", err)
	}

	dbPath := filepath.Join(dir, dbName)
	if err := privateFiles(dbPath, s.log); err != nil {
		return err
	}
	if err := os.Remove(dbPath); err != nil { // VACUUM INTO wants no file, or an empty one
		return err
	}
	// A connection of its own: query_only (the readers') forbids VACUUM
	// INTO, and the writer's would hold up deliveries meanwhile. VACUUM
	// INTO only reads the database.
	src := openDB(filepath.Join(filepath.Dir(fb.dir), dbName) + fmt.Sprintf("?_busy_timeout=%d", busyTimeout.Milliseconds()))
	defer src.Close()
	if _, err := src.ExecContext(ctx, `VACUUM INTO ?`, dbPath); err != nil {
		return fmt.Errorf("backup: copying the database: %w", err)
	}
	if err := os.Chmod(dbPath, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Sync(dbPath); err != nil {
		return err
	}
	if backupHook != nil {
		backupHook()
	}

	snap := openDB(dbPath + "?_query_only=1")
	defer snap.Close()
	stx, err := snap.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("backup: reading the copy: %w", err)
	}
	ids, err := queryStrings(ctx, stx, `SELECT id FROM blobs WHERE data IS NULL ORDER BY id`)
	stx.Rollback()
	if err != nil {
		return fmt.Errorf("backup: reading the copy: %w", err)
	}
	out, err := newFileBlobs(filepath.Join(dir, blobsDir))
	if err != nil {
		return err
	}
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !validID(id) {
			return fmt.Errorf("backup: invalid blob id %q in the database", id)
		}
		var f io.ReadCloser
		f, err := os.Open(filepath.Join(links, id))
		if errors.Is(err, fs.ErrNotExist) {
			f, err = fb.Open(id)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("backup: message file %s: %w", id, ErrBodyGone)
		}
		if err != nil {
			return err
		}
		err = copyFile(f, filepath.Join(out.dir, id[:2], id))
		f.Close()
		if err != nil {
			return fmt.Errorf("backup: message file %s: %w", id, err)
		}
	}
	for i := range 256 {
		if err := atomicfile.Sync(filepath.Join(out.dir, fmt.Sprintf("%02x", i))); err != nil {
			return err
		}
	}
	return atomicfile.Sync(dir)
}

// copyFile writes r into a new owner-only file at path and syncs it.
func copyFile(r io.Reader, path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// staleLinks is the age after which a .backup-* directory is taken for
// one that a backup which ended without removing it (killed, crashed)
// left behind: its links would keep deleted messages' space forever.
const staleLinks = 24 * time.Hour

// removeStaleLinks removes the .backup-* directories of dataDir not
// changed since before.
func removeStaleLinks(dataDir string, before time.Time) {
	ms, _ := filepath.Glob(filepath.Join(dataDir, ".backup-*"))
	for _, m := range ms {
		if fi, err := os.Stat(m); err == nil && fi.IsDir() && fi.ModTime().Before(before) {
			os.RemoveAll(m)
		}
	}
}

// backupHook, if set (by tests), runs between the copy of the database
// and that of the message files.
var backupHook func()
