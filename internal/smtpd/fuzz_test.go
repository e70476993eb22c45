package smtpd

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fuzzConn is a connection whose client sends a fixed input and then
// closes; the server's output is kept.
type fuzzConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *fuzzConn) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *fuzzConn) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *fuzzConn) Close() error                { return nil }
func (c *fuzzConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 25} }
func (c *fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// replyLine is one line of a reply as RFC 5321 section 4.2 writes it.
var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -][^\r\n]*$`)

// FuzzSession feeds arbitrary bytes to a session as a client's input. The
// session must neither panic nor hang; every line it writes must be a
// reply; every message the backend took must be CRLF text within the
// size limit, with recipients; and every "250 ... queued as" must stand
// for one message taken, no more, no fewer.
func FuzzSession(f *testing.F) {
	for _, seed := range []string{
		"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nSubject: s\r\n\r\nbody\r\n.\r\nQUIT\r\n",
		"HELO x\r\nMAIL FROM:<a@b.test> SIZE=100 BODY=8BITMIME\r\nRCPT TO:<c@d.test>\r\nRCPT TO:<e@f.test>\r\nDATA\r\n\xff\xfe\r\n..x\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test> RET=HDRS ENVID=a+2Bb\r\nRCPT TO:<c@d.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;c+40d\r\nRCPT TO:<e@f.test> NOTIFY=NEVER,DELAY\r\n",
		"EHLO x\r\nAUTH PLAIN " + plainIR("alice", "secret-pw-1") + "\r\nMAIL FROM:<alice@example.org>\r\n",
		"EHLO x\r\nAUTH LOGIN\r\n" + b64("alice") + "\r\n" + b64("bad") + "\r\nAUTH LOGIN *\r\n*\r\n",
		"EHLO x\r\nAUTH PLAIN\r\n=\r\nAUTH PLAIN !!!\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 5\r\nhelloBDAT 0 LAST\r\nBDAT 3\r\nabc",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 9999999999\r\nBDAT 4 LAST\r\na\nb\r",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nBDAT 4\r\nabcdNOOP\r\nRSET\r\nBDAT 2 LAST\r\nxy",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\n.\nMAIL FROM:<e@f.test>\r\n\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\nx\r\n.\rMAIL\r.\r\r\n.\r\n",
		"EHLO x\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<c@d.test>\r\nDATA\r\n" + strings.Repeat("z", 5000) + "\r\n.\r\n",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01\x00\x05hello",
		"EHLO x\r\nMAIL FROM:<ü@b.test> SMTPUTF8\r\nRCPT TO:<\"a b\"@b.test>\r\nRSET\r\nNOOP\r\nVRFY x\r\nHELP\r\n\r\nX\r\nXYZZY\r\n",
		"\x00\xff\r\n\n\n\r\r" + strings.Repeat("A", 2000),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		be := newFakeBackend()
		srv := NewServer(Config{
			Hostname:        "mx.test",
			Backend:         be,
			TLSConfig:       serverTLS(),
			MaxMessageBytes: 4096,
			MaxRecipients:   5,
			MaxLineLength:   1024,
			Logger:          slog.New(slog.DiscardHandler),
		})
		var panicked any
		srv.onPanic = func(v any) { panicked = v }
		conn := &fuzzConn{in: bytes.NewReader(data)}
		done := make(chan struct{})
		go func() {
			srv.ServeConn(conn)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("session did not end at the end of its input\n%s", buf[:runtime.Stack(buf, true)])
		}
		srv.Close()
		if panicked != nil {
			t.Fatalf("session panicked: %v", panicked)
		}
		out := conn.out.String()
		if !strings.HasPrefix(out, "220 mx.test ESMTP") {
			t.Fatalf("no greeting: %q", out)
		}
		queued := 0
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Split(scanCRLF)
		for sc.Scan() {
			if !replyLine.MatchString(sc.Text()) {
				t.Fatalf("not a reply line: %q in %q", sc.Text(), out)
			}
			if strings.HasPrefix(sc.Text(), "250 2.0.0 Ok: queued as ") {
				queued++
			}
		}
		d := be.deliveries()
		if len(d) != queued {
			t.Fatalf("%d messages taken, %d acknowledged", len(d), queued)
		}
		for _, m := range d {
			if len(m.env.To) == 0 || int64(len(m.body)) > 4096 || !crlfOnly(m.body) {
				t.Fatalf("message taken: %+v %q", m.env, m.body)
			}
		}
	})
}

// scanCRLF splits at CRLF; a line without it (at the end) is returned as
// it is, so that it fails the reply pattern.
func scanCRLF(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.Index(data, []byte("\r\n")); i >= 0 {
		return i + 2, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), append(data, '\r'), nil
	}
	return 0, nil, nil
}

// crlfOnly reports whether every CR and LF of b is in a CRLF pair.
func crlfOnly(b []byte) bool {
	for i, c := range b {
		switch c {
		case '\r':
			if i+1 == len(b) || b[i+1] != '\n' {
				return false
			}
		case '\n':
			if i == 0 || b[i-1] != '\r' {
				return false
			}
		}
	}
	return true
}
