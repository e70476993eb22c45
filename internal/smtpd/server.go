// Package smtpd is the receiving side of SMTP in postoffice, its own
// protocol engine: the MX service (RFC 5321, port 25) and the message
// submission service (RFC 6409, port 587 with STARTTLS, port 465 with
// implicit TLS per RFC 8314). It speaks ESMTP with PIPELINING (RFC 2920),
// SIZE (RFC 1870), 8BITMIME (RFC 6152), ENHANCEDSTATUSCODES (RFC 2034,
// RFC 3463), CHUNKING (RFC 3030), DSN (RFC 3461), SMTPUTF8 (RFC 6531),
// STARTTLS (RFC 3207) and AUTH PLAIN and LOGIN (RFC 4954), and maps it
// onto the small Backend interface of backend.go. It never decides where
// mail goes.
//
// Each connection is one session on one goroutine, which owns the
// connection's deadlines and every write to it; replies are
// smtpreply.Reply values, written by their Wire method.
package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/postoffice-mail/postoffice/internal/netutil"
)

// ErrServerClosed is returned by Serve and ServeConn after Close or
// Shutdown. It wraps net.ErrClosed, so errors.Is(err, net.ErrClosed) also
// holds.
var ErrServerClosed = fmt.Errorf("smtpd: server closed: %w", net.ErrClosed)

// Server is an SMTP server. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	// ctx is the parent of every session context; Close cancels it, so
	// that backend calls in flight are abandoned.
	ctx    context.Context
	cancel context.CancelFunc

	// draining: Shutdown was called; sessions without a transaction end
	// with 421 4.3.2. Read by sessions under their own lock.
	draining atomic.Bool

	mu        sync.Mutex
	closing   bool // no new listeners or sessions
	listeners map[*net.Listener]struct{}
	sessions  map[*session]struct{}
	wg        sync.WaitGroup // one per session

	// onPanic, when set (tests), receives a recovered session panic
	// instead of the log.
	onPanic func(v any)
}

// NewServer returns a server for cfg, with the defaults of config.go
// applied. Nothing listens until Serve.
func NewServer(cfg Config) *Server {
	if cfg.Backend == nil {
		panic("smtpd: Config.Backend is nil")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		listeners: make(map[*net.Listener]struct{}),
		sessions:  make(map[*session]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s
}

// Serve accepts connections on l and serves each in a goroutine of its
// own (ServeConn). It blocks until l fails or the server is closed, then
// closes l; after Close or Shutdown it returns ErrServerClosed. A
// listener from tls.NewListener gives implicit-TLS sessions (RFC 8314
// section 3.3): the handshake is the session's first step.
func (s *Server) Serve(l net.Listener) error {
	if !s.trackListener(&l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&l, false)
	defer l.Close()
	err := netutil.AcceptLoop(l, s.isClosing, s.log, "smtp: accept failed", func(c net.Conn) {
		if sess := s.register(c); sess != nil {
			go s.run(sess)
		} else {
			c.Close()
		}
	})
	if errors.Is(err, netutil.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// ServeConn runs one session on c in the calling goroutine and returns
// when it ends, having closed c. A *tls.Conn whose handshake has not been
// done is an implicit-TLS session (RFC 8314 section 3.3): the handshake
// comes first, within the read timeout. When the server is closing,
// ServeConn returns ErrServerClosed at once and leaves c to the caller.
func (s *Server) ServeConn(c net.Conn) error {
	sess := s.register(c)
	if sess == nil {
		return ErrServerClosed
	}
	s.run(sess)
	return nil
}

// Close closes every listener and every connection at once; backend calls
// in flight see their context cancelled. It returns once every session
// has ended.
func (s *Server) Close() error {
	s.draining.Store(true)
	s.mu.Lock()
	s.closing = true
	err := s.closeListenersLocked()
	for sess := range s.sessions {
		sess.kill()
	}
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return err
}

// Shutdown stops accepting connections, ends the sessions that are
// between transactions with 421 4.3.2 (RFC 5321 section 3.8), lets the
// transactions in progress finish and ends their sessions after the reply
// to their end of data. When ctx is done first, it calls Close and returns
// ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.draining.Store(true)
	s.mu.Lock()
	s.closing = true
	err := s.closeListenersLocked()
	for sess := range s.sessions {
		sess.interruptIfIdle()
	}
	s.mu.Unlock()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
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
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

func (s *Server) closeListenersLocked() error {
	var first error
	for l := range s.listeners {
		if err := (*l).Close(); err != nil && !errors.Is(err, net.ErrClosed) && first == nil {
			first = err
		}
		delete(s.listeners, l)
	}
	return first
}

// register makes a session for c known to Close, Shutdown and Sessions;
// nil when the server is closing.
func (s *Server) register(c net.Conn) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	sess := newSession(s, c)
	s.sessions[sess] = struct{}{}
	s.wg.Add(1) // never after Close's Wait: closing is checked under mu
	return sess
}

// run serves a session; it is unregistered before its connection closes,
// so that a client that sees the close finds Sessions counting it no more.
func (s *Server) run(sess *session) {
	defer s.wg.Done()
	sess.serve()
	s.mu.Lock()
	delete(s.sessions, sess)
	s.mu.Unlock()
	sess.close()
}

// implicitTLS reports whether c is a TLS connection to be handshaken by
// the session.
func implicitTLS(c net.Conn) (*tls.Conn, bool) {
	tc, ok := c.(*tls.Conn)
	return tc, ok
}
