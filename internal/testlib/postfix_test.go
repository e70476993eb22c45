package testlib

import (
	"fmt"
	"net"
	"testing"
)

// TestStartPostfixPortTaken: the first port picked is held by another
// server, which greets as an SMTP server that is not Postfix. master
// cannot bind it and exits; StartPostfix starts Postfix again on another
// port, and does not take the other server for Postfix.
func TestStartPostfixPortTaken(t *testing.T) {
	PostfixAvailable(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "220 other.test ESMTP ready\r\n")
			c.Close()
		}
	}()
	taken := l.Addr().(*net.TCPAddr).Port
	picks := 0
	pick := func(t testing.TB) int {
		picks++
		if picks == 1 {
			return taken
		}
		return freePortInt(t)
	}
	p, ports := startPostfixPicking(t, PostfixConfig{Listen: []string{""}}, pick)
	if picks != 2 || len(ports) != 1 || ports[0] == taken {
		t.Fatalf("ports %v after %d picks; the taken one was %d", ports, picks, taken)
	}
	if !greeting(fmt.Sprintf("127.0.0.1:%d", ports[0])) {
		t.Errorf("no Postfix greeting on port %d; log:\n%s", ports[0], p.Log())
	}
	if greeting(l.Addr().String()) {
		t.Error("the other server's greeting taken for Postfix's")
	}
}
