package smtpd

import (
	"encoding/base64"
	"errors"
	"strings"

	"github.com/emersion/go-sasl"
	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/sasllogin"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// errAuthzid: PLAIN with an authorization identity other than the
// authentication identity (RFC 4616 section 2); no proxy login.
var errAuthzid = errors.New("authorization identity differs from authentication identity")

// RFC 4954 section 4: AUTH mechanism [initial-response], after EHLO,
// outside a transaction, once per session. PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login) are offered where a password may be sent:
// under TLS, from loopback, or when the operator allows it. Every failure
// counts as an error reply (Config.MaxErrors); the backend counts logins
// against its bans.
func cmdAuth(s *session, arg string) bool {
	switch {
	case s.srv.cfg.NoAuth:
		return s.respond(replyAuthNone)
	case !s.extended:
		return s.respond(replyNeedEhlo)
	case s.authUser != "":
		return s.respond(replyAuthTwice)
	case s.tx != nil:
		return s.respond(replyAuthInTx)
	}
	args := strings.Fields(arg)
	if len(args) < 1 || len(args) > 2 {
		return s.respond(syntaxReply("Syntax: AUTH mechanism [initial-response]"))
	}
	mech := strings.ToUpper(args[0])
	if mech != sasl.Plain && mech != sasl.Login {
		return s.respond(replyAuthMech)
	}
	if !s.authAllowed() {
		return s.respond(replyAuthEncryption)
	}

	var user, username string
	var authErr error
	check := func(name, password string) error {
		username = name
		u, err := s.srv.cfg.Backend.Authenticate(s.ctx, name, password)
		if err == nil && u == "" {
			u = name
		}
		user, authErr = u, err
		return err
	}
	var server sasl.Server
	if mech == sasl.Plain {
		server = sasl.NewPlainServer(func(identity, name, password string) error {
			if identity != "" && identity != name {
				username, authErr = name, errAuthzid
				return authErr
			}
			return check(name, password)
		})
	} else {
		server = sasllogin.NewServer(check)
	}

	// RFC 4954 section 4: an initial response of "=" is an empty one.
	var resp []byte
	if len(args) == 2 {
		var ok bool
		if resp, ok = decodeResponse(args[1]); !ok {
			return s.respond(replyAuthBase64)
		}
	}
	for {
		challenge, done, err := server.Next(resp)
		if err != nil {
			if authErr != nil {
				return s.authFailed(mech, username, authErr)
			}
			s.log.Info("malformed SASL exchange", "mech", mech, "err", err)
			return s.respond(replyAuthMalformed)
		}
		if done {
			s.authUser = user
			s.log.Info("authenticated", "mech", mech, "user", user)
			if s.hooks != nil {
				s.hooks.Auth(mech, user)
			}
			return s.respond(replyAuthOK)
		}
		// RFC 4954 section 4: a challenge is 334 and base64.
		s.reply(smtpreply.New(334, "", base64.StdEncoding.EncodeToString(challenge)))
		line, err := s.readLine(maxAuthLine)
		switch {
		case errors.Is(err, errLineTooLong):
			return s.respond(replyAuthLong)
		case errors.Is(err, errBareLF):
			return s.respond(replyBareLFCommand)
		case err != nil:
			s.ioError(err)
			return false
		}
		// RFC 4954 section 4: "*" cancels, answered 501.
		if string(line) == "*" {
			return s.respond(replyAuthCancelled)
		}
		var ok bool
		if resp, ok = decodeResponse(string(line)); !ok {
			return s.respond(replyAuthBase64)
		}
	}
}

// decodeResponse decodes a client response: base64, "=" or nothing for an
// empty one.
func decodeResponse(s string) ([]byte, bool) {
	if s == "=" || s == "" {
		return []byte{}, true
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return b, err == nil
}

// authFailed answers a failed authentication: 535 5.7.8 for bad
// credentials (RFC 4954 section 6), the backend's own reply (a ban, 454
// 4.7.0), or 454 4.7.0 when the backend failed. The password is never
// logged.
func (s *session) authFailed(mech, username string, err error) bool {
	switch {
	case errors.Is(err, ErrAuthFailed), errors.Is(err, errAuthzid):
		s.log.Warn("authentication failed", "mech", mech, "login", clientinfo.Clip(username))
		return s.respond(replyAuthFailed)
	}
	if r, ok := toReply(err); ok {
		s.log.Warn("authentication refused", "mech", mech, "login", clientinfo.Clip(username), "code", r.Code)
		return s.respond(r)
	}
	s.log.Error("authentication backend failure", "mech", mech, "login", clientinfo.Clip(username), "err", err)
	return s.respond(replyAuthTemp)
}
