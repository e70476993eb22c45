package milter

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	gomilter "github.com/d--j/go-milter"
	"github.com/postoffice-mail/postoffice/internal/message"
)

// maxHeaderBytes bounds the header section of a message given to the
// milters; a message with more is refused by the milter code as an
// error (on_error applies).
const maxHeaderBytes = 1 << 20

var errHeaderTooLong = errors.New("milter: header section over 1 MiB")

// hfield is a header field of the message being filtered. name is ""
// for a line that is not a field (kept in place, never shown to a
// milter, not counted in indexes).
type hfield struct {
	name string
	raw  []byte // the whole field, folding and final CRLF included
}

// milterValue returns the value as a milter receives it: everything
// after the colon, line breaks as LF (as Sendmail and Postfix send them:
// OpenDKIM restores the CRs), without the final line break, and without
// the one space after the colon unless the milter asked to keep it
// (SMFIP_HDR_LEADSPC).
func (f hfield) milterValue(leadingSpace bool) string {
	_, v, _ := bytes.Cut(f.raw, []byte(":"))
	s := strings.TrimSuffix(string(v), "\r\n")
	s = strings.ReplaceAll(s, "\r\n", "\n")
	if !leadingSpace {
		s = strings.TrimPrefix(s, " ")
	}
	return s
}

// content is a message as the chain of milters works on it: header
// fields, the separator line, the body somewhere re-readable.
type content struct {
	fields []hfield
	sep    []byte // "\r\n", or nothing when the message has no body
	body   *io.SectionReader
	// replaced holds a body that a milter replaced: in memory, or in
	// file past spoolMemory.
	replaced []byte
	file     *os.File
}

// parseContent reads the header section of msg (size octets, canonical
// CRLF form); the body stays in msg.
func parseContent(msg io.ReaderAt, size int64) (*content, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(msg, 0, size), 32*1024)
	c := &content{}
	var off int64
	for {
		line, err := readLine(br)
		if err != nil && err != io.EOF {
			return nil, err
		}
		if off+int64(len(line)) > maxHeaderBytes {
			return nil, errHeaderTooLong
		}
		if len(line) == 0 {
			break
		}
		off += int64(len(line))
		if string(line) == "\r\n" || string(line) == "\n" {
			c.sep = line
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(c.fields) > 0 {
			last := &c.fields[len(c.fields)-1]
			last.raw = append(last.raw, line...)
		} else {
			name := ""
			if n, _, ok := bytes.Cut(line, []byte(":")); ok {
				n = bytes.TrimRight(n, " \t")
				if validName(string(n)) {
					name = string(n)
				}
			}
			c.fields = append(c.fields, hfield{name: name, raw: line})
		}
		if err == io.EOF {
			break
		}
	}
	c.body = io.NewSectionReader(msg, off, size-off)
	return c, nil
}

// readLine returns the next line of br, its LF included, whatever its
// length (bounded by the caller).
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := br.ReadSlice('\n')
		line = append(line, part...)
		if err == bufio.ErrBufferFull {
			if len(line) > maxHeaderBytes {
				return nil, errHeaderTooLong
			}
			continue
		}
		return line, err
	}
}

// validName reports whether s is a field name: printable US-ASCII but
// the colon (RFC 5322 section 3.6.8).
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 || s[i] == ':' {
			return false
		}
	}
	return true
}

// newField builds a field from a milter's name and value: line breaks
// made CRLF, every continuation line starting with white space (RFC 5322
// section 2.2.3), CR, NUL and other stray line breaks dropped.
func newField(name, value string, leadingSpace bool) (hfield, error) {
	if !validName(name) {
		return hfield{}, fmt.Errorf("bad header field name %q", name)
	}
	value = strings.ReplaceAll(value, "\r\n", "\n")
	value = strings.Map(func(r rune) rune {
		if r == '\r' || r == 0 {
			return -1
		}
		return r
	}, value)
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte(':')
	if !leadingSpace {
		b.WriteByte(' ')
	}
	for i, line := range strings.Split(value, "\n") {
		if i > 0 {
			b.WriteString("\r\n")
			if line == "" {
				continue // an empty line would end the header section
			}
			if line[0] != ' ' && line[0] != '\t' {
				b.WriteByte('\t')
			}
		}
		b.WriteString(line)
	}
	b.WriteString("\r\n")
	return hfield{name: name, raw: []byte(b.String())}, nil
}

