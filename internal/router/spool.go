package router

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"io"
	"os"
	"strings"

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

func (s *spooled) Close() error {
	if s.file != nil {
		return s.file.Close()
	}
	return nil
}

// Header is the header section of a message (RFC 5322 section 2.2), kept
// raw; fields are looked up by name case-insensitively.
type Header struct {
	Raw    []byte   // the section including its final empty line, if any
	fields []string // unfolded "Name: value" lines
}

// maxHeaderBytes bounds how much is read looking for the end of the header.
const maxHeaderBytes = 1 << 20

func parseHeader(r io.Reader) (Header, error) {
	br := bufio.NewReader(io.LimitReader(r, maxHeaderBytes))
	var h Header
	var raw bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if line == "" {
			if err != nil && !errors.Is(err, io.EOF) {
				return h, err
			}
			break
		}
		raw.WriteString(line)
		trimmed := strings.TrimRight(line, "\r\n")
		if trimmed == "" {
			break // the empty line ending the header section
		}
		if (trimmed[0] == ' ' || trimmed[0] == '\t') && len(h.fields) > 0 {
			h.fields[len(h.fields)-1] += " " + strings.TrimSpace(trimmed)
		} else if strings.Contains(trimmed, ":") {
			h.fields = append(h.fields, trimmed)
		} else {
			// Not a header line: the message has no header section
			// separator; what came so far is all there is.
			break
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return h, err
		}
	}
	h.Raw = raw.Bytes()
	return h, nil
}

// without returns the fields of the header section not named name, with
// their continuation lines, as raw CRLF lines; ok is false when h does
// not hold the whole section (it is longer than maxHeaderBytes).
func (h Header) without(name string) (raw []byte, ok bool) {
	if len(h.Raw) >= maxHeaderBytes {
		return nil, false
	}
	var out bytes.Buffer
	drop := false
	for _, line := range bytes.SplitAfter(h.Raw, []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			k, _, _ := strings.Cut(string(line), ":")
			drop = strings.EqualFold(strings.TrimSpace(k), name)
		}
		if !drop {
			out.Write(line)
		}
	}
	return out.Bytes(), true
}

// Count returns how many fields are named name.
func (h Header) Count(name string) int {
	n := 0
	for _, f := range h.fields {
		if k, _, _ := strings.Cut(f, ":"); strings.EqualFold(strings.TrimSpace(k), name) {
			n++
		}
	}
	return n
}

// Has reports whether a field named name has the value value (compared
// case-insensitively, angle brackets ignored).
func (h Header) Has(name, value string) bool {
	for _, f := range h.fields {
		k, v, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(k), name) &&
			strings.EqualFold(strings.Trim(strings.TrimSpace(v), "<>"), value) {
			return true
		}
	}
	return false
}

// Get returns the first value of a field, or "".
func (h Header) Get(name string) string {
	for _, f := range h.fields {
		if k, v, _ := strings.Cut(f, ":"); strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

var idEncoding = base32.NewEncoding("0123456789ABCDEFGHJKMNPQRSTVWXYZ").WithPadding(base32.NoPadding)

// newID returns a short random transaction id for logs and Received.
func newID() string {
	var b [10]byte
	rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
