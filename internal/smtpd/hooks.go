package smtpd

import (
	"context"
	"crypto/tls"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// SessionOpener is an optional interface of a Backend that wants to see
// each SMTP conversation as it happens, not only the transactions: the
// exit points where filters (milters) look at a connection, its greeting
// and each command before the server answers it. smtpd knows nothing of
// what the hooks do; it calls them and answers their refusals.
type SessionOpener interface {
	// OpenSession is called once per connection, before the greeting
	// (after the handshake of implicit TLS). It may return nil: no hooks
	// for this session.
	OpenSession(ctx context.Context, c ConnInfo) SessionHooks
}

// ConnInfo describes a new connection to the hooks.
type ConnInfo struct {
	RemoteAddr, LocalAddr string // host:port
	Submission            bool   // the submission service (RFC 6409)
	Hostname              string // our name, as in the greeting
	// TLS is the connection state of an implicit-TLS connection (RFC
	// 8314), nil for a plaintext one.
	TLS *tls.ConnectionState
}

// SessionHooks are a session's hooks. Each call is made from the
// session's goroutine, in the order of the conversation. A hook that
// returns a non-nil reply (4xx or 5xx) refuses:
//
//   - Connect and Helo: the session stays open, and every MAIL is
//     answered with that reply, as Postfix does for a milter's refusal
//     before MAIL (the client learns why where it can act on it);
//   - Mail: the transaction (the client gets the reply to MAIL);
//   - Rcpt: that recipient only;
//   - Data: the transaction (the client gets the reply to DATA, or to the
//     first BDAT after its chunk is read and dropped).
//
// The end of the data is the Backend's Deliver, which finds the hooks in
// Envelope.Hooks.
type SessionHooks interface {
	Connect(ctx context.Context) *smtpreply.Reply
	// Helo is called for each accepted EHLO or HELO, again after
	// STARTTLS.
	Helo(ctx context.Context, name string) *smtpreply.Reply
	// TLS is called after a STARTTLS handshake (RFC 3207).
	TLS(cs tls.ConnectionState)
	// Auth is called after a successful AUTH (RFC 4954) with the
	// mechanism and the user name Authenticate returned.
	Auth(mechanism, user string)
	// Mail is called once the Backend's CheckSender accepted the
	// transaction; params are the MAIL command's ESMTP parameters as the
	// client wrote them.
	Mail(ctx context.Context, env *Envelope, params []string) *smtpreply.Reply
	// Rcpt is called once CheckRecipient accepted rcpt.
	Rcpt(ctx context.Context, env *Envelope, rcpt string, params []string) *smtpreply.Reply
	// Data is called when DATA or the first BDAT starts the message.
	Data(ctx context.Context, env *Envelope) *smtpreply.Reply
	// Reset ends the transaction: RSET, a new EHLO, STARTTLS, a
	// refusal, QUIT, a lost connection, and after Deliver returned (a
	// Deliver that ended the transaction leaves Reset nothing to do).
	Reset(ctx context.Context)
	// Close ends the session.
	Close()
}

// openHooks asks a backend that has hooks for this session's, and calls
// Connect.
func (s *session) openHooks() {
	o, ok := s.srv.cfg.Backend.(SessionOpener)
	if !ok {
		return
	}
	info := ConnInfo{RemoteAddr: s.remote, LocalAddr: s.local, Submission: s.srv.cfg.Submission, Hostname: s.srv.cfg.Hostname}
	if tc, ok := s.raw.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		info.TLS = &cs
	}
	if s.hooks = o.OpenSession(s.ctx, info); s.hooks == nil {
		return
	}
	s.refuseSession("connect", s.hooks.Connect(s.ctx))
}

// refuseSession keeps the first refusal of the session by its hooks.
func (s *session) refuseSession(stage string, r *smtpreply.Reply) {
	if r == nil || s.refusal != nil {
		return
	}
	rr, _ := toReply(*r)
	s.refusal = &rr
	s.log.Info("session refused by a filter", "stage", stage, "code", rr.Code, "enhanced", rr.Status.String())
}

// hookRefused turns a hook's refusal into the reply for the client
// (nil: none).
func hookRefused(r *smtpreply.Reply) error {
	if r == nil {
		return nil
	}
	return *r
}

// dataHook asks the hooks whether the message may start (DATA, the
// first BDAT); a refusal ends the transaction and is the reply.
func (s *session) dataHook() *smtpreply.Reply {
	if s.hooks == nil {
		return nil
	}
	hr := s.hooks.Data(s.ctx, s.tx)
	if hr == nil {
		return nil
	}
	r, _ := toReply(*hr)
	s.log.Info("rejected", "stage", "DATA", "id", s.tx.ID, "from", s.tx.From, "code", r.Code, "enhanced", r.Status.String(), "by", "filter")
	s.resetTx()
	return &r
}
