package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/address"
	smtp "github.com/postoffice-mail/postoffice/internal/smtpd/gosmtp"
)

// engineBackend is the go-smtp Backend: one session per EHLO/HELO, and a
// new one after STARTTLS (RFC 3207 section 4.2: the client must forget
// everything it learned before the handshake; so do we).
type engineBackend struct{ s *Server }

func (b engineBackend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	c := connOf(sc.Conn())
	if c == nil {
		return nil, errors.New("smtpd: connection not registered")
	}
	sess := &session{srv: b.s, c: c, sc: sc, top: sc.Conn()}
	if cs, ok := c.tlsState(sc.Conn()); ok {
		sess.tls = tlsString(cs)
	}
	sess.ctx, sess.cancel = context.WithCancel(clientinfo.WithRemote(b.s.ctx, c.RemoteAddr().String()))
	c.mu.Lock()
	c.sess = sess
	c.mu.Unlock()
	return sess, nil
}

// connOf finds our conn under what go-smtp reads from.
func connOf(nc net.Conn) *conn {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	c, _ := nc.(*conn)
	return c
}

// session implements smtp.Session and smtp.AuthSession. go-smtp calls its
// methods from the connection's goroutine, except Data for BDAT, which
// runs in a goroutine of its own (see data.go).
type session struct {
	srv *Server
	c   *conn
	sc  *smtp.Conn
	top net.Conn // what go-smtp reads from and writes to
	tls string   // Envelope.TLS, "" if plaintext
	ctx context.Context
	// cancel abandons backend calls when the session ends (QUIT, close,
	// STARTTLS).
	cancel context.CancelFunc

	// Guarded by c.mu.
	authUser string
	tx       *Envelope // the mail transaction in progress, nil if none
}

// Mail starts a transaction (RFC 5321 section 4.1.1.2). go-smtp has
// parsed the reverse-path ("" for the null sender <>, RFC 5321 section
// 4.5.5) and checked SIZE= against the limit (RFC 1870: 552 5.3.4).
func (s *session) Mail(from string, opts *smtp.MailOptions) error {
	if s.c.closed.Load() {
		return replyClosed
	}
	if s.srv.isDraining() {
		return s.shuttingDown()
	}
	s.c.mu.Lock()
	authUser, busy := s.authUser, s.tx != nil
	s.c.mu.Unlock()
	if s.srv.cfg.Submission && authUser == "" {
		// RFC 6409 section 4.3, RFC 4954 section 6.
		return s.fail(replyAuthRequired)
	}
	if busy {
		// RFC 5321 section 4.1.4: no nested transactions.
		return s.fail(replyNestedMail)
	}
	if len(opts.EnvelopeID) > maxEnvIDLen {
		// RFC 3461 section 4.4: at most 100 characters (go-smtp checks
		// the rest of its syntax).
		return s.fail(replyBadDSNParam("ENVID"))
	}
	if from != "" {
		var r *smtp.SMTPError
		raw := from
		if from, r = checkAddress(from, opts.UTF8, true); r != nil {
			s.c.log.Info("smtp: rejected", "stage", "MAIL", "from", raw, "code", r.Code, "reason", "address syntax")
			return s.fail(r)
		}
	}
	env := &Envelope{
		From:       from,
		Helo:       s.sc.Hostname(),
		RemoteAddr: s.c.RemoteAddr().String(),
		LocalAddr:  s.c.LocalAddr().String(),
		TLS:        s.tls,
		AuthUser:   authUser,
		Submission: s.srv.cfg.Submission,
		SMTPUTF8:   opts.UTF8,
		Size:       opts.Size,
		// RFC 6152 (8BITMIME), RFC 3030 (BINARYMIME).
		Body8Bit: opts.Body == smtp.Body8BitMIME || opts.Body == smtp.BodyBinaryMIME,
		// RFC 3461 sections 4.3 and 4.4, parsed and checked by go-smtp.
		Ret:   string(opts.Return),
		EnvID: opts.EnvelopeID,
	}
	if err := s.srv.cfg.Backend.CheckSender(s.ctx, env); err != nil {
		return s.reject("MAIL", err, "from", from)
	}
	s.c.mu.Lock()
	// Checked again under c.mu: Shutdown either sees this transaction or
	// this sees Shutdown (conn.closeIfIdle).
	draining := s.srv.isDraining()
	if !draining {
		s.tx = env
	}
	s.c.mu.Unlock()
	if draining {
		return s.shuttingDown()
	}
	return nil
}

