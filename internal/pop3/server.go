// Package pop3 implements the POP3 protocol side of postoffice: the session
// state machine of RFC 1939, the extension mechanism and response codes of
// RFC 2449 and RFC 3206, STLS (RFC 2595), SASL authentication (RFC 5034)
// and implicit TLS (RFC 8314). Storage and user lookups are behind the small
// Backend and Maildrop interfaces of backend.go.
package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netutil"
)

// Defaults applied by NewServer to zero Config fields.
const (
	// RFC 1939 section 3: the autologout timer "MUST be of at least 10
	// minutes' duration".
	DefaultInactivityTimeout = 10 * time.Minute
	DefaultMaxBadCommands    = 10
	DefaultAuthFailureDelay  = time.Second
)

// ErrServerClosed is returned by Serve after Close or Shutdown was called.
var ErrServerClosed = errors.New("pop3: server closed")

// Config configures a Server. Only Backend is required.
type Config struct {
	// Hostname is announced in the greeting and the sign-off; default
	// os.Hostname().
	Hostname string
	Backend  Backend
	// TLSConfig enables STLS (RFC 2595). Nil: no STLS offered. Implicit TLS
	// (RFC 8314, port 995) is done by passing a tls.NewListener to Serve.
	TLSConfig *tls.Config
	// InactivityTimeout closes an idle session (RFC 1939 section 3); it is
	// also the limit on the progress of every write. Default 10 minutes.
	InactivityTimeout time.Duration
	// AllowPlaintextAuth allows USER/PASS and AUTH PLAIN/LOGIN on
	// connections that are neither TLS nor from a loopback address.
	AllowPlaintextAuth bool
	// MaxBadCommands: the session is closed with "-ERR Too many bad
	// commands" at the MaxBadCommands-th unknown, misplaced, malformed or
	// overlong command. Default 10.
	MaxBadCommands int
	// AuthFailureDelay is waited before answering a failed authentication
	// (slows down password guessing). Zero means DefaultAuthFailureDelay;
	// a negative value disables the delay.
	AuthFailureDelay time.Duration
	// Logger receives session logs (never passwords); default slog.Default().
	Logger *slog.Logger

	// LoginDelay, when positive, is announced with CAPA LOGIN-DELAY (RFC
	// 2449 section 6.5): the minimum time between two logins of one user,
	// in whole seconds. The Backend enforces it: OpenMaildrop returns
	// ErrLoginDelay.
	LoginDelay time.Duration
	// Expire, when not nil, is announced with CAPA EXPIRE (RFC 2449 section
	// 6.7): how long a message is kept after its first retrieval, in whole
	// days (truncated); negative is NEVER. The Backend enforces it.
	Expire *time.Duration
	// PolicyPerUser: users may have their own login delay and expire. In
	// the AUTHORIZATION state both capabilities are then announced with the
	// USER argument; in the TRANSACTION state with the user's values, from
	// a Maildrop that implements PolicyMaildrop.
	PolicyPerUser bool
}

// Server is a POP3 server. It is safe for concurrent use.
type Server struct {
	cfg       Config
	hostname  string
	timeout   time.Duration
	maxBad    int
	authDelay time.Duration
	log       *slog.Logger

	// ctx is the parent of every session context; Close cancels it, so that
	// backend calls in flight are abandoned.
	ctx    context.Context
	cancel context.CancelFunc

	// track holds the listeners and sessions; once Shutdown or Close is
	// called it takes no new ones.
	track *netutil.Tracker[*session]

	nextID atomic.Uint64

	// onPanic, when set (tests), receives a recovered session panic
	// instead of the log.
	onPanic func(v any)
}

// NewServer returns a server for cfg, with defaults applied.
func NewServer(cfg Config) *Server {
	s := &Server{
		cfg:       cfg,
		hostname:  cfg.Hostname,
		timeout:   cfg.InactivityTimeout,
		maxBad:    cfg.MaxBadCommands,
		authDelay: cfg.AuthFailureDelay,
		log:       cfg.Logger,
		track:     netutil.NewTracker[*session](),
	}
	if s.hostname == "" {
		if h, err := os.Hostname(); err == nil && h != "" {
			s.hostname = h
		} else {
			s.hostname = "localhost"
		}
	}
	if s.timeout <= 0 {
		s.timeout = DefaultInactivityTimeout
	}
	if s.maxBad <= 0 {
		s.maxBad = DefaultMaxBadCommands
	}
	if s.authDelay == 0 {
		s.authDelay = DefaultAuthFailureDelay
	} else if s.authDelay < 0 {
		s.authDelay = 0
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts connections on l and serves each in its own goroutine. It
// blocks until l fails or the server is closed, then closes l; after Close
// or Shutdown it returns ErrServerClosed. A listener made with
// tls.NewListener gives implicit-TLS sessions (RFC 8314 section 3.3).
func (s *Server) Serve(l net.Listener) error {
	err := s.track.Serve(l, s.log, "accept failed", s.startSession)
	if errors.Is(err, netutil.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// Close closes every listener and every session at once. Deletions of open
// sessions are not applied (RFC 1939 section 6: only QUIT enters UPDATE);
// each Maildrop is closed. Close returns after every session goroutine has
// ended; backend calls in flight see their context cancelled.
func (s *Server) Close() error {
	err := s.track.Close((*session).kill)
	s.cancel()
	s.track.Wait()
	return err
}

// Shutdown stops accepting connections and waits for the open sessions to
// end by themselves. When ctx is done first, it calls Close and returns
// ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.track.Close(nil)

	done := make(chan struct{})
	go func() {
		s.track.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.cancel()
		return err
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Sessions returns the number of open sessions.
func (s *Server) Sessions() int { return s.track.Len() }

// startSession runs a session for c in a new goroutine, unless the server
// is closing.
func (s *Server) startSession(c net.Conn) {
	if sess := s.register(c); sess != nil {
		go s.run(sess)
	} else {
		c.Close()
	}
}

// ServeConn runs one session on c in the calling goroutine and returns
// when it ends, having closed c. A *tls.Conn whose handshake has not been
// done is an implicit-TLS session (RFC 8314 section 3.3): the handshake
// comes first. When the server is closing, ServeConn returns
// ErrServerClosed at once and leaves c to the caller.
func (s *Server) ServeConn(c net.Conn) error {
	sess := s.register(c)
	if sess == nil {
		return ErrServerClosed
	}
	s.run(sess)
	return nil
}

// register makes a session for c known to Close and Sessions; nil when
// the server is closing.
func (s *Server) register(c net.Conn) *session {
	sess := newSession(s, c)
	if !s.track.Add(sess) {
		sess.cancel()
		sess.releaseWriter()
		return nil
	}
	return sess
}

func (s *Server) run(sess *session) {
	defer s.track.Done(sess)
	sess.serve()
}
