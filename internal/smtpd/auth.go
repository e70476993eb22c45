package smtpd

import (
	"errors"

	"github.com/emersion/go-sasl"
	smtp "github.com/postoffice-mail/postoffice/internal/smtpd/gosmtp"
)

// authAllowed: AUTH with a plaintext password only under TLS, from a
// loopback client, or when the operator allows it (RFC 4954 section 4,
// RFC 8314 section 3).
func (s *session) authAllowed() bool {
	return s.tls != "" || s.c.local || s.srv.cfg.AllowPlaintextAuth
}

// AuthMechanisms lists the mechanisms advertised in EHLO (RFC 4954
// section 3): none where AUTH is not offered or not allowed.
func (s *session) AuthMechanisms() []string {
	if s.srv.cfg.NoAuth || !s.authAllowed() {
		return nil
	}
	return []string{sasl.Plain, sasl.Login}
}

// Auth starts an AUTH exchange (RFC 4954 section 4). go-smtp refuses a
// second AUTH after success with 503 and handles "*" (cancel) itself.
func (s *session) Auth(mech string) (sasl.Server, error) {
	if s.c.closed.Load() {
		return nil, replyClosed
	}
	if s.srv.cfg.NoAuth {
		s.c.log.Info("smtp: AUTH refused: not offered on this service", "mech", mech)
		return nil, s.fail(replyAuthNotOffered)
	}
	if !s.authAllowed() {
		return nil, s.fail(replyEncryptionRequired)
	}
	s.c.mu.Lock()
	busy := s.tx != nil
	s.c.mu.Unlock()
	if busy {
		return nil, s.fail(replyAuthInTransaction)
	}
	switch mech {
	case sasl.Plain:
		// RFC 4616: an authorization identity other than the user's own
		// is not supported.
		return saslServer{s, sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return s.authFailed(mech, username)
			}
			return s.authenticate(mech, username, password)
		})}, nil
	case sasl.Login:
		return saslServer{s, &loginServer{authenticate: func(username, password string) error {
			return s.authenticate(mech, username, password)
		}}}, nil
	}
	return nil, s.fail(smtp.ErrAuthUnknownMechanism)
}

// authenticate checks credentials with the backend; the password is never
// logged.
func (s *session) authenticate(mech, username, password string) error {
	name, err := s.srv.cfg.Backend.Authenticate(s.ctx, username, password)
	if err != nil {
		if errors.Is(err, ErrAuthFailed) {
			return s.authFailed(mech, username)
		}
		if r, ok := toReply(err); ok {
			s.c.log.Warn("smtp: authentication refused", "mech", mech, "user", username, "code", r.Code)
			return s.fail(r)
		}
		s.c.log.Error("smtp: authentication backend failure", "mech", mech, "user", username, "err", err)
		return s.fail(replyAuthTempFail)
	}
	if name == "" {
		name = username
	}
	s.c.mu.Lock()
	s.authUser = name
	s.c.mu.Unlock()
	s.c.log.Info("smtp: authenticated", "mech", mech, "user", name)
	return nil
}

func (s *session) authFailed(mech, username string) error {
	s.c.log.Warn("smtp: authentication failed", "mech", mech, "user", username)
	return s.fail(smtp.ErrAuthFailed) // 535 5.7.8, RFC 4954 section 6
}

// saslServer gives every failure of a mechanism an SMTP reply: go-smtp
// would answer 454 (temporary) with the bare error text.
type saslServer struct {
	s *session
	sasl.Server
}

func (w saslServer) Next(response []byte) ([]byte, bool, error) {
	challenge, done, err := w.Server.Next(response)
	if err != nil {
		var r *smtp.SMTPError
		if !errors.As(err, &r) {
			return nil, false, w.s.fail(replyAuthMalformed)
		}
	}
	return challenge, done, err
}

// loginServer is the server side of the LOGIN mechanism
// (draft-murchison-sasl-login): "Username:" and "Password:" challenges,
// with the username optionally sent as the initial response.
type loginServer struct {
	authenticate func(username, password string) error
	state        int
	username     string
}

var errLoginUnexpected = errors.New("sasl: unexpected LOGIN response")

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.state {
	case 0:
		if response == nil {
			l.state = 1
			return []byte("Username:"), false, nil
		}
		l.username = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 1:
		l.username = string(response)
		l.state = 2
		return []byte("Password:"), false, nil
	case 2:
		l.state = 3
		return nil, true, l.authenticate(l.username, string(response))
	}
	return nil, true, errLoginUnexpected
}
