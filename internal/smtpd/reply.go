package smtpd

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	smtp "github.com/postoffice-mail/postoffice/internal/smtpd/gosmtp"
)

// Replies of our own. Every 2xx, 4xx and 5xx reply carries an RFC 3463
// enhanced status code (RFC 2034 section 4).
var (
	replyAuthRequired = &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0},
		Message: "Authentication required"} // RFC 4954 section 6
	replyEncryptionRequired = &smtp.SMTPError{Code: 538, EnhancedCode: smtp.EnhancedCode{5, 7, 11},
		Message: "Encryption required for requested authentication mechanism"} // RFC 4954 section 6
	replyAuthNotOffered = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "AUTH not available on this service"} // RFC 4954 section 3: not advertised, not accepted
	replyAuthInTransaction = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "AUTH not permitted during a mail transaction"} // RFC 4954 section 4
	replyAuthTempFail = &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Temporary authentication failure"} // RFC 4954 section 6
	replyAuthMalformed = &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Malformed authentication exchange"}
	replyNestedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "Nested MAIL command"}
	replyNeedMail = &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1},
		Message: "Need MAIL command first"}
	replyNeedSMTPUTF8 = &smtp.SMTPError{Code: 553, EnhancedCode: smtp.EnhancedCode{5, 6, 7},
		Message: "Non-ASCII addresses require the SMTPUTF8 parameter"} // RFC 6531 section 3.5
	replyTempLocal = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0},
		Message: "Temporary local problem, please try again later"}
	replyTooManyErrors = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 7, 0},
		Message: "Too many errors, closing connection"}
	replyShuttingDown = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2},
		Message: "Service shutting down, closing connection"} // RFC 5321 section 3.8
	replyTimeout = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Timeout, closing connection"} // RFC 5321 section 4.5.3.2
	replyClosed = &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 4, 2},
		Message: "Connection closed"} // never seen: written to a closed connection
	replyLineTooLong = &smtp.SMTPError{Code: 500, EnhancedCode: smtp.EnhancedCode{5, 5, 2},
		Message: "Line too long, closing connection"} // RFC 5321 section 4.5.3.1.6
)

// badAddress is the reply to an unusable address: X.1.7 for the sender,
// X.1.3 for a recipient (RFC 3463 section 3.2).
// replyBadDSNParam refuses a DSN parameter's value (RFC 3461 section 4:
// 501 5.5.4, as go-smtp refuses the others).
func replyBadDSNParam(name string) *smtp.SMTPError {
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 4}, Message: "Malformed " + name + " parameter value"}
}

func badAddress(sender bool) *smtp.SMTPError {
	if sender {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "Bad sender address syntax"}
	}
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "Bad recipient address syntax"}
}

// toReply turns a backend error into a reply: an *Error (also wrapped)
// as it is, anything else as 451 4.3.0. ok is false for the latter.
func toReply(err error) (r *smtp.SMTPError, ok bool) {
	var e *Error
	if !errors.As(err, &e) || e == nil {
		return replyTempLocal, false
	}
	if e.Code < 400 || e.Code > 599 {
		return replyTempLocal, false // not an error reply: a backend bug
	}
	enh := smtp.EnhancedCode(e.Enhanced)
	// RFC 2034 section 4: the class agrees with the reply code; subject
	// and detail have one to three digits.
	if enh[0] != e.Code/100 || enh[1] < 0 || enh[1] > 999 || enh[2] < 0 || enh[2] > 999 {
		enh = smtp.EnhancedCode{e.Code / 100, 0, 0}
	}
	msg := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, e.Message)
	if strings.TrimSpace(msg) == "" {
		msg = "Requested action not taken"
	}
	return &smtp.SMTPError{Code: e.Code, EnhancedCode: enh, Message: msg}, true
}

// reject logs a backend refusal of MAIL or RCPT and returns its reply.
func (s *session) reject(stage string, err error, attrs ...any) error {
	r, ok := toReply(err)
	attrs = append(attrs, "stage", stage, "code", r.Code, "enhanced", enhanced(r.EnhancedCode))
	if ok {
		s.c.log.Info("smtp: rejected", attrs...)
	} else {
		s.c.log.Error("smtp: backend failure", append(attrs, "err", err)...)
	}
	return s.fail(r)
}

// fail counts an error reply; at Config.MaxErrors the reply is sent,
// followed by 421 4.7.0, and the connection is closed. Only for the
// connection's goroutine (MAIL, RCPT, AUTH).
func (s *session) fail(r *smtp.SMTPError) error {
	if s.c.countError() {
		s.c.log.Warn("smtp: too many errors, closing connection")
		s.abort(r, replyTooManyErrors)
	}
	return r
}

// shuttingDown answers 421 4.3.2 and closes the connection.
func (s *session) shuttingDown() error {
	s.abort(replyShuttingDown)
	return replyShuttingDown
}

// abort writes replies straight to the connection and closes it; go-smtp
// then fails to write its own reply and ends the session. Only for the
// connection's goroutine, which is the only one writing replies.
func (s *session) abort(rs ...*smtp.SMTPError) {
	s.c.closed.Store(true)
	top := s.sc.Conn()
	writeReplies(top, s.srv.cfg.WriteTimeout, rs...)
	top.Close()
}

// shortWriteTimeout bounds the 421 written to idle clients at Shutdown.
const shortWriteTimeout = 5 * time.Second

func writeReplies(c net.Conn, timeout time.Duration, rs ...*smtp.SMTPError) {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%d %s %s\r\n", r.Code, enhanced(r.EnhancedCode), r.Message)
	}
	c.SetWriteDeadline(time.Now().Add(timeout))
	c.Write([]byte(b.String()))
}

func enhanced(e smtp.EnhancedCode) string {
	return fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
}
