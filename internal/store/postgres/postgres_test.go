package postgres

import (
	"context"
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
