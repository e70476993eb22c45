package pop3

import (
	"context"
	"errors"
	"io"
	"time"
)

// Errors a Backend returns (possibly wrapped); the session maps them to
// RFC 2449 / RFC 3206 response codes.
var (
	// ErrAuthFailed: unknown user, wrong password or disabled account. The
	// client sees one answer for all of them: -ERR [AUTH].
	ErrAuthFailed = errors.New("authentication failed")
	// ErrInUse: the maildrop is locked by another session: -ERR [IN-USE].
	ErrInUse = errors.New("maildrop in use")
	// ErrLoginDelay: the user logged in less than its login delay ago
	// (RFC 2449 section 8.1.1): -ERR [LOGIN-DELAY].
	ErrLoginDelay = errors.New("logged in too recently")
	// ErrLockLost: the maildrop lock ended while the session had the
	// maildrop (see LeasedMaildrop).
	ErrLockLost = errors.New("maildrop lock lost")
)

// TempError marks a backend failure as temporary (-ERR [SYS/TEMP]); any
// other unexpected error is answered with -ERR [SYS/PERM].
type TempError struct{ Err error }

func (e TempError) Error() string { return e.Err.Error() }
func (e TempError) Unwrap() error { return e.Err }

// Backend is everything the POP3 server needs from the rest of postoffice.
type Backend interface {
	// Authenticate checks a login name and password; it returns the
	// canonical user name to open the maildrop with, or ErrAuthFailed.
	Authenticate(ctx context.Context, username, password string) (string, error)
	// OpenMaildrop locks the user's maildrop (ErrInUse if locked) and
	// returns a snapshot of its messages as of the lock.
	OpenMaildrop(ctx context.Context, user string) (Maildrop, error)
}

// Message is one entry of a maildrop snapshot.
type Message struct {
	UID  string // RFC 1939 section 7 unique-id: 1-70 chars of 0x21-0x7E
	Size int64  // exact octets RETR sends before byte-stuffing
}

// Maildrop is a locked snapshot of one mailbox, valid for one session.
type Maildrop interface {
	// Stat is the number of messages in the snapshot and their total
	// size, known without listing them: the reply to the login.
	Stat() (count int, size int64)
	// Messages lists the snapshot; index i is message number i+1. The
	// session calls it once, at the first command that needs the list
	// (so that a login to a big maildrop does not wait for it), and
	// expects exactly the messages Stat counted. Errors as OpenMaildrop's.
	Messages(ctx context.Context) ([]Message, error)
	// Open returns the body of message index i, in canonical CRLF form.
	Open(ctx context.Context, i int) (io.ReadCloser, error)
	// Commit removes the messages at the given indexes durably (the
	// UPDATE state, RFC 1939 section 6). It returns only once durable.
	Commit(ctx context.Context, deleted []int) error
	// Close releases the lock. Called exactly once, however the session ends.
	Close() error
}

// RetrievalRecorder is implemented by a Maildrop that wants to know which
// messages the client retrieved, e.g. because retention is counted from
// the first retrieval (RFC 2449 section 6.7, EXPIRE). The session calls
// Retrieved(i) once RETR has sent message index i whole.
type RetrievalRecorder interface {
	Retrieved(i int)
}

// PolicyMaildrop is implemented by a Maildrop whose user has a login delay
// or an expire policy of its own: in the TRANSACTION state CAPA announces
// the user's values (RFC 2449 sections 6.5 and 6.7). The meaning of the
// results is that of Config.LoginDelay and Config.Expire.
type PolicyMaildrop interface {
	Policy() (loginDelay time.Duration, expire *time.Duration)
}

// LeasedMaildrop is implemented by a Maildrop whose lock can end while the
// session lasts: a lock with a lease in a store that several servers share,
// lost when it could not be renewed in time. The session's exclusive access
// (RFC 1939 section 4) is what makes its removals in the UPDATE state
// (section 6) safe: once LockErr returns an error (wrapping ErrLockLost),
// the session answers its next command with -ERR [SYS/TEMP] (RFC 3206
// section 4) and ends without deleting anything.
type LeasedMaildrop interface {
	LockErr() error
}
