package milter

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "tcp:" + addr
}

// A milter that is down: with on_error = tempfail every transaction is
// refused for now, and said so in the log; with on_error = accept the
// mail goes on through the other milters.
func TestMilterDown(t *testing.T) {
	ctx := context.Background()
	c, log := newClient(t, Config{Name: "down", Address: closedAddr(t)})
	s := c.Session(testConn)
	defer s.Close()
	v := s.Connect(ctx)
	if v.Action != TempFail || v.Reply.String() != "451 4.7.1 Service unavailable - try again later" || v.Err == nil || v.Milter != "down" {
		t.Errorf("connect: %+v", v)
	}
	if tx, v := s.Mail(ctx, "a@example.net", nil, ""); tx != nil || v.Action != TempFail {
		t.Errorf("mail: %+v", v)
	}
	if !strings.Contains(log.String(), "milter failed") || !strings.Contains(log.String(), "milter=down") {
		t.Errorf("log: %s", log)
	}

	up := &script{eom: func(m gomilter.Modifier) error { return m.AddHeader("X-Up", "yes") }}
	c, log = newClient(t, Config{Name: "down", Address: closedAddr(t), OnError: OnErrorAccept}, Config{Name: "up", Address: startScript(t, up)})
	s = c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	if res.Action != Continue || !strings.Contains(readAll(t, res.Message()), "X-Up: yes") {
		t.Errorf("on_error = accept: %+v", res.Verdict)
	}
	if !strings.Contains(log.String(), "on_error=accept") {
		t.Errorf("log: %s", log)
	}
}

// A milter that stops answering: the command and end timeouts.
func TestMilterTimeout(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		hang    string
		onError OnError
	}{{"rcpt", OnErrorTempFail}, {"eom", OnErrorTempFail}, {"body", OnErrorTempFail}, {"eom", OnErrorAccept}} {
		t.Run(tc.hang+" "+string(tc.onError), func(t *testing.T) {
			sc := &script{hang: tc.hang}
			c, log := newClient(t, Config{Name: "slow", Address: startScript(t, sc), OnError: tc.onError,
				CommandTimeout: 300 * time.Millisecond, EndTimeout: 300 * time.Millisecond})
			s := c.Session(testConn)
			defer s.Close()
			s.Connect(ctx)
			s.Helo(ctx, "client.example.net")
			tx, _ := s.Mail(ctx, "alice@example.net", nil, "Q1")
			start := time.Now()
			v := tx.Rcpt(ctx, "bob@example.org", nil)
			if tc.hang == "rcpt" {
				if v.Action != TempFail || v.Err == nil {
					t.Errorf("rcpt: %+v", v)
				}
			} else {
				res := end(t, ctx, tx, testMessage)
				want := TempFail
				if tc.onError == OnErrorAccept {
					want = Continue
				}
				if res.Action != want {
					t.Errorf("end: %+v, want %s", res.Verdict, want)
				}
				if want == Continue && readAll(t, res.Message()) != testMessage {
					t.Error("the message changed")
				}
			}
			if d := time.Since(start); d > 20*time.Second {
				t.Errorf("took %v", d)
			}
			if !strings.Contains(log.String(), "timeout") {
				t.Errorf("log: %s", log)
			}
		})
	}
}

// The SMTP session's context ends a wait on a milter at once.
func TestMilterContext(t *testing.T) {
	sc := &script{hang: "mail"}
	c, _ := newClient(t, Config{Address: startScript(t, sc), CommandTimeout: time.Hour})
	s := c.Session(testConn)
	defer s.Close()
	s.Connect(context.Background())
	s.Helo(context.Background(), "client.example.net")
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	tx, v := s.Mail(ctx, "alice@example.net", nil, "")
	if tx != nil || v.Action != TempFail || !errors.Is(v.Err, context.Canceled) {
		t.Errorf("cancelled mail: %+v", v)
	}
}

