// Package mime7bit converts a message with 8-bit content into one a peer
// without 8BITMIME can take: RFC 6152 section 3 lets a client that
// cannot send 8-bit data convert it to 7 bit "using the MIME
// content-transfer-encodings" (RFC 2045 section 6) instead of returning
// it. Each leaf part with octets above 127 gets quoted-printable, when it
// is text and mostly ASCII, or base64 otherwise (RFC 2045 section 6.7
// means the first for data that is largely printable ASCII, section 6.8
// the second for arbitrary octets);
// multipart bodies are converted part by part and message/rfc822 parts
// recursively, since neither may be encoded (RFC 2046 sections 5.1 and
// 5.2.1). Everything else, the header fields above all, is kept octet for
// octet; only a converted part's Content-Transfer-Encoding changes.
package mime7bit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strings"
)

// ErrHeader is wrapped by the error for a header section with octets
// above 127: such a header needs SMTPUTF8 (RFC 6532), and no transfer
// encoding can carry it.
var ErrHeader = errors.New("8-bit octets in a header section")

// ErrEncoded is wrapped by the error for a part that claims to be
// encoded (base64 or quoted-printable) but has 8-bit octets anyway: it
// is malformed and cannot be converted without changing what it says.
var ErrEncoded = errors.New("8-bit octets in an encoded part")

// maxDepth bounds the nesting of multiparts and messages followed.
const maxDepth = 50

// Is8Bit reports whether b has an octet above 127.
func Is8Bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// Convert returns msg with every 8-bit part encoded, and whether
// anything changed. A message without 8-bit octets comes back as it
// is.
func Convert(msg []byte) ([]byte, bool, error) {
	if !Is8Bit(msg) {
		return msg, false, nil
	}
	var out bytes.Buffer
	out.Grow(len(msg) + len(msg)/3)
	if err := convertEntity(&out, msg, "text/plain", 0); err != nil {
		return nil, false, err
	}
	return out.Bytes(), true, nil
}

// field is one header field as it came, continuation lines included.
type field struct {
	raw  []byte
	name string // lower case
}

func (f field) value() string {
	_, v, _ := strings.Cut(string(f.raw), ":")
	// Unfold (RFC 5322 section 2.2.3).
	v = strings.NewReplacer("\r\n", "", "\n", "").Replace(v)
	return strings.TrimSpace(v)
}

// splitEntity cuts an entity into its header fields, the blank line that
// ends them ("" when there is none) and its body.
func splitEntity(b []byte) (fields []field, blank, body []byte) {
	rest := b
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		line := rest
		if i >= 0 {
			line = rest[:i+1]
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return fields, line, rest[len(line):]
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			last := &fields[len(fields)-1]
			last.raw = append(last.raw, line...)
		} else {
			name, _, _ := bytes.Cut(line, []byte(":"))
			fields = append(fields, field{raw: append([]byte(nil), line...), name: strings.ToLower(strings.TrimSpace(string(name)))})
		}
		rest = rest[len(line):]
	}
	return fields, nil, nil
}

func lookup(fields []field, name string) (string, bool) {
	for _, f := range fields {
		if f.name == name {
			return f.value(), true
		}
	}
	return "", false
}

// eol is the line end the entity uses, CRLF unless its first line ends
// in a bare LF.
func eol(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i > 0 && b[i-1] != '\r' {
		return "\n"
	}
	return "\r\n"
}

func convertEntity(out *bytes.Buffer, ent []byte, defaultType string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("mime7bit: parts nested more than %d deep", maxDepth)
	}
	fields, blank, body := splitEntity(ent)
	for _, f := range fields {
		if Is8Bit(f.raw) {
			return fmt.Errorf("mime7bit: %w (%s)", ErrHeader, f.name)
		}
	}
	if !Is8Bit(body) {
		out.Write(ent)
		return nil
	}
	mediaType, params := defaultType, map[string]string(nil)
	if ct, ok := lookup(fields, "content-type"); ok {
		if mt, p, err := mime.ParseMediaType(ct); err == nil {
			mediaType, params = mt, p
		}
	}
	cte, _ := lookup(fields, "content-transfer-encoding")
	cte = strings.ToLower(cte)
	nl := eol(ent)

	switch {
	case strings.HasPrefix(mediaType, "multipart/") && params["boundary"] != "":
		// RFC 2046 section 5.1: a multipart body is never encoded; its
		// parts are, each on its own.
		writeFields(out, fields)
		out.Write(blank)
		sub := "text/plain"
		if mediaType == "multipart/digest" {
			sub = "message/rfc822" // RFC 2046 section 5.1.5
		}
		return convertMultipart(out, body, params["boundary"], sub, nl, depth)
	case mediaType == "message/rfc822":
		// RFC 2046 section 5.2.1: no encoding but 7bit, 8bit or binary;
		// the enclosed message is converted instead.
		writeFields(out, setCTE(fields, "7bit", nl, cte != "" && cte != "7bit"))
		out.Write(blank)
		return convertEntity(out, body, "text/plain", depth+1)
	}
	if cte == "base64" || cte == "quoted-printable" {
		return fmt.Errorf("mime7bit: %w (%s)", ErrEncoded, cte)
	}
	enc := chooseEncoding(mediaType, body)
	writeFields(out, setCTE(fields, enc, nl, true))
	if blank == nil {
		blank = []byte(nl)
	}
	out.Write(blank)
	switch enc {
	case "quoted-printable":
		w := quotedprintable.NewWriter(out)
		w.Write(body)
		w.Close()
	default:
		writeBase64(out, body, nl)
	}
	return nil
}

