package journal

import (
	"context"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// TestSearchFollowsTheMessage: searching for a Message-ID finds the
// retrieved and deleted entries of its copies too, which have only the
// mailbox and the UID; a UID that merely starts the same (41 for 4) does
// not count.
func TestSearchFollowsTheMessage(t *testing.T) {
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	t0 := time.Now().Add(-time.Hour)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	err = st.AppendJournal(ctx, []store.JournalEntry{
		{Time: at(0), Event: store.EventReceived, MessageID: "<m1@example.org>", To: []string{"a@example.org", "team@example.org"}},
		{Time: at(1), Event: store.EventDelivered, MessageID: "<m1@example.org>", User: "a@example.org", Detail: "uid 4"},
		{Time: at(1), Event: store.EventDelivered, MessageID: "<m1@example.org>", User: "b@example.org", Detail: "uid 7 for team@example.org"},
		{Time: at(2), Event: store.EventDelivered, MessageID: "<other@example.org>", User: "a@example.org", Detail: "uid 41"},
		{Time: at(3), Event: store.EventRetrieved, User: "a@example.org", Detail: "uid 4"},
		{Time: at(4), Event: store.EventRetrieved, User: "a@example.org", Detail: "uid 41"},
		{Time: at(5), Event: store.EventDeleted, User: "a@example.org", Detail: "uid 4"},
		{Time: at(6), Event: store.EventRetrieved, User: "b@example.org", Detail: "uid 7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Search(ctx, st, store.JournalQuery{Text: "m1@example"})
	if err != nil {
		t.Fatal(err)
	}
	var seq []string
	for _, e := range got {
		seq = append(seq, string(e.Event)+" "+e.User+" "+e.Detail)
	}
	want := []string{
		"retrieved b@example.org uid 7",
		"deleted a@example.org uid 4",
		"retrieved a@example.org uid 4",
		"delivered b@example.org uid 7 for team@example.org",
		"delivered a@example.org uid 4",
		"received  ",
	}
	if len(seq) != len(want) {
		t.Fatalf("Search found\n%q\nwant\n%q", seq, want)
	}
	for i := range want {
		if seq[i] != want[i] {
			t.Errorf("entry %d: %q, want %q", i, seq[i], want[i])
		}
	}
	// Narrowed to an event, only those.
	got, _ = Search(ctx, st, store.JournalQuery{Text: "m1@example", Event: store.EventDeleted})
	if len(got) != 1 || got[0].Event != store.EventDeleted {
		t.Errorf("Search for deleted: %v", got)
	}
}
