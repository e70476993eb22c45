// Package sqlite is the embedded default backend of postoffice: the
// directory and the message index in one SQLite database (WAL mode), and
// message bodies in files next to it, one file per delivered message however
// many recipients it has.
//
// Several processes may open the same data directory at once (postoffice
// serve and any number of postoffice deliver): SQLite's file locks order
// their writes. Maildrop locks are held in memory, so only one process
// should serve POP3 from a data directory.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver

	"github.com/postoffice-mail/postoffice/internal/store"
)

const (
	dbName   = "postoffice.db"
	blobsDir = "blobs"

	// busyTimeout is how long a writer waits for another process's write
	// transaction; a deliver holding the lock takes milliseconds.
	busyTimeout = 10 * time.Second

	// orphanGrace protects blobs a Deliver in another process has written
	// but not yet committed: only older unreferenced blobs are orphans.
	orphanGrace = time.Hour
)

// Store is the SQLite backend; it implements store.Store.
type Store struct {
	// w is the only connection that writes: serializing writers in
	// process is cheaper than letting them collide in SQLite, where a
	// loser sleeps in busy_timeout. Its transactions start with BEGIN
	// IMMEDIATE, so that a transaction which reads and then writes never
	// fails to upgrade its lock when another process wrote meanwhile.
	w *sql.DB
	// r is a pool of connections for reads, which WAL lets run alongside
	// the writer. Both reuse prepared statements (stmtcache.go).
	r     *sql.DB
	blobs blobStore
	locks lockTable
	// group batches small concurrent writes (groupcommit.go).
	group groupCommit

	ckpt *checkpointer

	stopSweep context.CancelFunc
	sweepDone chan struct{}

	log *slog.Logger
}

// Options are the settings of Open that have defaults.
type Options struct {
	// Logger receives the background work's problems (message files
	// that could not be removed, checkpoints); slog.Default() if nil.
	Logger *slog.Logger
}

var _ store.Store = (*Store)(nil)

// Open opens the data directory dataDir, creating it (mode 0700) and the
// database if absent and migrating the schema to the current version. It
// starts removing orphaned message files in the background.
func Open(dataDir string) (*Store, error) {
	return OpenWith(dataDir, Options{})
}

// OpenWith is Open with options.
func OpenWith(dataDir string, opts Options) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if strings.ContainsRune(dataDir, '?') {
		// The driver would take what follows for connection parameters.
		return nil, fmt.Errorf("data directory %q: '?' not supported in the path", dataDir)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	blobs, err := newFileBlobs(filepath.Join(dataDir, blobsDir))
	if err != nil {
		return nil, fmt.Errorf("opening message files: %w", err)
	}
	path := filepath.Join(dataDir, dbName)
	if err := privateFiles(path, log); err != nil {
		return nil, err
	}
	params := fmt.Sprintf("_busy_timeout=%d&_foreign_keys=1", busyTimeout.Milliseconds())

	// synchronous=FULL: a commit is durable when it returns (in WAL mode
	// NORMAL could lose the last commits on power failure). temp_store in
	// memory: the savepoints of group commit keep the pages they change in
	// a statement journal, a temporary file otherwise (one write per page
	// freed by a deletion). auto_vacuum=INCREMENTAL, which takes effect
	// when the database is created (an older one keeps its mode until a
	// VACUUM): its pointer map tells a deletion where an inline body's
	// next overflow page is, so QUIT frees the pages of the bodies it
	// deletes without reading them (BenchmarkDelete; more so where the
	// pages are not cached), and PRAGMA incremental_vacuum can give freed
	// pages back to the file system.
	// The checkpoints are the checkpointer's (checkpoint.go).
	w := openDB(path + "?" + params + "&_pragma=auto_vacuum(2)&_journal_mode=WAL&_synchronous=FULL&_txlock=immediate&_pragma=temp_store(2)" +
		fmt.Sprintf("&_pragma=wal_autocheckpoint(%d)", writerAutocheckpoint))
	w.SetMaxOpenConns(1)
	r := openDB(path + "?" + params + "&_query_only=1")
	r.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	// Keep them all: database/sql would close all but 2 idle ones, and a
	// new connection opens the database again and prepares its
	// statements again (stmtcache.go).
	r.SetMaxIdleConns(max(4, runtime.GOMAXPROCS(0)))

	s := &Store{w: w, r: r, blobs: blobs, sweepDone: make(chan struct{}), log: log}
	if err := s.migrate(context.Background()); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.ckpt, err = startCheckpointer(path+"?"+params+"&_synchronous=FULL", log); err != nil {
		w.Close()
		r.Close()
		return nil, err
	}

	// The sweep reads every blob's directory entry: in the background, so
	// that a short-lived postoffice deliver does not wait for it.
	ctx, cancel := context.WithCancel(context.Background())
	s.stopSweep = cancel
	go func() {
		defer close(s.sweepDone)
		n, err := s.removeOrphans(ctx, orphanGrace)
		if err != nil && ctx.Err() == nil {
			log.Warn("removing orphaned message files", "dir", dataDir, "err", err)
		}
		if n > 0 {
			log.Info("removed orphaned message files", "dir", dataDir, "count", n)
		}
	}()
	return s, nil
}

