package smtpd

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Envelope is what the SMTP session learned about one transaction; the
// router uses it for resolution and trace headers (RFC 5321 section 4.4).
type Envelope struct {
	From       string   // reverse-path, "" for the null sender
	To         []string // forward-paths accepted at RCPT time, in order
	Helo       string   // the client's EHLO/HELO argument
	RemoteAddr string   // client address (host:port)
	LocalAddr  string
	TLS        string // e.g. "TLS1.3 TLS_AES_128_GCM_SHA256", "" if plain
	AuthUser   string // authenticated login, "" if none
	Submission bool   // came in through the submission service
	SMTPUTF8   bool
	Body8Bit   bool  // BODY=8BITMIME or BINARYMIME
	Size       int64 // SIZE= of MAIL FROM (RFC 1870), 0 if not declared

	// DSN parameters of MAIL FROM (RFC 3461 section 4.3 and 4.4): RET,
	// "FULL" or "HDRS" ("" when absent), and ENVID, decoded from xtext.
	Ret   string
	EnvID string
	// DSN parallels To: each recipient's NOTIFY and ORCPT parameters
	// (RFC 3461 sections 4.1 and 4.2).
	DSN []RcptDSN

	// Backend is the backend's own state for the transaction, set by
	// CheckSender and kept through the RCPT commands to Deliver (the
	// recipients it resolved, say); smtpd never looks into it.
	Backend any
}

// RcptDSN is what RCPT TO said about delivery status notifications for
// one recipient (RFC 3461 sections 4.1 and 4.2).
type RcptDSN struct {
	// Notify is nil when NOTIFY was absent, ["NEVER"], or some of
	// "SUCCESS", "FAILURE" and "DELAY".
	Notify []string
	// ORcptType and ORcpt are the original recipient's address type
	// ("rfc822", "utf-8") and address, decoded; both "" when absent.
	ORcptType string
	ORcpt     string
}

// Error is a reply the backend wants the client to see: an RFC 5321 code
// and an RFC 3463 enhanced status code.
type Error struct {
	Code     int    // e.g. 550
	Enhanced [3]int // e.g. {5, 1, 1}
	Message  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%d %d.%d.%d %s", e.Code, e.Enhanced[0], e.Enhanced[1], e.Enhanced[2], e.Message)
}

// ErrAuthFailed is returned by Authenticate for any bad credentials.
var ErrAuthFailed = errors.New("authentication failed")

// Backend is everything the SMTP server needs from the rest of postoffice.
type Backend interface {
	// Authenticate checks SMTP AUTH credentials (submission); it returns
	// the canonical user name, or ErrAuthFailed.
	Authenticate(ctx context.Context, username, password string) (string, error)
	// CheckSender is called at MAIL FROM; a non-nil *Error is the reply.
	// (Submission: the sender must be one of AuthUser's addresses.)
	CheckSender(ctx context.Context, env *Envelope) error
	// CheckRecipient is called at RCPT TO with the envelope so far; a
	// non-nil *Error is the reply (550 5.1.1 unknown user, 554 5.7.1 relay
	// denied, 552 5.2.2 over quota, 451 4.3.0 temporary...).
	CheckRecipient(ctx context.Context, env *Envelope, rcpt string) error
	// Deliver routes the message to every accepted recipient and returns
	// only once it is durable in every mailbox or in the outbound queue.
	// The body is the message as received (CRLF line endings, no
	// dot-stuffing). A non-nil *Error is the reply to DATA/BDAT.
	Deliver(ctx context.Context, env *Envelope, body io.Reader) error
}
