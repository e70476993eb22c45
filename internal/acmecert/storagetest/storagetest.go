// Package storagetest is the conformance suite of acmecert.Storage: every
// implementation (in memory, SQLite, PostgreSQL) runs it from its tests.
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
)

// Run runs the suite against the Storage that newStorage returns; each
// subtest gets a fresh, empty one.
func Run(t *testing.T, newStorage func(t *testing.T) acmecert.Storage) {
	t.Run("GetMissing", func(t *testing.T) {
		s := newStorage(t)
		if _, err := s.Get(t.Context(), "acme/x/cert/none.example"); !errors.Is(err, acmecert.ErrNotFound) {
			t.Fatalf("Get of a missing name: %v, want ErrNotFound", err)
		}
	})
	t.Run("PutGetReplaceDelete", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		name := "acme/ca.example_14000/cert/mail.example.com"
		// Binary and PEM-like content survive unchanged, NUL included.
		v1 := []byte("-----BEGIN PRIVATE KEY-----\n\x00\xff\r\n")
		v2 := bytes.Repeat([]byte("0123456789abcdef"), 512) // 8 KiB
		if err := s.Put(ctx, name, v1); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, name)
		if err != nil || !bytes.Equal(got, v1) {
			t.Fatalf("Get = %q, %v; want %q", got, err, v1)
		}
		got[0] = 'X' // the caller's copy: the stored value is unchanged
		if again, _ := s.Get(ctx, name); !bytes.Equal(again, v1) {
			t.Fatalf("changing a returned blob changed the stored one: %q", again)
		}
		if err := s.Put(ctx, name, v2); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Get(ctx, name); err != nil || !bytes.Equal(got, v2) {
			t.Fatalf("Get after replace: %d octets, %v; want %d", len(got), err, len(v2))
		}
		// A name that is a prefix of another is a different name.
		if _, err := s.Get(ctx, "acme/ca.example_14000/cert/mail.example.co"); !errors.Is(err, acmecert.ErrNotFound) {
			t.Fatalf("Get of a prefix: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Get(ctx, name); !errors.Is(err, acmecert.ErrNotFound) {
			t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, name); err != nil {
			t.Fatalf("Delete of a missing name: %v", err)
		}
	})
	t.Run("ManyNames", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		long := "acme/ca/cert/" + strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 57) + ".example"
		names := []string{"acme/ca/account.key", "acme/ca/http-01/AbC-_9", "acme/ca/tls-alpn-01/x.example", long}
		for i, n := range names {
			if err := s.Put(ctx, n, fmt.Appendf(nil, "v%d", i)); err != nil {
				t.Fatalf("Put %q: %v", n, err)
			}
		}
		for i, n := range names {
			if got, err := s.Get(ctx, n); err != nil || string(got) != fmt.Sprintf("v%d", i) {
				t.Fatalf("Get %q = %q, %v", n, got, err)
			}
		}
	})
	t.Run("Lock", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		const lock = "acme/ca/lock"
		try := func(holder string, lease time.Duration, want bool) {
			t.Helper()
			got, err := s.TryLock(ctx, lock, holder, lease)
			if err != nil || got != want {
				t.Fatalf("TryLock(%s) = %v, %v; want %v", holder, got, err, want)
			}
		}
		try("a", time.Hour, true)
		try("b", time.Hour, false)
		try("a", time.Hour, true) // the holder renews its lease
		if ok, err := s.TryLock(ctx, "acme/other/lock", "b", time.Hour); err != nil || !ok {
			t.Fatalf("another lock name: %v, %v", ok, err)
		}
		if err := s.Unlock(ctx, lock, "b"); err != nil { // not the holder: no-op
			t.Fatal(err)
		}
		try("b", time.Hour, false)
		if err := s.Unlock(ctx, lock, "a"); err != nil {
			t.Fatal(err)
		}
		try("b", time.Hour, true)
		try("a", time.Hour, false)
	})
	t.Run("LeaseExpires", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		const lock = "acme/ca/lock"
		if ok, err := s.TryLock(ctx, lock, "dead", 300*time.Millisecond); err != nil || !ok {
			t.Fatalf("TryLock: %v, %v", ok, err)
		}
		// Once the lease has run out, another holder gets the lock (the
		// wait is a lower bound, so a slow machine cannot fail this).
		deadline := time.Now().Add(30 * time.Second)
		for {
			time.Sleep(400 * time.Millisecond)
			ok, err := s.TryLock(ctx, lock, "alive", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the lock was never freed after its lease ran out")
			}
		}
		if ok, _ := s.TryLock(ctx, lock, "dead", time.Hour); ok {
			t.Fatal("the expired holder took the lock back from the new one")
		}
	})
	t.Run("LockRace", func(t *testing.T) {
		s := newStorage(t)
		ctx := t.Context()
		// Many holders at once: exactly one wins.
		var wg sync.WaitGroup
		var mu sync.Mutex
		winners := 0
		for i := range 16 {
			wg.Go(func() {
				ok, err := s.TryLock(ctx, "acme/ca/lock", fmt.Sprintf("node%d", i), time.Hour)
				if err != nil {
					t.Error(err)
				}
				if ok {
					mu.Lock()
					winners++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if winners != 1 {
			t.Fatalf("%d holders took the lock at once", winners)
		}
	})
}
