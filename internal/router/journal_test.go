package router_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestJournalEntries: an accepted message is journaled as received (with
// its envelope, size and client), then per recipient delivered (with the
// mailbox UID), queued (with the queue id) or bounced (with the reason);
// the bounce it causes is a message of its own.
func TestJournalEntries(t *testing.T) {
	var mu sync.Mutex
	var batches [][]store.JournalEntry
	f, r := newFixture(t, func(o *router.Options) {
		o.Record = func(_ context.Context, es []store.JournalEntry) {
			mu.Lock()
			defer mu.Unlock()
			batches = append(batches, es)
		}
	})
	f.user("a@local.test", 0)
	f.user("sender@local.test", 0)
	f.alias("list@local.test", "a@local.test", "gone@local.test", "x@remote.test")
	msg := "Message-ID: <m1@remote.test>\r\nSubject: hi\r\n\r\nbody\r\n"
	env := mx("sender@local.test", "list@local.test")
	env.AuthUser = "sender@local.test"
	if err := r.Route(context.Background(), env, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != 2 {
		t.Fatalf("%d batches, want 2 (the message, then its bounce)", len(batches))
	}
	// The bounce is routed (and journaled) before the message's own batch.
	bounce, main := batches[0], batches[1]
	line := func(e store.JournalEntry) string {
		return fmt.Sprintf("%s from=%s to=%s user=%s size=%d client=%s", e.Event, e.From, strings.Join(e.To, ","), e.User, e.Size, e.Client)
	}
	want := []string{
		fmt.Sprintf("received from=sender@local.test to=list@local.test user= size=%d client=192.0.2.7:4567", len(msg)),
		fmt.Sprintf("delivered from=sender@local.test to=a@local.test user=a@local.test size=%d client=192.0.2.7:4567", len(msg)),
		fmt.Sprintf("bounced from=sender@local.test to=gone@local.test user= size=%d client=192.0.2.7:4567", len(msg)),
		fmt.Sprintf("queued from=sender@local.test to=x@remote.test user= size=%d client=192.0.2.7:4567", len(msg)),
	}
	if len(main) != len(want) {
		t.Fatalf("%d entries, want %d", len(main), len(want))
	}
	for i, e := range main {
		if got := line(e); got != want[i] {
			t.Errorf("entry %d:\n got %s\nwant %s", i, got, want[i])
		}
		if e.MessageID != "<m1@remote.test>" || e.TxID == "" || e.TxID != main[0].TxID {
			t.Errorf("entry %d: message id %q, tx %q", i, e.MessageID, e.TxID)
		}
	}
	if d := main[0].Detail; !strings.Contains(d, "smtp") || !strings.Contains(d, "auth sender@local.test") {
		t.Errorf("received detail %q", d)
	}
	if main[1].Detail != "uid 1 for list@local.test" {
		t.Errorf("delivered detail %q", main[1].Detail)
	}
	if !strings.Contains(main[2].Detail, "No such user here") {
		t.Errorf("bounced detail %q", main[2].Detail)
	}
	if q := f.queue(); len(q) != 1 || main[3].Detail != fmt.Sprintf("queue %d", q[0].ID) {
		t.Errorf("queued detail %q, queue %+v", main[3].Detail, q)
	}
	if bounce[0].Event != store.EventReceived || bounce[0].From != "" || bounce[0].Client != "bounce" ||
		bounce[1].Event != store.EventDelivered || bounce[1].User != "sender@local.test" {
		t.Errorf("bounce batch: %s / %s", line(bounce[0]), line(bounce[1]))
	}
}