// Rcpt adds a recipient (RFC 5321 section 4.1.1.3). go-smtp has already
// refused one beyond MaxRecipients with 452 4.5.3 (RFC 5321 section
// 4.5.3.1.10).
func (s *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.c.closed.Load() {
		return replyClosed
	}
	s.c.mu.Lock()
	tx := s.tx
	s.c.mu.Unlock()
	if tx == nil {
		return s.fail(replyNeedMail)
	}
	raw := to
	to, r := checkAddress(to, tx.SMTPUTF8, false)
	if r != nil {
		s.c.log.Info("smtp: rejected", "stage", "RCPT", "rcpt", raw, "code", r.Code, "reason", "address syntax")
		return s.fail(r)
	}
	if err := s.srv.cfg.Backend.CheckRecipient(s.ctx, tx, to); err != nil {
		return s.reject("RCPT", err, "from", tx.From, "rcpt", to)
	}
	// RFC 3461 sections 4.1 and 4.2, parsed and checked by go-smtp; the
	// address type as RFC 3461 writes it, lower case.
	d := RcptDSN{ORcptType: strings.ToLower(string(opts.OriginalRecipientType)), ORcpt: opts.OriginalRecipient}
	if !printable(d.ORcpt) {
		// An ORCPT of type utf-8 may decode to any code point (RFC 6533
		// section 3): none that could break a line where it is written.
		return s.fail(replyBadDSNParam("ORCPT"))
	}
	for _, n := range opts.Notify {
		d.Notify = append(d.Notify, string(n))
	}
	s.c.mu.Lock()
	tx.To = append(tx.To, to)
	tx.DSN = append(tx.DSN, d)
	s.c.mu.Unlock()
	return nil
}

// Reset ends the transaction: RSET, a new EHLO, the end of DATA or BDAT.
// While the server drains, the connection is closed here, right after the
// reply to DATA or BDAT.
func (s *session) Reset() {
	s.c.mu.Lock()
	s.tx = nil
	s.c.mu.Unlock()
	if s.srv.isDraining() && !s.c.closed.Load() {
		s.abort(replyShuttingDown)
	}
}

// Logout ends the session: the connection closes, or STARTTLS succeeded.
func (s *session) Logout() error {
	s.cancel()
	s.c.mu.Lock()
	if s.c.sess == s {
		s.c.sess = nil
	}
	s.c.mu.Unlock()
	return nil
}

// envelope returns a copy of the transaction for Deliver, nil if none:
// with BDAT the delivery may outlive the transaction (RSET).
func (s *session) envelope() *Envelope {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	if s.tx == nil {
		return nil
	}
	env := *s.tx
	env.To = append([]string(nil), s.tx.To...)
	env.DSN = append([]RcptDSN(nil), s.tx.DSN...)
	return &env
}

// closeIfIdle closes the connection at Shutdown unless a transaction is
// in progress (Reset closes those after their last reply). RFC 5321
// section 3.8: a server shutting down should send 421 first.
func (c *conn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != nil && c.sess.tx != nil {
		return
	}
	if c.sess != nil {
		// Net and TLS connections serialize Write calls, and go-smtp
		// writes each reply in one call: this lands between replies.
		writeReplies(c.sess.top, shortWriteTimeout, replyShuttingDown)
	}
	c.kill()
}

// checkAddress parses a path as go-smtp hands it over (the local part
// unquoted) and returns it in its written form, quoted where it must be
// (address.Address.String), which is what the envelope carries from here
// on. It refuses what cannot be written back safely (angle brackets,
// control characters, invalid UTF-8: RFC 5321 section 4.1.2, 501 5.1.7 or
// 5.1.3) and non-ASCII without the SMTPUTF8 parameter (RFC 6531 section
// 3.5, 553 5.6.7).
func checkAddress(path string, smtputf8, sender bool) (string, *smtp.SMTPError) {
	a, err := address.ParseUnquoted(path)
	if err != nil {
		return "", badAddress(sender)
	}
	if !a.ASCII() && !smtputf8 {
		return "", replyNeedSMTPUTF8
	}
	return a.String(), nil
}

// maxEnvIDLen bounds ENVID (RFC 3461 section 4.4).
const maxEnvIDLen = 100

// printable reports valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}
