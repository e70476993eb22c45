package smtpd

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

func TestSessionsCount(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c1, c2 := h.dial(), h.dial()
	if n := h.srv.Sessions(); n != 2 {
		t.Fatalf("Sessions() = %d, want 2", n)
	}
	c1.cmd("QUIT", 221, "2.0.0")
	c1.expectClosed()
	if n := h.srv.Sessions(); n != 1 {
		t.Fatalf("Sessions() = %d after QUIT, want 1", n)
	}
	c2.ehlo()
}

// Shutdown: idle clients get 421 4.3.2 at once (RFC 5321 section 3.8), a
// transaction in progress completes and is closed after its reply.
func TestShutdownGraceful(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	idle, busy := h.dial(), h.dial()
	idle.ehlo()
	busy.ehlo()
	busy.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	busy.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		done <- h.srv.Shutdown(ctx)
	}()
	idle.expect(421, "4.3.2")
	idle.expectClosed()

	busy.cmd("DATA", 354, "")
	busy.send("Subject: last one\r\n\r\nbody\r\n.\r\n")
	busy.expect(250, "2.0.0")
	busy.expect(421, "4.3.2")
	busy.expectClosed()

	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if n := h.srv.Sessions(); n != 0 {
		t.Fatalf("Sessions() = %d after Shutdown", n)
	}
	if d := h.be.deliveries(); len(d) != 1 {
		t.Fatalf("%d deliveries, want 1", len(d))
	}
	if _, err := net.Dial("tcp", h.addr); err == nil {
		t.Fatal("listener still accepting after Shutdown")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.srv.Serve(l); !errors.Is(err, ErrServerClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if _, err := l.Accept(); err == nil {
		t.Fatal("Serve after Shutdown left its listener open")
	}
}

// When the context ends first, Shutdown closes what is left.
func TestShutdownDeadline(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0") // busy, then stalls
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	c.expectClosed()
	if n := h.srv.Sessions(); n != 0 {
		t.Fatalf("Sessions() = %d", n)
	}
}

// Close abandons a delivery in flight through its context, and returns
// once the session goroutine ended.
func TestCloseCancelsDelivery(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	started := make(chan struct{})
	result := make(chan error, 1)
	h.be.deliverRaw = func(ctx context.Context, _ *Envelope, body io.Reader) error {
		if _, err := io.ReadAll(body); err != nil {
			return err
		}
		close(started)
		<-ctx.Done()
		result <- ctx.Err()
		return ctx.Err()
	}
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send("x\r\n.\r\n")
	<-started
	if err := h.srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := <-result; !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver's context: %v", err)
	}
	c.expectClosed()
}
