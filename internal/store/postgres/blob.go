package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/jackc/pgx/v5"
)

// A body is a row of blobs (its size and how many copies and queue entries
// refer to it), which the store manages, and its content, which a
// blobStore keeps. The in-database blobStore writes in the caller's
// transaction, so a body exists exactly when the rows referring to it do.
// An object store would write before the transaction and remove after it,
// sweeping what a crash leaves between the two.
type blobStore interface {
	// Put writes r's bytes as the content of the blobs row id, in tx,
	// and returns its size. The reader's error is returned wrapped.
	Put(ctx context.Context, tx pgx.Tx, id int64, r io.Reader) (int64, error)
	// Open reads the content of blob id, of the given size; first is its
	// beginning if the caller fetched it already (nil otherwise).
	Open(ctx context.Context, id, size int64, first []byte) (io.ReadCloser, error)
	// Delete removes the content of blobs whose row goes in tx.
	Delete(ctx context.Context, tx pgx.Tx, ids []int64) error
}

// chunkSize is the size of one blob_chunks row: large enough that a
// typical message is one row (one round trip to read), small enough that
// a large one is never held whole in memory.
const chunkSize = 256 << 10

// dbBlobs keeps content in blob_chunks.
type dbBlobs struct {
	q querier // for reads, outside transactions
}

// querier is what reading a blob needs of the pool.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (dbBlobs) Put(ctx context.Context, tx pgx.Tx, id int64, r io.Reader) (int64, error) {
	buf := make([]byte, chunkSize)
	var size int64
	for seq := 0; ; seq++ {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO blob_chunks (blob_id, seq, data) VALUES ($1, $2, $3)`, id, seq, buf[:n]); err != nil {
				return 0, err
			}
			size += int64(n)
		}
		switch {
		case err == io.EOF || err == io.ErrUnexpectedEOF:
			return size, nil
		case err != nil:
			return 0, fmt.Errorf("reading message body: %w", err)
		}
	}
}

func (b dbBlobs) Open(ctx context.Context, id, size int64, first []byte) (io.ReadCloser, error) {
	return &chunkReader{ctx: ctx, q: b.q, id: id, size: size, buf: first, seq: boolToInt(first != nil)}, nil
}

func (dbBlobs) Delete(ctx context.Context, tx pgx.Tx, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, `DELETE FROM blob_chunks WHERE blob_id = ANY($1)`, ids)
	return err
}

func boolToInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// errBodyGone: the body was removed while being read (its last copy was
// deleted by another session meanwhile).
var errBodyGone = errors.New("message body removed while being read")

// chunkReader reads a blob chunk by chunk, one statement each, outside any
// transaction: a client reading slowly holds no connection. Reading stops
// with an error, never short, if the blob vanishes meanwhile.
type chunkReader struct {
	ctx  context.Context
	q    querier
	id   int64
	size int64 // expected in all
	read int64 // handed out so far
	buf  []byte
	seq  int // next chunk to fetch
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for len(c.buf) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.read >= c.size {
			c.err = io.EOF
			return 0, io.EOF
		}
		var data []byte
		err := c.q.QueryRow(c.ctx, `SELECT data FROM blob_chunks WHERE blob_id = $1 AND seq = $2`, c.id, c.seq).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			err = fmt.Errorf("blob %d chunk %d: %w", c.id, c.seq, errBodyGone)
		}
		if err != nil {
			c.err = err
			return 0, err
		}
		if len(data) == 0 {
			c.err = fmt.Errorf("blob %d chunk %d is empty", c.id, c.seq)
			return 0, c.err
		}
		c.seq++
		c.buf = data
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	c.read += int64(n)
	if c.read > c.size {
		c.err = fmt.Errorf("blob %d longer than its recorded size %d", c.id, c.size)
		return n, c.err
	}
	return n, nil
}

func (c *chunkReader) Close() error {
	c.err = errors.New("read after close")
	c.buf = nil
	return nil
}

// newBlob inserts a blobs row with refs references and writes r as its
// content, in tx.
func (s *Store) newBlob(ctx context.Context, tx pgx.Tx, refs int, r io.Reader) (id, size int64, err error) {
	if err := tx.QueryRow(ctx, `INSERT INTO blobs (size, refs, created_at) VALUES (0, $1, now()) RETURNING id`, refs).Scan(&id); err != nil {
		return 0, 0, err
	}
	size, err = s.blobs.Put(ctx, tx, id, r)
	if err != nil {
		return 0, 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE blobs SET size = $1 WHERE id = $2`, size, id); err != nil {
		return 0, 0, err
	}
	return id, size, nil
}

// releaseBlobs drops references to blobs (blob id -> references gone) in
// tx and removes those left without any. Rows are locked in id order, so
// that two transactions releasing the same blobs never deadlock.
func (s *Store) releaseBlobs(ctx context.Context, tx pgx.Tx, refs map[int64]int) error {
	if len(refs) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(refs))
	for id := range refs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	counts := make([]int32, len(ids))
	for i, id := range ids {
		counts[i] = int32(refs[id])
	}
	if _, err := tx.Exec(ctx, `SELECT 1 FROM blobs WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids); err != nil {
		return err
	}
	rows, err := tx.Query(ctx, `UPDATE blobs b SET refs = b.refs - d.n
		FROM unnest($1::bigint[], $2::integer[]) AS d (id, n)
		WHERE b.id = d.id
		RETURNING b.id, b.refs`, ids, counts)
	if err != nil {
		return err
	}
	var gone []int64
	var id int64
	var left int32
	if _, err := pgx.ForEachRow(rows, []any{&id, &left}, func() error {
		if left == 0 {
			gone = append(gone, id)
		}
		return nil
	}); err != nil {
		return err
	}
	if len(gone) == 0 {
		return nil
	}
	if err := s.blobs.Delete(ctx, tx, gone); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `DELETE FROM blobs WHERE id = ANY($1)`, gone)
	return err
}
