package sqlite

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestBackupKeepsFilesDeletedAfterSnapshot: a message in a file of its
// own, deleted between the copy of the database and that of the files, is
// in the backup whole, as the database copy says it is.
func TestBackupKeepsFilesDeletedAfterSnapshot(t *testing.T) {
	ctx := t.Context()
	s := open(t, t.TempDir())
	id := addUser(t, s, "big@example.com", 0)
	big := []byte(strings.Repeat("0123456789abcdef\r\n", 2*InlineMax/18))
	small := []byte("Subject: small\r\n\r\nhello\r\n")
	uids, err := s.Deliver(ctx, bytes.NewReader(big), []store.Delivery{{UserID: id}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, bytes.NewReader(small), []store.Delivery{{UserID: id}}); err != nil {
		t.Fatal(err)
	}
	if len(blobFiles(t, s)) != 1 {
		t.Fatalf("want the big message in a file: %v", blobFiles(t, s))
	}
	backupHook = func() {
		if err := s.Delete(ctx, id, uids); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(func() { backupHook = nil })
	dir := t.TempDir()
	if err := s.Backup(ctx, dir); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if n, _, _ := s.Usage(ctx, id); n != 1 {
		t.Fatalf("the live mailbox has %d messages, want 1 after the deletion", n)
	}
	b := open(t, dir)
	msgs, err := b.List(ctx, id, 0)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("backup lists %v, %v: want both messages", msgs, err)
	}
	for i, want := range [][]byte{big, small} {
		r, err := b.Open(ctx, id, msgs[i].UID)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(r)
		r.Close()
		if !bytes.Equal(got, want) {
			t.Errorf("message %d of the backup: %d octets, want %d", msgs[i].UID, len(got), len(want))
		}
	}
}

func TestBackupRefusesNonEmptyDir(t *testing.T) {
	s := open(t, t.TempDir())
	dir := t.TempDir()
	open(t, dir) // a store there already
	err := s.Backup(t.Context(), dir)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Backup into a store: %v, want fs.ErrExist", err)
	}
}

// TestBackupRemovesStaleLinks: the links a killed backup left behind a day
// ago go with the next backup; a younger directory (a backup running
// meanwhile) stays.
func TestBackupRemovesStaleLinks(t *testing.T) {
	data := t.TempDir()
	s := open(t, data)
	old, young := filepath.Join(data, ".backup-old"), filepath.Join(data, ".backup-young")
	for _, d := range []string{old, young} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "x"), []byte("x"), 0o600)
	}
	long := time.Now().Add(-25 * time.Hour)
	os.Chtimes(old, long, long)
	if err := s.Backup(t.Context(), t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale directory is still there: %v", err)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("the young directory went: %v", err)
	}
	if ms, _ := filepath.Glob(filepath.Join(data, ".backup-*")); len(ms) != 1 {
		t.Errorf("left behind: %v", ms)
	}
}
