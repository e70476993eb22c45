// Package sasllogin is the server side of the SASL LOGIN mechanism
// (draft-murchison-sasl-login, never an RFC but offered by every mail
// server and used by Outlook and older clients): the challenges
// "Username:" and "Password:", with the user name optionally sent as the
// initial response. POP3's AUTH (RFC 5034) and SMTP's AUTH (RFC 4954)
// both run it; go-sasl has the client side only.
package sasllogin

import (
	"errors"

	"github.com/emersion/go-sasl"
)

// Name is the mechanism's name in AUTH and in the capability lists.
const Name = sasl.Login

// ErrUnexpected is returned for a response after the exchange is over.
var ErrUnexpected = errors.New("sasl: unexpected LOGIN response")

type server struct {
	step         int
	username     string
	authenticate func(username, password string) error
}

// NewServer returns a sasl.Server for LOGIN that calls authenticate with
// the user name and password once both are in; its error ends the
// exchange as the mechanism's.
func NewServer(authenticate func(username, password string) error) sasl.Server {
	return &server{authenticate: authenticate}
}

func (a *server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch a.step {
	case 0:
		if response == nil {
			a.step = 1
			return []byte("Username:"), false, nil
		}
		a.username = string(response)
		a.step = 2
		return []byte("Password:"), false, nil
	case 1:
		a.username = string(response)
		a.step = 2
		return []byte("Password:"), false, nil
	case 2:
		a.step = 3
		return nil, true, a.authenticate(a.username, string(response))
	}
	return nil, true, ErrUnexpected
}
