package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netutil"
	"github.com/postoffice-mail/postoffice/internal/proxyproto"
)

// A service owns its listeners and accepts on them itself, one accept
// loop per listener. Each accepted connection gets a goroutine that is
// then its session's: it reads the PROXY protocol header (when the
// listener expects one), counts the connection against the session
// limits, and hands it to the protocol server of the service's current
// generation (ServeConn), which does the implicit TLS handshake first
// (RFC 8314 section 3.3) and then runs the session. A reload can so
// replace the protocol server without closing the listening sockets, and
// the old one finishes its sessions.

// trackedConn releases its session slot when closed, once, however the
// protocol server closes it (directly, through a *tls.Conn, or killing the
// network connection under TLS).
type trackedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *trackedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// clientIP is the address a per-IP limit counts by.
func clientIP(a net.Addr) string {
	if ip, ok := netutil.IP(a); ok {
		return ip.String()
	}
	return a.String()
}

// refuse answers a connection over a session limit and closes it. The
// reply is the protocol's "busy" greeting: RFC 5321 section 3.8 lets an
// SMTP server answer the connection with 421; for POP3, -ERR with the
// [SYS/TEMP] response code of RFC 3206 section 4. On an implicit-TLS
// listener the handshake comes first (RFC 8314 section 3.3).
func (svc *service) refuse(bl *boundListener, c net.Conn, line string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var w net.Conn = c
	if bl.tls {
		tc := tls.Server(c, svc.srv.tlsConfig())
		if err := tc.Handshake(); err != nil {
			return
		}
		w = tc
	}
	w.Write([]byte(line + "\r\n"))
}

// boundListener is one listening socket of a service.
type boundListener struct {
	label string // "pop3", "pop3s", "smtp", "submission", "submissions"
	spec  string // the configured address
	tls   bool   // implicit TLS
	l     net.Listener
	proxy atomic.Pointer[proxyproto.Policy] // set at bind, changed by reloads
	done  chan struct{}                     // closed when the accept loop has ended
}

// acceptLoop accepts until the listener is closed; each connection goes
// on in a goroutine of its own (handle).
func (svc *service) acceptLoop(bl *boundListener) {
	defer close(bl.done)
	log := svc.srv.log.With("service", bl.label)
	netutil.AcceptLoop(bl.l, func() bool { return false }, log, "accept failed", func(c net.Conn) {
		svc.admitting.Add(1)
		svc.trackPending(c, true)
		go svc.handle(bl, c)
	})
}

// handle runs on the connection's own goroutine, which becomes the
// session's: the PROXY header first (internal/proxyproto), then the
// limits, then the protocol server.
func (svc *service) handle(bl *boundListener, c net.Conn) {
	conn, g := svc.admit(bl, c)
	svc.admitting.Done()
	if conn != nil {
		svc.serve(g, conn)
	}
}

// admit reads the PROXY header if the listener expects one, and counts
// the connection against the session limits; it returns the connection
// for the protocol server (a *tls.Conn not yet handshaken on an
// implicit-TLS listener) and the generation to serve it, or nil when the
// connection was refused or closed.
func (svc *service) admit(bl *boundListener, c net.Conn) (net.Conn, *generation) {
	pc, err := bl.proxy.Load().Handshake(c)
	svc.trackPending(c, false)
	if err != nil {
		switch {
		case errors.Is(err, proxyproto.ErrUntrusted):
			svc.srv.log.Warn("connection refused: PROXY protocol expected, peer not trusted (proxy_trusted)",
				"service", bl.label, "peer", c.RemoteAddr().String(), "listener", bl.l.Addr().String())
		case !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed):
			svc.srv.log.Warn("connection refused: bad PROXY protocol header", "service", bl.label,
				"peer", c.RemoteAddr().String(), "listener", bl.l.Addr().String(), "err", err)
		}
		c.Close()
		return nil, nil
	}
	tc, g := svc.count(bl, pc)
	if tc == nil {
		return nil, nil
	}
	if bl.tls {
		// RFC 8314 section 3.3: implicit TLS; the session handshakes.
		return tls.Server(tc, svc.srv.tlsConfig()), g
	}
	return tc, g
}

// serve hands conn to the protocol server of generation g; if g stopped
// taking sessions meanwhile (a reload or a stop), to the newer one, if any.
func (svc *service) serve(g *generation, conn net.Conn) {
	for {
		if g.proto.ServeConn(conn) == nil {
			return // the session ran and closed conn
		}
		svc.mu.Lock()
		ng := svc.gen
		svc.mu.Unlock()
		if ng == nil || ng == g {
			conn.Close()
			return
		}
		g = ng
	}
}

// trackPending records a connection whose PROXY header is awaited, so
// that stop can close it.
func (svc *service) trackPending(c net.Conn, add bool) {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	if add {
		svc.pending[c] = struct{}{}
	} else {
		delete(svc.pending, c)
	}
}
