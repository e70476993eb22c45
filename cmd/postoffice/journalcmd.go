package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/journal"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// parseSince reads --since: a duration back from now ("90m", "24h", "7d")
// or a date or time ("2024-05-01", "2024-05-01T10:00:00Z").
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.ParseFloat(d, 64); err == nil && n >= 0 {
			return now.Add(-time.Duration(n * float64(24*time.Hour))), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fail(exitUsage, "--since %q: give a duration (90m, 24h, 7d) or a date (2024-05-01)", s)
}

func journalHelp() string {
	return `Show the mail journal, newest first (as the web console does): every message received (with its envelope,
size and client), delivered to a mailbox, queued, forwarded, deferred or
bounced, retrieved or deleted by a POP3 client, or expired; and every message
rejected at the end of its data by the checks of port 25. Each line has the
time, the event, the sender, the recipient or mailbox, the size and details
(message id, transaction id, UID or queue id, remote reply).
Entries are kept for [journal] retention_days.

Events: ` + strings.Join(eventNames(), ", ")
}

func runJournal(c *call) error {
	from, err := parseSince(c.since, time.Now())
	if err != nil {
		return err
	}
	if c.event != "" && !slices.Contains(eventNames(), c.event) {
		return fail(exitUsage, "--event %q: one of %s", c.event, strings.Join(eventNames(), ", "))
	}
	if c.limit <= 0 {
		return fail(exitUsage, "--limit must be positive")
	}
	user := c.userFilter
	if user != "" {
		if a, err := addressArg(user); err == nil {
			user = a
		}
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	entries, err := journal.Search(context.Background(), st, store.JournalQuery{
		Since: from, User: user, Event: store.JournalEvent(c.event), Text: c.grep, Limit: c.limit,
	})
	if err != nil {
		return err
	}
	if c.json {
		enc := json.NewEncoder(c.stdout)
		for _, en := range entries {
			if err := enc.Encode(en); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tEVENT\tFROM\tTO/MAILBOX\tSIZE\tDETAILS")
	for _, en := range entries {
		from := en.From
		if from == "" && (en.Event == store.EventReceived || en.Event == store.EventDelivered || en.Event == store.EventQueued) {
			from = "<>"
		}
		to := en.User
		if to == "" {
			to = strings.Join(en.To, ",")
		}
		var details []string
		if en.MessageID != "" {
			details = append(details, en.MessageID)
		}
		if en.TxID != "" {
			details = append(details, "id "+en.TxID)
		}
		if en.Detail != "" {
			details = append(details, en.Detail)
		}
		if en.Client != "" {
			details = append(details, "client "+en.Client)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", en.Time.Local().Format("2006-01-02 15:04:05"), en.Event,
			dash(from), dash(to), en.Size, strings.Join(details, "; "))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func eventNames() []string {
	var out []string
	for _, ev := range store.JournalEvents {
		out = append(out, string(ev))
	}
	return out
}
