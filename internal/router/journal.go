package router

import (
	"fmt"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// journalEntries describes an accepted message for the mail journal: the
// received entry with its envelope first (its time is the receipt), then
// one entry per recipient: delivered to a local mailbox, queued for a
// remote address, or bounced.
func journalEntries(m *Message, now time.Time) []store.JournalEntry {
	env := m.Env
	msgID := strings.TrimSpace(m.Header.Get("Message-ID"))
	client := env.RemoteAddr
	if client == "" {
		client = env.Source
	}
	detail := []string{env.Source, env.Protocol}
	if env.AuthUser != "" {
		detail = append(detail, "auth "+env.AuthUser)
	}
	if env.TLS != "" {
		detail = append(detail, env.TLS)
	}
	if env.Helo != "" {
		detail = append(detail, "helo "+env.Helo)
	}
	if env.Checks != nil {
		if c := env.Checks.String(); c != "" {
			detail = append(detail, c)
		}
	}
	detail = append(detail, env.Notes...)
	detail = append(detail, m.Notes...)
	base := store.JournalEntry{MessageID: msgID, TxID: env.ID, From: env.From, Size: m.Body.Size(), Client: client}
	received := base
	received.Time, received.Event, received.To = env.Received, store.EventReceived, append([]string(nil), env.To...)
	received.Detail = strings.Join(detail, ", ")
	out := []store.JournalEntry{received}
	for _, rc := range m.Recipients {
		e := base
		e.Time = now
		e.To = []string{rc.Address}
		switch {
		case rc.Err != nil:
			e.Event, e.Detail = store.EventBounced, rc.Err.Error()
			if env.From == "" {
				e.Detail += " (null sender: no notification)"
			}
			if rc.Local() {
				e.User = rc.Address
			}
		case rc.Local():
			e.Event, e.User = store.EventDelivered, rc.Address
			e.Detail = fmt.Sprintf("uid %d", rc.UID)
			if rc.Original != rc.Address {
				e.Detail += " for " + rc.Original
			}
		default:
			e.Event, e.Detail = store.EventQueued, fmt.Sprintf("queue %d", rc.QueueID)
		}
		out = append(out, e)
	}
	return out
}
