package importer

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/message"
)

// Mbox reads one user's mbox file (qpopper's, or any mbox): messages
// start at "From " lines; a body line written as ">From " (mboxo) or
// ">>From " (mboxrd) loses one ">". A message's unique-id is its X-UIDL
// header field, which qpopper adds and shows as the UIDL; one without it
// (no qpopper client saw it) gets the MD5 of its content. The folder
// internal data message of UW IMAP and Pine (X-IMAP) is skipped.
func Mbox(path, user string) (Mailbox, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Mailbox{}, err
	}
	b := Mailbox{Address: user, UIDLSource: "X-UIDL header fields"}
	if len(data) > 0 && !bytes.HasPrefix(data, []byte("From ")) {
		return b, fmt.Errorf("%s is not an mbox: it does not start with a From line", path)
	}
	n := 0
	for _, raw := range splitMbox(data) {
		n++
		from, body, _ := bytes.Cut(raw, []byte("\n"))
		body = unquoteFrom(body)
		h, err := message.ReadHeader(bytes.NewReader(body))
		if err != nil {
			b.Problems = append(b.Problems, fmt.Sprintf("%s message %d: %v: not imported", path, n, err))
			continue
		}
		if h.Get("X-IMAP") != "" || h.Get("X-IMAPbase") != "" {
			continue // folder internal data, not mail
		}
		uidl := strings.TrimSpace(h.Get("X-UIDL"))
		if uidl == "" {
			sum := md5.Sum(body)
			uidl = hex.EncodeToString(sum[:])
		}
		msg := body
		b.Messages = append(b.Messages, Message{UIDL: uidl, Bytes: int64(len(msg)), Date: fromLineDate(string(from)),
			Name: fmt.Sprintf("%s message %d", path, n), open: func() ([]byte, error) { return msg, nil }})
	}
	return b, nil
}

// splitMbox splits an mbox at its From_ lines (a "From " at the start of
// the file or after an empty line... or any line: writers quote the
// others), each part starting with its From_ line.
func splitMbox(data []byte) [][]byte {
	var out [][]byte
	start := 0
	for i := 0; ; {
		j := bytes.Index(data[i:], []byte("\nFrom "))
		if j < 0 {
			break
		}
		cut := i + j + 1
		out = append(out, trimSeparator(data[start:cut]))
		start, i = cut, cut
	}
	if start < len(data) {
		out = append(out, trimSeparator(data[start:]))
	}
	return out
}

// trimSeparator removes the empty line mbox writers put before the next
// From_ line: it is not part of the message.
func trimSeparator(m []byte) []byte {
	if bytes.HasSuffix(m, []byte("\n\n")) {
		return m[:len(m)-1]
	}
	if bytes.HasSuffix(m, []byte("\r\n\r\n")) {
		return m[:len(m)-2]
	}
	return m
}

var quotedFrom = regexp.MustCompile(`(?m)^>(>*From )`)

// unquoteFrom removes one ">" from the lines that start with ">From ",
// ">>From "...: mboxrd quotes every such line, mboxo only "From ".
func unquoteFrom(body []byte) []byte {
	if !bytes.Contains(body, []byte(">From ")) {
		return body
	}
	return quotedFrom.ReplaceAll(body, []byte("$1"))
}

// fromLineDate reads the date of a From_ line ("From sender Mon Jan  2
// 15:04:05 2006"), zero if it has none.
func fromLineDate(line string) time.Time {
	f := strings.Fields(strings.TrimSpace(line))
	if len(f) < 7 {
		return time.Time{}
	}
	t, err := time.Parse("Mon Jan 2 15:04:05 2006", strings.Join(f[len(f)-5:], " "))
	if err != nil {
		return time.Time{}
	}
	return t
}
