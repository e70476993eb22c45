package sqlite

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"

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
	msgs, err := b.List(ctx, id)
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
