package queue

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkRunner measures the queue runner end to end: b.N messages of
// one recipient each, already in the real SQLite store, delivered by the
// background runner over loopback SMTP with STARTTLS (the default
// opportunistic TLS) to testlib's sink (one host, so at most MaxPerHost
// = 5 connections at once), each outcome recorded and the message
// removed durably (fsync). "reuse" keeps connections open for further
// messages (RSET between, the default); "new-connection" opens one per
// message (ReuseTime < 0), the cost of a greeting, two EHLO, a TLS
// handshake and QUIT each time, as before the queue had a pool.
func BenchmarkRunner(b *testing.B) {
	cert, _ := selfSigned(b, "mx.b.test")
	for _, c := range []struct {
		name  string
		reuse time.Duration
	}{{"reuse", 0}, {"new-connection", -1}} {
		b.Run(c.name, func(b *testing.B) {
			h := newHarness(b, func(cfg *Config) { cfg.Now = time.Now; cfg.ReuseTime = c.reuse })
			k := newSink(b, withTLS(cert))
			h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
			for i := range b.N {
				h.enqueue("alice@a.test", []string{fmt.Sprintf("r%d@b.test", i)}, testMsg)
			}
			b.ResetTimer()
			if err := h.r.Start(); err != nil {
				b.Fatal(err)
			}
			for len(k.Txns()) < b.N {
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
			conns, _, _, _ := k.Stats()
			if n := len(k.Txns()); n != b.N {
				b.Fatalf("%d transactions for %d messages", n, b.N)
			}
			b.ReportMetric(float64(conns)/float64(b.N), "conns/msg")
		})
	}
}
