package testlib

import (
	"fmt"
	"net"
	"testing"
)

// otherServer listens on a free loopback port and greets every
// connection with greeting, as another test's server would: it stands
// for a port taken before a private Postfix or Dovecot bound it.
func otherServer(t *testing.T, greeting string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\r\n", greeting)
			c.Close()
		}
	}()
	return l
}

// TestStartPostfixPortTaken: the first port picked is held by another
// server, which greets as an SMTP server that is not Postfix. master
// cannot bind it and exits; StartPostfix starts Postfix again on another
// port, and does not take the other server for Postfix.
func TestStartPostfixPortTaken(t *testing.T) {
	PostfixAvailable(t)
	l := otherServer(t, "220 other.test ESMTP ready")
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
	if !greets(fmt.Sprintf("127.0.0.1:%d", ports[0]), "220 ", "Postfix") {
		t.Errorf("no Postfix greeting on port %d; log:\n%s", ports[0], p.Log())
	}
	if greets(l.Addr().String(), "220 ", "Postfix") {
		t.Error("the other server's greeting taken for Postfix's")
	}
}
