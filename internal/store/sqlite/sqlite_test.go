package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"postoffice/internal/store"
	"postoffice/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) store.Store {
		s, err := Open(dir)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	})
}

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addUser(t *testing.T, s *Store, addr string, quota int64) int64 {
	t.Helper()
	u, err := s.AddUser(t.Context(), store.User{Address: addr, Enabled: true, QuotaBytes: quota})
	if err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	return u.ID
}

// blobFiles lists the message files under dir.
func blobFiles(t *testing.T, s *Store) []string {
	t.Helper()
	var ids []string
	err := s.blobs.Walk(t.Context(), func(id string, _ time.Time) error {
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return ids
}

func TestOpenCreatesPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "data")
	open(t, dir)
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("data directory mode %v, want 0700", perm)
	}
}

func TestOneFilePerDelivery(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir())
	a, b, c := addUser(t, s, "a@example.com", 0), addUser(t, s, "b@example.com", 0), addUser(t, s, "c@example.com", 10)

	uids, err := s.Deliver(ctx, strings.NewReader("shared\r\n"), []int64{a, b})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(blobFiles(t, s)); n != 1 {
		t.Fatalf("%d files after one delivery to two users, want 1", n)
	}
	if _, err := s.Deliver(ctx, strings.NewReader("too big for c\r\n"), []int64{a, c}); !errors.Is(err, store.ErrQuota) {
		t.Fatalf("Deliver over quota: %v", err)
	}
	if n := len(blobFiles(t, s)); n != 1 {
		t.Errorf("%d files after a refused delivery, want 1", n)
	}

	if err := s.Delete(ctx, a, uids[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(blobFiles(t, s)); n != 1 {
		t.Errorf("%d files while b still has the message, want 1", n)
	}
	if err := s.DeleteUser(ctx, b); err != nil {
		t.Fatal(err)
	}
	if n := len(blobFiles(t, s)); n != 0 {
		t.Errorf("%d files once no mailbox has the message, want 0", n)
	}
}

func TestMissingBodyIsNotNotFound(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir())
	a := addUser(t, s, "a@example.com", 0)
	uids, err := s.Deliver(ctx, strings.NewReader("x\r\n"), []int64{a})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range blobFiles(t, s) {
		if err := s.blobs.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.Open(ctx, a, uids[0])
	if err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Open of a message whose file is lost: %v; want an error other than ErrNotFound", err)
	}
}

func TestOrphansRemovedAtOpen(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	a := addUser(t, s, "a@example.com", 0)
	if _, err := s.Deliver(t.Context(), strings.NewReader("kept\r\n"), []int64{a}); err != nil {
		t.Fatal(err)
	}
	kept := blobFiles(t, s)[0]
	s.Close()

	blobs := filepath.Join(dir, blobsDir)
	old := time.Now().Add(-2 * orphanGrace)
	write := func(rel string, mtime time.Time) string {
		p := filepath.Join(blobs, rel)
		if err := os.WriteFile(p, []byte("orphan"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return p
	}
	id1, id2 := strings.Repeat("ab", 16), strings.Repeat("cd", 16)
	oldOrphan := write(filepath.Join(id1[:2], id1), old)
	newOrphan := write(filepath.Join(id2[:2], id2), time.Now()) // maybe another process's delivery in progress
	oldTemp := write(filepath.Join(tmpDir, "put-1"), old)
	newTemp := write(filepath.Join(tmpDir, "put-2"), time.Now())
	keptPath := filepath.Join(blobs, kept[:2], kept)
	if err := os.Chtimes(keptPath, old, old); err != nil {
		t.Fatal(err)
	}

	s = open(t, dir)
	<-s.sweepDone
	for p, want := range map[string]bool{oldOrphan: false, newOrphan: true, oldTemp: false, newTemp: true, keptPath: true} {
		_, err := os.Stat(p)
		if exists := err == nil; exists != want {
			t.Errorf("%s: exists = %v, want %v (err %v)", strings.TrimPrefix(p, dir), exists, want, err)
		}
	}
}

// TestTwoProcesses opens the data directory twice, as postoffice serve and
// postoffice deliver do: writes from both must interleave without errors.
func TestTwoProcesses(t *testing.T) {
	dir := t.TempDir()
	s1, s2 := open(t, dir), open(t, dir)
	a := addUser(t, s1, "a@example.com", 0)
	if _, err := s2.UserByID(t.Context(), a); err != nil {
		t.Fatalf("user added by one store not seen by the other: %v", err)
	}

	var wg sync.WaitGroup
	for i, s := range []*Store{s1, s2, s1, s2} {
		wg.Go(func() {
			for j := range 5 {
				body := fmt.Sprintf("%d/%d\r\n", i, j)
				if _, err := s.Deliver(t.Context(), strings.NewReader(body), []int64{a}); err != nil {
					t.Errorf("Deliver: %v", err)
				}
			}
		})
	}
	wg.Wait()
	for _, s := range []*Store{s1, s2} {
		l, err := s.List(t.Context(), a)
		if err != nil || len(l) != 20 {
			t.Errorf("List = %d messages, %v; want 20", len(l), err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	open(t, dir).Close()
	db, err := sql.Open("sqlite", filepath.Join(dir, dbName))
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRowContext(context.Background(), `PRAGMA user_version`).Scan(&v); err != nil || v != len(migrations) {
		t.Errorf("user_version = %d, %v; want %d", v, err, len(migrations))
	}
	if _, err := db.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, len(migrations)+1)); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if s, err := Open(dir); err == nil {
		s.Close()
		t.Errorf("Open of a database from a newer version succeeded")
	}
}
