package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"golang.org/x/net/idna"
)

// MaxHeaderBytes bounds the header section read before signing or
// verifying; a larger header section is an error (mail with a megabyte of
// header fields is not mail).
const MaxHeaderBytes = 1 << 20

// ErrHeaderTooLong is returned for a header section over MaxHeaderBytes.
var ErrHeaderTooLong = errors.New("mailauth: header section too long")

// field is one line of the header section with its continuation lines
// (RFC 5322 section 2.2), as it came: the raw bytes, folding and final
// CRLF included, and the field name; name is "" for a line that is not a
// field (no colon, or a bad name), kept in place but never a field.
type field struct {
	name string
	raw  []byte
}

// value returns the field's unfolded value, trimmed.
func (f field) value() string {
	_, v, _ := bytes.Cut(f.raw, []byte(":"))
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	v = bytes.ReplaceAll(v, []byte("\n"), nil)
	return strings.TrimSpace(string(v))
}

// readHeader reads the header section from br, up to and including the
// empty line that ends it (RFC 5322 section 2.1), or to the end of the
// data; br is left at the start of the body. It returns the bytes read
// and the lines (fields and others) they hold, in order. A line that is
// not a field does not end the section: DKIM verifiers and mail readers
// read on to the empty line, and so must whatever decides which From
// field a reader sees. The obsolete "Name :" form (RFC 5322 section
// 4.5) is a field.
func readHeader(br *bufio.Reader) (consumed []byte, fields []field, err error) {
	var buf bytes.Buffer
	type span struct {
		name       string
		start, end int
	}
	var spans []span
	for {
		start := buf.Len()
		line, err := readLine(br, &buf)
		if err != nil && err != io.EOF {
			return nil, nil, err
		}
		if buf.Len() > MaxHeaderBytes {
			return nil, nil, ErrHeaderTooLong
		}
		if len(line) == 0 {
			break // end of data
		}
		if string(line) == "\r\n" || string(line) == "\n" {
			break // the empty line
		}
		if (line[0] == ' ' || line[0] == '\t') && len(spans) > 0 {
			spans[len(spans)-1].end = buf.Len()
		} else {
			name := ""
			if n, _, ok := bytes.Cut(line, []byte(":")); ok {
				n = bytes.TrimRight(n, " \t")
				if validFieldName(n) {
					name = string(n)
				}
			}
			spans = append(spans, span{name, start, buf.Len()})
		}
		if err == io.EOF {
			break
		}
	}
	consumed = buf.Bytes()
	fields = make([]field, len(spans))
	for i, s := range spans {
		fields[i] = field{name: s.name, raw: consumed[s.start:s.end]}
	}
	return consumed, fields, nil
}

// readLine appends the next line of br (its LF included, if any) to buf
// and returns it; at the end of the data, what is left (maybe nothing)
// and io.EOF. The line is bounded by MaxHeaderBytes.
func readLine(br *bufio.Reader, buf *bytes.Buffer) ([]byte, error) {
	start := buf.Len()
	for {
		part, err := br.ReadSlice('\n')
		buf.Write(part)
		if err == bufio.ErrBufferFull {
			if buf.Len()-start > MaxHeaderBytes {
				return nil, ErrHeaderTooLong
			}
			continue
		}
		return buf.Bytes()[start:], err
	}
}

// validFieldName reports whether name is a field name (RFC 5322 section
// 3.6.8: printable US-ASCII except colon).
func validFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// fromDomains returns the domains of the addresses in the From fields,
// lower-cased and in A-label form, without duplicates; and the number of
// From fields. A field that does not parse gives no domain.
func fromDomains(fields []field) (domains []string, count int) {
	for _, f := range fields {
		if !strings.EqualFold(f.name, "From") {
			continue
		}
		count++
		var found []string
		if addrs, err := mail.ParseAddressList(f.value()); err == nil {
			for _, a := range addrs {
				if at := strings.LastIndexByte(a.Address, '@'); at >= 0 {
					found = append(found, a.Address[at+1:])
				}
			}
		} else {
			// A field our parser refuses may still show an address to a
			// reader: every domain after an "@" counts, so that odd
			// syntax cannot get a forged author past DMARC.
			found = atDomains(f.value())
		}
		for _, x := range found {
			d, err := normalizeDomain(x)
			if err != nil || contains(domains, d) {
				continue
			}
			domains = append(domains, d)
		}
	}
	return domains, count
}

// atDomains returns what follows each "@" in s, up to a character that
// cannot be in a domain name.
func atDomains(s string) []string {
	var out []string
	for {
		at := strings.IndexByte(s, '@')
		if at < 0 {
			return out
		}
		s = s[at+1:]
		end := strings.IndexFunc(s, func(r rune) bool {
			return !(r == '.' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= 0x80)
		})
		if end < 0 {
			end = len(s)
		}
		if d := strings.Trim(s[:end], "."); d != "" {
			out = append(out, d)
		}
		s = s[end:]
	}
}

// normalizeDomain lower-cases a domain, drops a final dot and converts
// an internationalized one to its A-label form (RFC 5891), as DNS and
// the d= tag of a signature need it (RFC 8616 section 4).
func normalizeDomain(d string) (string, error) {
	d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
	if d == "" {
		return "", fmt.Errorf("empty domain")
	}
	if !isASCII(d) {
		a, err := idna.Lookup.ToASCII(d)
		if err != nil {
			return "", fmt.Errorf("domain %q: %v", d, err)
		}
		d = a
	}
	return d, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
