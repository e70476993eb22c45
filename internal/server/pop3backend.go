package server

import (
	"context"
	"errors"
	"fmt"
	"io"

	"postoffice/internal/directory"
	"postoffice/internal/pop3"
	"postoffice/internal/store"
)

// pop3Backend adapts the directory and the mailbox store to the small
// interface the POP3 server depends on.
type pop3Backend struct {
	st     store.Store
	auth   *directory.Authenticator
	holder string // who holds the lock, for diagnostics
}

func (b *pop3Backend) Authenticate(ctx context.Context, login, password string) (string, error) {
	u, err := b.auth.Authenticate(ctx, login, password)
	if err != nil {
		if errors.Is(err, directory.ErrAuthFailed) {
			return "", pop3.ErrAuthFailed
		}
		return "", pop3.TempError{Err: err}
	}
	return u.Address, nil
}

func (b *pop3Backend) OpenMaildrop(ctx context.Context, user string) (pop3.Maildrop, error) {
	u, err := b.st.UserByAddress(ctx, user)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			// Deleted between authentication and now.
			return nil, pop3.ErrAuthFailed
		}
		return nil, pop3.TempError{Err: err}
	}
	lock, err := b.st.Lock(ctx, u.ID, b.holder)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, pop3.ErrInUse
		}
		return nil, pop3.TempError{Err: err}
	}
	// RFC 1939 section 4: the snapshot is taken once the maildrop is locked,
	// so mail delivered during the session shows up in the next one.
	infos, err := b.st.List(ctx, u.ID)
	if err != nil {
		lock.Unlock()
		return nil, pop3.TempError{Err: err}
	}
	md := &maildrop{st: b.st, userID: u.ID, lock: lock, infos: infos, msgs: make([]pop3.Message, len(infos))}
	for i, m := range infos {
		md.msgs[i] = pop3.Message{UID: UIDL(u.UIDValidity, m.UID), Size: m.Size}
	}
	return md, nil
}

// UIDL formats a message's unique-id (RFC 1939 section 7): the mailbox's
// UID validity and the message UID, both hexadecimal, so that a mailbox that
// is deleted and created again never repeats an id a client has seen. The
// result is 16 characters (more only past 2^32 UIDs) of 0x30-0x46.
func UIDL(validity uint32, uid uint64) string {
	return fmt.Sprintf("%08X%08X", validity, uid)
}

type maildrop struct {
	st     store.Store
	userID int64
	lock   store.Unlocker
	infos  []store.MessageInfo
	msgs   []pop3.Message
}

func (m *maildrop) Messages() []pop3.Message { return m.msgs }

func (m *maildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	rc, err := m.st.Open(ctx, m.userID, m.infos[i].UID)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		return nil, pop3.TempError{Err: err}
	}
	return rc, nil
}

func (m *maildrop) Commit(ctx context.Context, deleted []int) error {
	uids := make([]uint64, len(deleted))
	for k, i := range deleted {
		uids[k] = m.infos[i].UID
	}
	if err := m.st.Delete(ctx, m.userID, uids); err != nil {
		return pop3.TempError{Err: err}
	}
	return nil
}

func (m *maildrop) Close() error {
	m.lock.Unlock()
	return nil
}
