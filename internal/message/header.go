package message

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
)

// Header is the header section of a message (RFC 5322 section 2.2), kept
// raw; fields are looked up by name case-insensitively.
type Header struct {
	Raw    []byte   // the section including its final empty line, if any
	fields []string // unfolded "Name: value" lines
}

// maxHeaderBytes bounds how much is read looking for the end of the header.
const maxHeaderBytes = 1 << 20

// ReadHeader reads the header section at the start of r: up to the empty
// line that ends it, or the first line that is neither a field nor a
// continuation (a message without a separator: that line ends Raw),
// reading at most 1 MiB. It may read past the section; an error is r's
// own.
func ReadHeader(r io.Reader) (Header, error) {
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

// Without returns the fields of the header section not named name, with
// their continuation lines, as raw lines; ok is false when h does not
// hold the whole section (it is longer than ReadHeader reads).
func (h Header) Without(name string) (raw []byte, ok bool) {
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
