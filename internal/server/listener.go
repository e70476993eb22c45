package server

import (
	"crypto/tls"
	"net"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netutil"
)

// A service owns its listeners and accepts on them itself; each accepted
// connection is counted against the session limits and handed to the
// protocol server of the service's current generation through a
// netutil.ChanListener. A reload can so replace the protocol server without
// closing the listening sockets, and the old one finishes its sessions.

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

// refuse answers a connection over a session limit and closes it, in the
// background. The reply is the protocol's "busy" greeting: RFC 5321
// section 3.8 lets an SMTP server answer the connection with 421; for
// POP3, -ERR with the [SYS/TEMP] response code of RFC 3206 section 4. On
// an implicit-TLS listener the handshake comes first (RFC 8314 section
// 3.3).
func (svc *service) refuse(bl *boundListener, c net.Conn, line string) {
	svc.refusals.Add(1)
	go func() {
		defer svc.refusals.Done()
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
	}()
}

// boundListener is one listening socket of a service.
type boundListener struct {
	label string // "pop3", "pop3s", "smtp", "submission", "submissions"
	spec  string // the configured address
	tls   bool   // implicit TLS
	l     net.Listener
	done  chan struct{} // closed when the accept loop has ended
}

// acceptLoop accepts until the listener is closed.
func (svc *service) acceptLoop(bl *boundListener) {
	defer close(bl.done)
	log := svc.srv.log.With("service", bl.label)
	netutil.AcceptLoop(bl.l, func() bool { return false }, log, "accept failed", func(c net.Conn) { svc.dispatch(bl, c) })
}
