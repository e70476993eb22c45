package testlib

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// The servers the tests start (Postfix, Dovecot, rspamd) get ports picked
// free and bind them later: another test may take one in between. The
// server then exits ("Address already in use") and is started again on
// other ports; and until it greets (rspamd: answers the milter
// negotiation), a connection to the port may reach the other test's
// server, so it is ready when its own greeting comes.

// errPortTaken: a server could not bind a port picked for it.
var errPortTaken = errors.New("a port was taken before the server bound it")

// startOnFreePorts calls start, which picks ports and starts server on
// them, again while it fails with errPortTaken, up to three times.
func startOnFreePorts(t testing.TB, server string, start func() error) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		err := start()
		if err == nil {
			return
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("%s, attempt %d: %v; starting again on other ports", server, attempt, err)
	}
}

// awaitGreeting waits until the server at addr greets with a line that
// begins with prefix and names server, as awaitReady.
func awaitGreeting(addr, prefix, server string, within time.Duration, exited <-chan struct{}, log func() string) error {
	return awaitReady(func() bool { return greets(addr, prefix, server) }, server, within, exited, log)
}

// awaitReady waits until ready reports true. If exited is closed first,
// the error says why from log(): errPortTaken for a port in use.
func awaitReady(ready func() bool, server string, within time.Duration, exited <-chan struct{}, log func() string) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case <-exited:
			why := log()
			if strings.Contains(why, "Address already in use") {
				return fmt.Errorf("%w: %s", errPortTaken, tail([]byte(why), 300))
			}
			return fmt.Errorf("%s exited: %s", server, tail([]byte(why), 2000))
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v:\n%s", server, within, tail([]byte(log()), 2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// greets reports whether the server at addr sends a first line that
// begins with prefix and names server: its own greeting, not another
// test's server on a port taken before it bound it.
func greets(addr, prefix, server string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, prefix) && strings.Contains(line, server)
}
