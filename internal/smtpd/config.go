package smtpd

import (
	"crypto/tls"
	"log/slog"
	"os"
	"time"
)

// Defaults applied by NewServer to zero (or negative) Config fields.
const (
	// DefaultMaxMessageBytes is advertised with SIZE (RFC 1870).
	DefaultMaxMessageBytes = 50 << 20
	// DefaultMaxRecipients: RFC 5321 section 4.5.3.1.8 asks for at least
	// 100 recipients per transaction.
	DefaultMaxRecipients = 100
	// DefaultMaxLineLength bounds one line of message data, CRLF
	// included. RFC 5321 section 4.5.3.1.6 allows 1000 octets for a text
	// line, but real mail from careless generators carries much longer
	// lines. The data is streamed: the limit costs no memory.
	DefaultMaxLineLength = 64 << 10
	// DefaultTimeout is the read and the write timeout: RFC 5321 section
	// 4.5.3.2.7 wants the server to wait at least 5 minutes for a command.
	DefaultTimeout = 5 * time.Minute
	// DefaultDataTimeout bounds one whole message (Config.DataTimeout).
	DefaultDataTimeout = 10 * time.Minute
	// DefaultMaxErrors: error replies tolerated in a session before "421
	// 4.7.0" and disconnection; Postfix's smtpd_hard_error_limit is 20
	// too. A message accepted starts the count again.
	DefaultMaxErrors = 20
)

// Config configures a Server. Only Backend is required.
type Config struct {
	// Hostname is announced in the greeting; default os.Hostname().
	Hostname string
	Backend  Backend
	// TLSConfig enables STARTTLS (RFC 3207). Nil: STARTTLS is not offered.
	// Implicit TLS (RFC 8314 section 3.3, port 465) is a connection handed
	// to ServeConn as a *tls.Conn (or a listener from tls.NewListener given
	// to Serve); TLSConfig need not be set for it.
	TLSConfig *tls.Config
	// Submission makes this a message submission service (RFC 6409
	// section 4.3): MAIL is refused with 530 5.7.0 until AUTH succeeded.
	Submission bool
	// NoAuth: AUTH is not offered at all (RFC 4954 section 3). The MX
	// service does without it unless the operator switches it on, as
	// Postfix's smtpd_sasl_auth_enable = no does.
	NoAuth bool
	// AllowPlaintextAuth allows AUTH on connections that are neither TLS
	// nor from a loopback address (RFC 4954 section 4 and RFC 8314
	// section 3 discourage it).
	AllowPlaintextAuth bool
	// MaxMessageBytes is advertised with SIZE and enforced on MAIL FROM
	// SIZE= and, while streaming, on DATA and BDAT (552 5.3.4).
	MaxMessageBytes int64
	// MaxRecipients per transaction (452 4.5.3 beyond).
	MaxRecipients int
	// MaxLineLength of a line of message data, CRLF included (500 5.5.2
	// and disconnection beyond). Command lines have the limits of RFC
	// 5321 section 4.5.3.1.4 and of the extensions.
	MaxLineLength int
	// ReadTimeout bounds the wait for each command line and, during DATA,
	// for each piece of the body (an inactivity timer, RFC 5321 section
	// 4.5.3.2.5). WriteTimeout bounds each write of replies.
	ReadTimeout, WriteTimeout time.Duration
	// DataTimeout bounds the whole of one message, from DATA (or the
	// first BDAT) to its end, however steadily it trickles in: a
	// slow-loris client sending a byte now and then never trips the
	// inactivity timer, but is cut off by this. Default 10 min (50 MB at
	// 700 kbit/s).
	DataTimeout time.Duration
	// MaxErrors: after this many error replies the server answers 421
	// 4.7.0 and closes the connection.
	MaxErrors int
	// Logger receives one record per transaction and per authentication
	// (never a password); default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns cfg with every unset field defaulted.
func (cfg Config) withDefaults() Config {
	if cfg.Hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			cfg.Hostname = h
		} else {
			cfg.Hostname = "localhost"
		}
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if cfg.MaxRecipients <= 0 {
		cfg.MaxRecipients = DefaultMaxRecipients
	}
	if cfg.MaxLineLength <= 0 {
		cfg.MaxLineLength = DefaultMaxLineLength
	}
	if cfg.DataTimeout <= 0 {
		cfg.DataTimeout = DefaultDataTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultTimeout
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultTimeout
	}
	if cfg.MaxErrors <= 0 {
		cfg.MaxErrors = DefaultMaxErrors
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}
