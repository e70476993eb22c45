package sqlite

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// The store's side of the benchmark workloads (cmd/postoffice-bench),
// for each body size: 20 KiB is inline (InlineMax), 100 KiB a file.
var benchSizes = []int{20 << 10, 100 << 10}

func benchBody(size int) []byte {
	line := []byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n")
	return bytes.Repeat(line, size/len(line))
}

func benchUsers(b *testing.B, s *Store, n int) []int64 {
	b.Helper()
	ids := make([]int64, n)
	for i := range ids {
		u, err := s.AddUser(b.Context(), store.User{Address: fmt.Sprintf("u%d@example.com", i), Enabled: true})
		if err != nil {
			b.Fatal(err)
		}
		ids[i] = u.ID
	}
	return ids
}

// BenchmarkDeliver: one message to one mailbox, from parallel goroutines
// as concurrent SMTP sessions deliver (they share commits).
func BenchmarkDeliver(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := openB(b)
			ids := benchUsers(b, s, 50)
			body := benchBody(size)
			var n atomic.Int64
			b.SetBytes(int64(len(body)))
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := ids[n.Add(1)%int64(len(ids))]
					if _, err := s.Deliver(b.Context(), bytes.NewReader(body), []store.Delivery{{UserID: id, Header: []byte("Delivered-To: x@example.com\r\n")}}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkDownload: what a POP3 client that downloads and deletes its
// mail costs the store per message: its share of the List, one Open read
// to the end, and its share of the Delete at QUIT (10 messages a session).
// The mail is delivered outside the timer.
func BenchmarkDownload(b *testing.B) {
	const perSession = 10
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := openB(b)
			id := benchUsers(b, s, 1)[0]
			body := benchBody(size)
			b.SetBytes(int64(len(body)))
			for i := 0; i < b.N; i += perSession {
				b.StopTimer()
				deliverN(b, s, id, body, min(perSession, b.N-i))
				b.StartTimer()
				ms, err := s.List(b.Context(), id, 0)
				if err != nil {
					b.Fatal(err)
				}
				uids := make([]uint64, len(ms))
				for k, m := range ms {
					rc, err := s.Open(b.Context(), id, m.UID)
					if err != nil {
						b.Fatal(err)
					}
					if _, err := io.Copy(io.Discard, rc); err != nil {
						b.Fatal(err)
					}
					rc.Close()
					uids[k] = m.UID
				}
				if err := s.Delete(b.Context(), id, uids); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// deliverN delivers n copies of body to the user and returns their UIDs.
func deliverN(b *testing.B, s *Store, id int64, body []byte, n int) []uint64 {
	b.Helper()
	uids := make([]uint64, n)
	for k := range uids {
		u, err := s.Deliver(b.Context(), bytes.NewReader(body), []store.Delivery{{UserID: id}})
		if err != nil {
			b.Fatal(err)
		}
		uids[k] = u[0]
	}
	return uids
}

func openB(b *testing.B) *Store {
	b.Helper()
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkOpen: RETR's read of one message (Open and read to the end),
// from parallel goroutines as concurrent POP3 sessions.
func BenchmarkOpen(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := openB(b)
			id := benchUsers(b, s, 1)[0]
			body := benchBody(size)
			uids := deliverN(b, s, id, body, 200)
			var n atomic.Int64
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rc, err := s.Open(b.Context(), id, uids[n.Add(1)%int64(len(uids))])
					if err != nil {
						b.Error(err)
						return
					}
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkAppendJournal: the mail journal's background batches, 64
// entries each (a busy POP3 server journals every RETR and DELE). The
// wall time is mostly the commit's fsync; cpu-ns/entry is the process's
// CPU time per entry.
func BenchmarkAppendJournal(b *testing.B) {
	s := openB(b)
	batch := make([]store.JournalEntry, 64)
	for i := range batch {
		batch[i] = store.JournalEntry{Event: store.EventRetrieved, User: "u@example.com", Size: 20480, Detail: fmt.Sprintf("uid %d", i)}
	}
	b.ResetTimer()
	before := cpuTime(b)
	for b.Loop() {
		if err := s.AppendJournal(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N * len(batch))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/entry")
	b.ReportMetric(float64((cpuTime(b)-before).Nanoseconds())/n, "cpu-ns/entry")
}

// BenchmarkDelete: QUIT's deletion of a 100-message mailbox. Its wall time
// is mostly the commit's fsync; cpu-us/msg is the process's CPU time
// (user and system) spent in the Delete calls, per message.
func BenchmarkDelete(b *testing.B) {
	const perQuit = 100
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			s := openB(b)
			id := benchUsers(b, s, 1)[0]
			body := benchBody(size)
			var cpu time.Duration
			for b.Loop() {
				b.StopTimer()
				uids := deliverN(b, s, id, body, perQuit)
				b.StartTimer()
				before := cpuTime(b)
				if err := s.Delete(b.Context(), id, uids); err != nil {
					b.Fatal(err)
				}
				cpu += cpuTime(b) - before
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*perQuit), "cpu-us/msg")
		})
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
