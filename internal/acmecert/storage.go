package acmecert

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNotFound is what Storage.Get returns for a name that holds nothing.
var ErrNotFound = errors.New("acmecert: not found")

// Storage keeps what the Manager must share between restarts and between
// the nodes of a cluster: the account key, the certificates with their
// keys, the renewal status and the challenge responses of an issuance in
// progress (so that whichever node the CA's validation request reaches can
// answer it). Names are slash-separated paths of printable ASCII, such as
// "acme/acme-v02.api.letsencrypt.org/cert/mail.example.com"; values are
// small blobs (a few KiB). Private keys are stored, so an implementation
// keeps them where only postoffice can read them.
//
// The lock is a lease: one node issues while every node serves what is
// stored. TryLock takes the named lock for holder if it is free, expired,
// or already held by holder (which extends the lease to lease from now);
// it never waits. A node that dies holding the lock blocks the others
// only until the lease runs out.
type Storage interface {
	// Get returns the blob stored under name, or ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// Put stores data under name, replacing what was there, durably.
	Put(ctx context.Context, name string, data []byte) error
	// Delete removes name; deleting a name that holds nothing is no error.
	Delete(ctx context.Context, name string) error
	// TryLock reports whether holder now holds the lock name, until lease
	// from now.
	TryLock(ctx context.Context, name, holder string, lease time.Duration) (bool, error)
	// Unlock releases the lock if holder holds it, and is a no-op otherwise.
	Unlock(ctx context.Context, name, holder string) error
}

// MemStorage is a Storage in memory, for tests and for a single node that
// does not need to keep certificates across restarts.
type MemStorage struct {
	mu    sync.Mutex
	blobs map[string][]byte
	locks map[string]memLock
	// Now is the clock of lock leases; nil means time.Now.
	Now func() time.Time
}

type memLock struct {
	holder  string
	expires time.Time
}

// NewMemStorage returns an empty MemStorage.
func NewMemStorage() *MemStorage {
	return &MemStorage{blobs: map[string][]byte{}, locks: map[string]memLock{}}
}

func (s *MemStorage) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Get implements Storage.
func (s *MemStorage) Get(ctx context.Context, name string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[name]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte(nil), b...), nil
}

// Put implements Storage.
func (s *MemStorage) Put(ctx context.Context, name string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[name] = append([]byte(nil), data...)
	return nil
}

// Delete implements Storage.
func (s *MemStorage) Delete(ctx context.Context, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blobs, name)
	return nil
}

// TryLock implements Storage.
func (s *MemStorage) TryLock(ctx context.Context, name, holder string, lease time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if holder == "" || lease <= 0 {
		return false, errors.New("acmecert: TryLock needs a holder and a positive lease")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	l, held := s.locks[name]
	if held && l.holder != holder && now.Before(l.expires) {
		return false, nil
	}
	s.locks[name] = memLock{holder: holder, expires: now.Add(lease)}
	return true, nil
}

// Unlock implements Storage.
func (s *MemStorage) Unlock(ctx context.Context, name, holder string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := s.locks[name]; ok && l.holder == holder {
		delete(s.locks, name)
	}
	return nil
}

// Names lists the stored names under prefix, sorted; for tests and for a
// CLI that shows what is stored.
func (s *MemStorage) Names(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n := range s.blobs {
		if strings.HasPrefix(n, prefix) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}
