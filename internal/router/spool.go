package router

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"io"
	"os"
	"sync"

	"github.com/postoffice-mail/postoffice/internal/message"
)

// spoolMemory is how much of a message is kept in memory; larger messages
// go to a temporary file so that a big message does not cost its size in
// heap.
const spoolMemory = 1 << 20

// spoolBuffers are the in-memory spools' buffers, reused from one
// message to the next. A message received over SMTP may be spooled three
// times (the checks, the milters, the router), and a buffer grown from
// nothing each time was, with the garbage collector's and the scavenger's
// share, about 8 % of the intake's CPU with the checks and a milter.
var spoolBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledSpool is the largest buffer kept for reuse: the rare bigger
// message does not leave its size held in the pool.
const maxPooledSpool = 256 << 10

type spooled struct {
	buf  *bytes.Buffer // mem's buffer, back to spoolBuffers on Close
	mem  []byte
	file *os.File
	size int64
}

// spool reads r to the end in canonical form (CRLF line endings, final
// CRLF) into memory or, past spoolMemory, a temporary file in dir ("" is
// os.TempDir()).
func spool(r io.Reader, dir string) (*spooled, error) {
	cr := message.CanonicalBuffered(r)
	defer cr.Close() // read to its end, or failed, before spool returns
	buf := spoolBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	n, err := io.CopyN(buf, cr, spoolMemory+1)
	if err == io.EOF {
		return &spooled{buf: buf, mem: buf.Bytes(), size: n}, nil
	}
	defer putSpoolBuffer(buf)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "postoffice-spool-")
	if err != nil {
		return nil, err
	}
	os.Remove(f.Name()) // unlinked: the space is freed however we exit
	w := bufio.NewWriterSize(f, 64*1024)
	if _, err := w.Write(buf.Bytes()); err != nil {
		f.Close()
		return nil, err
	}
	m, err := io.Copy(w, cr)
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &spooled{file: f, size: n + m}, nil
}

func (s *spooled) Open() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.mem)
}

func (s *spooled) Size() int64 { return s.size }

// ReadAt reads the spooled message at off.
func (s *spooled) ReadAt(p []byte, off int64) (int, error) {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size).ReadAt(p, off)
	}
	return bytes.NewReader(s.mem).ReadAt(p, off)
}

// Spooled is a message spooled by Spool: read it as often as needed,
// from the start (Open) or anywhere (ReadAt); Close frees it.
type Spooled interface {
	Body
	io.ReaderAt
	io.Closer
}

// Spool reads r to its end as the router does (canonical form, in
// memory or, past 1 MiB, an unlinked temporary file in dir), for a stage
// before the router that needs the whole message: the checks at the MX
// (DKIM signatures cover the whole message) and the milters' end of
// message. dir is as SpoolDir.
func Spool(r io.Reader, dir string) (Spooled, error) { return spool(r, dir) }

func putSpoolBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledSpool {
		spoolBuffers.Put(b)
	}
}

// Close frees the spool: its file, or its buffer for the next message.
// What Open and ReadAt gave is not to be read after it.
func (s *spooled) Close() error {
	if s.buf != nil {
		putSpoolBuffer(s.buf)
		s.buf, s.mem = nil, nil
	}
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a short random transaction id for logs and Received.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
