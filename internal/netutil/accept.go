// Package netutil holds the small pieces of network plumbing that the
// protocol servers share.
package netutil

import (
	"errors"
	"log/slog"
	"net"
	"time"
)

// ErrClosed is returned by AcceptLoop when closing() reported the server
// closed; callers map it to their own "server closed" error.
var ErrClosed = errors.New("server closed")

// AcceptLoop accepts connections from l and hands each to handle until l
// fails for good. It returns ErrClosed when closing() says the server is
// shutting down, and the listener's error once it is closed otherwise.
// Temporary failures (EMFILE, an aborted handshake before accept) are
// logged and retried with a backoff growing from 5 ms to 1 s, like
// net/http's server.
func AcceptLoop(l net.Listener, closing func() bool, log *slog.Logger, msg string, handle func(net.Conn)) error {
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if closing() {
				return ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			log.Error(msg, "err", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		handle(c)
	}
}
