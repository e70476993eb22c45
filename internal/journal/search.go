package journal

import (
	"context"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Search is QueryJournal that also follows a message into its mailboxes:
// a POP3 client's retrieved and deleted entries, and expired ones, name
// the mailbox and the UID ("uid 41") but not the Message-ID, which only
// the delivered entry has. So when a text search (q.Text) finds delivered
// entries, the retrieved, deleted and expired entries of the same mailbox
// and UID are added (when they match q's user, event and period too).
// Entries are newest first; the followed ones do not count against
// q.Limit.
func Search(ctx context.Context, st store.Journal, q store.JournalQuery) ([]store.JournalEntry, error) {
	found, err := st.QueryJournal(ctx, q)
	if err != nil || q.Text == "" {
		return found, err
	}
	have := map[int64]bool{}
	for _, e := range found {
		have[e.ID] = true
	}
	// The delivered entries to follow: those found, or, when q asks for
	// another event, those the same search finds among deliveries.
	seeds := found
	if q.Event != "" && q.Event != store.EventDelivered {
		sq := q
		sq.Event, sq.Limit = store.EventDelivered, 1000
		if seeds, err = st.QueryJournal(ctx, sq); err != nil {
			return nil, err
		}
	}
	type copyKey struct{ user, detail string }
	seen := map[copyKey]bool{}
	var more []store.JournalEntry
	for _, e := range seeds {
		if e.Event != store.EventDelivered || e.User == "" {
			continue
		}
		uid := uidOf(e.Detail)
		k := copyKey{e.User, uid}
		if uid == "" || seen[k] {
			continue
		}
		seen[k] = true
		for _, ev := range []store.JournalEvent{store.EventRetrieved, store.EventDeleted, store.EventExpired} {
			if q.Event != "" && q.Event != ev {
				continue
			}
			if q.User != "" && !strings.EqualFold(q.User, e.User) {
				continue
			}
			// The text "uid 4" matches "uid 41" too: keep exact ones.
			es, err := st.QueryJournal(ctx, store.JournalQuery{User: e.User, Event: ev, Text: uid, Since: q.Since, Until: q.Until, Limit: 1000})
			if err != nil {
				return nil, err
			}
			for _, f := range es {
				if f.Detail == uid && !have[f.ID] {
					have[f.ID] = true
					more = append(more, f)
				}
			}
		}
	}
	if len(more) == 0 {
		return found, nil
	}
	out := append(found, more...)
	slices.SortFunc(out, func(a, b store.JournalEntry) int { return int(b.ID - a.ID) })
	return out, nil
}

// uidOf finds "uid N" in a delivered entry's detail ("uid 41", "uid 41
// for alias@example.org").
func uidOf(detail string) string {
	f := strings.Fields(detail)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "uid" && strings.Trim(f[i+1], "0123456789") == "" {
			return "uid " + f[i+1]
		}
	}
	return ""
}
