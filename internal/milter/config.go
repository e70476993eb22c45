package milter

import (
	"fmt"
	"net"
	"strings"
	"time"
)

// OnError is what happens to mail when a milter cannot be asked: it is
// down, it times out, it breaks the protocol.
type OnError string

// The choices, as Postfix names its milter_default_action.
const (
	// OnErrorTempFail refuses the mail for now (451 4.7.1): the client
	// retries later, nothing is lost and nothing passes unfiltered. The
	// default.
	OnErrorTempFail OnError = "tempfail"
	// OnErrorAccept goes on without that milter for the rest of the
	// session.
	OnErrorAccept OnError = "accept"
)

// Services a milter can apply to.
const (
	ServiceSMTP       = "smtp"       // mail from other hosts, port 25
	ServiceSubmission = "submission" // mail from authenticated users, 587 and 465
)

// Default timeouts, Postfix's: milter_connect_timeout,
// milter_command_timeout and milter_content_timeout.
const (
	DefaultConnectTimeout = 30 * time.Second
	DefaultCommandTimeout = 30 * time.Second
	DefaultEndTimeout     = 300 * time.Second
)

// Config is one milter, a [[milter]] entry of the configuration.
type Config struct {
	// Name names the milter in logs and the journal; the address when
	// empty.
	Name string
	// Address is "tcp:host:port" or "unix:/path" ("inet:host:port", as
	// Postfix writes it, is tcp).
	Address string
	// Services are those the milter applies to (ServiceSMTP,
	// ServiceSubmission); empty: both.
	Services []string
	// ConnectTimeout bounds connecting and the option negotiation;
	// CommandTimeout each event before the message (connect, HELO, MAIL,
	// RCPT, DATA); EndTimeout each step of the message (a header, a body
	// chunk, the end of the message and its answer). 0: the defaults.
	ConnectTimeout, CommandTimeout, EndTimeout time.Duration
	// OnError is OnErrorTempFail (the default, "") or OnErrorAccept.
	OnError OnError
}

// withDefaults fills in the zero values.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = c.Address
	}
	if len(c.Services) == 0 {
		c.Services = []string{ServiceSMTP, ServiceSubmission}
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.CommandTimeout <= 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.EndTimeout <= 0 {
		c.EndTimeout = DefaultEndTimeout
	}
	if c.OnError == "" {
		c.OnError = OnErrorTempFail
	}
	return c
}

// Check reports what is wrong with the entry, for the configuration's
// checks.
func (c Config) Check() error {
	if _, _, err := ParseAddress(c.Address); err != nil {
		return err
	}
	for _, s := range c.Services {
		if s != ServiceSMTP && s != ServiceSubmission {
			return fmt.Errorf("milter %s: unknown service %q (want %q or %q)", c.Address, s, ServiceSMTP, ServiceSubmission)
		}
	}
	if c.OnError != "" && c.OnError != OnErrorTempFail && c.OnError != OnErrorAccept {
		return fmt.Errorf("milter %s: on_error %q: want %q or %q", c.Address, c.OnError, OnErrorTempFail, OnErrorAccept)
	}
	if c.ConnectTimeout < 0 || c.CommandTimeout < 0 || c.EndTimeout < 0 {
		return fmt.Errorf("milter %s: negative timeout", c.Address)
	}
	return nil
}

// ParseAddress splits a milter address into the network and address
// that net.Dial takes: "tcp:127.0.0.1:11332" is ("tcp",
// "127.0.0.1:11332"), "unix:/run/x.sock" is ("unix", "/run/x.sock").
func ParseAddress(s string) (network, address string, err error) {
	kind, rest, ok := strings.Cut(s, ":")
	if !ok || rest == "" {
		return "", "", fmt.Errorf("milter address %q: want tcp:host:port or unix:/path", s)
	}
	switch strings.ToLower(kind) {
	case "tcp", "inet", "inet6", "tcp6":
		if _, _, err := net.SplitHostPort(rest); err != nil {
			return "", "", fmt.Errorf("milter address %q: %v", s, err)
		}
		return "tcp", rest, nil
	case "unix", "local":
		if !strings.HasPrefix(rest, "/") {
			return "", "", fmt.Errorf("milter address %q: the socket path must be absolute", s)
		}
		return "unix", rest, nil
	}
	return "", "", fmt.Errorf("milter address %q: want tcp:host:port or unix:/path", s)
}
