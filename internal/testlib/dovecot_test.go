package testlib

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
)

// TestDovecotPortTaken: a port held by a POP3 server that is not Dovecot
// is not taken for Dovecot's, and Dovecot, which cannot bind it, exits
// and says so.
func TestDovecotPortTaken(t *testing.T) {
	DovecotAvailable(t)
	l := otherServer(t, "+OK other POP3 server ready")
	if greets(l.Addr().String(), "+OK", "Dovecot") {
		t.Fatal("the other server's greeting taken for Dovecot's")
	}
	d := StartDovecot(t, DovecotConfig{})
	if !greets(fmt.Sprintf("127.0.0.1:%d", d.Port), "+OK", "Dovecot") {
		t.Fatalf("no Dovecot greeting on port %d:\n%s", d.Port, d.Log())
	}
	// Dovecot on the held port: it exits, and start says the port was
	// taken.
	d.Stop()
	conf, err := os.ReadFile(d.Conf)
	if err != nil {
		t.Fatal(err)
	}
	held := l.Addr().(*net.TCPAddr).Port
	c := strings.Replace(string(conf), fmt.Sprintf("port = %d\n", d.Port), fmt.Sprintf("port = %d\n", held), 1)
	if c == string(conf) {
		t.Fatalf("no port = %d in the configuration:\n%s", d.Port, conf)
	}
	d.Port = held
	if err := d.start(t, c); !errors.Is(err, errPortTaken) {
		t.Errorf("Dovecot on a taken port: %v, want errPortTaken", err)
	}
}
