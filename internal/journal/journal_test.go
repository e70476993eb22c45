package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// fakeJournal records what is appended, in commit order.
type fakeJournal struct {
	store.Journal // only AppendJournal is used
	mu            sync.Mutex
	entries       []store.JournalEntry
	commits       int
	fail          error
}

func (f *fakeJournal) AppendJournal(_ context.Context, es []store.JournalEntry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.commits++
	f.entries = append(f.entries, es...)
	return nil
}

func (f *fakeJournal) got() ([]store.JournalEntry, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]store.JournalEntry(nil), f.entries...), f.commits
}

func TestWriterOrderAndFlush(t *testing.T) {
	fj := &fakeJournal{}
	var hooked []store.JournalEntry
	var hookMu sync.Mutex
	w := NewWriter(fj, slog.New(slog.DiscardHandler), func(es []store.JournalEntry) {
		hookMu.Lock()
		hooked = append(hooked, es...)
		hookMu.Unlock()
	})
	const n = 2000
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n / 4 {
				w.Record(store.JournalEntry{Event: store.EventDelivered, Detail: fmt.Sprintf("%d/%d", g, i)})
			}
		}()
	}
	wg.Wait()
	if err := w.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got, _ := fj.got()
	if len(got) != n {
		t.Fatalf("%d entries committed after Flush, want %d", len(got), n)
	}
	// Each goroutine's entries stay in the order it recorded them.
	last := map[string]int{}
	for _, e := range got {
		var g, i int
		fmt.Sscanf(e.Detail, "%d/%d", &g, &i)
		key := fmt.Sprint(g)
		if prev, ok := last[key]; ok && i != prev+1 {
			t.Fatalf("goroutine %d: entry %d after %d", g, i, prev)
		}
		last[key] = i
		if e.Time.IsZero() {
			t.Fatalf("entry %s has no time", e.Detail)
		}
	}
	hookMu.Lock()
	if len(hooked) != n {
		t.Errorf("hooks saw %d entries, want %d", len(hooked), n)
	}
	hookMu.Unlock()

	w.Record(store.JournalEntry{Event: store.EventRetrieved})
	w.Close()
	if got, _ := fj.got(); len(got) != n+1 {
		t.Errorf("Close did not commit the last entry: %d", len(got))
	}
	// After Close, Record and Flush neither block nor panic.
	w.Record(store.JournalEntry{Event: store.EventRetrieved})
	if err := w.Flush(t.Context()); err != nil {
		t.Errorf("Flush after Close: %v", err)
	}
	w.Close()
}

func TestWriterKeepsTime(t *testing.T) {
	fj := &fakeJournal{}
	w := NewSyncWriter(fj, slog.New(slog.DiscardHandler))
	at := time.Unix(1700000000, 0)
	w.Record(store.JournalEntry{Event: store.EventReceived, Time: at})
	got, _ := fj.got()
	if len(got) != 1 || !got[0].Time.Equal(at) {
		t.Errorf("sync writer committed %+v, want one entry at %v", got, at)
	}
}

type logBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestWriterFailureIsLogged(t *testing.T) {
	fj := &fakeJournal{fail: errors.New("disk full")}
	var logs logBuf
	w := NewWriter(fj, slog.New(slog.NewTextHandler(&logs, nil)))
	w.Record(store.JournalEntry{Event: store.EventReceived})
	w.Close()
	if !strings.Contains(logs.String(), "entries lost") || !strings.Contains(logs.String(), "disk full") {
		t.Errorf("logs = %q, want the loss reported", logs.String())
	}
}

// Entries recorded one at a time, a little apart (as RETRs are), are
// committed together: the writer waits a moment (here: long) for more
// after the first. A Flush still commits at once.
func TestWriterLingers(t *testing.T) {
	fj := &fakeJournal{}
	w := newWriter(fj, slog.New(slog.DiscardHandler), time.Hour)
	defer w.Close()
	for i := range 10 {
		w.Record(store.JournalEntry{Event: store.EventRetrieved, Detail: fmt.Sprint(i)})
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	entries, commits := fj.got()
	if len(entries) != 10 {
		t.Fatalf("%d entries committed after Flush, want 10", len(entries))
	}
	if commits != 1 {
		t.Errorf("10 entries 1 ms apart took %d commits, want 1", commits)
	}
}