// privateFiles creates the database file owner-only (0600) if it does not
// exist yet, whatever the umask: SQLite would create it 0644 less the
// umask, and gives its -wal and -shm files the database file's mode. An
// existing database, -wal or -shm file that others may read (made by an
// older version) is made owner-only too: it holds the password hashes,
// the admins and the journal.
func privateFiles(path string, log *slog.Logger) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Chmod(0o600); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	case !errors.Is(err, os.ErrExist):
		return fmt.Errorf("creating the database: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		if err := os.Chmod(p, fi.Mode().Perm()&0o700); err != nil {
			// Not the owner (a command run as another user): the
			// owner's next start fixes it.
			log.Warn("database file readable by others", "file", p, "mode", fi.Mode().Perm().String(), "err", err)
		}
	}
	return nil
}

// Close stops the background work and closes the database.
func (s *Store) Close() error {
	s.stopSweep()
	<-s.sweepDone
	// The writer first: the last checkpoint then finds no transaction in
	// progress.
	werr := s.w.Close()
	return errors.Join(werr, s.ckpt.Close(), s.r.Close())
}

// removeOrphans removes blobs that no row references and that were written
// longer than grace ago: those a crash left between writing a blob and
// committing the delivery or enqueueing, or between committing a deletion
// and removing the file. A blobs row lives as long as any messages or queue
// row references it (see dropUnreferenced), so it alone says whether a blob
// is referenced.
func (s *Store) removeOrphans(ctx context.Context, grace time.Duration) (int, error) {
	cutoff := time.Now().Add(-grace)
	n := 0
	err := s.blobs.Walk(ctx, func(id string, written time.Time) error {
		if written.After(cutoff) {
			return nil
		}
		var one int
		err := s.r.QueryRowContext(ctx, `SELECT 1 FROM blobs WHERE id = ?`, id).Scan(&one)
		if !errors.Is(err, sql.ErrNoRows) {
			return err // referenced, or the query failed
		}
		if err := s.blobs.Remove(id); err != nil {
			return err
		}
		n++
		return nil
	})
	return n, err
}

// migrate brings the schema to len(migrations), each step in its own
// transaction recorded in PRAGMA user_version. Processes that open the
// database at once serialize on BEGIN IMMEDIATE, and each re-reads the
// version inside its transaction.
func (s *Store) migrate(ctx context.Context) error {
	for {
		done, err := s.migrateOne(ctx)
		if err != nil || done {
			return err
		}
	}
}

func (s *Store) migrateOne(ctx context.Context) (done bool, err error) {
	err = s.write(ctx, func(tx *sql.Tx) error {
		var v int
		if err := tx.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v); err != nil {
			return err
		}
		switch {
		case v > len(migrations):
			return fmt.Errorf("schema version %d is newer than this program knows (%d)", v, len(migrations))
		case v == len(migrations):
			done = true
			return nil
		}
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrating schema to version %d: %w", v+1, err)
		}
		// PRAGMA takes no bound parameters; v is an int.
		_, err := tx.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v+1))
		return err
	})
	return done, err
}

// write runs fn in a write transaction and commits it (which is durable
// when it returns, synchronous=FULL).
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// notFound turns sql.ErrNoRows into store.ErrNotFound about what.
func notFound(err error, format string, args ...any) error {
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), store.ErrNotFound)
	}
	return err
}

func unixTime(sec int64) time.Time { return time.Unix(sec, 0).UTC() }

// lockTable holds the maildrop locks of this process: they die with it.
type lockTable struct {
	mu   sync.Mutex
	held map[int64]*lockHolder
}

type lockHolder struct {
	s      *Store
	userID int64
	holder string
}

func (s *Store) lock(userID int64, holder string) (store.MaildropLock, error) {
	t := &s.locks
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.held[userID]; ok {
		return nil, fmt.Errorf("%w (held by %s)", store.ErrLocked, h.holder)
	}
	if t.held == nil {
		t.held = make(map[int64]*lockHolder)
	}
	h := &lockHolder{s: s, userID: userID, holder: holder}
	t.held[userID] = h
	return h, nil
}

// Err implements store.MaildropLock: a lock in memory is lost only by
// Unlock.
func (h *lockHolder) Err() error {
	h.s.locks.mu.Lock()
	defer h.s.locks.mu.Unlock()
	if h.s.locks.held[h.userID] != h {
		return fmt.Errorf("user %d: %w (released)", h.userID, store.ErrLockLost)
	}
	return nil
}

// Delete implements store.MaildropLock. Only Unlock, called by the
// session holding h, ends the lock, so the check before the transaction
// holds for the whole of it.
func (h *lockHolder) Delete(ctx context.Context, uids []uint64) error {
	if err := h.Err(); err != nil {
		return err
	}
	return h.s.Delete(ctx, h.userID, uids)
}

// Unlock releases the lock if h still holds it: a second call must not
// release the lock of a session that took it since.
func (h *lockHolder) Unlock() {
	t := &h.s.locks
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held[h.userID] == h {
		delete(t.held, h.userID)
	}
}

// Exists reports whether dataDir holds a store (its database file),
// without creating anything.
func Exists(dataDir string) (bool, error) {
	_, err := os.Stat(filepath.Join(dataDir, dbName))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	}
	return false, err
}
