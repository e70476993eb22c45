package postgres

import (
	"io"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestSnapshot: the view keeps showing the store as it was when it was
// taken, body included, while the store changes; it writes nothing.
func TestSnapshot(t *testing.T) {
	ctx := t.Context()
	s, _ := open(t, "snap")
	u, err := s.AddUser(ctx, store.User{Address: "a@example.com", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	body := "Subject: one\r\n\r\n" + strings.Repeat("x", 3*chunkSize) + "\r\n"
	uids, err := s.Deliver(ctx, strings.NewReader(body), []store.Delivery{{UserID: u.ID}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := s.Delete(ctx, u.ID, uids); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Deliver(ctx, strings.NewReader("Subject: two\r\n\r\n2\r\n"), []store.Delivery{{UserID: u.ID}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddUser(ctx, store.User{Address: "b@example.com", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	l, err := v.List(ctx, u.ID, 0)
	if err != nil || len(l) != 1 || l[0].UID != uids[0] {
		t.Fatalf("the view lists %v, %v: want the first message alone", l, err)
	}
	r, err := v.Open(ctx, u.ID, uids[0])
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != body {
		t.Fatalf("the view reads %d octets (%v), want the deleted body's %d", len(got), err, len(body))
	}
	if us, err := v.ListUsers(ctx); err != nil || len(us) != 1 {
		t.Errorf("the view lists users %v, %v", us, err)
	}
	if _, err := v.AddUser(ctx, store.User{Address: "c@example.com", Enabled: true}); err == nil {
		t.Error("the view wrote")
	}
	v.Close()
	if l, _ := s.List(ctx, u.ID, 0); len(l) != 1 || l[0].UID == uids[0] {
		t.Errorf("the store lists %v after the view closed", l)
	}
}
