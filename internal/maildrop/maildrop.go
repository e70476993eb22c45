// Package maildrop gives the POP3 engine its maildrops from the store, and
// applies the POP3 policies of RFC 2449 that govern them: LOGIN-DELAY
// (section 6.5) and EXPIRE (section 6.7), each the server's setting unless
// the user has its own. It also formats the unique-ids UIDL shows. The
// pop3 package never sees the store; this one never sees the wire.
package maildrop

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/journal"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/pop3"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Backend adapts the directory and the mailbox store to the small
// interface the POP3 server depends on (pop3.Backend).
type Backend struct {
	Store  store.Store
	Logins *directory.Logins
	Holder string // who holds the lock, for diagnostics

	// Policy is the server's LOGIN-DELAY and EXPIRE.
	Policy  Policy
	Journal *journal.Writer
	Metrics *metrics.Metrics // nil: none
	Log     *slog.Logger
	Now     func() time.Time // nil: time.Now
	// Background, when set, lets a login that no login delay depends on
	// record its time after the reply (see open).
	Background *sync.WaitGroup
}

// Policy is the server's setting of the RFC 2449 policies.
type Policy struct {
	LoginDelay time.Duration // 0: none
	Expire     time.Duration // negative: never
}

// For returns the user's effective login delay and expire: the user's
// own value where it has one, the server's otherwise.
func (p Policy) For(u store.User) (loginDelay, expire time.Duration) {
	loginDelay, expire = p.LoginDelay, p.Expire
	if u.LoginDelay != nil {
		loginDelay = *u.LoginDelay
	}
	if u.Expire != nil {
		expire = *u.Expire
	}
	return loginDelay, expire
}

func (b *Backend) clock() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// Authenticate implements pop3.Backend.
func (b *Backend) Authenticate(ctx context.Context, login, password string) (string, error) {
	u, err := b.Logins.Check(ctx, login, password)
	if err != nil {
		if errors.Is(err, directory.ErrAuthFailed) {
			b.Metrics.Login("pop3", false)
			return "", pop3.ErrAuthFailed
		}
		// A ban too: RFC 3206 [SYS/TEMP], try again later.
		return "", pop3.TempError{Err: err}
	}
	b.Metrics.Login("pop3", true)
	return u.Address, nil
}

// OpenMaildrop implements pop3.Backend.
func (b *Backend) OpenMaildrop(ctx context.Context, user string) (pop3.Maildrop, error) {
	u, err := b.Store.UserByAddress(ctx, user)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Deleted between authentication and now.
			return nil, pop3.ErrAuthFailed
		}
		return nil, pop3.TempError{Err: err}
	}
	lock, err := b.Store.Lock(ctx, u.ID, b.Holder)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, pop3.ErrInUse
		}
		return nil, pop3.TempError{Err: err}
	}
	md, err := b.open(ctx, u.ID, lock)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	return md, nil
}

// open runs under the maildrop lock, which orders the logins of one user.
func (b *Backend) open(ctx context.Context, userID int64, lock store.MaildropLock) (*maildrop, error) {
	u, err := b.Store.UserByID(ctx, userID) // LastLogin as of the lock
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, pop3.ErrAuthFailed
		}
		return nil, pop3.TempError{Err: err}
	}
	delay, expire := b.Policy.For(u)
	now := b.clock()
	// RFC 2449 section 6.5: at most one login per delay.
	if delay > 0 && !u.LastLogin.IsZero() && now.Sub(u.LastLogin) < delay {
		return nil, fmt.Errorf("%s logged in at %s, login delay %v: %w", u.Address, u.LastLogin.Format(time.RFC3339), delay, pop3.ErrLoginDelay)
	}
	if delay > 0 || b.Background == nil {
		// The time of this login is what enforces the next login delay,
		// so it is durable before the login succeeds.
		if err := b.Store.RecordLogin(ctx, u.ID, now); err != nil {
			if delay > 0 {
				return nil, pop3.TempError{Err: err}
			}
			b.recordFailed(u, err)
		}
	} else {
		// Without a delay the time is for information only (user list,
		// console): the client need not wait for a commit, and a store
		// that cannot write (disk full) must not keep users from their
		// mail.
		b.Background.Go(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := b.Store.RecordLogin(ctx, u.ID, now); err != nil {
				b.recordFailed(u, err)
			}
		})
	}
	// RFC 2449 section 6.7: messages retrieved longer ago than the
	// retention period go before the snapshot is taken.
	if expire >= 0 {
		if err := Expire(ctx, b.Store, b.Journal, u, now.Add(-expire)); err != nil {
			return nil, pop3.TempError{Err: err}
		}
	}
	// RFC 1939 section 4: the snapshot is taken once the maildrop is
	// locked, so mail delivered during the session shows up in the next
	// one. Here it is only counted, with the UID that bounds it; the
	// messages are listed when the session first needs them (Messages):
	// for 100,000 messages that is most of a login's cost, and under the
	// lock the list is the same then (store.Mailboxes.Summary).
	sum, err := b.Store.Summary(ctx, u.ID)
	if err != nil {
		return nil, pop3.TempError{Err: err}
	}
	return &maildrop{b: b, user: u, lock: lock, sum: sum, loginDelay: delay, expire: expire}, nil
}