// named returns the positions in fields of the fields named name.
func (c *content) named(name string) []int {
	var at []int
	for i, f := range c.fields {
		if f.name != "" && strings.EqualFold(f.name, name) {
			at = append(at, i)
		}
	}
	return at
}

// apply makes one header change of a milter, with Sendmail's and
// Postfix's meaning of the indexes (the milter protocol's smfi_chgheader
// and smfi_insheader).
func (c *content) apply(a gomilter.ModifyAction, leadingSpace bool) (Change, error) {
	ch := Change{Name: a.HeaderName, Value: a.HeaderValue, Index: int(a.HeaderIndex)}
	switch a.Type {
	case gomilter.ActionAddHeader:
		ch.Kind = AddHeader
		f, err := newField(a.HeaderName, a.HeaderValue, leadingSpace)
		if err != nil {
			return ch, err
		}
		c.fields = append(c.fields, f)
	case gomilter.ActionChangeHeader:
		// The index counts the fields of that name, from 1; an empty
		// value deletes; an index past them adds the field.
		at := c.named(a.HeaderName)
		idx := int(a.HeaderIndex)
		if a.HeaderValue == "" {
			ch.Kind = DeleteHeader
			if idx >= 1 && idx <= len(at) {
				i := at[idx-1]
				c.fields = append(c.fields[:i], c.fields[i+1:]...)
			}
			return ch, nil
		}
		ch.Kind = ChangeHeader
		f, err := newField(a.HeaderName, a.HeaderValue, leadingSpace)
		if err != nil {
			return ch, err
		}
		if idx >= 1 && idx <= len(at) {
			c.fields[at[idx-1]] = f
		} else {
			c.fields = append(c.fields, f)
		}
	case gomilter.ActionInsertHeader:
		// The index counts all fields: 0 is the top.
		ch.Kind = InsertHeader
		f, err := newField(a.HeaderName, a.HeaderValue, leadingSpace)
		if err != nil {
			return ch, err
		}
		pos := len(c.fields)
		seen := 0
		for i, x := range c.fields {
			if seen == int(a.HeaderIndex) {
				pos = i
				break
			}
			if x.name != "" {
				seen++
			}
		}
		c.fields = append(c.fields[:pos], append([]hfield{f}, c.fields[pos:]...)...)
	}
	return ch, nil
}

// spoolMemory is how much of a replaced body is held in memory; more goes
// to a temporary file (as the router spools messages).
const spoolMemory = 1 << 20

// replaceBody makes body the message's body, in canonical form (CRLF).
func (c *content) replaceBody(body []byte, tempDir string, maxSize int64) error {
	c.closeReplaced()
	cr := message.Canonical(bytes.NewReader(body))
	var buf bytes.Buffer
	n, err := io.CopyN(&buf, cr, spoolMemory+1)
	if err == io.EOF {
		c.replaced = buf.Bytes()
		c.body = io.NewSectionReader(bytes.NewReader(c.replaced), 0, n)
		c.setSep()
		return nil
	}
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(tempDir, "postoffice-milter-")
	if err != nil {
		return err
	}
	os.Remove(f.Name()) // unlinked: the space is freed however we exit
	m, err := io.Copy(f, io.MultiReader(&buf, cr))
	if err == nil && maxSize > 0 && m > maxSize {
		err = fmt.Errorf("replaced body of %d octets over the limit of %d", m, maxSize)
	}
	if err != nil {
		f.Close()
		return err
	}
	c.file = f
	c.body = io.NewSectionReader(f, 0, m)
	c.setSep()
	return nil
}

// setSep makes sure a message with a body has the empty line before it.
func (c *content) setSep() {
	if c.body.Size() > 0 && len(c.sep) == 0 {
		c.sep = []byte("\r\n")
	}
}

func (c *content) closeReplaced() {
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
	c.replaced = nil
}

// header returns the header section, the separator line included.
func (c *content) header() []byte {
	var b bytes.Buffer
	for _, f := range c.fields {
		b.Write(f.raw)
	}
	b.Write(c.sep)
	return b.Bytes()
}
