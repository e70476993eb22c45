package sqlite

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/postoffice-mail/postoffice/internal/atomicfile"
)

// blobStore keeps message bodies, apart from the database that refers to
// them. Put must be durable when it returns, so that a transaction that
// references the blob can commit right after.
type blobStore interface {
	// Put stores r's bytes under a new id and returns the id and size.
	Put(ctx context.Context, r io.Reader) (id string, size int64, err error)
	// Open reads a blob; an error wrapping fs.ErrNotExist if there is none.
	Open(id string) (io.ReadCloser, error)
	// Remove deletes a blob; removing a missing blob is not an error.
	Remove(id string) error
	// Walk calls fn with every stored blob and when it was written.
	Walk(ctx context.Context, fn func(id string, written time.Time) error) error
}

// fileBlobs stores each blob in its own file, dir/ab/<id> where ab is the
// first two hex digits of the id, so that a million messages make 256
// directories of about 4000 entries rather than one huge directory.
type fileBlobs struct {
	dir string
}

const (
	idLen    = 32 // hex digits of 16 random bytes
	tmpDir   = "tmp"
	tmpGrace = time.Hour
)

// newFileBlobs prepares dir (its 256 fan-out directories are created up
// front, so that Put never has to make a directory entry durable twice) and
// removes temporary files that a crashed Put left behind.
func newFileBlobs(dir string) (*fileBlobs, error) {
	created := false
	mk := func(p string) error {
		err := os.Mkdir(p, 0o700)
		if err == nil {
			created = true
		} else if errors.Is(err, fs.ErrExist) {
			err = nil
		}
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := mk(filepath.Join(dir, tmpDir)); err != nil {
		return nil, err
	}
	for i := range 256 {
		if err := mk(filepath.Join(dir, fmt.Sprintf("%02x", i))); err != nil {
			return nil, err
		}
	}
	if created {
		if err := atomicfile.Sync(dir); err != nil {
			return nil, err
		}
	}
	b := &fileBlobs{dir: dir}
	if err := b.removeStaleTemp(time.Now().Add(-tmpGrace)); err != nil {
		return nil, err
	}
	return b, nil
}

// removeStaleTemp removes temporary files not written since before: a Put
// in another process may still be writing the newer ones.
func (b *fileBlobs) removeStaleTemp(before time.Time) error {
	entries, err := os.ReadDir(filepath.Join(b.dir, tmpDir))
	if err != nil {
		return err
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || info.ModTime().After(before) {
			continue // vanished meanwhile, or maybe still in use
		}
		if err := os.Remove(filepath.Join(b.dir, tmpDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

func (b *fileBlobs) path(id string) (string, error) {
	if !validID(id) {
		// Never build a path from a malformed id read from the database.
		return "", fmt.Errorf("invalid blob id %q", id)
	}
	return filepath.Join(b.dir, id[:2], id), nil
}

// validID reports whether id is what Put makes: idLen lower-case hex digits.
func validID(id string) bool {
	if len(id) != idLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Put writes to a temporary file, syncs it, renames it into place and syncs
// the directory: once Put returns, the blob survives a crash.
func (b *fileBlobs) Put(ctx context.Context, r io.Reader) (id string, size int64, err error) {
	id = newBlobID()
	final, _ := b.path(id)

	f, err := os.CreateTemp(filepath.Join(b.dir, tmpDir), "put-*")
	if err != nil {
		return "", 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if size, err = io.Copy(f, ctxReader{ctx, r}); err != nil {
		return "", 0, err
	}
	if err = f.Sync(); err != nil {
		return "", 0, err
	}
	if err = f.Close(); err != nil {
		return "", 0, err
	}
	if err = os.Rename(f.Name(), final); err != nil {
		return "", 0, err
	}
	if err = atomicfile.Sync(filepath.Dir(final)); err != nil {
		os.Remove(final)
		return "", 0, err
	}
	return id, size, nil
}

func (b *fileBlobs) Open(id string) (io.ReadCloser, error) {
	p, err := b.path(id)
	if err != nil {
		return nil, err
	}
	return os.Open(p)
}

// Remove does not sync the directory: should the removal be lost in a
// crash, the blob is an orphan that the next Open of the store removes.
func (b *fileBlobs) Remove(id string) error {
	p, err := b.path(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func (b *fileBlobs) Walk(ctx context.Context, fn func(id string, written time.Time) error) error {
	for i := range 256 {
		if err := ctx.Err(); err != nil {
			return err
		}
		sub := filepath.Join(b.dir, fmt.Sprintf("%02x", i))
		entries, err := os.ReadDir(sub)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if !validID(e.Name()) || e.Name()[:2] != filepath.Base(sub) {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // removed meanwhile
			} else if err != nil {
				return err
			}
			if err := fn(e.Name(), info.ModTime()); err != nil {
				return err
			}
		}
	}
	return nil
}

// ctxReader stops a copy once ctx is done, so that a cancelled delivery of
// a large body does not run to its end.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
