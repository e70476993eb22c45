package postgres

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/store/storetest"
)

// TestConformance runs the suite every backend passes, each test in a
// schema of its own.
func TestConformance(t *testing.T) {
	pgtest.BaseDSN(t)
	var mu sync.Mutex
	dsns := map[string]string{}
	storetest.Run(t, func(t *testing.T, dir string) store.Store {
		mu.Lock()
		dsn, ok := dsns[dir]
		if !ok {
			_, dsn = pgtest.Schema(t)
			dsns[dir] = dsn
		}
		mu.Unlock()
		s, err := OpenWith(t.Context(), dsn, "test-node", Options{Lease: 3 * time.Second, Join: true})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

// open opens a store on a new schema, closed at the end of the test.
func open(t *testing.T, node string) (*Store, string) {
	t.Helper()
	_, dsn := pgtest.Schema(t)
	return openDSN(t, dsn, node), dsn
}

func openDSN(t *testing.T, dsn, node string) *Store {
	t.Helper()
	s, err := OpenWith(context.Background(), dsn, node, Options{Lease: 3 * time.Second, Join: true})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestBodiesNotCompressed: body chunks are stored out of line without
// pglz compression (the schema's "message bodies stored without
// compression"), and read back whole.
func TestBodiesNotCompressed(t *testing.T) {
	s, _ := open(t, "node-a")
	var storage string
	if err := s.pool.QueryRow(t.Context(), `SELECT attstorage::text FROM pg_attribute
		WHERE attrelid = 'blob_chunks'::regclass AND attname = 'data'`).Scan(&storage); err != nil {
		t.Fatal(err)
	}
	if storage != "e" {
		t.Errorf("blob_chunks.data storage %q, want e (EXTERNAL: out of line, not compressed)", storage)
	}
	u, err := s.AddUser(t.Context(), store.User{Address: "a@example.com", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Repeat("a line that compresses very well\r\n", 2000)
	uids, err := s.Deliver(t.Context(), strings.NewReader(body), []store.Delivery{{UserID: u.ID}})
	if err != nil {
		t.Fatal(err)
	}
	var stored int
	if err := s.pool.QueryRow(t.Context(), `SELECT sum(pg_column_size(data)) FROM blob_chunks`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored < len(body) {
		t.Errorf("the body takes %d octets in blob_chunks, less than its %d: compressed", stored, len(body))
	}
	rc, err := s.Open(t.Context(), u.ID, uids[0])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil || string(got) != body {
		t.Errorf("read back %d octets, %v; want the %d delivered", len(got), err, len(body))
	}
}
