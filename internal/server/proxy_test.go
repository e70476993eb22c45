package server

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestProxyHeaderOnItsOwnGoroutine: with proxy_protocol on, each
// connection's header is read on that connection's goroutine. A client
// that sends none holds up nobody; a client behind the proxy is the
// header's address (so not loopback: no plaintext USER); and stopping
// the service closes a connection still waiting for its header at once,
// instead of waiting out the header timeout (which would be logged as a
// bad header: stop returns only when that connection is done with).
func TestProxyHeaderOnItsOwnGoroutine(t *testing.T) {
	ts := newTestServer(t, "proxy_protocol = true\nproxy_trusted = [\"127.0.0.1\"]")
	addr := ts.pop3Addr()
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "PROXY TCP4 203.0.113.5 127.0.0.1 40000 110\r\nUSER a@example.com\r\nQUIT\r\n")
	r := bufio.NewReader(c)
	for _, want := range []string{"+OK mail.test", "-ERR [AUTH] Plaintext", "+OK"} {
		if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, want) {
			t.Fatalf("got %q, %v; want %q...", l, err, want)
		}
	}

	if _, err := ts.srv.StopService(context.Background(), "pop3", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ts.logs.String(), "bad PROXY protocol header") {
		t.Error("stop waited for the silent connection's header timeout instead of closing it")
	}
	silent.SetReadDeadline(time.Now().Add(20 * time.Second))
	if n, err := silent.Read(make([]byte, 1)); n != 0 || err == nil || strings.Contains(err.Error(), "timeout") {
		t.Errorf("the silent connection after stop: %d, %v; want it closed", n, err)
	}
}
