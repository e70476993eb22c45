package smtpclient

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Kind says what failed, for a caller that handles the failures apart:
// a reply is the peer's word, the others are about getting it.
type Kind int

const (
	// KindReply: the peer answered with a negative (4xx or 5xx) reply,
	// or an unexpected positive one; Reply holds it.
	KindReply Kind = iota + 1
	// KindConn: connecting, reading or writing failed (refused, reset,
	// closed); whatever the peer did with the command is unknown.
	KindConn
	// KindTimeout: the peer did not answer or take data within its
	// time (RFC 5321 section 4.5.3.2).
	KindTimeout
	// KindTLS: the TLS handshake or certificate check failed, or the
	// policy requires TLS that the peer does not offer.
	KindTLS
	// KindProtocol: the peer's answer was not SMTP (a malformed or too
	// long reply, data nobody asked for), or it greeted us with our own
	// name.
	KindProtocol
	// KindLocal: the client refused before sending, because the message
	// cannot go to this peer as it is (too big for its SIZE, needs
	// SMTPUTF8 it lacks, an address that cannot be written).
	KindLocal
)

func (k Kind) String() string {
	switch k {
	case KindReply:
		return "reply"
	case KindConn:
		return "connection"
	case KindTimeout:
		return "timeout"
	case KindTLS:
		return "tls"
	case KindProtocol:
		return "protocol"
	case KindLocal:
		return "local"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Error is a failure in talking to one host, kept structured from the wire
// to the journal (as mox's smtpclient keeps Permanent, Code, Secode,
// Command and Line): the reply itself when there is one, the command it
// answered, the host, and whether trying again can help.
type Error struct {
	Host    string // the peer, named as Postfix does: host[ip]:port
	Command string // what it answered or what failed: "connect", "greeting", "EHLO", "STARTTLS", "AUTH", "RSET", "MAIL FROM", "RCPT TO", "DATA", "end of data"
	Kind    Kind
	// Reply is the peer's reply for KindReply; the zero Reply otherwise.
	Reply smtpreply.Reply
	// Status is the RFC 3463 status of the failure: the reply's own, or
	// X.0.0 of its class when it had none (RFC 3463 section 3.1), or
	// ours for a failure without a reply.
	Status smtpreply.Status
	// Permanent: the same message to the same recipient will fail again
	// (a 5xx reply, a message too big); otherwise a later try may work.
	Permanent bool
	// Text describes a failure without a reply.
	Text string
	// Err is the underlying error (a network or TLS error), or nil.
	Err error
}

// Error is one line in the style of Postfix's logs and bounces:
// "mx.test[192.0.2.1]:25 said: 550 5.1.1 no such user (in reply to RCPT TO)".
func (e *Error) Error() string {
	if e.Kind == KindReply {
		return fmt.Sprintf("%s said: %s (in reply to %s)", e.Host, e.Reply.Error(), e.Command)
	}
	s := e.Text
	if s == "" && e.Err != nil {
		s = e.Err.Error()
	}
	if e.Command != "" {
		return fmt.Sprintf("%s: %s (during %s)", e.Host, s, e.Command)
	}
	return fmt.Sprintf("%s: %s", e.Host, s)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports a failure a later attempt may not meet.
func (e *Error) Temporary() bool { return !e.Permanent }

// HasReply reports whether the peer answered (Kind is KindReply).
func (e *Error) HasReply() bool { return e.Kind == KindReply }

// AsError finds an *Error in err's chain.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// replyError is the failure a negative (or unexpected) reply makes.
func replyError(host, cmd string, r smtpreply.Reply) *Error {
	st := r.Status
	if st.IsZero() || st.Class != r.Code/100 {
		st = classStatus(r.Code)
	}
	return &Error{Host: host, Command: cmd, Kind: KindReply, Reply: r, Status: st, Permanent: r.Permanent()}
}

// classStatus is X.0.0 of a reply code's class: "other undefined status"
// (RFC 3463 section 3.1). A positive reply where a negative one was
// expected (say, 250 to DATA) is a protocol problem: 4.0.0.
func classStatus(code int) smtpreply.Status {
	if code >= 500 {
		return smtpreply.Status{Class: 5}
	}
	return smtpreply.Status{Class: 4}
}

// localError is a failure decided here, with our own status.
func localError(host, cmd string, kind Kind, perm bool, status string, format string, a ...any) *Error {
	st, _ := smtpreply.ParseStatus(status)
	return &Error{Host: host, Command: cmd, Kind: kind, Status: st, Permanent: perm, Text: fmt.Sprintf(format, a...)}
}

// netError is a failure of the connection itself: always temporary. RFC
// 3463 section 3.5: X.4.2 bad connection; X.4.7 delivery time expired
// for a timeout.
func netError(host, cmd string, err error) *Error {
	e := &Error{Host: host, Command: cmd, Kind: KindConn, Status: smtpreply.Status{Class: 4, Subject: 4, Detail: 2}, Err: err}
	if isTimeout(err) {
		e.Kind = KindTimeout
		e.Text = "timed out"
	} else {
		e.Text = unwrapOp(err).Error()
	}
	return e
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// unwrapOp drops net.OpError's repetition of the addresses, which the
// host name already gives.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
