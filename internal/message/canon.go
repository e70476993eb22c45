// Package message holds the small byte-level transforms every door into
// postoffice shares, so that a message is stored in one canonical form:
// CRLF line endings and a final CRLF; and the one reader of a message's
// header section (ReadHeader) that the router and the queue use. Sizes are counted in that form, which
// is exactly what a POP3 RETR sends before byte-stuffing (RFC 1939 section
// 11: "the size ... is the number of octets ... with CRLF line endings").
package message

import (
	"bufio"
	"bytes"
	"io"

	"github.com/postoffice-mail/postoffice/internal/bufpool"
)

// Canonical returns a reader of r's bytes with every bare LF and bare CR
// turned into CRLF, and a CRLF appended when the data does not end with one.
// Empty input stays empty. All other bytes, 8-bit included, pass unchanged.
func Canonical(r io.Reader) io.Reader {
	return &canonReader{src: bufio.NewReaderSize(r, bufpool.Size)}
}

// CanonicalBuffered is Canonical reading through a buffer lent by
// bufpool: Close gives it back, and the reader is not read after it.
func CanonicalBuffered(r io.Reader) io.ReadCloser {
	return &lentCanon{canonReader{src: bufpool.Reader(r)}}
}

type lentCanon struct{ canonReader }

func (c *lentCanon) Close() error {
	if c.src != nil {
		bufpool.Put(c.src)
		c.src = nil
	}
	return nil
}

type canonReader struct {
	src     *bufio.Reader
	prevCR  bool   // last byte read from src was CR (a CRLF was emitted for it)
	last    byte   // last byte emitted
	emitted bool   // at least one byte emitted
	pending []byte // emitted but not yet returned: the end of a CRLF
	pbuf    [2]byte
	eof     bool
}

var crlf = []byte("\r\n")

func (c *canonReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(c.pending) > 0 {
			k := copy(p[n:], c.pending)
			c.pending = c.pending[k:]
			n += k
			continue
		}
		if c.eof {
			break
		}
		// Fast path: copy the run of ordinary bytes up to the next CR or
		// LF straight from the buffer (the body of a message is mostly
		// such runs); line ends are handled one byte at a time.
		k, err := c.copyRun(p[n:])
		if k > 0 {
			n += k
			continue
		}
		var b byte
		if err == nil {
			b, err = c.src.ReadByte()
		}
		if err != nil {
			if err != io.EOF {
				return n, err
			}
			c.eof = true
			if c.emitted && c.last != '\n' {
				n += c.put(p[n:], crlf)
			}
			continue
		}
		switch b {
		case '\r':
			c.prevCR = true
			n += c.put(p[n:], crlf)
		case '\n':
			if c.prevCR {
				c.prevCR = false // the LF of a CRLF: already emitted
				continue
			}
			n += c.put(p[n:], crlf)
		default:
			// Not reached: copyRun takes every other byte. Kept for safety.
			c.prevCR = false
			n += c.put(p[n:], []byte{b})
		}
	}
	if n == 0 && c.eof && len(c.pending) == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// put emits b: what fits into p, the rest (at most 2 bytes) pending.
func (c *canonReader) put(p, b []byte) int {
	k := copy(p, b)
	if k < len(b) {
		c.pending = c.pbuf[:copy(c.pbuf[:], b[k:])]
	}
	c.last, c.emitted = b[len(b)-1], true
	return k
}

// copyRun copies into p the buffered bytes before the next CR or LF, and
// returns how many: 0 when the next byte is a CR or LF, or with the error
// of reading more when nothing is buffered.
func (c *canonReader) copyRun(p []byte) (int, error) {
	if c.src.Buffered() == 0 {
		if _, err := c.src.Peek(1); err != nil {
			return 0, err
		}
	}
	buf, _ := c.src.Peek(c.src.Buffered())
	if len(buf) > len(p) {
		buf = buf[:len(p)]
	}
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	}
	if i := bytes.IndexByte(buf, '\r'); i >= 0 {
		buf = buf[:i]
	}
	if len(buf) == 0 {
		return 0, nil
	}
	k := copy(p, buf)
	c.src.Discard(k)
	c.prevCR = false
	c.last, c.emitted = buf[k-1], true
	return k, nil
}
