package pop3

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeMsg is one message of the in-memory backend.
type fakeMsg struct {
	uid  string
	body string
}

// fakeBackend is an in-memory Backend recording what the sessions do.
type fakeBackend struct {
	mu     sync.Mutex
	users  map[string]string // login name -> password
	boxes  map[string][]fakeMsg
	locked map[string]bool

	// Errors to inject.
	authErr   error
	openErr   error
	commitErr error
	bodyErr   error
	lockErr   error // what LockErr returns
	badUID    bool  // the snapshot carries an invalid unique-id
	listErr   error // what Messages returns
	listExtra bool  // Messages lists one message more than Stat counts
	failRead  bool  // bodies fail after their first bytes

	opened    int
	closed    int
	bodyOpens int
	lists     int // calls of Messages
	commits   [][]int
	problems  []string
	closedCh  chan struct{}
	authCalls int
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{
		users: map[string]string{
			"alice": "secret",
			"bob":   "hunter 2", // a password with a space
		},
		boxes: map[string][]fakeMsg{
			"alice": {
				{"uid-1", "Subject: one\r\n\r\nHello\r\n.\r\n..\r\n.leading dot\r\n"},
				{"uid-2", "Subject: two\r\nX-Eight: caf\xc3\xa9 \xff\xfe\r\n\r\nline1\r\nline2\r\nline3\r\n"},
				{"uid-3", "Subject: three\r\n\r\nno final newline"},
			},
		},
		locked:   map[string]bool{},
		closedCh: make(chan struct{}, 1),
	}
}

func (b *fakeBackend) Authenticate(ctx context.Context, username, password string) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.authCalls++
	if b.authErr != nil {
		return "", b.authErr
	}
	if p, ok := b.users[username]; !ok || p != password {
		return "", ErrAuthFailed
	}
	return username, nil
}

func (b *fakeBackend) OpenMaildrop(ctx context.Context, user string) (Maildrop, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openErr != nil {
		return nil, b.openErr
	}
	if b.locked[user] {
		return nil, fmt.Errorf("open %s: %w", user, ErrInUse)
	}
	b.locked[user] = true
	b.opened++
	d := &fakeDrop{b: b, user: user, msgs: slices.Clone(b.boxes[user])}
	for _, m := range d.msgs {
		uid := m.uid
		if b.badUID {
			uid = "bad uid"
		}
		d.list = append(d.list, Message{UID: uid, Size: int64(len(m.body))})
	}
	return d, nil
}

// set changes the backend under its lock.
func (b *fakeBackend) set(f func(b *fakeBackend)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f(b)
}

// snapshot returns a copy of the counters.
func (b *fakeBackend) snapshot() (opened, closed, bodyOpens int, commits [][]int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.opened, b.closed, b.bodyOpens, slices.Clone(b.commits)
}

// listCalls is how many times a maildrop was listed (Messages).
func (b *fakeBackend) listCalls() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lists
}

// waitClosed waits until n maildrops have been closed in total.
func (b *fakeBackend) waitClosed(t testing.TB, n int) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		b.mu.Lock()
		c := b.closed
		b.mu.Unlock()
		if c >= n {
			return
		}
		select {
		case <-b.closedCh:
		case <-deadline:
			t.Fatalf("maildrops closed: %d, want %d", c, n)
		}
	}
}

type fakeDrop struct {
	b      *fakeBackend
	user   string
	msgs   []fakeMsg
	list   []Message
	closes int
}

func (d *fakeDrop) Stat() (int, int64) {
	var size int64
	for _, m := range d.list {
		size += m.Size
	}
	return len(d.list), size
}

func (d *fakeDrop) Messages(ctx context.Context) ([]Message, error) {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	d.b.lists++
	if d.b.listErr != nil {
		return nil, d.b.listErr
	}
	if d.b.listExtra {
		return append(slices.Clone(d.list), Message{UID: "uid-extra", Size: 1}), nil
	}
	return d.list, nil
}

func (d *fakeDrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if d.closes > 0 {
		d.b.problems = append(d.b.problems, "Open after Close")
	}
	if d.b.bodyErr != nil {
		return nil, d.b.bodyErr
	}
	d.b.bodyOpens++
	if d.b.failRead {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n"), errReader{})), nil
	}
	return io.NopCloser(strings.NewReader(d.msgs[i].body)), nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, fmt.Errorf("disk on fire") }

func (d *fakeDrop) Commit(ctx context.Context, deleted []int) error {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	if d.closes > 0 {
		d.b.problems = append(d.b.problems, "Commit after Close")
	}
	if d.b.commitErr != nil {
		return d.b.commitErr
	}
	d.b.commits = append(d.b.commits, slices.Clone(deleted))
	gone := map[string]bool{}
	for _, i := range deleted {
		gone[d.msgs[i].uid] = true
	}
	d.b.boxes[d.user] = slices.DeleteFunc(d.b.boxes[d.user], func(m fakeMsg) bool { return gone[m.uid] })
	return nil
}

func (d *fakeDrop) LockErr() error {
	d.b.mu.Lock()
	defer d.b.mu.Unlock()
	return d.b.lockErr
}

func (d *fakeDrop) Close() error {
	d.b.mu.Lock()
	d.closes++
	if d.closes > 1 {
		d.b.problems = append(d.b.problems, "Maildrop.Close called twice")
	}
	d.b.closed++
	delete(d.b.locked, d.user)
	d.b.mu.Unlock()
	select { // wake up waitClosed
	case d.b.closedCh <- struct{}{}:
	default:
	}
	return nil
}
