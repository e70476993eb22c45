package pop3

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/sasllogin"
)

// saslMechanisms are the SASL mechanisms offered (RFC 5034), both of which
// send the password in the clear.
var saslMechanisms = []string{sasl.Plain, sasllogin.Name}

const respPlaintextDisallowed = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."

// errAuthzid: PLAIN with an authorization identity other than the
// authentication identity (RFC 4616 section 2); we support no proxy login.
var errAuthzid = errors.New("authorization identity differs from authentication identity")

// RFC 1939 section 7: USER name. The answer is +OK whether or not the name
// exists, so that names cannot be probed.
func cmdUser(s *session, arg string) bool {
	args := strings.Fields(arg)
	if len(args) != 1 {
		return s.badCommand("-ERR Syntax error: USER name")
	}
	if !s.plaintextAllowed() {
		s.reply(respPlaintextDisallowed)
		return true
	}
	s.pendingUser = args[0]
	s.reply("+OK")
	return true
}

// RFC 1939 section 7: PASS string. "Since the PASS command has exactly one
// argument, a POP3 server may treat spaces in the argument as part of the
// password": the argument is the rest of the line.
func cmdPass(s *session, arg string) bool {
	if arg == "" {
		return s.badCommand("-ERR Syntax error: PASS password")
	}
	if !s.plaintextAllowed() {
		s.reply(respPlaintextDisallowed)
		return true
	}
	if s.pendingUser == "" {
		s.reply("-ERR No user name given, send USER first")
		return true
	}
	username := s.pendingUser
	// RFC 1939 section 7: after a failed PASS the client starts again with
	// USER.
	s.pendingUser = ""
	user, err := s.authenticate(username, arg)
	if err != nil {
		return s.authFailed("USER", username, err)
	}
	return s.login(user, "USER")
}

// authenticate asks the backend to check a login name and password.
func (s *session) authenticate(username, password string) (string, error) {
	user, err := s.srv.cfg.Backend.Authenticate(s.ctx, username, password)
	if err == nil && user == "" {
		err = errors.New("backend returned an empty user name")
	}
	return user, err
}

// authFailed answers a failed authentication and stays in AUTHORIZATION so
// the client may try again. Wrong password and unknown user get the same
// answer (RFC 3206 section 5, [AUTH]); backend failures get [SYS/TEMP] or
// [SYS/PERM]. A credential failure is answered after a delay.
func (s *session) authFailed(mech, username string, err error) bool {
	resp := errorResponse(err)
	if errors.Is(err, errAuthzid) {
		resp = respAuthFailed
	}
	if resp == respAuthFailed {
		s.log.Info("authentication failed", "mech", mech, "login", clientinfo.Clip(username), "tls", s.isTLS)
		if !s.sleep(s.srv.authDelay) {
			return false
		}
	} else {
		s.log.Error("authentication error", "mech", mech, "login", clientinfo.Clip(username), "err", err)
	}
	s.reply(resp)
	return true
}

// sleep waits for d unless the session is cancelled first (server closed).
func (s *session) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.ctx.Done():
		return false
	}
}

// login opens the authenticated user's maildrop and enters TRANSACTION
// (RFC 1939 section 4). If the maildrop cannot be opened (RFC 2449 section
// 8.1.2: [IN-USE] when locked) the session stays in AUTHORIZATION.
func (s *session) login(user, mech string) bool {
	drop, err := s.srv.cfg.Backend.OpenMaildrop(s.ctx, user)
	if err == nil && drop == nil {
		err = errors.New("backend returned a nil maildrop")
	}
	if err != nil {
		resp := sysErrorResponse(err)
		if errors.Is(err, ErrInUse) {
			resp = respInUse
			s.log.Info("maildrop in use", "user", user)
		} else if errors.Is(err, ErrLoginDelay) {
			// RFC 2449 section 8.1.1: refused after the password was
			// checked, so that the code does not reveal that the user
			// exists.
			resp = respLoginDelay
			s.log.Info("login refused, login delay", "user", user)
		} else {
			s.log.Error("opening maildrop failed", "user", user, "err", err)
		}
		s.reply(resp)
		return true
	}
	if n, size := drop.Stat(); n < 0 || size < 0 {
		s.log.Error("maildrop snapshot is invalid", "user", user, "messages", n, "octets", size)
		if cerr := drop.Close(); cerr != nil {
			s.log.Warn("closing maildrop failed", "user", user, "err", cerr)
		}
		s.reply(respSysPerm)
		return true
	}
	s.drop = drop
	s.leased, _ = drop.(LeasedMaildrop)
	s.user = user
	s.state = stateTransaction
	n, size := s.counts()
	s.log.Info("login", "user", user, "mech", mech, "tls", s.isTLS, "utf8", s.utf8, "messages", n)
	s.replyf("+OK Maildrop has %d messages (%d octets)", n, size)
	return true
}

// listMessages gets the snapshot's list from the maildrop, for the first
// command that needs it. The snapshot is the maildrop as of the lock (RFC
// 1939 section 4), whenever it is listed; a list that is not what the login
// counted, or that the session could not write, ends the session without
// deleting anything, as a lost lock does.
func (s *session) listMessages() bool {
	msgs, err := s.drop.Messages(s.ctx)
	if err == nil {
		err = validateMessages(msgs)
	}
	if err == nil {
		var total int64
		for _, m := range msgs {
			total += m.Size
		}
		if n, size := s.drop.Stat(); n != len(msgs) || size != total {
			err = TempError{fmt.Errorf("the list has %d messages of %d octets, the login counted %d of %d", len(msgs), total, n, size)}
		}
	}
	if err != nil {
		s.log.Error("listing the maildrop failed: session ended", "user", s.user, "err", err)
		s.closeMaildrop()
		s.reply(sysErrorResponse(err))
		return false
	}
	if msgs == nil {
		msgs = []Message{} // listed, and empty
	}
	s.msgs = msgs
	s.deleted = make([]bool, len(msgs))
	return true
}

