package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// The maildrop lock (RFC 1939 section 8) across nodes is a row of
// mailbox_locks with a lease measured by the database's clock, renewed by
// the holding process every third of the lease (renewLoop), so that the
// lock of a process that dies ends with its lease. Three rules make it
// exclusive even when the holder loses the database for a while:
//
//   - The holder counts its lease from the moment it sent the last
//     renewal that succeeded, which is before the database set the new
//     end: once that long has passed without a renewal the lock is lost
//     for the holder (Err) before it can be free for anyone else, and a
//     renewal never revives a row whose lease ran out.
//   - The deletions at QUIT are applied by Delete, in a transaction that
//     first locks the lock's row, checked to be this acquisition's and
//     within its lease: a session that took the maildrop meanwhile has
//     changed the row, and one that would take it now waits for the
//     commit (its statement locks the same row).
//   - A release that fails (the database out of reach) is retried in the
//     background, so that the mailbox is free soon after the database is
//     back rather than when the lease runs out; a new session on this
//     node takes such a row at once.

// releaseRetry is the pause between attempts at a failed release.
const releaseRetry = time.Second

// release is a lock whose release failed, to retry until the lease
// would have ended it anyway.
type release struct {
	userID int64
	failed time.Time // first failure
	until  time.Time // the end of its lease at the latest
}

// Lock implements store.Mailboxes with a row of mailbox_locks that holds
// across nodes: it is taken if absent, if its lease ran out (its holder
// died, or lost the database, for longer than the lease) or if it is a
// lock of this process whose release is still being retried.
func (s *Store) Lock(ctx context.Context, userID int64, holder string) (store.MaildropLock, error) {
	if err := s.member(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		token := randomHex(12)
		mine := s.releasing(userID)
		sent := time.Now()
		var got string
		err := s.pool.QueryRow(ctx, `INSERT INTO mailbox_locks (user_id, token, holder, node, instance, acquired_at, expires_at)
			SELECT id, $2, $3, $4, $5, now(), now() + $6 * interval '1 millisecond' FROM users WHERE id = $1
			ON CONFLICT (user_id) DO UPDATE SET token = EXCLUDED.token, holder = EXCLUDED.holder, node = EXCLUDED.node,
				instance = EXCLUDED.instance, acquired_at = EXCLUDED.acquired_at, expires_at = EXCLUDED.expires_at
			WHERE mailbox_locks.expires_at <= now() OR mailbox_locks.token = ANY($7)
			RETURNING token`, userID, token, holder, s.node, s.instance, s.lease.Milliseconds(), mine).Scan(&got)
		if err == nil {
			h := &lockHandle{s: s, userID: userID, token: token, renewed: sent}
			s.locksMu.Lock()
			s.locks[token] = h
			for _, t := range mine {
				delete(s.releases, t) // replaced by this one
			}
			s.locksMu.Unlock()
			return h, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return nil, err
		}
		// No such user, or a live lock: say which, and whose.
		var by, node *string
		var since *time.Time
		err = s.pool.QueryRow(ctx, `SELECT l.holder, l.node, l.acquired_at FROM users u
			LEFT JOIN mailbox_locks l ON l.user_id = u.id AND l.expires_at > now() WHERE u.id = $1`, userID).Scan(&by, &node, &since)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, fmt.Errorf("user %d: %w", userID, store.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		if by != nil && node != nil && since != nil {
			return nil, fmt.Errorf("%w (held by %s on node %s since %s)", store.ErrLocked, *by, *node, since.UTC().Format(time.RFC3339))
		}
		// Released, or run out, between the two statements.
		if attempt == 2 {
			return nil, fmt.Errorf("%w (changing hands)", store.ErrLocked)
		}
	}
}

// releasing returns the tokens of this process's locks of userID whose
// release is being retried.
func (s *Store) releasing(userID int64) []string {
	s.locksMu.Lock()
	defer s.locksMu.Unlock()
	var ts []string
	for t, r := range s.releases {
		if r.userID == userID {
			ts = append(ts, t)
		}
	}
	return ts
}

// lockHandle is one acquisition of a maildrop lock.
type lockHandle struct {
	s      *Store
	userID int64
	token  string

	mu       sync.Mutex
	renewed  time.Time // when the last successful renewal (or the acquisition) was sent
	lost     error     // why the lock is no longer held, nil while it is
	released bool
}

// Err implements store.MaildropLock.
func (h *lockHandle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost == nil {
		if since := time.Since(h.renewed); since >= h.s.lease {
			h.loseLocked(fmt.Errorf("not renewed for %v (the lease is %v)", since.Round(time.Millisecond), h.s.lease))
		}
	}
	return h.lost
}

// loseLocked records that the lock is lost, under h.mu.
func (h *lockHandle) loseLocked(why error) {
	if h.lost != nil {
		return
	}
	h.lost = fmt.Errorf("user %d: %w: %w", h.userID, store.ErrLockLost, why)
	if !h.released {
		h.s.log.Error("maildrop lock lost while its session lasts: the session ends without deleting", "user_id", h.userID, "err", why)
	}
}

func (h *lockHandle) lose(why error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.loseLocked(why)
}

// errTaken: the lock's row was found changed by another acquisition, or
// run out, by the database.
var errTaken = errors.New("its lease ran out in the database, or another session took it")

// Delete implements store.MaildropLock: the lock's row is locked and
// checked in the transaction that deletes (see above).
func (h *lockHandle) Delete(ctx context.Context, uids []uint64) error {
	if err := h.Err(); err != nil {
		return err
	}
	err := h.s.write(ctx, true, func(tx pgx.Tx) error {
		// The user's row first, as DeleteUser and Deliver lock it.
		if err := lockUser(ctx, tx, h.userID); err != nil {
			return err
		}
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM mailbox_locks WHERE user_id = $1 AND token = $2 AND expires_at > now() FOR UPDATE`,
			h.userID, h.token).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return errTaken
		}
		if err != nil {
			return err
		}
		return h.s.deleteWhere(ctx, tx, h.userID, nil, `uid = ANY($2)`, validUIDs(uids))
	})
	if errors.Is(err, errTaken) {
		h.lose(errTaken)
		return h.Err()
	}
	return err
}

// Unlock implements store.MaildropLock: it deletes the lock's row if it
// is still this acquisition's. Should that fail, the release is retried
// in the background.
func (h *lockHandle) Unlock() {
	s := h.s
	s.locksMu.Lock()
	delete(s.locks, h.token)
	s.locksMu.Unlock()
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return
	}
	h.released = true
	if h.lost == nil {
		h.lost = fmt.Errorf("user %d: %w: released", h.userID, store.ErrLockLost)
	}
	until := h.renewed.Add(s.lease)
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, s.lease/3))
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM mailbox_locks WHERE user_id = $1 AND token = $2`, h.userID, h.token); err != nil {
		if time.Now().After(until) {
			return // run out anyway
		}
		s.log.Warn("releasing a maildrop lock failed: retrying in the background", "user_id", h.userID, "err", err,
			"lease_until", until.Format(time.RFC3339))
		s.retryRelease(h.token, release{userID: h.userID, failed: time.Now(), until: until})
	}
}

// retryRelease adds a failed release to those the background retries,
// and starts it if needed.
func (s *Store) retryRelease(token string, r release) {
	s.locksMu.Lock()
	defer s.locksMu.Unlock()
	select {
	case <-s.stop:
		return // Close releases every lock of this instance
	default:
	}
	s.releases[token] = r
	if !s.retrying {
		s.retrying = true
		s.bg.Add(1)
		go s.retryReleases()
	}
}

// retryReleases releases the locks whose release failed, until none is
// left: as soon as the database answers again, or when their lease would
// have ended them anyway.
func (s *Store) retryReleases() {
	defer s.bg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-time.After(releaseRetry):
		}
		now := time.Now()
		s.locksMu.Lock()
		tokens := make([]string, 0, len(s.releases))
		for t, r := range s.releases {
			if now.After(r.until) {
				delete(s.releases, t)
				continue
			}
			tokens = append(tokens, t)
		}
		if len(tokens) == 0 {
			s.retrying = false
			s.locksMu.Unlock()
			return
		}
		s.locksMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), min(5*time.Second, s.lease/3))
		_, err := s.pool.Exec(ctx, `DELETE FROM mailbox_locks WHERE token = ANY($1)`, tokens)
		cancel()
		if err != nil {
			continue
		}
		s.locksMu.Lock()
		for _, t := range tokens {
			if r, ok := s.releases[t]; ok {
				s.log.Info("maildrop lock released once the database answered again", "user_id", r.userID,
					"after", time.Since(r.failed).Round(time.Millisecond))
				delete(s.releases, t)
			}
		}
		s.locksMu.Unlock()
	}
}