func (b *Backend) recordFailed(u store.User, err error) {
	if b.Log != nil {
		b.Log.Warn("could not record the login time", "user", u.Address, "err", err)
	}
}

// Expire removes the user's messages retrieved before the cut and
// journals them (RFC 2449 section 6.7).
func Expire(ctx context.Context, st store.Store, j *journal.Writer, u store.User, before time.Time) error {
	gone, err := st.ExpireRetrieved(ctx, u.ID, before)
	if err != nil {
		return err
	}
	for _, m := range gone {
		j.Record(store.JournalEntry{Event: store.EventExpired, User: u.Address, Size: m.Size, Detail: fmt.Sprintf("uid %d", m.UID)})
	}
	return nil
}

// Sweep expires (Expire) the messages whose retention has run out in
// every mailbox not in use; a mailbox in use is expired at its next login.
// holder names the sweep in the locks it takes.
func Sweep(ctx context.Context, st store.Store, j *journal.Writer, p Policy, holder string, now time.Time, log *slog.Logger) error {
	users, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	for _, u := range users {
		_, expire := p.For(u)
		if expire < 0 {
			continue
		}
		lock, err := st.Lock(ctx, u.ID, holder)
		if err != nil {
			continue // in use: its next login expires it
		}
		if err := Expire(ctx, st, j, u, now.Add(-expire)); err != nil {
			log.Error("sweep: expiring messages", "user", u.Address, "err", err)
		}
		lock.Unlock()
	}
	return nil
}

// UIDL formats a message's unique-id (RFC 1939 section 7): the mailbox's
// UID validity and the message UID, both hexadecimal, so that a mailbox that
// is deleted and created again never repeats an id a client has seen. The
// result is 16 characters (more only past 2^32 UIDs) of 0x30-0x46.
func UIDL(validity uint32, uid uint64) string {
	var b strings.Builder
	appendUIDL(&b, validity, uid)
	return b.String()
}

// appendUIDL writes UIDL(validity, uid) to b.
func appendUIDL(b *strings.Builder, validity uint32, uid uint64) {
	if uid > math.MaxUint32 {
		fmt.Fprintf(b, "%08X%08X", validity, uid)
		return
	}
	// Without fmt: a session formats one per message (100,000 for a big
	// mailbox).
	const digits = "0123456789ABCDEF"
	var d [16]byte
	v, u := validity, uint32(uid)
	for i := 7; i >= 0; i-- {
		d[i], d[i+8] = digits[v&0xF], digits[u&0xF]
		v >>= 4
		u >>= 4
	}
	b.Write(d[:])
}

type maildrop struct {
	b     *Backend
	user  store.User
	lock  store.MaildropLock
	sum   store.MailboxSummary // the snapshot as of the lock
	infos []store.MessageInfo  // its list, once Messages ran

	loginDelay, expire time.Duration
	// retrieved lists the messages RETR sent, not yet recorded; firstRetr
	// is when the first of them was.
	retrieved []int
	firstRetr time.Time
}

// Stat implements pop3.Maildrop.
func (m *maildrop) Stat() (int, int64) { return m.sum.Count, m.sum.Bytes }

// Messages implements pop3.Maildrop: the messages below the UID the next
// delivery had at the lock.
func (m *maildrop) Messages(ctx context.Context) ([]pop3.Message, error) {
	infos, err := m.b.Store.List(ctx, m.user.ID, m.sum.NextUID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err // the user was deleted meanwhile
		}
		return nil, pop3.TempError{Err: err}
	}
	m.infos = infos
	return messages(m.user.UIDValidity, infos), nil
}

// messages gives each message what POP3 shows of it (Shown). Our own
// unique-ids are cut from one string, one allocation rather than one per
// message.
func messages(validity uint32, infos []store.MessageInfo) []pop3.Message {
	msgs := make([]pop3.Message, len(infos))
	var all strings.Builder
	all.Grow(16 * len(infos))
	for _, m := range infos {
		if m.UIDL == "" {
			appendUIDL(&all, validity, m.UID)
		}
	}
	ids := all.String()
	for i, m := range infos {
		if m.UIDL != "" {
			msgs[i] = imported(m)
			continue
		}
		n := 16
		if m.UID > math.MaxUint32 {
			n = len(UIDL(validity, m.UID))
		}
		msgs[i] = pop3.Message{UID: ids[:n], Size: m.Size}
		ids = ids[n:]
	}
	return msgs
}

