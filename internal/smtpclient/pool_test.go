package smtpclient

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

func sinkTarget(s *testlib.SMTPSink) Target {
	return Target{Host: "sink.test", IP: net.IPv4(127, 0, 0, 1), Port: s.Port()}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10 s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Several messages to one destination share one connection, inside TLS,
// with RSET between them; Close says QUIT.
func TestPoolReuse(t *testing.T) {
	cert := testCert(t)
	sink := testlib.StartSMTPSink(t, testlib.SinkOptions{Cert: &cert, DSN: true})
	p := NewPool(testConfig(), PoolConfig{})
	for i := range 5 {
		res, err := p.Send(context.Background(), sinkTarget(sink), Options{TLS: TLSEncrypt},
			msg("a@x.test", fmt.Sprintf("Subject: %d\r\n\r\nbody\r\n", i), "b@y.test"))
		if err != nil || res.Delivered() != 1 {
			t.Fatalf("message %d: %+v, %v", i, res, err)
		}
	}
	p.Close()
	conns, _, quits, rsets := sink.Stats()
	txns := sink.Txns()
	if conns != 1 || rsets != 4 || quits != 1 || len(txns) != 5 || p.Dials() != 1 {
		t.Errorf("%d connections, %d RSET, %d QUIT, %d messages, %d dials", conns, rsets, quits, len(txns), p.Dials())
	}
	for _, tx := range txns {
		if !tx.TLS || tx.Conn != 1 {
			t.Errorf("message %+v", tx)
		}
	}
	if _, err := p.Send(context.Background(), sinkTarget(sink), Options{}, msg("a@x.test", "x\r\n", "b@y.test")); err != ErrPoolClosed {
		t.Errorf("Send after Close: %v", err)
	}
}

// No more than MaxPerDest connections to one destination, however many
// messages are sent at once.
func TestPoolLimit(t *testing.T) {
	sink := testlib.StartSMTPSink(t, testlib.SinkOptions{})
	p := NewPool(testConfig(), PoolConfig{MaxPerDest: 2})
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Send(context.Background(), sinkTarget(sink), Options{TLS: TLSNone},
				msg("a@x.test", strings.Repeat(fmt.Sprintf("line %d\r\n", i), 2000), "b@y.test"))
			if err == nil && res.Delivered() != 1 {
				err = fmt.Errorf("not delivered: %+v", res)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	conns, maxOpen, _, _ := sink.Stats()
	if maxOpen > 2 || conns > 2 || len(sink.Txns()) != 12 {
		t.Errorf("%d connections, %d at once, %d messages", conns, maxOpen, len(sink.Txns()))
	}
	// A waiter gives up when its context ends.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p2 := NewPool(testConfig(), PoolConfig{MaxPerDest: 1})
	defer p2.Close()
	p2.mu.Lock()
	p2.dest(sinkTarget(sink).String()).open = 1 // the only slot, taken
	p2.mu.Unlock()
	if _, err := p2.Send(ctx, sinkTarget(sink), Options{}, msg("a@x.test", "x\r\n", "b@y.test")); err != context.Canceled {
		t.Errorf("Send with a cancelled context: %v", err)
	}
}

// An idle connection is closed with QUIT after IdleTimeout.
func TestPoolIdleTimeout(t *testing.T) {
	sink := testlib.StartSMTPSink(t, testlib.SinkOptions{})
	p := NewPool(testConfig(), PoolConfig{IdleTimeout: 50 * time.Millisecond})
	defer p.Close()
	if _, err := p.Send(context.Background(), sinkTarget(sink), Options{}, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the idle connection to close", func() bool {
		_, _, quits, _ := sink.Stats()
		return quits == 1 && sink.Open() == 0
	})
	if _, err := p.Send(context.Background(), sinkTarget(sink), Options{}, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
		t.Fatal(err)
	}
	if conns, _, _, _ := sink.Stats(); conns != 2 {
		t.Errorf("%d connections, want a new one after the idle one closed", conns)
	}
}

// A connection is reused only when its TLS state satisfies the next
// message's policy: a plaintext one does not carry a message that needs
// TLS; with one slot, it is closed to make room.
func TestPoolTLSPolicy(t *testing.T) {
	cert := testCert(t)
	sink := testlib.StartSMTPSink(t, testlib.SinkOptions{Cert: &cert})
	p := NewPool(testConfig(), PoolConfig{MaxPerDest: 1})
	defer p.Close()
	for _, level := range []TLSLevel{TLSNone, TLSEncrypt, TLSNone, TLSMay} {
		if _, err := p.Send(context.Background(), sinkTarget(sink), Options{TLS: level}, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
			t.Fatalf("%s: %v", level, err)
		}
	}
	txns := sink.Txns()
	conns, maxOpen, quits, _ := sink.Stats()
	if conns != 2 || maxOpen != 1 || quits != 1 || txns[0].TLS || !txns[1].TLS || !txns[2].TLS || txns[3].Conn != 2 {
		t.Errorf("%d connections (%d at once, %d QUIT); messages %+v", conns, maxOpen, quits, txns)
	}
}

// A cached connection the peer closed meanwhile is replaced, once, by a
// new one: the message goes through.
func TestPoolStaleConnection(t *testing.T) {
	s := serveScripts(t, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("x\r\n.\r\n"),
		S("250 ok"),
		S("421 4.4.2 idle too long"),
		Close(),
	}, []step{
		S("220 mx.test ESMTP"),
		C("EHLO client.test"),
		S("250-mx.test", "250 PIPELINING"),
		G("MAIL FROM:<a@x.test>", "RCPT TO:<b@y.test>", "DATA"),
		S("250 ok", "250 ok", "354 go"),
		D("y\r\n.\r\n"),
		S("250 ok"),
		C("QUIT"),
		S("221 bye"),
	})
	p := NewPool(testConfig(), PoolConfig{})
	if _, err := p.Send(context.Background(), s.target(), Options{}, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
		t.Fatal(err)
	}
	res, err := p.Send(context.Background(), s.target(), Options{}, msg("a@x.test", "y\r\n", "b@y.test"))
	if err != nil || res.Delivered() != 1 || p.Dials() != 2 {
		t.Errorf("second message: %+v, %v, %d dials", res, err, p.Dials())
	}
	p.Close()
}

