package mailauth

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/bufpool"
)

// resinfo is one result of an Authentication-Results field (RFC 8601
// section 2.2: methodspec, reasonspec, propspecs).
type resinfo struct {
	method  string
	result  string
	comment string // after the result, in parentheses
	reason  string
	props   [][2]string // ptype.property, value
}

func (ri resinfo) String() string {
	var b strings.Builder
	b.WriteString(ri.method)
	b.WriteByte('=')
	b.WriteString(ri.result)
	if ri.comment != "" {
		b.WriteString(" (")
		b.WriteString(commentText(ri.comment))
		b.WriteString(")")
	}
	if ri.reason != "" {
		b.WriteString(" reason=")
		b.WriteString(quoteValue(ri.reason))
	}
	for _, p := range ri.props {
		if p[1] == "" {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(p[0])
		b.WriteByte('=')
		b.WriteString(pvalue(p[1]))
	}
	return b.String()
}

// formatAuthResults writes the field: the authserv-id, then one result
// per folded line (RFC 8601 section 2.2), or "none" (no-result).
func formatAuthResults(authservID string, results []resinfo) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(quoteValue(authservID))
	if len(results) == 0 {
		b.WriteString("; none\r\n")
		return b.String()
	}
	for _, r := range results {
		b.WriteString(";\r\n\t")
		b.WriteString(r.String())
	}
	b.WriteString("\r\n")
	return b.String()
}

// AuthResultsSubmission returns the Authentication-Results field for a
// message from an authenticated client: auth=pass with the user (RFC
// 8601 section 2.7.4, smtp.auth).
func AuthResultsSubmission(authservID, user string) string {
	return formatAuthResults(authservID, []resinfo{{method: "auth", result: ResultPass,
		props: [][2]string{{"smtp.auth", user}}}})
}

// isToken reports whether s is a MIME token (RFC 2045 section 5.1), the
// form of a value that needs no quotes (RFC 8601 section 2.2, "value").
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?=`, c) >= 0 {
			return false
		}
	}
	return true
}

// quoteValue writes s as a token or else a quoted-string (RFC 5322
// section 3.2.4), with CR and LF, which a quoted-string cannot hold,
// dropped.
func quoteValue(s string) string {
	if isToken(s) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r', '\n':
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// pvalue writes a property value: as it is when it is a domain or an
// address of plain characters (RFC 8601 section 2.2: "[[local-part] "@"]
// domain-name"), else as a value.
func pvalue(s string) string {
	plain := s != ""
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte(".-_@+", c) >= 0) {
			plain = false
		}
	}
	if plain && !strings.HasSuffix(s, "@") {
		return s
	}
	return quoteValue(s)
}

// commentText makes s safe inside a comment (RFC 5322 section 3.2.2):
// parentheses and backslashes escaped, line breaks dropped.
func commentText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\r', '\n':
		case '(', ')', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// authservIDOf returns the authserv-id of an Authentication-Results
// field's value: the first value after any comments and white space
// (RFC 8601 section 2.2), a token or a quoted-string; "" if there is
// none.
func authservIDOf(v string) string {
	i := skipCFWS(v, 0)
	if i >= len(v) {
		return ""
	}
	if v[i] == '"' {
		var b strings.Builder
		for i++; i < len(v); i++ {
			switch v[i] {
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			case '"':
				return b.String()
			default:
				b.WriteByte(v[i])
			}
		}
		return "" // an unterminated quoted-string is no value
	}
	j := i
	for j < len(v) && v[j] != ';' && v[j] != '(' && v[j] != ' ' && v[j] != '\t' && v[j] != '\r' && v[j] != '\n' {
		j++
	}
	return v[i:j]
}

// skipCFWS skips white space and comments, nested and with quoted pairs
// (RFC 5322 section 3.2.2), from i.
func skipCFWS(v string, i int) int {
	depth := 0
	for i < len(v) {
		c := v[i]
		switch {
		case depth > 0 && c == '\\':
			i++
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n':
			return i
		}
		i++
	}
	return i
}

// sameID compares two authserv-ids: domain names, without regard to case
// or a final dot.
func sameID(a, b string) bool {
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// StripAuthResults returns the message read from msg without the
// Authentication-Results fields that claim authservID, ours: RFC 8601
// section 5 has an MTA delete those that did not come from a trusted
// host inside its boundary, so that a sender cannot forge our verdicts.
// Fields of other authserv-ids stay. The body passes unread until the
// header section is done; call it after DKIM verification, whose
// signatures may cover such fields. It reads through a buffer lent by
// bufpool: Close gives it back, and the reader is not read after it.
func StripAuthResults(msg io.Reader, authservID string) io.ReadCloser {
	return &stripper{br: bufpool.Reader(msg), id: authservID}
}

type stripper struct {
	br   *bufio.Reader
	id   string
	out  io.Reader // the filtered header, then the rest of br
	errd error
}

func (s *stripper) Read(p []byte) (int, error) {
	if s.out == nil {
		if s.errd != nil {
			return 0, s.errd
		}
		consumed, fields, err := readHeader(s.br)
		if err != nil {
			s.errd = err
			return 0, err
		}
		var kept bytes.Buffer
		end := 0
		for _, f := range fields {
			end += len(f.raw)
			if f.name != "" && strings.EqualFold(f.name, "Authentication-Results") && sameID(authservIDOf(f.value()), s.id) {
				continue
			}
			kept.Write(f.raw)
		}
		kept.Write(consumed[end:])
		s.out = io.MultiReader(&kept, s.br)
	}
	return s.out.Read(p)
}

func (s *stripper) Close() error {
	if s.br != nil {
		bufpool.Put(s.br)
		s.br, s.out = nil, nil
		s.errd = errors.New("mailauth: read after Close")
	}
	return nil
}
