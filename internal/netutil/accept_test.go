package netutil

import (
	"errors"
	"log/slog"
	"net"
	"testing"
)

// script is a listener that returns its steps in order.
type script struct {
	net.Listener
	steps []any // net.Conn or error
}

func (s *script) Accept() (net.Conn, error) {
	st := s.steps[0]
	s.steps = s.steps[1:]
	if err, ok := st.(error); ok {
		return nil, err
	}
	return st.(net.Conn), nil
}

func TestAcceptLoop(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	log := slog.New(slog.DiscardHandler)

	// A temporary failure is retried, a connection handed on, and a closed
	// listener ends the loop with its error.
	l := &script{steps: []any{errors.New("accept: too many open files"), a, net.ErrClosed}}
	var got []net.Conn
	err := AcceptLoop(l, func() bool { return false }, log, "accept failed", func(c net.Conn) { got = append(got, c) })
	if !errors.Is(err, net.ErrClosed) || len(got) != 1 || got[0] != a {
		t.Fatalf("err %v, handled %v", err, got)
	}
	// When the server is closing, any error ends the loop with ErrClosed.
	l = &script{steps: []any{errors.New("anything")}}
	if err := AcceptLoop(l, func() bool { return true }, log, "accept failed", func(net.Conn) {}); err != ErrClosed {
		t.Fatalf("closing: %v, want ErrClosed", err)
	}
}
