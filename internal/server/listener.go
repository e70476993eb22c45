package server

import (
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"
)

// A service owns its listeners and accepts on them itself; each accepted
// connection is counted against the session limits and handed to the
// protocol server of the service's current generation through a
// chanListener. A reload can so replace the protocol server without
// closing the listening sockets, and the old one finishes its sessions.

// chanListener is a net.Listener fed by the service's accept loop.
type chanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
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

func (l *chanListener) Addr() net.Addr { return l.addr }

// offer hands c to the protocol server; false if the listener is closed.
func (l *chanListener) offer(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

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
	if t, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(t.IP); ok {
			return ip.Unmap().String()
		}
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
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
	var backoff time.Duration
	for {
		c, err := bl.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off and retry, like net/http.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			svc.srv.log.Error("accept failed", "service", bl.label, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		svc.dispatch(bl, c)
	}
}
