package smtpclient

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Limits on what a peer may send as one reply: RFC 5321 section
// 4.5.3.1.5 allows a reply line of 512 octets with its CRLF; peers write
// longer ones, so a line may have eight times that, and a reply (EHLO's
// is the longest) a hundred lines, so that a hostile peer cannot make us
// hold more than a few hundred KiB.
const (
	maxReplyLine  = 4096
	maxReplyLines = 100
)

// errReplySyntax marks a reply that is not SMTP; errReplyTooLong one
// beyond the limits.
var (
	errReplySyntax  = errors.New("malformed reply")
	errReplyTooLong = errors.New("reply too long")
)

// readReply reads one reply, all its lines (RFC 5321 section 4.2.1: a
// multiline reply has "-" after the code on every line but the last).
// A line may end in CRLF or, leniently, in LF alone. Errors: the
// reader's (network) errors as they are, errReplySyntax or
// errReplyTooLong (wrapped) for a peer that does not speak SMTP.
func readReply(r *bufio.Reader) (smtpreply.Reply, error) {
	var lines []string
	for {
		line, err := readLine(r)
		if err != nil {
			return smtpreply.Reply{}, err
		}
		if len(lines) == maxReplyLines {
			return smtpreply.Reply{}, fmt.Errorf("%w: more than %d lines", errReplyTooLong, maxReplyLines)
		}
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			break
		}
	}
	rep, err := smtpreply.Parse(lines)
	if err != nil {
		return smtpreply.Reply{}, fmt.Errorf("%w: %q", errReplySyntax, truncate(lines[len(lines)-1], 80))
	}
	return rep, nil
}

// readLine reads a line of at most maxReplyLine octets, without its line
// end.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(buf)+len(frag) > maxReplyLine+2 {
			return "", fmt.Errorf("%w: a line longer than %d octets", errReplyTooLong, maxReplyLine)
		}
		buf = append(buf, frag...)
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if err == io.EOF && len(buf) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		break
	}
	buf = buf[:len(buf)-1]
	if n := len(buf); n > 0 && buf[n-1] == '\r' {
		buf = buf[:n-1]
	}
	return string(buf), nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