// A peer that does not speak the protocol, one that hangs up after the
// negotiation, one that never accepts: failures, not crashes or hangs.
func TestMilterBroken(t *testing.T) {
	ctx := context.Background()
	serve := func(t *testing.T, handle func(net.Conn)) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { defer conn.Close(); handle(conn) }()
			}
		}()
		return "tcp:" + ln.Addr().String()
	}
	garbage := serve(t, func(c net.Conn) { c.Write([]byte("220 I am an SMTP server, not a milter\r\n")) })
	// A 100 MB packet: under the library's own limit, over ours.
	huge := serve(t, func(c net.Conn) {
		buf := make([]byte, 17)
		c.Read(buf)
		c.Write([]byte{0x06, 0, 0, 0, 'O'})
		c.Read(buf) // until the client gives up
	})
	hangup := serve(t, func(c net.Conn) {
		// Answer the negotiation as a milter would, then hang up.
		buf := make([]byte, 17)
		c.Read(buf)
		c.Write([]byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // never accepts: the handshake completes, no answer comes
	silent := "tcp:" + ln.Addr().String()

	for name, addr := range map[string]string{"garbage": garbage, "huge packet": huge, "hang up": hangup, "silent": silent} {
		t.Run(name, func(t *testing.T) {
			c, log := newClient(t, Config{Name: name, Address: addr, ConnectTimeout: 300 * time.Millisecond})
			s := c.Session(testConn)
			defer s.Close()
			v := s.Connect(ctx)
			if v.Action != TempFail || v.Err == nil {
				t.Errorf("connect: %+v", v)
			}
			if !strings.Contains(log.String(), "milter failed") {
				t.Errorf("log: %s", log)
			}
			if name == "huge packet" && !strings.Contains(log.String(), "packet of 100663296 octets") {
				t.Errorf("log: %s", log)
			}
		})
	}
}

// What a milter sends back at the end is bounded by the message size
// limit: a flood is a failure.
func TestMilterFlood(t *testing.T) {
	ctx := context.Background()
	sc := &script{eom: func(m gomilter.Modifier) error {
		return m.ReplaceBody(strings.NewReader(strings.Repeat("flood\r\n", 200_000))) // 1.4 MB
	}}
	c, err := New([]Config{{Address: startScript(t, sc)}}, Options{MaxMessageSize: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	s := c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	if res.Action != TempFail || res.Err == nil || !strings.Contains(res.Err.Error(), "limit") {
		t.Errorf("flood: %+v", res.Verdict)
	}
}

// A replaced body over 1 MiB goes to a temporary file, and reads back.
func TestLargeReplacedBody(t *testing.T) {
	ctx := context.Background()
	body := strings.Repeat("a line of the new body\r\n", 60_000) // 1.4 MB
	sc := &script{eom: func(m gomilter.Modifier) error { return m.ReplaceBody(strings.NewReader(body)) }}
	c, _ := newClient(t, Config{Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	if res.c == nil || res.c.file == nil {
		t.Fatal("a 1.4 MB body was kept in memory")
	}
	got := readAll(t, res.Message())
	if !strings.HasSuffix(got, "\r\n\r\n"+body) || len(got) != len(testMessage)-len("Hello Bob.\r\n\r\nBye.\r\n")+len(body) {
		t.Errorf("message of %d octets", len(got))
	}
}

// MAIL without HELO: the milters get a greeting first, in the client's
// name.
func TestMailWithoutHelo(t *testing.T) {
	ctx := context.Background()
	sc := &script{}
	c, _ := newClient(t, Config{Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	s.Connect(ctx)
	tx, v := s.Mail(ctx, "alice@example.net", nil, "")
	if tx == nil || v.Action != Continue {
		t.Fatalf("mail: %+v", v)
	}
	if ev := sc.Events(); len(ev) != 3 || ev[1] != "helo [198.51.100.7]" {
		t.Errorf("events %q", ev)
	}
}
