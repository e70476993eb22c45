package smtpd

import (
	"crypto/tls"
	"strings"
	"time"
)

// RFC 3207 section 4: STARTTLS, offered when a TLS configuration is set
// and the connection is not TLS yet.
func cmdStartTLS(s *session, arg string) bool {
	if strings.TrimSpace(arg) != "" {
		return s.respond(syntaxReply("Syntax: STARTTLS"))
	}
	if s.srv.cfg.TLSConfig == nil || s.tls != "" {
		return s.respond(replyNoStartTLS)
	}
	if s.tx != nil {
		// RFC 3207 section 4.2 resets the session; a transaction would be
		// lost without a word.
		return s.respond(replyNestedStartTLS)
	}
	s.reply(replyStartTLS)
	// The 220 must reach the client before the handshake, whatever it
	// pipelined after STARTTLS.
	if err := s.bw.Flush(); err != nil {
		s.ioError(err)
		return false
	}
	// Plaintext the client sent after STARTTLS must not be taken as
	// commands of the TLS session (command injection, CVE-2011-0411):
	// it is dropped.
	if n := s.br.Buffered(); n > 0 {
		s.log.Warn("discarding plaintext pipelined after STARTTLS", "bytes", n)
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLSConfig)
	tc.SetDeadline(time.Now().Add(s.srv.cfg.ReadTimeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.log.Info("STARTTLS handshake failed", "err", err)
		// The client expects TLS now: no plaintext reply is possible.
		return false
	}
	tc.SetDeadline(time.Time{})
	s.conn = tc
	s.br.Reset(connReader{s})
	s.bw.Reset(connWriter{s})
	s.tls = tlsString(tc.ConnectionState())
	// RFC 3207 section 4.2: the server discards what it learned from the
	// client before TLS: the EHLO argument, the transaction, the
	// authentication. The client must send EHLO again.
	s.resetTx()
	s.helo, s.extended, s.authUser = "", false, ""
	if s.hooks != nil {
		s.hooks.TLS(tc.ConnectionState())
	}
	s.log.Debug("STARTTLS done", "tls", s.tls)
	return true
}
