package pop3

import (
	"crypto/tls"
	"strings"
	"time"
)

// RFC 2595 section 4: STLS, in the AUTHORIZATION state only (the command
// table enforces that), and only before TLS is in place.
func cmdStls(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: STLS takes no argument")
	}
	if s.isTLS {
		s.reply("-ERR Already using TLS")
		return true
	}
	if s.srv.cfg.TLSConfig == nil {
		s.reply("-ERR STLS not available")
		return true
	}
	s.reply("+OK Begin TLS negotiation")
	// The +OK must reach the client before the handshake, pipelined
	// input or not.
	if err := s.bw.Flush(); err != nil {
		s.err = err
		return false
	}
	// Plaintext the client sent after STLS must not be taken as commands
	// of the TLS session (command injection, CVE-2011-0411): drop it.
	if n := s.br.Buffered(); n > 0 {
		s.log.Warn("discarding plaintext pipelined after STLS", "bytes", n)
	}
	tc := tls.Server(s.conn, s.srv.cfg.TLSConfig)
	tc.SetDeadline(time.Now().Add(s.srv.timeout))
	if err := tc.HandshakeContext(s.ctx); err != nil {
		s.log.Info("STLS handshake failed", "err", err)
		// The client expects TLS now: no plaintext answer is possible.
		tc.Close()
		return false
	}
	s.conn = tc
	s.isTLS = true
	s.br.Reset(tc)
	// RFC 2595 section 4: the client forgets what it knew (CAPA); the
	// server forgets any USER given before.
	s.pendingUser = ""
	s.log.Debug("STLS done", "version", tls.VersionName(tc.ConnectionState().Version))
	return true
}
