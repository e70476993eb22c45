package server

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/pop3"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// BenchmarkPOP3Session1000 measures one full POP3 session against the real
// SQLite store over loopback TCP: login (argon2id), STAT, UIDL, RETR of
// every message of a 1,000-message mailbox, DELE of each, QUIT (which
// commits the deletions durably). The mailbox is refilled between
// iterations with the timer stopped.
func BenchmarkPOP3Session1000(b *testing.B) {
	const n = 1000
	// About 4 KB per message, with dot-stuffed lines; no verification
	// cache: every session pays the argon2id.
	msg := benchMessage(4000, ".leading dot and some text to fill the line up to seventy chars\r\n")
	st, userID, addr := benchPOP3(b, 0)

	b.SetBytes(int64(n * len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		refill(b, st, userID, msg, n)
		b.StartTimer()
		if err := session(addr, n); err != nil {
			b.Fatal(err)
		}
	}
}

// benchPOP3 serves POP3 from a new store with one user, bench@example.org
// (password "pw"), with the given verification cache TTL in seconds.
func benchPOP3(b *testing.B, cacheTTL time.Duration) (st *sqlite.Store, userID int64, addr string) {
	b.Helper()
	return benchPOP3In(b, b.TempDir(), cacheTTL)
}

// benchPOP3In is benchPOP3 with the store in dir.
func benchPOP3In(b *testing.B, dir string, cacheTTL time.Duration) (st *sqlite.Store, userID int64, addr string) {
	b.Helper()
	st, err := sqlite.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	hash, err := directory.HashPassword("pw")
	if err != nil {
		b.Fatal(err)
	}
	u, err := st.AddUser(context.Background(), store.User{Address: "bench@example.org", PasswordHash: hash, Enabled: true})
	if err != nil {
		b.Fatal(err)
	}
	srv := pop3.NewServer(pop3.Config{
		Hostname: "bench",
		Backend:  &maildrop.Backend{Store: st, Logins: newLogins(st, config.Auth{CacheTTL: config.Duration(cacheTTL)}, slog.New(slog.DiscardHandler)), Holder: "bench"},
		Logger:   slog.New(slog.DiscardHandler),
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return st, u.ID, l.Addr().String()
}

// benchMessage is a message of at least size octets made of line.
func benchMessage(size int, line string) []byte {
	var mb bytes.Buffer
	mb.WriteString("From: a@example.org\r\nSubject: bench\r\n\r\n")
	for mb.Len() < size {
		mb.WriteString(line)
	}
	return mb.Bytes()
}

// refill delivers n copies of msg to the user.
func refill(b *testing.B, st *sqlite.Store, userID int64, msg []byte, n int) {
	b.Helper()
	for range n {
		if _, err := st.Deliver(context.Background(), bytes.NewReader(msg), []store.Delivery{{UserID: userID}}); err != nil {
			b.Fatal(err)
		}
	}
}

func session(addr string, n int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(c, 64*1024)
	w := bufio.NewWriter(c)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		if err == nil && strings.HasPrefix(l, "-ERR") {
			err = fmt.Errorf("server: %s", l)
		}
		return l, err
	}
	cmd := func(s string, multi bool) error {
		w.WriteString(s + "\r\n")
		w.Flush()
		if _, err := line(); err != nil {
			return err
		}
		if !multi {
			return nil
		}
		for {
			l, err := r.ReadSlice('\n')
			if err != nil {
				return err
			}
			if len(l) == 3 && l[0] == '.' {
				return nil
			}
		}
	}
	if _, err := line(); err != nil {
		return err
	}
	for _, s := range []string{"USER bench@example.org", "PASS pw", "STAT"} {
		if err := cmd(s, false); err != nil {
			return err
		}
	}
	if err := cmd("UIDL", true); err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		if err := cmd(fmt.Sprintf("RETR %d", i), true); err != nil {
			return err
		}
		if err := cmd(fmt.Sprintf("DELE %d", i), false); err != nil {
			return err
		}
	}
	if err := cmd("QUIT", false); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, r)
	return err
}

// BenchmarkPOP3Download: sessions that RETR and DELE 200 messages of the
// given size against the real store over loopback, as the download
// workload does. cpu-us/msg is the process's CPU time (server and client
// alike, both in this process) per message, excluding the refill: on a
// machine whose cores the client shares, that is what bounds the rate.
func BenchmarkPOP3Download(b *testing.B) {
	const n = 200
	for _, size := range []int{4 << 10, 45 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			msg := benchMessage(size, "some text to fill the line up to seventy-eight characters or so, and more\r\n")
			// The verification cache on, as in serve: the hash is not
			// what this measures.
			st, userID, addr := benchPOP3(b, 5*time.Minute)
			var cpu time.Duration
			b.SetBytes(int64(n * len(msg)))
			for b.Loop() {
				b.StopTimer()
				refill(b, st, userID, msg, n)
				b.StartTimer()
				before := processCPU(b)
				if err := session(addr, n); err != nil {
					b.Fatal(err)
				}
				cpu += processCPU(b) - before
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*n), "cpu-us/msg")
		})
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
