package smtpd

import (
	"errors"
	"io"
	"os"
	"time"

	smtp "github.com/postoffice-mail/postoffice/internal/smtpd/gosmtp"
)

// Errors of the body reader handed to Backend.Deliver. A Deliver that
// sees one must store nothing and may return it unchanged (or wrapped):
// they are *Error values, so they are also the reply to DATA or BDAT.
var (
	// ErrMessageTooBig: the body grew past Config.MaxMessageBytes (RFC
	// 1870; RFC 3463 X.3.4, message length exceeds administrative limit).
	ErrMessageTooBig = &Error{Code: 552, Enhanced: [3]int{5, 3, 4},
		Message: "Message size exceeds fixed maximum message size"}
	// ErrBareLineEnding: the body holds a CR or an LF that is not part of
	// a CRLF pair (RFC 5321 sections 2.3.8 and 4.1.1.4). Such a message
	// is refused whole, so that no "\n.\n" or "\r.\r" it carries can end
	// a message early here or further down the line (SMTP smuggling).
	ErrBareLineEnding = &Error{Code: 554, Enhanced: [3]int{5, 6, 0},
		Message: "Message contains a bare CR or LF; lines must end with CRLF (RFC 5321 section 2.3.8)"}
)

// errBodyNotConsumed: Deliver returned nil without reading the body to
// its end; the message it stored would be truncated.
var errBodyNotConsumed = errors.New("smtpd: Deliver returned before the end of the body")

// Data receives the message (RFC 5321 section 4.1.1.4, or RFC 3030 BDAT)
// and hands it to Backend.Deliver as a stream; the reply is 250 only once
// Deliver returned nil, that is once the message is durable.
//
// go-smtp ends DATA only at CRLF.CRLF, removes dot-stuffing (RFC 5321
// section 4.5.2: the leading dot, and with gosmtp's fix nothing else) and
// passes bare CR and LF through; the body reader refuses those
// (ErrBareLineEnding), "\r\n.\r" followed by text included. For BDAT, go-smtp calls Data in a
// goroutine of its own and r is a pipe fed with the chunks.
func (s *session) Data(r io.Reader) error {
	if s.c.closed.Load() {
		return replyClosed
	}
	_, bdat := r.(*io.PipeReader)
	env := s.envelope()
	if env == nil { // go-smtp checks MAIL and RCPT first; be safe
		return replyNeedMail
	}
	if !bdat {
		// RFC 5321 section 4.5.3.2.5: a timeout per read during DATA,
		// not for the whole body. go-smtp reads BDAT chunks itself,
		// each within ReadTimeout.
		s.c.dataEnd = time.Now().Add(s.srv.cfg.DataTimeout)
		s.c.dataMode.Store(true)
	}
	start := time.Now()
	body := &bodyReader{r: r, limit: s.srv.cfg.MaxMessageBytes}
	err := s.srv.cfg.Backend.Deliver(s.ctx, env, body)
	if err == nil && !body.finish() {
		// A backend bug: whatever it stored is not the whole message.
		s.c.log.Error("smtp: Deliver returned nil before the end of the body", "read_err", body.err)
		err = errBodyNotConsumed
	}

	attrs := []any{"from", env.From, "rcpts", env.To, "size", body.n, "helo", env.Helo,
		"tls", env.TLS, "auth", env.AuthUser, "bdat", bdat, "duration", time.Since(start).Round(time.Millisecond)}
	if err == nil {
		s.c.log.Info("smtp: message accepted", attrs...)
		return nil
	}

	rerr := body.err
	if rerr == io.EOF {
		rerr = nil
	}
	var reply *smtp.SMTPError
	switch {
	case rerr == ErrMessageTooBig || rerr == ErrBareLineEnding:
		// Our verdict on the body, whatever Deliver made of it. go-smtp
		// reads (and drops) the rest of the body: the connection stays
		// in step.
		reply, _ = toReply(rerr)
	case rerr == nil:
		// The backend's verdict.
		var ok bool
		if reply, ok = toReply(err); !ok {
			s.c.log.Error("smtp: delivery failed", append(attrs, "err", err)...)
			return reply
		}
	case errors.Is(rerr, smtp.ErrDataReset) || s.ctx.Err() != nil:
		// BDAT aborted by RSET, or the session ended: nobody to answer.
		s.c.log.Info("smtp: message aborted", append(attrs, "err", rerr)...)
		return rerr
	case errors.Is(rerr, smtp.ErrTooLongLine):
		// go-smtp has dropped input: the stream is out of step. (BDAT
		// chunks have no line limit: this is DATA.)
		s.c.log.Info("smtp: message rejected", append(attrs, "code", replyLineTooLong.Code, "reason", "line too long")...)
		if !bdat {
			s.abort(replyLineTooLong)
		}
		return replyLineTooLong
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		s.c.log.Info("smtp: message aborted", append(attrs, "reason", "timeout")...)
		if !bdat {
			s.abort(replyTimeout)
		}
		return replyTimeout
	default: // the client went away (io.ErrUnexpectedEOF) or the network failed
		s.c.log.Info("smtp: message aborted", append(attrs, "err", rerr)...)
		return rerr
	}
	s.c.log.Info("smtp: message rejected", append(attrs, "code", reply.Code, "enhanced", enhanced(reply.EnhancedCode))...)
	return reply
}

// bodyReader is what Deliver reads: the message as received, CRLF line
// endings, dot-stuffing removed. It never buffers more than the caller's
// slice. It counts the size (ErrMessageTooBig past the limit) and checks
// that every CR and LF belongs to a CRLF pair (ErrBareLineEnding).
type bodyReader struct {
	r       io.Reader
	limit   int64
	n       int64 // octets returned so far
	pending bool  // the last octet returned was a CR
	err     error // first error returned, sticky
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	for i := 0; i < n; i++ {
		c := p[i]
		if b.pending && c != '\n' {
			return b.fail(ErrBareLineEnding)
		}
		if !b.pending && c == '\n' {
			return b.fail(ErrBareLineEnding)
		}
		b.pending = c == '\r'
	}
	b.n += int64(n)
	if b.n > b.limit {
		return b.fail(ErrMessageTooBig)
	}
	if err == io.EOF && b.pending { // a body ending in a bare CR (BDAT)
		return b.fail(ErrBareLineEnding)
	}
	if err != nil {
		if errors.Is(err, smtp.ErrDataTooLarge) { // go-smtp's own limit, DATA
			err = ErrMessageTooBig
		}
		b.err = err
	}
	return n, err
}

func (b *bodyReader) fail(err error) (int, error) {
	b.err = err
	return 0, err
}

// finish reports whether the body was read to its end, reading on if
// Deliver stopped right before io.EOF (an io.Reader may legitimately
// return the last octets without io.EOF).
func (b *bodyReader) finish() bool {
	if b.err == io.EOF {
		return true
	}
	if b.err != nil {
		return false
	}
	var one [1]byte
	n, err := b.Read(one[:])
	return n == 0 && err == io.EOF
}
