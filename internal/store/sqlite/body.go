package sqlite

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"io"
	"sync"
)

// InlineMax is the size of the largest body kept inside the database, in
// its blobs row, rather than in a file of its own. Most mail is a few
// kilobytes to a few tens of kilobytes, and for such bodies the database
// is the cheaper place on every path:
//
//   - delivery: the body becomes durable with the commit's one WAL fsync,
//     which group commit shares between concurrent deliveries, instead of
//     a file create, a write, two fsyncs (file and directory) and a rename
//     per message;
//   - retrieval: one indexed read returns the header and the body, instead
//     of a lookup followed by an open, a read and a close;
//   - deletion: the rows go in the deleting transaction, with no unlink.
//
// SQLite's own measurements ("Internal Versus External BLOBs") find reads
// of blobs below about 100 KB faster from the database than from files;
// through this driver a 20 KiB read costs about what a file read does
// (BenchmarkOpen), while delivery and deletion are far cheaper. Larger
// bodies go to files, so that a big attachment is streamed rather than
// held in memory and does not bloat the WAL.
const InlineMax = 64 << 10

// storedBody is a message body made durable by putBody and waiting for the
// transaction that references it: inline (data holds it, to be written by
// insert in that transaction) or in a durable file.
type storedBody struct {
	id   string
	size int64
	data []byte // the body when inline; nil when it is in a file
}

// inlineBufs recycles the buffers inline bodies pass through (InlineMax+1
// bytes each): putBody reads a new body into one, Open an inline body.
var inlineBufs = sync.Pool{New: func() any { b := make([]byte, InlineMax+1); return &b }}

// putBody reads r to its end. A body of at most InlineMax octets is kept
// in memory for insert; a larger one goes to a new durable file.
func (s *Store) putBody(ctx context.Context, r io.Reader) (storedBody, error) {
	bp := inlineBufs.Get().(*[]byte)
	defer inlineBufs.Put(bp)
	buf := *bp
	n, err := io.ReadFull(ctxReader{ctx, r}, buf)
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		// Non-nil even when empty: a nil slice would be bound as NULL.
		return storedBody{id: newBlobID(), size: int64(n), data: append(make([]byte, 0, n), buf[:n]...)}, nil
	case err != nil:
		return storedBody{}, err
	}
	id, size, err := s.blobs.Put(ctx, io.MultiReader(bytes.NewReader(buf), r))
	if err != nil {
		return storedBody{}, err
	}
	return storedBody{id: id, size: size}, nil
}

// insert adds the body's blobs row in tx (with the body itself if inline).
func (b storedBody) insert(ctx context.Context, tx *sql.Tx, now int64) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO blobs (id, size, created_at, data) VALUES (?, ?, ?, ?)`, b.id, b.size, now, b.data)
	return err
}

// discard cleans up after a transaction that was to reference b failed.
func (s *Store) discard(b storedBody) {
	if b.data == nil {
		s.removeIfUnreferenced(b.id)
	}
}

// openBlob returns the content of the blob id: data when inline, else its
// file (an error wrapping fs.ErrNotExist if there is none).
func (s *Store) openBlob(id string, inFile bool, data []byte) (io.ReadCloser, error) {
	if !inFile {
		return io.NopCloser(bytes.NewReader(data)), nil
	}
	return s.blobs.Open(id)
}

// newBlobID returns a new random blob id, of the form validID accepts.
func newBlobID() string {
	raw := make([]byte, idLen/2)
	_, _ = rand.Read(raw) // never fails since Go 1.24
	return hex.EncodeToString(raw)
}
