package queue

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRunner measures the queue runner end to end: b.N messages of
// one recipient each, already in the real SQLite store, delivered by the
// background runner over loopback SMTP to a go-smtp sink (one host, so at
// most MaxPerHost = 5 connections at once), each outcome recorded and the
// message removed durably (fsync).
func BenchmarkRunner(b *testing.B) {
	h := newHarness(b, func(c *Config) { c.Now = time.Now })
	k := newSink(b)
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	for i := range b.N {
		h.enqueue("alice@a.test", []string{fmt.Sprintf("r%d@b.test", i)}, testMsg)
	}
	b.ResetTimer()
	if err := h.r.Start(); err != nil {
		b.Fatal(err)
	}
	for len(k.transactions()) < b.N {
		time.Sleep(5 * time.Millisecond)
	}
	for {
		ms, err := h.st.ListQueue(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	if n := len(k.transactions()); n != b.N {
		b.Fatalf("%d transactions for %d messages", n, b.N)
	}
}
