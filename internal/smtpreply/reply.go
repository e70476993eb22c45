// Package smtpreply is the one type for an SMTP reply in postoffice: a
// reply code (RFC 5321 section 4.2), an enhanced status code (RFC 3463)
// and text. The SMTP server writes it, the SMTP client reads it, the
// router, the queue, bounces, the journal and the console carry it and
// render it; nothing is turned into prose and parsed back.
package smtpreply

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Status is an enhanced mail system status code, class.subject.detail
// (RFC 3463 section 2). The zero Status means "none".
type Status struct {
	Class, Subject, Detail int
}

// IsZero reports whether s is absent.
func (s Status) IsZero() bool { return s == Status{} }

// String is the dotted form, "5.1.1"; "" for the zero Status.
func (s Status) String() string {
	if s.IsZero() {
		return ""
	}
	return strconv.Itoa(s.Class) + "." + strconv.Itoa(s.Subject) + "." + strconv.Itoa(s.Detail)
}

// ParseStatus reads a dotted status code. RFC 3463 section 2: the class
// is 2, 4 or 5; subject and detail are one to three digits without
// leading zeros ("0" itself allowed).
func ParseStatus(s string) (Status, bool) {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return Status{}, false
	}
	var n [3]int
	for i, p := range parts {
		if p == "" || len(p) > 3 || (len(p) > 1 && p[0] == '0') {
			return Status{}, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return Status{}, false
			}
		}
		n[i], _ = strconv.Atoi(p)
	}
	if n[0] != 2 && n[0] != 4 && n[0] != 5 {
		return Status{}, false
	}
	return Status{n[0], n[1], n[2]}, true
}

// Reply is one SMTP reply. Text holds the text of each line, without the
// code and without the enhanced status code; it may be empty.
type Reply struct {
	Code   int
	Status Status
	Text   []string
}

// New makes a reply; status is dotted ("5.1.1") or empty. A status that
// does not parse is dropped.
func New(code int, status string, text ...string) Reply {
	st, _ := ParseStatus(status)
	return Reply{Code: code, Status: st, Text: text}
}

// Errorf makes a reply with one line of formatted text.
func Errorf(code int, status string, format string, a ...any) Reply {
	return New(code, status, fmt.Sprintf(format, a...))
}

// Positive reports a 2xx or 3xx reply (RFC 5321 section 4.2.1).
func (r Reply) Positive() bool { return r.Code >= 200 && r.Code < 400 }

// Temporary reports a transient negative reply, 4xx: the same command may
// succeed later (RFC 5321 section 4.2.1).
func (r Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Permanent reports a permanent negative reply, 5xx.
func (r Reply) Permanent() bool { return r.Code >= 500 && r.Code < 600 }

// Error is the reply on one line, "550 5.1.1 No such user": Reply is an
// error, so that a refusal travels up a call chain as it is.
func (r Reply) Error() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(r.Code))
	if !r.Status.IsZero() {
		b.WriteByte(' ')
		b.WriteString(r.Status.String())
	}
	for _, t := range r.Text {
		if t != "" {
			b.WriteByte(' ')
			b.WriteString(t)
		}
	}
	return b.String()
}

// Message is the text lines joined by a space, without code and status.
func (r Reply) Message() string { return strings.Join(r.Text, " ") }

// Wire is the reply as sent: one line per text line, each with the code,
// "-" after it on all but the last (RFC 5321 section 4.2.1), and the
// enhanced status code repeated on each (RFC 2034 section 4), CRLF ended.
// Control characters in the text become spaces, so that no text can end a
// line early or inject another reply.
func (r Reply) Wire() string {
	text := r.Text
	if len(text) == 0 {
		text = []string{""}
	}
	var b strings.Builder
	for i, t := range text {
		b.WriteString(strconv.Itoa(r.Code))
		if i < len(text)-1 {
			b.WriteByte('-')
		} else {
			b.WriteByte(' ')
		}
		if !r.Status.IsZero() {
			b.WriteString(r.Status.String())
			if t != "" {
				b.WriteByte(' ')
			}
		}
		b.WriteString(clean(t))
		b.WriteString("\r\n")
	}
	return b.String()
}

// clean makes each control octet (below 0x20, and DEL) a space. It works
// on octets, not runes: a text that is not UTF-8 keeps its length and its
// other octets (decoding it would turn each stray octet into U+FFFD,
// three octets, and a peer's reply within the line limit could come out
// beyond it).
func clean(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if b[i] < 0x20 || b[i] == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// As finds a Reply in err's chain.
func As(err error) (Reply, bool) {
	var r Reply
	if errors.As(err, &r) {
		return r, true
	}
	var p *Reply
	if errors.As(err, &p) && p != nil {
		return *p, true
	}
	return Reply{}, false
}

// ErrSyntax is returned by Parse for lines that are not an SMTP reply.
var ErrSyntax = errors.New("smtpreply: malformed reply")

// Parse reads a reply from its lines as received, without CRLF: every
// line starts with the same three-digit code, followed by "-" on all but
// the last and " " (or nothing) on the last (RFC 5321 section 4.2). When
// every line starts with an enhanced status code whose class matches the
// reply's (RFC 2034 section 4), it goes to Status and is cut from the
// text; otherwise the text is kept whole.
func Parse(lines []string) (Reply, error) {
	if len(lines) == 0 {
		return Reply{}, ErrSyntax
	}
	var r Reply
	var texts []string
	for i, l := range lines {
		if len(l) < 3 {
			return Reply{}, ErrSyntax
		}
		code, err := strconv.Atoi(l[:3])
		if err != nil || code < 200 || code > 599 || l[0] == '+' || l[0] == '-' {
			return Reply{}, ErrSyntax
		}
		if i == 0 {
			r.Code = code
		} else if code != r.Code {
			return Reply{}, ErrSyntax
		}
		last := i == len(lines)-1
		rest := l[3:]
		switch {
		case rest == "":
			if !last {
				return Reply{}, ErrSyntax
			}
		case rest[0] == '-' && !last, rest[0] == ' ' && last:
			rest = rest[1:]
		default:
			return Reply{}, ErrSyntax
		}
		texts = append(texts, rest)
	}
	r.Text = texts
	if r.Code >= 400 || r.Code/100 == 2 {
		r.Status, r.Text = splitStatus(r.Code, texts)
	}
	return r, nil
}

// splitStatus takes the enhanced status code off each line when all lines
// carry the same one and its class agrees with the code.
func splitStatus(code int, texts []string) (Status, []string) {
	var st Status
	out := make([]string, len(texts))
	for i, t := range texts {
		word, rest, _ := strings.Cut(t, " ")
		s, ok := ParseStatus(word)
		if !ok || s.Class != code/100 || (i > 0 && s != st) {
			return Status{}, texts
		}
		st = s
		out[i] = rest
	}
	return st, out
}