// chooseEncoding picks quoted-printable for text that is mostly ASCII
// (readable as it travels; RFC 2045 section 6.7), base64 for the rest
// (section 6.8): binary content, and text in which more than a third of
// the octets are 8-bit, which quoted-printable would make longer than
// base64 does.
func chooseEncoding(mediaType string, body []byte) string {
	if !strings.HasPrefix(mediaType, "text/") || bytes.IndexByte(body, 0) >= 0 {
		return "base64"
	}
	high := 0
	for _, c := range body {
		if c >= 0x80 {
			high++
		}
	}
	if high*3 > len(body) {
		return "base64"
	}
	return "quoted-printable"
}

func writeFields(out *bytes.Buffer, fields []field) {
	for _, f := range fields {
		out.Write(f.raw)
	}
}

// setCTE returns fields with Content-Transfer-Encoding set to enc: the
// first such field replaced (only when replace), later ones dropped, or
// one added at the end.
func setCTE(fields []field, enc, nl string, replace bool) []field {
	if !replace {
		return fields
	}
	f := field{raw: []byte("Content-Transfer-Encoding: " + enc + nl), name: "content-transfer-encoding"}
	var out []field
	done := false
	for _, x := range fields {
		if x.name == "content-transfer-encoding" {
			if !done {
				out = append(out, f)
				done = true
			}
			continue
		}
		out = append(out, x)
	}
	if !done {
		out = append(out, f)
	}
	return out
}

// writeBase64 writes b in base64, in lines of 76 characters (RFC 2045
// section 6.8).
func writeBase64(out *bytes.Buffer, b []byte, nl string) {
	enc := base64.StdEncoding.EncodeToString(b)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString(nl)
		enc = enc[76:]
	}
	out.WriteString(enc)
	out.WriteString(nl)
}

// convertMultipart converts the parts of a multipart body (RFC 2046
// section 5.1.1): a preamble, then parts each after a delimiter line
// "--boundary", then a close delimiter "--boundary--" and an epilogue.
// The line end before a delimiter belongs to the delimiter.
func convertMultipart(out *bytes.Buffer, body []byte, boundary, defaultType, nl string, depth int) error {
	delim := []byte("--" + boundary)
	isDelim := func(line []byte) (ok, closing bool) {
		if !bytes.HasPrefix(line, delim) {
			return false, false
		}
		rest := line[len(delim):]
		if bytes.HasPrefix(rest, []byte("--")) {
			closing = true
			rest = rest[2:]
		}
		// Transport padding: linear white space, then the line end.
		if len(bytes.TrimRight(rest, " \t\r\n")) != 0 {
			return false, false
		}
		return true, closing
	}

	partStart := 0
	inPart := false // false: in the preamble, or after the close delimiter
	closed := false
	pos := 0
	flush := func(end int) error {
		content := body[partStart:end]
		// The line end before this delimiter is the delimiter's.
		content, lineEnd := trimLineEnd(content)
		if inPart {
			if err := convertEntity(out, content, defaultType, depth+1); err != nil {
				return err
			}
		} else {
			out.Write(sanitize(content))
		}
		out.Write(lineEnd)
		return nil
	}
	for pos < len(body) && !closed {
		i := bytes.IndexByte(body[pos:], '\n')
		end := len(body)
		if i >= 0 {
			end = pos + i + 1
		}
		line := body[pos:end]
		if ok, closing := isDelim(line); ok {
			if err := flush(pos); err != nil {
				return err
			}
			out.Write(line)
			inPart, closed = !closing, closing
			partStart = end
		}
		pos = end
	}
	if closed {
		// The epilogue, which no reader shows.
		out.Write(sanitize(body[pos:]))
		return nil
	}
	// No close delimiter: what follows the last delimiter is a part all
	// the same (a truncated message), or all is preamble.
	content := body[partStart:]
	if inPart {
		return convertEntity(out, content, defaultType, depth+1)
	}
	out.Write(sanitize(content))
	return nil
}

// trimLineEnd splits the final CRLF or LF off b.
func trimLineEnd(b []byte) (content, lineEnd []byte) {
	if bytes.HasSuffix(b, []byte("\r\n")) {
		return b[:len(b)-2], b[len(b)-2:]
	}
	if bytes.HasSuffix(b, []byte("\n")) {
		return b[:len(b)-1], b[len(b)-1:]
	}
	return b, nil
}

// sanitize replaces 8-bit octets in a preamble or epilogue, which MIME
// readers ignore (RFC 2046 section 5.1.1) and no encoding can label,
// with "?".
func sanitize(b []byte) []byte {
	if !Is8Bit(b) {
		return b
	}
	out := bytes.Clone(b)
	for i, c := range out {
		if c >= 0x80 {
			out[i] = '?'
		}
	}
	return out
}