// Shown is what POP3 shows of a message (UIDL and LIST): the unique-id
// and the size an import kept from the server the message came from (so
// that clients that leave mail on the server see it unchanged), or our
// own. An export shows the same.
func Shown(u store.User, m store.MessageInfo) pop3.Message {
	if m.UIDL != "" {
		return imported(m)
	}
	return pop3.Message{UID: UIDL(u.UIDValidity, m.UID), Size: m.Size}
}

// imported is what POP3 shows of an imported message: its old server's
// unique-id, and size when the import kept one.
func imported(m store.MessageInfo) pop3.Message {
	msg := pop3.Message{UID: m.UIDL, Size: m.Size}
	if m.ListSize > 0 {
		msg.Size = m.ListSize
	}
	return msg
}

func (m *maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	rc, err := m.b.Store.Open(ctx, m.user.ID, m.infos[i].UID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, pop3.TempError{Err: err}
	}
	return rc, nil
}

// Retrieved implements pop3.RetrievalRecorder: the retrieval is journaled
// and recorded with the session's next write (QUIT or its end), so that a
// session retrieving many messages does not commit once per message.
func (m *maildrop) Retrieved(i int) {
	now := m.b.clock()
	if len(m.retrieved) == 0 {
		m.firstRetr = now
	}
	m.retrieved = append(m.retrieved, i)
	m.b.Journal.Record(store.JournalEntry{Time: now, Event: store.EventRetrieved, User: m.user.Address,
		Size: m.infos[i].Size, Detail: fmt.Sprintf("uid %d", m.infos[i].UID)})
}

// Policy implements pop3.PolicyMaildrop.
func (m *maildrop) Policy() (time.Duration, *time.Duration) {
	e := m.expire
	return m.loginDelay, &e
}

// flushRetrieved records the first retrieval of the messages RETR sent
// (RFC 2449 section 6.7: the retention period starts then).
func (m *maildrop) flushRetrieved(ctx context.Context) {
	if len(m.retrieved) == 0 {
		return
	}
	uids := make([]uint64, len(m.retrieved))
	for k, i := range m.retrieved {
		uids[k] = m.infos[i].UID
	}
	if err := m.b.Store.MarkRetrieved(ctx, m.user.ID, uids, m.firstRetr); err != nil {
		m.b.Log.Error("recording retrieved messages", "user", m.user.Address, "err", err)
		return
	}
	m.retrieved = m.retrieved[:0]
}

// LockErr implements pop3.LeasedMaildrop.
func (m *maildrop) LockErr() error {
	if err := m.lock.Err(); err != nil {
		return fmt.Errorf("%w: %w", pop3.ErrLockLost, err)
	}
	return nil
}

// Commit deletes under the maildrop lock, in a transaction that checks
// the lock is still this session's (RFC 1939 section 6: the UPDATE state
// of the session with exclusive access).
func (m *maildrop) Commit(ctx context.Context, deleted []int) error {
	uids := make([]uint64, len(deleted))
	for k, i := range deleted {
		uids[k] = m.infos[i].UID
	}
	if err := m.lock.Delete(ctx, uids); err != nil {
		if errors.Is(err, store.ErrLockLost) {
			err = fmt.Errorf("%w: %w", pop3.ErrLockLost, err)
		}
		m.flushRetrieved(ctx)
		return pop3.TempError{Err: err}
	}
	// The deleted messages' first retrieval need not be recorded: a
	// client that downloads and deletes everything (the common case)
	// then costs one write transaction, not two.
	if len(m.retrieved) > 0 && len(deleted) > 0 {
		gone := make(map[int]bool, len(deleted))
		for _, i := range deleted {
			gone[i] = true
		}
		kept := m.retrieved[:0]
		for _, i := range m.retrieved {
			if !gone[i] {
				kept = append(kept, i)
			}
		}
		m.retrieved = kept
	}
	m.flushRetrieved(ctx)
	now := m.b.clock()
	for _, i := range deleted {
		m.b.Journal.Record(store.JournalEntry{Time: now, Event: store.EventDeleted, User: m.user.Address,
			Size: m.infos[i].Size, Detail: fmt.Sprintf("uid %d", m.infos[i].UID)})
	}
	return nil
}

func (m *maildrop) Close() error {
	// A session that ends without QUIT retrieved its messages all the
	// same; its context may be gone already.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	m.flushRetrieved(ctx)
	cancel()
	m.lock.Unlock()
	return nil
}
