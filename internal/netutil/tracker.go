package netutil

import (
	"errors"
	"log/slog"
	"net"
	"sync"
)

// Tracker keeps what a protocol server must reach to stop: its listeners
// and its open sessions (of type S). Once Close is called it takes no new
// listener and no new session. pop3.Server keeps its own with one; the
// zero value is not usable, see NewTracker.
type Tracker[S comparable] struct {
	mu        sync.Mutex
	closing   bool
	listeners map[*net.Listener]struct{}
	sessions  map[S]struct{}
	wg        sync.WaitGroup // one per session
}

// NewTracker returns an empty Tracker.
func NewTracker[S comparable]() *Tracker[S] {
	return &Tracker[S]{listeners: map[*net.Listener]struct{}{}, sessions: map[S]struct{}{}}
}

// Serve runs AcceptLoop on l, handing each connection to handle, with l
// tracked meanwhile so that Close closes it; it closes l when it returns.
// It returns ErrClosed once the tracker is closed (at once, closing l, if
// it is closed already), the listener's error otherwise.
func (t *Tracker[S]) Serve(l net.Listener, log *slog.Logger, msg string, handle func(net.Conn)) error {
	defer l.Close()
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return ErrClosed
	}
	t.listeners[&l] = struct{}{}
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.listeners, &l)
		t.mu.Unlock()
	}()
	return AcceptLoop(l, t.Closing, log, msg, handle)
}

// Closing reports whether Close was called.
func (t *Tracker[S]) Closing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// Add registers a new session; false, when the tracker is closed, means
// the session must not start. Each added session is removed with Done.
func (t *Tracker[S]) Add(s S) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.sessions[s] = struct{}{}
	t.wg.Add(1) // never after Wait: closing is checked under mu
	return true
}

// Done removes a session that Add registered.
func (t *Tracker[S]) Done(s S) {
	t.mu.Lock()
	_, ok := t.sessions[s]
	delete(t.sessions, s)
	t.mu.Unlock()
	if ok {
		t.wg.Done()
	}
}

// Len is the number of open sessions.
func (t *Tracker[S]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.sessions)
}

// Close stops taking listeners and sessions, closes every listener (the
// first error other than net.ErrClosed is returned) and calls each
// (may be nil) on every open session, under the tracker's lock: each must
// not call back into the tracker.
func (t *Tracker[S]) Close(each func(S)) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	var first error
	for l := range t.listeners {
		if err := (*l).Close(); err != nil && !errors.Is(err, net.ErrClosed) && first == nil {
			first = err
		}
		delete(t.listeners, l)
	}
	if each != nil {
		for s := range t.sessions {
			each(s)
		}
	}
	return first
}

// Wait waits until every session added has been removed.
func (t *Tracker[S]) Wait() { t.wg.Wait() }
