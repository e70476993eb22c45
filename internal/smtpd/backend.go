package smtpd

import (
	"context"
	"errors"
	"io"
)

// Envelope is what the SMTP session learned about one transaction; the
// router uses it for resolution and trace headers (RFC 5321 section 4.4).
type Envelope struct {
	// ID names the transaction: made by the session at MAIL, given to the
	// client in the reply to the end of data ("queued as ID"), and meant
	// for the backend's own records (the trace header, the journal), so
	// that a client's reply can be matched with them.
	ID         string
	From       string   // reverse-path, "" for the null sender
	To         []string // forward-paths accepted at RCPT time, in order
	Helo       string   // the client's EHLO/HELO argument
	RemoteAddr string   // client address (host:port)
	LocalAddr  string
	TLS        string // e.g. "TLS1.3 TLS_AES_128_GCM_SHA256", "" if plain
	AuthUser   string // authenticated login, "" if none
	Submission bool   // came in through the submission service
	SMTPUTF8   bool   // MAIL FROM carried SMTPUTF8 (RFC 6531 section 3.4)
	Body8Bit   bool   // BODY=8BITMIME (RFC 6152)
	Size       int64  // SIZE= of MAIL FROM (RFC 1870), 0 if not declared

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
	// Hooks are the session's hooks (SessionOpener), nil when the
	// backend gave none: Deliver ends the transaction they saw.
	Hooks SessionHooks
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

// ErrAuthFailed is returned by Authenticate for any bad credentials.
var ErrAuthFailed = errors.New("authentication failed")

// Backend is everything the SMTP server needs from the rest of postoffice.
//
// A refusal is an smtpreply.Reply (or a *smtpreply.Reply, or an error
// wrapping either) with a 4xx or 5xx code: the client gets that reply
// (RFC 5321 section 4.2, with the enhanced status code of RFC 3463). Any
// other error is a failure of the backend: the client gets 451 4.3.0 and
// the error goes to the log only.
type Backend interface {
	// Authenticate checks SMTP AUTH credentials (RFC 4954); it returns the
	// canonical user name, or ErrAuthFailed (535 5.7.8).
	Authenticate(ctx context.Context, username, password string) (string, error)
	// CheckSender is called at MAIL FROM with the new transaction's
	// envelope (the sender rule for authenticated sessions, the free
	// space).
	CheckSender(ctx context.Context, env *Envelope) error
	// CheckRecipient is called at RCPT TO with the envelope so far (550
	// 5.1.1 unknown user, 554 5.7.1 relay denied, 452 4.2.2 over quota,
	// 451 4.3.0 temporary...).
	CheckRecipient(ctx context.Context, env *Envelope, rcpt string) error
	// Deliver routes the message to every accepted recipient and returns
	// only once it is durable in every mailbox or in the outbound queue:
	// the client gets 250 only after that. The body is the message as
	// received (CRLF line endings, no dot-stuffing), streamed from the
	// connection; its errors are replies (ErrMessageTooBig,
	// ErrBareLineEnding) or the connection's failure, and a Deliver that
	// sees one stores nothing and returns it.
	Deliver(ctx context.Context, env *Envelope, body io.Reader) error
}
