// Package journal writes the mail journal: one durable entry per message
// event (received, delivered, queued, forwarded, deferred, bounced,
// retrieved, deleted, expired, rejected), kept in the store (store.Journal).
//
// A Writer batches entries in the background, so that a busy server
// commits many events at once instead of one transaction each (group
// commit); Close and Flush wait until everything recorded is durable.
// Hooks (the metrics) see each batch as it is recorded.
package journal

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// maxBatch bounds the entries committed in one transaction; queueLen the
// entries waiting (Record blocks beyond, so nothing is dropped). A batch
// waits up to linger for more entries after its first: a POP3 session
// journals every RETR, and a commit per few entries cost the download
// workload as much CPU as the entries themselves. Flush and Close do not
// wait.
const (
	maxBatch = 512
	queueLen = 8192
	linger   = 50 * time.Millisecond
)

// Writer records journal entries.
type Writer struct {
	st    store.Journal
	log   *slog.Logger
	hooks []func([]store.JournalEntry)
	sync  bool
	// linger is how long a batch waits for more entries after its first.
	linger time.Duration

	ch      chan item
	done    chan struct{}
	closeMu sync.RWMutex
	closed  bool
}

type item struct {
	e     store.JournalEntry
	flush chan struct{} // a flush marker when not nil
}

// NewWriter returns a Writer that commits entries in the background.
// Hooks are called synchronously by Record with each batch.
func NewWriter(st store.Journal, log *slog.Logger, hooks ...func([]store.JournalEntry)) *Writer {
	return newWriter(st, log, linger, hooks...)
}

func newWriter(st store.Journal, log *slog.Logger, linger time.Duration, hooks ...func([]store.JournalEntry)) *Writer {
	w := &Writer{st: st, log: log, hooks: hooks, linger: linger, ch: make(chan item, queueLen), done: make(chan struct{})}
	go w.run()
	return w
}

// NewSyncWriter returns a Writer whose Record commits before it returns:
// for short-lived commands such as deliver.
func NewSyncWriter(st store.Journal, log *slog.Logger, hooks ...func([]store.JournalEntry)) *Writer {
	return &Writer{st: st, log: log, hooks: hooks, sync: true}
}

// Record stamps entries without a time and queues them for commit. It never
// fails: a journal that cannot be written is logged, and mail goes on.
func (w *Writer) Record(entries ...store.JournalEntry) {
	if w == nil || len(entries) == 0 {
		return
	}
	now := time.Now()
	for i := range entries {
		if entries[i].Time.IsZero() {
			entries[i].Time = now
		}
	}
	for _, h := range w.hooks {
		h(entries)
	}
	if w.sync {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := w.st.AppendJournal(ctx, entries); err != nil {
			w.log.Error("writing the mail journal", "err", err, "entries", len(entries))
		}
		return
	}
	w.closeMu.RLock()
	defer w.closeMu.RUnlock()
	if w.closed {
		w.log.Warn("mail journal closed: entries not recorded", "entries", len(entries))
		return
	}
	for _, e := range entries {
		w.ch <- item{e: e}
	}
}

// RecordBatch is Record for callers that have a slice and a context (the
// router's Options.Record).
func (w *Writer) RecordBatch(_ context.Context, entries []store.JournalEntry) {
	w.Record(entries...)
}

// Flush waits until every entry recorded before it is committed, or ctx
// is done.
func (w *Writer) Flush(ctx context.Context) error {
	if w == nil || w.sync {
		return nil
	}
	w.closeMu.RLock()
	if w.closed {
		w.closeMu.RUnlock()
		return nil
	}
	done := make(chan struct{})
	w.ch <- item{flush: done}
	w.closeMu.RUnlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close commits what is pending and stops the writer.
func (w *Writer) Close() error {
	if w == nil || w.sync {
		return nil
	}
	w.closeMu.Lock()
	if !w.closed {
		w.closed = true
		close(w.ch)
	}
	w.closeMu.Unlock()
	<-w.done
	return nil
}

func (w *Writer) run() {
	defer close(w.done)
	batch := make([]store.JournalEntry, 0, maxBatch)
	var flushes []chan struct{}
	timer := time.NewTimer(w.linger)
	timer.Stop()
	for it := range w.ch {
		batch, flushes = w.add(batch, flushes, it)
		timer.Reset(w.linger)
	collect:
		for len(batch) < maxBatch && len(flushes) == 0 {
			select {
			case it, ok := <-w.ch:
				if !ok {
					break collect
				}
				batch, flushes = w.add(batch, flushes, it)
			case <-timer.C:
				break collect
			}
		}
		timer.Stop()
		w.commit(batch)
		batch = batch[:0]
		for _, f := range flushes {
			close(f)
		}
		flushes = flushes[:0]
	}
}

func (w *Writer) add(batch []store.JournalEntry, flushes []chan struct{}, it item) ([]store.JournalEntry, []chan struct{}) {
	if it.flush != nil {
		return batch, append(flushes, it.flush)
	}
	return append(batch, it.e), flushes
}

func (w *Writer) commit(batch []store.JournalEntry) {
	if len(batch) == 0 {
		return
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := w.st.AppendJournal(ctx, batch)
		cancel()
		if err == nil {
			return
		}
		if attempt == 2 {
			w.log.Error("writing the mail journal failed: entries lost", "err", err, "entries", len(batch))
			return
		}
		w.log.Warn("writing the mail journal, retrying", "err", err)
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
}
