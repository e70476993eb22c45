package smtpd

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// conn wraps every accepted connection before go-smtp sees it. It is the
// one object that lives as long as the TCP connection (a go-smtp Session
// is replaced after STARTTLS), so it holds what spans the whole
// connection: the error count, the log attributes, the registration that
// Sessions and Shutdown use.
//
// After STARTTLS go-smtp layers a *tls.Conn over conn; for implicit TLS
// conn wraps the *tls.Conn from the listener (go-smtp then does not see a
// *tls.Conn, which is why TLS detection and the AUTH policy are ours).
type conn struct {
	net.Conn
	srv      *Server
	id       string
	log      *slog.Logger
	implicit *tls.Conn // the listener's *tls.Conn, nil unless implicit TLS
	local    bool      // loopback or unix-domain client
	started  time.Time

	// dataMode makes every Read push the read deadline forward: during
	// DATA the timeout is an inactivity timer (RFC 5321 section
	// 4.5.3.2.5), not a limit on the whole body. go-smtp sets a deadline
	// before reading each command; SetReadDeadline clears dataMode.
	dataMode atomic.Bool
	// dataEnd is when the current DATA body must be complete
	// (Config.DataTimeout); set before dataMode, read by the same goroutine.
	dataEnd time.Time
	// readErr makes a read timeout final: go-smtp resets the deadline
	// and goes on reading after a timeout in the middle of DATA or BDAT,
	// which would read the rest of a body as commands.
	readErr error // only touched by the goroutine that reads

	mu     sync.Mutex
	sess   *session // current go-smtp session, nil before EHLO
	errors int      // error replies so far (Config.MaxErrors)

	closeOnce sync.Once
	// closed is set when the connection is closed. go-smtp goes on
	// parsing commands it had already buffered; the session refuses them
	// without calling the backend.
	closed atomic.Bool
}

func newConn(srv *Server, c net.Conn) *conn {
	cn := &conn{
		Conn:    c,
		srv:     srv,
		id:      newID(),
		local:   isLocal(c.RemoteAddr()),
		started: time.Now(),
	}
	if tc, ok := c.(*tls.Conn); ok {
		cn.implicit = tc
	}
	cn.log = srv.log.With("conn", cn.id, "remote", c.RemoteAddr().String())
	return cn
}

func (c *conn) Read(b []byte) (int, error) {
	if c.readErr != nil {
		return 0, c.readErr
	}
	if c.dataMode.Load() {
		d := time.Now().Add(c.srv.cfg.ReadTimeout)
		if d.After(c.dataEnd) {
			d = c.dataEnd
		}
		c.Conn.SetReadDeadline(d)
	}
	n, err := c.Conn.Read(b)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.readErr = err
	}
	return n, err
}

// SetReadDeadline fails once the connection is closed: go-smtp sets a
// deadline before reading each command, and so stops there instead of
// running the commands it still has buffered.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.dataMode.Store(false)
	if c.closed.Load() {
		return net.ErrClosed
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	c.dataMode.Store(false)
	return c.Conn.SetDeadline(t)
}

// Close closes the connection; the first call also unregisters it.
func (c *conn) Close() error {
	c.closed.Store(true)
	c.closeOnce.Do(func() {
		c.srv.untrack(c)
		c.log.Debug("smtp: connection closed", "duration", time.Since(c.started).Round(time.Millisecond))
	})
	return c.Conn.Close()
}

// kill closes the underlying connection without a TLS close_notify (which
// could block): the goroutine serving c notices and calls c.Close.
func (c *conn) kill() {
	c.closed.Store(true)
	if c.implicit != nil {
		c.implicit.NetConn().Close()
		return
	}
	c.Conn.Close()
}

// tlsState reports the TLS state of the connection, whether TLS came
// from the listener (implicit, RFC 8314) or from STARTTLS (RFC 3207):
// top is what go-smtp currently reads from.
func (c *conn) tlsState(top net.Conn) (tls.ConnectionState, bool) {
	if tc, ok := top.(*tls.Conn); ok {
		return tc.ConnectionState(), true
	}
	if c.implicit != nil {
		return c.implicit.ConnectionState(), true
	}
	return tls.ConnectionState{}, false
}

// countError counts one error reply and reports whether the limit is
// reached.
func (c *conn) countError() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errors++
	return c.errors >= c.srv.cfg.MaxErrors
}

// tlsString formats a connection state for Envelope.TLS, e.g.
// "TLS1.3 TLS_AES_128_GCM_SHA256".
func tlsString(cs tls.ConnectionState) string {
	v := tls.VersionName(cs.Version) // "TLS 1.3"
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != ' ' {
			b = append(b, v[i])
		}
	}
	return string(b) + " " + tls.CipherSuiteName(cs.CipherSuite)
}

// isLocal reports whether a client address is loopback or a unix-domain
// socket: plaintext AUTH is allowed there (nothing to sniff).
func isLocal(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// chanListener hands connections accepted (and, for implicit TLS,
// handshaken) by Server.Serve to a go-smtp server.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return chanAddr{} }

// offer passes c to the go-smtp server; false if it is closed.
func (l *chanListener) offer(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

type chanAddr struct{}

func (chanAddr) Network() string { return "smtpd" }
func (chanAddr) String() string  { return "smtpd" }
