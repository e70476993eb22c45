package smtpclient

import (
	"bytes"
	"io"
)

// dotWriter writes message content as DATA needs it (RFC 5321 section
// 4.5.2): a "." at the start of a line is doubled, and every line ends
// in CRLF. A bare CR or a bare LF becomes CRLF too, so that no peer can
// read a line end, or the end of the data, where another peer would not
// (SMTP smuggling). Close ends the content with CRLF "." CRLF.
type dotWriter struct {
	w         io.Writer
	lineStart bool // the next octet starts a line
	cr        bool // the last octet written was a CR, its LF not seen yet
}

func newDotWriter(w io.Writer) *dotWriter { return &dotWriter{w: w, lineStart: true} }

var crlf = []byte("\r\n")

func (d *dotWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if d.cr {
			d.cr = false
			if p[0] == '\n' {
				// The LF of a CRLF whose CR came in the previous write.
				p = p[1:]
				continue
			}
		}
		if d.lineStart && p[0] == '.' {
			if _, err := d.w.Write([]byte{'.'}); err != nil {
				return 0, err
			}
		}
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			if _, err := d.w.Write(p); err != nil {
				return 0, err
			}
			d.lineStart = false
			break
		}
		if _, err := d.w.Write(p[:i]); err != nil {
			return 0, err
		}
		if _, err := d.w.Write(crlf); err != nil {
			return 0, err
		}
		d.lineStart = true
		if p[i] == '\r' {
			if i+1 < len(p) && p[i+1] == '\n' {
				i++
			} else if i+1 == len(p) {
				d.cr = true // perhaps a CRLF split between writes
			}
		}
		p = p[i+1:]
	}
	return n, nil
}

// Close ends the last line if it lacks its CRLF, then writes the end of
// the data.
func (d *dotWriter) Close() error {
	if !d.lineStart {
		if _, err := d.w.Write(crlf); err != nil {
			return err
		}
	}
	_, err := d.w.Write([]byte(".\r\n"))
	return err
}