// validateMessages checks what the session writes verbatim: RFC 1939
// section 7, a unique-id is 1 to 70 characters in 0x21-0x7E; sizes are not
// negative.
func validateMessages(msgs []Message) error {
	for i, m := range msgs {
		if len(m.UID) < 1 || len(m.UID) > 70 {
			return fmt.Errorf("message %d: unique-id length out of 1-70", i+1)
		}
		for j := 0; j < len(m.UID); j++ {
			if c := m.UID[j]; c < 0x21 || c > 0x7e {
				return fmt.Errorf("message %d: unique-id has a byte out of 0x21-0x7E", i+1)
			}
		}
		if m.Size < 0 {
			return fmt.Errorf("message %d: negative size", i+1)
		}
	}
	return nil
}

// RFC 5034 section 4: AUTH mechanism [initial-response]. With no argument
// the mechanisms are listed, as Dovecot and other servers do (the RFC 1734
// habit some clients still rely on).
func cmdAuth(s *session, arg string) bool {
	args := strings.Fields(arg)
	if len(args) == 0 {
		return s.listMechanisms()
	}
	if len(args) > 2 {
		return s.badCommand("-ERR Syntax error: AUTH mechanism [initial-response]")
	}
	mech := strings.ToUpper(args[0])
	if mech != sasl.Plain && mech != sasllogin.Name {
		s.reply("-ERR Unsupported authentication mechanism")
		return true
	}
	if !s.plaintextAllowed() {
		s.reply(respPlaintextDisallowed)
		return true
	}
	s.pendingUser = ""
	var resp []byte
	if len(args) == 2 {
		var err error
		if resp, err = saslResponse(args[1]); err != nil {
			s.reply("-ERR Invalid base64 data in initial response")
			return true
		}
	}
	return s.saslExchange(s.newSASLAttempt(mech), resp)
}

// listMechanisms answers AUTH without argument: the mechanisms offered
// here, none where plaintext ones are not allowed.
func (s *session) listMechanisms() bool {
	s.reply("+OK")
	if s.plaintextAllowed() {
		for _, m := range saslMechanisms {
			s.reply(m)
		}
	}
	s.reply(".")
	return true
}

// saslAttempt is one AUTH exchange: the mechanism's server, and what its
// callback learnt.
type saslAttempt struct {
	mech     string
	server   sasl.Server
	user     string // the backend's user, once authenticated
	username string // as given by the client, for logs
	err      error  // why authentication failed
}

func (s *session) newSASLAttempt(mech string) *saslAttempt {
	a := &saslAttempt{mech: mech}
	check := func(name, password string) error {
		a.username = name
		u, err := s.authenticate(name, password)
		if err != nil {
			a.err = err
			return err
		}
		a.user = u
		return nil
	}
	if mech == sasl.Plain {
		a.server = sasl.NewPlainServer(func(identity, name, password string) error {
			if identity != "" && identity != name {
				a.username = name
				a.err = errAuthzid
				return a.err
			}
			return check(name, password)
		})
	} else {
		a.server = sasllogin.NewServer(check)
	}
	return a
}

// saslExchange runs the exchange from the client's initial response (nil
// for none) to the login or the failure.
func (s *session) saslExchange(a *saslAttempt, resp []byte) bool {
	for {
		challenge, done, err := a.server.Next(resp)
		if err != nil {
			if a.err != nil {
				return s.authFailed(a.mech, a.username, a.err)
			}
			s.log.Info("malformed SASL exchange", "mech", a.mech, "err", err)
			s.reply("-ERR Malformed authentication exchange")
			return true
		}
		if done {
			return s.login(a.user, a.mech)
		}
		var over, keep bool
		if resp, over, keep = s.saslStep(challenge); over {
			return keep
		}
	}
}

// saslStep sends a challenge and reads the client's response. When the
// exchange is over instead (cancelled, malformed, the connection lost)
// it returns over, and keep is the command's result.
func (s *session) saslStep(challenge []byte) (resp []byte, over, keep bool) {
	// RFC 5034 section 4: a server challenge is "+ " and base64.
	s.reply("+ " + base64.StdEncoding.EncodeToString(challenge))
	if err := s.bw.Flush(); err != nil {
		s.err = err
		return nil, true, false
	}
	line, err := s.readLine(maxSASLLine)
	if errors.Is(err, errLineTooLong) {
		return nil, true, s.badCommand("-ERR Authentication response too long")
	}
	if err != nil {
		s.err = err
		return nil, true, false
	}
	// RFC 5034 section 4: "*" cancels; the server answers -ERR.
	if len(line) == 1 && line[0] == '*' {
		s.reply("-ERR Authentication cancelled")
		return nil, true, true
	}
	resp, err = saslResponse(string(line))
	if err != nil {
		s.reply("-ERR Invalid base64 data in response")
		return nil, true, true
	}
	return resp, false, false
}

// saslResponse decodes a client response: base64, or "=" for a
// zero-length one (RFC 5034 section 4, for the initial response; taken
// in a later response too), as is an empty line.
func saslResponse(line string) ([]byte, error) {
	if line == "=" || line == "" {
		return []byte{}, nil
	}
	return base64.StdEncoding.DecodeString(line)
}
