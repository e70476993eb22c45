package pop3

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// benchBody is a ~4 KB canonical message with a few lines to byte-stuff.
func benchBody(i int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: sender@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\nMessage-ID: <%d@example.org>\r\n\r\n", i, i)
	line := strings.Repeat("x", 74) + "\r\n"
	for n := 0; b.Len() < 4000; n++ {
		if n%10 == 0 {
			b.WriteString(".dot line\r\n")
		} else {
			b.WriteString(line)
		}
	}
	return b.String()
}

// BenchmarkSession1000 is one whole session over loopback TCP: login,
// STAT, UIDL, RETR each of 1,000 messages of ~4 KB, DELE each, QUIT.
func BenchmarkSession1000(b *testing.B) {
	const n = 1000
	be := newFakeBackend()
	msgs := make([]fakeMsg, n)
	var total int64
	for i := range msgs {
		msgs[i] = fakeMsg{uid: "uid-" + strconv.Itoa(i+1), body: benchBody(i)}
		total += int64(len(msgs[i].body))
	}
	srv := NewServer(Config{Hostname: "pop.test", Backend: be, Logger: slog.New(slog.DiscardHandler)})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Close()
	b.SetBytes(total)

	for b.Loop() {
		be.set(func(be *fakeBackend) { be.boxes["alice"] = slices.Clone(msgs) })
		benchSession(b, l.Addr().String(), n)
	}
}

func benchSession(b *testing.B, addr string, n int) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReaderSize(conn, 32*1024)
	var cmd []byte
	status := func(c string, num int) {
		cmd = append(cmd[:0], c...)
		if num > 0 {
			cmd = append(cmd, ' ')
			cmd = strconv.AppendInt(cmd, int64(num), 10)
		}
		cmd = append(cmd, '\r', '\n')
		if c != "" {
			if _, err := conn.Write(cmd); err != nil {
				b.Fatal(err)
			}
		}
		line, err := r.ReadSlice('\n')
		if err != nil || !bytes.HasPrefix(line, []byte("+OK")) {
			b.Fatalf("%s %d: %q %v", c, num, line, err)
		}
	}
	multi := func() (lines int) {
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) == 3 && line[0] == '.' {
				return lines
			}
			lines++
		}
	}
	status("", 0) // greeting
	status("USER alice", 0)
	status("PASS secret", 0)
	status("STAT", 0)
	status("UIDL", 0)
	if got := multi(); got != n {
		b.Fatalf("UIDL listed %d", got)
	}
	for i := 1; i <= n; i++ {
		status("RETR", i)
		multi()
	}
	for i := 1; i <= n; i++ {
		status("DELE", i)
	}
	status("QUIT", 0)
}

// BenchmarkDotWriter: RETR's dot-stuffing of a 20 KiB message of 78-octet
// lines, a few of them starting with a dot.
func BenchmarkDotWriter(b *testing.B) {
	var msg []byte
	for i := 0; len(msg) < 20<<10; i++ {
		if i%50 == 0 {
			msg = append(msg, '.')
		}
		msg = append(msg, strings.Repeat("x", 76)...)
		msg = append(msg, "\r\n"...)
	}
	bw := bufio.NewWriterSize(io.Discard, 16<<10)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		d := dotWriter{w: bw}
		d.Write(msg)
		d.Close()
	}
}
