package postgres

import (
	"bytes"
	"fmt"
	"io"
	"sync/atomic"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
)

// benchStore opens a store with 50 users on a new schema.
func benchStore(b *testing.B) (*Store, []int64) {
	b.Helper()
	s, _ := openB(b)
	var ids []int64
	for i := range 50 {
		u, err := s.AddUser(b.Context(), store.User{Address: fmt.Sprintf("u%d@example.com", i), Enabled: true})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	return s, ids
}

func openB(b *testing.B) (*Store, string) {
	b.Helper()
	_, dsn := pgtest.Schema(b)
	s, err := OpenWith(b.Context(), dsn, "bench", Options{Join: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s, dsn
}

// BenchmarkDeliver: 4 KiB messages to one mailbox each, from parallel
// goroutines (as SMTP sessions).
func BenchmarkDeliver(b *testing.B) {
	s, ids := benchStore(b)
	body := bytes.Repeat([]byte("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n"), 64)
	var n atomic.Int64
	b.SetBytes(int64(len(body)))
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
}

// BenchmarkSession: what a POP3 session of a polling client costs the
// store: lock, list, read one message, unlock.
func BenchmarkSession(b *testing.B) {
	s, ids := benchStore(b)
	body := bytes.Repeat([]byte("x"), 8000)
	for _, id := range ids {
		for range 20 {
			if _, err := s.Deliver(b.Context(), bytes.NewReader(body), []store.Delivery{{UserID: id}}); err != nil {
				b.Fatal(err)
			}
		}
	}
	var workers atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		// A mailbox of its own for each goroutine: sessions of one user
		// would exclude each other.
		id := ids[(workers.Add(1)-1)%int64(len(ids))]
		for pb.Next() {
			l, err := s.Lock(b.Context(), id, "bench")
			if err != nil {
				b.Error(err)
				return
			}
			ms, err := s.List(b.Context(), id, 0)
			if err == nil {
				var rc io.ReadCloser
				if rc, err = s.Open(b.Context(), id, ms[len(ms)-1].UID); err == nil {
					_, err = io.Copy(io.Discard, rc)
					rc.Close()
				}
			}
			l.Unlock()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
