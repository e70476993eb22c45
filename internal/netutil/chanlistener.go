package netutil

import (
	"net"
	"sync"
)

// ChanListener is a net.Listener fed by its owner's own accept loop
// (Offer), so that a protocol server's Serve can take connections that
// were accepted, counted or TLS-wrapped elsewhere: the service wiring
// hands a reload's new server the same sockets, and a server with two
// engines (plain and implicit TLS) feeds each its own.
type ChanListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

// NewChanListener returns a ChanListener whose Addr is addr.
func NewChanListener(addr net.Addr) *ChanListener {
	return &ChanListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// Accept waits for a connection from Offer; net.ErrClosed once closed.
func (l *ChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Offer return; it may be called more than once.
func (l *ChanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr implements net.Listener.
func (l *ChanListener) Addr() net.Addr { return l.addr }

// Offer hands c to the Accept of the listener's server, waiting for it;
// false if the listener is closed (c is then still the caller's).
func (l *ChanListener) Offer(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}
