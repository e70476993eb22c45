package server

import (
	"context"
	"net"
	"net/http"
	"sync"
)

// httpProto adapts a net/http server to protoServer: the service hands it
// connections one at a time (ServeConn), net/http wants a listener. The
// adapter is that listener; ServeConn passes the connection to Accept as
// it is (a *tls.Conn stays one, so that net/http handshakes it and sees
// the ALPN protocol) and waits until net/http reports it closed or
// hijacked, so that the service's session count covers the connection's
// whole life as it does for POP3 and SMTP.
type httpProto struct {
	srv    *http.Server
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once

	mu   sync.Mutex
	done map[net.Conn]chan struct{}
}

func newHTTPProto(srv *http.Server) *httpProto {
	p := &httpProto{srv: srv, conns: make(chan net.Conn), closed: make(chan struct{}), done: map[net.Conn]chan struct{}{}}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if prev != nil {
			prev(c, st)
		}
		if st == http.StateClosed || st == http.StateHijacked {
			p.finished(c)
		}
	}
	go srv.Serve(httpProtoListener{p}) // returns when Shutdown or Close closes the listener
	return p
}

func (p *httpProto) finished(c net.Conn) {
	p.mu.Lock()
	ch, ok := p.done[c]
	delete(p.done, c)
	p.mu.Unlock()
	if ok {
		close(ch)
	}
}

// ServeConn implements protoServer.
func (p *httpProto) ServeConn(c net.Conn) error {
	ch := make(chan struct{})
	p.mu.Lock()
	p.done[c] = ch
	p.mu.Unlock()
	select {
	case p.conns <- c:
	case <-p.closed:
		p.mu.Lock()
		delete(p.done, c)
		p.mu.Unlock()
		return http.ErrServerClosed
	}
	<-ch
	return nil
}

// Shutdown implements protoServer: no new connections, idle ones closed,
// active requests finish until ctx is done.
func (p *httpProto) Shutdown(ctx context.Context) error { return p.srv.Shutdown(ctx) }

// Close implements protoServer: every connection closed now.
func (p *httpProto) Close() error { return p.srv.Close() }

// httpProtoListener is the listener of the adapter's http.Server, which
// closes it on Shutdown and Close.
type httpProtoListener struct{ p *httpProto }

func (l httpProtoListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.p.conns:
		return c, nil
	case <-l.p.closed:
		return nil, net.ErrClosed
	}
}

func (l httpProtoListener) Close() error {
	l.p.once.Do(func() { close(l.p.closed) })
	return nil
}

func (l httpProtoListener) Addr() net.Addr { return httpProtoAddr{} }

type httpProtoAddr struct{}

func (httpProtoAddr) Network() string { return "serviced" }
func (httpProtoAddr) String() string  { return "serviced" }