// No more than MaxConns connections to all destinations together: a
// message for another destination closes the longest idle connection to
// take its slot, and messages sent at once to several destinations wait
// for one.
func TestPoolMaxConns(t *testing.T) {
	sinks := []*testlib.SMTPSink{
		testlib.StartSMTPSink(t, testlib.SinkOptions{}),
		testlib.StartSMTPSink(t, testlib.SinkOptions{}),
		testlib.StartSMTPSink(t, testlib.SinkOptions{}),
	}
	p := NewPool(testConfig(), PoolConfig{MaxConns: 1})
	for i, s := range sinks[:2] {
		if _, err := p.Send(context.Background(), sinkTarget(s), Options{TLS: TLSNone}, msg("a@x.test", "x\r\n", "b@y.test")); err != nil {
			t.Fatalf("sink %d: %v", i, err)
		}
	}
	// The first sink's idle connection was closed (QUIT) for the second.
	if _, _, quits, _ := sinks[0].Stats(); quits != 1 {
		t.Errorf("the idle connection to the first destination: %d QUIT, want 1", quits)
	}
	p.Close()

	// 12 messages to the three destinations at once: the connections
	// open at the same time, counted as the pool dials and closes them.
	cc := &connCounter{}
	cfg := testConfig()
	cfg.Dial = cc.dial
	p = NewPool(cfg, PoolConfig{MaxConns: 2})
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := p.Send(context.Background(), sinkTarget(sinks[i%3]), Options{TLS: TLSNone},
				msg("a@x.test", strings.Repeat(fmt.Sprintf("line %d\r\n", i), 2000), "b@y.test"))
			if err == nil && res.Delivered() != 1 {
				err = fmt.Errorf("not delivered: %+v", res)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	n := 0
	for _, s := range sinks {
		n += len(s.Txns())
	}
	if most := cc.most(); most > 2 || n != 12+2 {
		t.Errorf("%d connections open at once (want at most 2), %d messages", most, n)
	}
}

// connCounter dials and counts the connections open at once.
type connCounter struct {
	mu         sync.Mutex
	open, peak int
}

func (c *connCounter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.open++
	c.peak = max(c.peak, c.open)
	c.mu.Unlock()
	return &countedConn{Conn: nc, c: c}, nil
}

func (c *connCounter) most() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.peak
}

type countedConn struct {
	net.Conn
	c    *connCounter
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() {
		cc.c.mu.Lock()
		cc.c.open--
		cc.c.mu.Unlock()
	})
	return cc.Conn.Close()
}
