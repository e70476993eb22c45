// Package smtpd is the receiving side of SMTP in postoffice: the MX
// service (RFC 5321, port 25) and the message submission service (RFC
// 6409, port 587 with STARTTLS, port 465 with implicit TLS per RFC 8314).
// The protocol engine is github.com/emersion/go-smtp, a pinned copy of its
// server in gosmtp with one fix (gosmtp/README.md); this package adds
// the policy around it (AUTH only over TLS or loopback, submission
// requires AUTH, error limits, inactivity timeouts, strict CRLF in
// message data) and maps it onto the small Backend interface of
// backend.go. It never decides where mail goes.
package smtpd

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/postoffice-mail/postoffice/internal/netutil"
	"log/slog"
	"net"
	"sync"
	"time"

	smtp "github.com/postoffice-mail/postoffice/internal/smtpd/gosmtp"
)

// ErrServerClosed is returned by Serve after Close or Shutdown. It wraps
// net.ErrClosed, so errors.Is(err, net.ErrClosed) also holds.
var ErrServerClosed = fmt.Errorf("smtpd: server closed: %w", net.ErrClosed)

// Server is an SMTP server. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger

	// Two go-smtp engines: one for plaintext connections (STARTTLS
	// offered when configured) and one for implicit-TLS connections
	// (nothing to upgrade). Serve hands each accepted connection to one
	// of them through a chanListener.
	plain, implicit       *smtp.Server
	plainLn, implicitLn   *chanListener
	startOnce             sync.Once
	engines               sync.WaitGroup // the two go-smtp Serve loops
	ctx                   context.Context
	cancel                context.CancelFunc
	acceptors, handshakes sync.WaitGroup

	mu        sync.Mutex
	closing   bool // no new listeners or connections
	draining  bool // Shutdown: no new transactions
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	open      sync.WaitGroup // one per registered connection
}

