package netutil

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"
)

// A tracker closes the listeners it serves and the sessions it holds, and
// takes none once closed.
func TestTracker(t *testing.T) {
	tr := NewTracker[int]()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	served := make(chan error, 1)
	go func() {
		served <- tr.Serve(l, slog.New(slog.DiscardHandler), "accept failed", func(c net.Conn) { accepted <- c })
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	(<-accepted).Close()

	if !tr.Add(1) || !tr.Add(2) || tr.Len() != 2 {
		t.Fatalf("Add: %d sessions, want 2", tr.Len())
	}
	tr.Done(1)
	tr.Done(1) // once only
	var killed []int
	if err := tr.Close(func(s int) { killed = append(killed, s) }); err != nil {
		t.Fatal(err)
	}
	if len(killed) != 1 || killed[0] != 2 {
		t.Errorf("Close reached %v, want [2]", killed)
	}
	select {
	case err := <-served:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Serve returned %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after Close")
	}
	if tr.Add(3) {
		t.Error("Add after Close succeeded")
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Serve(l2, slog.New(slog.DiscardHandler), "", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := l2.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener left open by Serve after Close: %v", err)
	}
	waited := make(chan struct{})
	go func() { tr.Wait(); close(waited) }()
	tr.Done(2)
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the last Done")
	}
}