// renewLocks extends the lease of every lock this process holds that is
// still within its lease. A lock that the database does not renew (its
// row was taken, or its lease ran out there) is lost: its session ends.
func (s *Store) renewLocks(ctx context.Context) error {
	s.locksMu.Lock()
	handles := make([]*lockHandle, 0, len(s.locks))
	for _, h := range s.locks {
		handles = append(handles, h)
	}
	s.locksMu.Unlock()
	tokens := make([]string, 0, len(handles))
	live := handles[:0]
	for _, h := range handles {
		if h.Err() == nil {
			tokens = append(tokens, h.token)
			live = append(live, h)
		}
	}
	if len(tokens) == 0 {
		return nil
	}
	sent := time.Now()
	rows, err := s.pool.Query(ctx, `UPDATE mailbox_locks SET expires_at = now() + $2 * interval '1 millisecond'
		WHERE token = ANY($1) AND expires_at > now() RETURNING token`, tokens, s.lease.Milliseconds())
	if err != nil {
		return err
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	ok := make(map[string]bool, len(renewed))
	for _, t := range renewed {
		ok[t] = true
	}
	for _, h := range live {
		if ok[h.token] {
			h.mu.Lock()
			if sent.After(h.renewed) {
				h.renewed = sent
			}
			h.mu.Unlock()
		} else {
			h.lose(errTaken)
		}
	}
	return nil
}
