package router

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"io"
	"os"

	"github.com/postoffice-mail/postoffice/internal/message"
)

// spoolMemory is how much of a message is kept in memory; larger messages
// go to a temporary file so that a big message does not cost its size in
// heap.
const spoolMemory = 1 << 20

type spooled struct {
	mem  []byte
	file *os.File
	size int64
}

// spool reads r to the end in canonical form (CRLF line endings, final
// CRLF) into memory or, past spoolMemory, a temporary file in dir ("" is
// os.TempDir()).
func spool(r io.Reader, dir string) (*spooled, error) {
	cr := message.Canonical(r)
	var buf bytes.Buffer
	n, err := io.CopyN(&buf, cr, spoolMemory+1)
	if err == io.EOF {
		return &spooled{mem: buf.Bytes(), size: n}, nil
	}
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

func (s *spooled) Close() error {
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
