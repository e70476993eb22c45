package milter

import (
	"context"
	"strings"
	"testing"
)

// BenchmarkTransaction is the cost of one transaction through one milter
// on loopback (go-milter's server side, which does nothing): MAIL, RCPT,
// DATA, a 10 KiB message, its end, in a session that stays open.
func BenchmarkTransaction(b *testing.B) {
	sc := &script{}
	addr := startScript(b, sc)
	c, err := New([]Config{{Address: addr}}, Options{Hostname: "mx.postoffice.test"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	s := c.Session(testConn)
	defer s.Close()
	s.Connect(ctx)
	s.Helo(ctx, "client.example.net")
	msg := "From: a@example.net\r\nTo: b@example.org\r\nSubject: bench\r\n\r\n" + strings.Repeat("Some text of a benchmark message.\r\n", 300)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		tx, v := s.Mail(ctx, "a@example.net", nil, "Q")
		if tx == nil {
			b.Fatal(v)
		}
		tx.Rcpt(ctx, "b@example.org", nil)
		tx.Data(ctx)
		res, err := tx.End(ctx, strings.NewReader(msg), int64(len(msg)))
		if err != nil || res.Action != Continue {
			b.Fatal(res, err)
		}
		sc.mu.Lock()
		sc.events, sc.headers = sc.events[:0], sc.headers[:0]
		sc.body.Reset()
		sc.mu.Unlock()
	}
}