// NewServer returns a server for cfg, with the defaults of config.go
// applied. Nothing listens until Serve.
func NewServer(cfg Config) *Server {
	if cfg.Backend == nil {
		panic("smtpd: Config.Backend is nil")
	}
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		plainLn:    newChanListener(),
		implicitLn: newChanListener(),
		listeners:  make(map[*net.Listener]struct{}),
		conns:      make(map[*conn]struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.plain = s.newEngine(cfg.TLSConfig)
	s.implicit = s.newEngine(nil)
	return s
}

// newEngine configures one go-smtp server.
func (s *Server) newEngine(tlsConfig *tls.Config) *smtp.Server {
	e := smtp.NewServer(engineBackend{s})
	e.Domain = s.cfg.Hostname
	e.TLSConfig = tlsConfig
	e.MaxMessageBytes = s.cfg.MaxMessageBytes
	e.MaxRecipients = s.cfg.MaxRecipients
	e.MaxLineLength = s.cfg.MaxLineLength
	e.ReadTimeout = s.cfg.ReadTimeout
	e.WriteTimeout = s.cfg.WriteTimeout
	// AUTH is decided per connection by the session (TLS, loopback or
	// AllowPlaintextAuth), which go-smtp's switch cannot express.
	e.AllowInsecureAuth = true
	e.EnableSMTPUTF8 = true // RFC 6531
	e.EnableDSN = true      // RFC 3461: the Envelope carries RET, ENVID, NOTIFY and ORCPT
	// BINARYMIME (RFC 3030) stays off: its bodies need not be in CRLF
	// lines, which the Backend contract and relaying through DATA need.
	e.ErrorLog = engineLog{s.log}
	return e
}

// Serve accepts connections on l and serves each in its own goroutine. It
// blocks until l fails or the server is closed, then closes l; after Close
// or Shutdown it returns ErrServerClosed. With a listener from
// tls.NewListener the connections are implicit TLS (RFC 8314 section 3.3):
// the handshake comes first, STARTTLS is not offered, AUTH is.
func (s *Server) Serve(l net.Listener) error {
	if !s.trackListener(&l, true) {
		l.Close()
		return ErrServerClosed
	}
	defer s.acceptors.Done()
	defer s.trackListener(&l, false)
	defer l.Close()
	s.startOnce.Do(s.startEngines)

	err := netutil.AcceptLoop(l, s.isClosing, s.log, "smtp: accept failed", func(nc net.Conn) {
		c := s.register(nc)
		if c == nil {
			return
		}
		c.log.Debug("smtp: connection opened", "local", nc.LocalAddr().String())
		if c.implicit == nil {
			if !s.plainLn.offer(c) {
				c.Close()
			}
			return
		}
		s.handshakes.Add(1)
		go s.handshake(c)
	})
	if errors.Is(err, netutil.ErrClosed) {
		return ErrServerClosed
	}
	return err
}

// handshake completes the TLS handshake of an implicit-TLS connection
// before the greeting, within the read timeout, then hands it on.
func (s *Server) handshake(c *conn) {
	defer s.handshakes.Done()
	d := time.Now().Add(s.cfg.ReadTimeout)
	c.implicit.SetDeadline(d)
	ctx, cancel := context.WithDeadline(s.ctx, d)
	err := c.implicit.HandshakeContext(ctx)
	cancel()
	if err != nil {
		c.log.Debug("smtp: TLS handshake failed", "err", err)
		c.Close()
		return
	}
	c.implicit.SetDeadline(time.Time{})
	if !s.implicitLn.offer(c) {
		c.Close()
	}
}

func (s *Server) startEngines() {
	for _, e := range []struct {
		srv *smtp.Server
		ln  *chanListener
	}{{s.plain, s.plainLn}, {s.implicit, s.implicitLn}} {
		s.engines.Add(1)
		go func() {
			defer s.engines.Done()
			e.srv.Serve(e.ln)
		}()
	}
}

// Close closes every listener and connection at once; backend calls in
// flight see their context cancelled. It returns once every connection
// goroutine has ended.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.draining = true
	err := s.closeListenersLocked()
	for c := range s.conns {
		c.kill() // c.Close (unregistering) runs in its goroutine
	}
	s.mu.Unlock()
	s.cancel()
	s.acceptors.Wait()
	s.handshakes.Wait()
	// No connection is offered to the engines any more.
	s.plainLn.Close()
	s.implicitLn.Close()
	s.plain.Shutdown(context.Background())    // waits for its connections
	s.implicit.Shutdown(context.Background()) // (they are all closed)
	s.engines.Wait()
	// Connections accepted but never handed to an engine.
	s.mu.Lock()
	left := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		left = append(left, c)
	}
	s.mu.Unlock()
	for _, c := range left {
		c.Close()
	}
	return err
}

// Shutdown stops accepting connections, closes idle ones with "421 4.3.2"
// (RFC 5321 section 3.8), lets transactions in progress finish and closes
// their connections after the final reply. When ctx is done first, it
// calls Close and returns ctx.Err().
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.draining = true
	err := s.closeListenersLocked()
	idle := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		idle = append(idle, c)
	}
	s.mu.Unlock()
	for _, c := range idle {
		go c.closeIfIdle() // may wait up to shortWriteTimeout on a slow client
	}

	done := make(chan struct{})
	go func() {
		s.open.Wait()
		close(done)
	}()
	select {
	case <-done:
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		return err
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Sessions returns the number of open client connections.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing {
			return false
		}
		s.listeners[l] = struct{}{}
		s.acceptors.Add(1) // never after Close's Wait: closing is checked under mu
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

// register wraps and records a new connection; nil (and nc closed) when
// the server is closing.
func (s *Server) register(nc net.Conn) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		nc.Close()
		return nil
	}
	c := newConn(s, nc)
	s.conns[c] = struct{}{}
	s.open.Add(1)
	return c
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conns[c]; ok {
		delete(s.conns, c)
		s.open.Done()
	}
}

// newID returns a short random connection identifier for the logs.
func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// engineLog routes go-smtp's internal error log to slog: recovered panics
// at Error, the rest (broken connections, failed handshakes) at Debug.
type engineLog struct{ log *slog.Logger }

func (l engineLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l engineLog) Println(v ...any)               { l.print(fmt.Sprint(v...)) }

func (l engineLog) print(msg string) {
	if len(msg) >= 5 && msg[:5] == "panic" {
		l.log.Error("smtp: panic in session", "detail", msg)
		return
	}
	l.log.Debug("smtp: engine", "detail", msg)
}
