// Package store defines the storage interfaces of postoffice: the directory
// (domains, users, addresses, aliases) and the mailboxes. Concrete backends
// (internal/store/sqlite and internal/store/postgres) implement them, and
// internal/store/storetest holds the one conformance suite every backend runs.
//
// Protocol packages never import this package's backends; they depend on
// small interfaces of their own, adapted by internal/maildrop (POP3) and
// internal/server (SMTP).
package store

import (
	"cmp"
	"context"
	"errors"
	"io"
	"slices"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Errors every backend returns (possibly wrapped) so that callers can map
// them to protocol replies and exit codes with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrLocked: the maildrop is held by another session (RFC 2449 [IN-USE]).
	ErrLocked = errors.New("mailbox is locked by another session")
	// ErrQuota: the delivery would take the mailbox over its quota.
	ErrQuota = errors.New("mailbox quota exceeded")
	// ErrInvalid: the argument is malformed (bad address, empty target list...).
	ErrInvalid = errors.New("invalid argument")
	// ErrLockLost: a maildrop lock is no longer held (released, or its
	// lease in a store shared by several processes ran out without being
	// renewed): another session may have the maildrop now.
	ErrLockLost = errors.New("maildrop lock lost")
)

// Domain is a mail domain the host is the final destination for.
type Domain struct {
	Name      string // lower case, no trailing dot
	CreatedAt time.Time
}

// User owns one mailbox. Address is the primary address and the login name.
type User struct {
	ID           int64
	Address      string // lower case local@domain
	DisplayName  string
	PasswordHash string // PHC string ($argon2id$...) or bcrypt ($2b$...)
	Enabled      bool
	QuotaBytes   int64 // 0 means unlimited
	CreatedAt    time.Time
	// UIDValidity is set once when the user is created and differs from
	// that of any earlier user of the store, so that unique-ids built from
	// (UIDValidity, UID) are never reused even if an address is deleted and
	// created again (RFC 1939 section 7). UpdateUser ignores it.
	UIDValidity uint32
	// LoginDelay overrides the server's POP3 login_delay for this user
	// (RFC 2449 section 6.5: minimum time between two logins); nil follows
	// the server setting. Whole seconds.
	LoginDelay *time.Duration
	// Expire overrides the server's POP3 expire for this user (RFC 2449
	// section 6.7: how long a retrieved message is kept); a negative value
	// means never; nil follows the server setting. Whole seconds.
	Expire *time.Duration
	// SpamRejectScore is the spam score above which mail to this user is
	// refused (550 5.7.1) rather than delivered marked as spam; nil: mail
	// is never refused for its score. The score is the one a milter
	// (rspamd) gave the message.
	SpamRejectScore *float64
	// LastLogin is the time of the user's last POP3 login, zero if none.
	// UpdateUser ignores it; Retention.RecordLogin sets it.
	LastLogin time.Time
}

// Alias maps one address to one or more targets, each a local or remote
// address (or another alias: expansion is the router's job).
type Alias struct {
	Address string
	Targets []string
}

// Directory is the user database. Every change is visible to every reader
// at once (no caching that outlives a call).
type Directory interface {
	AddDomain(ctx context.Context, name string) error // ErrExists
	// DeleteDomain removes a domain; it refuses (a *DomainInUseError,
	// which is ErrExists) while users, addresses or aliases of the domain
	// remain.
	DeleteDomain(ctx context.Context, name string) error
	ListDomains(ctx context.Context) ([]Domain, error)
	HasDomain(ctx context.Context, name string) (bool, error)

	// AddUser creates the user and, if needed, its domain. The returned
	// User has ID and CreatedAt set. ErrExists if the address is taken by
	// a user, an extra address or an alias.
	AddUser(ctx context.Context, u User) (User, error)
	// UserByAddress finds a user by its primary or any extra address.
	UserByAddress(ctx context.Context, address string) (User, error)
	UserByID(ctx context.Context, id int64) (User, error)
	ListUsers(ctx context.Context) ([]User, error)
	// UpdateUser changes DisplayName, PasswordHash, Enabled, QuotaBytes,
	// LoginDelay and Expire of the user with u.ID.
	UpdateUser(ctx context.Context, u User) error
	// DeleteUser removes the user, its extra addresses and its mailbox.
	DeleteUser(ctx context.Context, id int64) error

	// Extra addresses delivering to a user's mailbox.
	AddAddress(ctx context.Context, userID int64, address string) error // ErrExists
	DeleteAddress(ctx context.Context, address string) error
	ListAddresses(ctx context.Context, userID int64) ([]string, error) // extra ones only, sorted

	// Aliases; the data model exists from the start, the SMTP router uses it.
	SetAlias(ctx context.Context, a Alias) error // create or replace
	DeleteAlias(ctx context.Context, address string) error
	Alias(ctx context.Context, address string) (Alias, error)
	ListAliases(ctx context.Context) ([]Alias, error)
}

// MessageInfo is what POP3 needs to know about a message without reading it.
type MessageInfo struct {
	UID  uint64 // per mailbox, increasing, never reused
	Size int64  // exact octets as stored (CRLF line endings, no dot-stuffing)
	// UIDL is the unique-id (RFC 1939 section 7) another server gave
	// the message, kept by an import (MessageCopy.UIDL); "" means the
	// store's own, made of the mailbox's UID validity and UID.
	UIDL string
	// ListSize is the size the other server's LIST showed (RFC 1939
	// section 5), kept by an import (MessageCopy.ListSize); 0 means Size.
	ListSize int64
}

// WithImported sets, in ms (in UID order), the UIDL and ListSize of the
// imported messages among them; imported holds those two fields and the
// UID. A backend's List reads the few imported messages apart from the
// compact list of all.
func WithImported(ms, imported []MessageInfo) {
	for _, im := range imported {
		if i, ok := slices.BinarySearchFunc(ms, im.UID, func(m MessageInfo, uid uint64) int { return cmp.Compare(m.UID, uid) }); ok {
			ms[i].UIDL, ms[i].ListSize = im.UIDL, im.ListSize
		}
	}
}

// MailboxSummary is what a mailbox holds, known without listing it.
type MailboxSummary struct {
	Count int
	// Bytes is the total size as POP3 lists it: an imported message
	// counts with its ListSize (MessageInfo), so that STAT's total is
	// the sum of LIST's sizes (RFC 1939 section 5).
	Bytes int64
	// NextUID is the UID the next delivery gets: every message in the
	// mailbox has a lower one.
	NextUID uint64
}

// Delivery is one mailbox's copy of a delivered message.
type Delivery struct {
	UserID int64
	// Header is prepended to this copy only (trace fields such as
	// Delivered-To, RFC 5321 section 4.4), in canonical CRLF form. It is
	// counted in MessageInfo.Size and returned first by Open. Deliver
	// refuses (ErrInvalid) one that is not whole CRLF-terminated lines.
	Header []byte
}

// Mailboxes stores messages. Bodies handed to Deliver must already be in
// canonical form (see internal/message: CRLF line endings, final CRLF).
type Mailboxes interface {
	// Deliver stores one body for every listed mailbox (the body is kept
	// once; each copy may carry its own Header prepended) and returns the UID
	// assigned in each mailbox, in order. It returns only once the data is
	// durable (fsync). ErrQuota (wrapped, naming the user) if any mailbox
	// would go over quota; ErrNotFound for an unknown user. Either every
	// mailbox gets the message or none does.
	Deliver(ctx context.Context, body io.Reader, rcpts []Delivery) ([]uint64, error)
	// List returns the mailbox's messages in UID order: all of them if
	// before is 0, else those whose UID is below before (a snapshot taken
	// with Summary, see there).
	List(ctx context.Context, userID int64, before uint64) ([]MessageInfo, error)
	// Summary returns the mailbox's message count, total size and next
	// UID, read together, without reading the messages. Under the maildrop
	// lock, where only the lock's holder removes messages and deliveries
	// only add UIDs from NextUID on, List(ctx, userID, NextUID) later
	// returns exactly the messages counted here.
	Summary(ctx context.Context, userID int64) (MailboxSummary, error)
	// Open returns the stored body of one message.
	Open(ctx context.Context, userID int64, uid uint64) (io.ReadCloser, error)
	// Delete removes messages durably, in one transaction. Missing UIDs are
	// ignored (already gone).
	Delete(ctx context.Context, userID int64, uids []uint64) error
	// Usage returns the number of messages and their total size.
	Usage(ctx context.Context, userID int64) (count int, bytes int64, err error)
	// Lock takes the exclusive maildrop lock (RFC 1939 section 8) for a POP3
	// session; ErrLocked if another holder has it. The lock must go away
	// when the process that holds it dies. holder is for diagnostics.
	Lock(ctx context.Context, userID int64, holder string) (MaildropLock, error)
}

// MaildropLock is one acquisition of a maildrop lock.
type MaildropLock interface {
	// Err is nil while the lock is held and ErrLockLost (wrapped) once it
	// is not: after Unlock, or, in a store shared by several processes,
	// once its lease has run out without renewal (the database was out of
	// reach for longer than the lease), since another session may have
	// taken the maildrop then.
	Err() error
	// Delete is Mailboxes.Delete fenced by the lock: the transaction that
	// deletes checks that this acquisition still holds the lock, and
	// deletes nothing (ErrLockLost) if it does not, so that only the
	// session with exclusive access applies its deletions (RFC 1939
	// sections 4 and 6).
	Delete(ctx context.Context, uids []uint64) error
	// Unlock releases the lock. Calling it twice is harmless, and never
	// releases a later acquisition.
	Unlock()
}

// QueueState is the state of one recipient of a queued message.
type QueueState string

// Recipient states in the outbound queue.
const (
	QueuePending   QueueState = "pending"
	QueueDelivered QueueState = "delivered"
	QueueFailed    QueueState = "failed"
)

// QueueRecipient is one remote recipient of a queued message.
type QueueRecipient struct {
	Address string
	State   QueueState
	// DSN are the recipient's delivery status notification parameters
	// (RFC 3461 sections 4.1 and 4.2: NOTIFY, ORCPT), as Enqueue got
	// them.
	DSN dsn.RcptParams
	// LastError describes the last failure in our own words (a
	// connection refused, a lookup failed, the lifetime ran out), "" if
	// none. A remote host's reply is in Remote, never here.
	LastError string
	// Remote is the reply of the remote host that decided the last
	// result, as it came (code, enhanced status, text), with the command
	// it answered and the host; the zero value if none did.
	Remote RemoteReply
	// Status is the RFC 3463 enhanced status code of the last result
	// ("4.4.1", "5.1.1"), "" before any.
	Status string
	// RemoteMTA names the host that gave the last reply, "" if none did.
	RemoteMTA string
	// Notified: what the sender is owed about this recipient was sent,
	// or nothing is owed. A failed recipient is owed a failure
	// notification (RFC 3464) unless it asked for none or there is no
	// sender; a delivered one a success notification when it asked for
	// one (RFC 3461 section 4.1, NOTIFY=SUCCESS) and the next hop did not
	// take that duty over. Only a failed or delivered recipient is ever
	// notified.
	Notified bool
}

// RemoteReply is a remote SMTP server's reply kept structured (never
// rendered to prose and parsed back): the reply, the command it
// answered and the host that gave it.
type RemoteReply struct {
	Reply smtpreply.Reply
	// Command is what the reply answered: "greeting", "EHLO", "MAIL
	// FROM", "RCPT TO", "DATA", "end of data"...
	Command string
	// Host is the host as Postfix names it, host[ip]:port.
	Host string
}

// IsZero reports that there is no reply.
func (r RemoteReply) IsZero() bool { return r.Reply.Code == 0 }

// String renders the reply on one line in the style of Postfix's logs
// and bounces: "mx.example[192.0.2.1]:25 said: 550 5.1.1 No such user
// (in reply to RCPT TO)"; "" for none.
func (r RemoteReply) String() string {
	if r.IsZero() {
		return ""
	}
	s := r.Reply.Error()
	if r.Host != "" {
		s = r.Host + " said: " + s
	}
	if r.Command != "" {
		s += " (in reply to " + r.Command + ")"
	}
	return s
}

// QueueEnvelope is what Enqueue keeps with a message's content: the
// envelope and the DSN parameters (RFC 3461 section 4) to honour and to
// pass on to the next hop.
type QueueEnvelope struct {
	From string   // reverse-path, "" for the null sender
	To   []string // the recipients, kept as given
	// DSN parallels To: each recipient's NOTIFY and ORCPT; nil when no
	// recipient had any.
	DSN []dsn.RcptParams
	// Ret is RET (RFC 3461 section 4.3): dsn.RetFull, dsn.RetHdrs or ""
	// when absent; EnvID is ENVID (section 4.4), "" when absent.
	Ret   string
	EnvID string
}

// QueuedMessage is a message waiting in the outbound queue.
type QueuedMessage struct {
	ID          int64
	From        string // reverse-path, "" for the null sender
	Recipients  []QueueRecipient
	Size        int64
	CreatedAt   time.Time
	NextAttempt time.Time
	Attempts    int
	Held        bool
	// LastAttempt is the time of the last delivery attempt, zero if none.
	LastAttempt time.Time
	// Warned: the sender has been sent the delayed-delivery warning.
	Warned bool
	// Ret and EnvID are the message's DSN parameters (RFC 3461 sections
	// 4.3 and 4.4), as QueueEnvelope has them.
	Ret   string
	EnvID string
	// ClaimedUntil is the end of a queue runner's claim on the message
	// (see ClaimQueued), zero if unclaimed.
	ClaimedUntil time.Time
}

// QueueUpdate is the outcome of one delivery attempt, or of sending the
// notifications it called for, applied by UpdateQueued in one transaction.
type QueueUpdate struct {
	// Recipients are matched by Address. A pending recipient takes the
	// given State, LastError, Remote, Status and RemoteMTA (its DSN
	// parameters never change); a delivered or failed one keeps its own
	// (a final state is never undone). Notified is set, never cleared,
	// and only on a recipient that is failed or delivered once the
	// update is applied.
	Recipients []QueueRecipient
	// Attempted counts one more delivery attempt, made at At.
	Attempted bool
	At        time.Time
	// NextAttempt reschedules the message when not zero.
	NextAttempt time.Time
	// Warned records that the delayed-delivery warning was sent (never
	// cleared).
	Warned bool
}

// Queue is the durable outbound queue (store-and-forward of remote mail).
type Queue interface {
	// Enqueue stores a message for remote recipients and returns its ID
	// once it is durable (fsync). Addresses are kept as given; ErrInvalid
	// (CheckQueueEnvelope) without recipients, for a repeated one, for
	// an address without "@" or with control characters, or for DSN
	// parameters that RFC 3461 does not allow.
	Enqueue(ctx context.Context, env QueueEnvelope, body io.Reader) (int64, error)
	// ListQueue returns every queued message, oldest first.
	ListQueue(ctx context.Context) ([]QueuedMessage, error)
	// QueuedMessage returns one entry; ErrNotFound if absent.
	QueuedMessage(ctx context.Context, id int64) (QueuedMessage, error)
	// OpenQueued returns the stored body of a queued message; ErrNotFound
	// if absent.
	OpenQueued(ctx context.Context, id int64) (io.ReadCloser, error)
	// DeleteQueued removes a message from the queue durably; ErrNotFound
	// if absent.
	DeleteQueued(ctx context.Context, id int64) error

	// ClaimQueued hands a queue runner up to max messages that are due
	// (NextAttempt not after now), not held and not claimed (ClaimedUntil
	// not after now), earliest NextAttempt first, and claims them until
	// now+lease in the same transaction, so that no two runners get the
	// same message while a claim lasts. UpdateQueued ends the claim; so
	// does the lease running out (a runner that hangs). A store shared by
	// several processes ends the claims of a process sooner, with its
	// liveness: a claim belongs to the process that made it.
	ClaimQueued(ctx context.Context, now time.Time, lease time.Duration, max int) ([]QueuedMessage, error)
	// ReleaseClaims ends the claims no running queue runner holds: a
	// runner calls it when it starts (any earlier runner of the process
	// has stopped), so that what a crashed process, or a runner stopped
	// without recording its outcome, had claimed is due again at once. In
	// a store shared by several processes, the claims of another live
	// process stay.
	ReleaseClaims(ctx context.Context) error
	// UpdateQueued records the outcome of an attempt (see QueueUpdate)
	// durably and ends the claim on the message. ErrNotFound if the
	// message is gone; ErrInvalid for an address that is not one of its
	// recipients or an unknown state (nothing is changed then).
	UpdateQueued(ctx context.Context, id int64, u QueueUpdate) error
	// HoldQueued holds a message (no delivery attempts) or releases it;
	// ErrNotFound if absent.
	HoldQueued(ctx context.Context, id int64, held bool) error
	// RetryQueued makes one message (id > 0) or every message (id == 0)
	// due at now, held or not (a hold still applies), and returns how many
	// it rescheduled; ErrNotFound for an absent id.
	RetryQueued(ctx context.Context, id int64, now time.Time) (int, error)
}

// Instance is the process holding a node name in a store that several
// nodes share (see the postgres backend): one at a time per name.
type Instance struct {
	Node     string
	Instance string // random, one per process
	Host     string
	PID      int
	Started  time.Time // when it took the name
	Renewed  time.Time // its last renewal
	Expires  time.Time // the end of its lease unless renewed
	Alive    bool      // Expires is ahead of the store's clock
}

// Shared is what the nodes sharing a store share besides mail: the
// state of certificates obtained by ACME, and the server's secrets.
type Shared interface {
	// ACMEStorage is where internal/acmecert keeps its account key,
	// certificates, renewal status and challenge responses, so that what
	// one node obtains every node serves; its lease lock lets one node at
	// a time obtain certificates. It returns acmecert.ErrNotFound for a
	// name that holds nothing.
	ACMEStorage() acmecert.Storage
	// Secret returns the secret of a purpose (e.g. "profile-link"): 32
	// random octets created at its first use, the same afterwards for
	// every node and after every restart. It keys what the server signs
	// for itself, such as the links the console gives out. ErrInvalid for
	// an empty purpose.
	Secret(ctx context.Context, purpose string) ([]byte, error)
}

// SecretSize is the length of a Secret.
const SecretSize = 32

// Store is a complete backend.
type Store interface {
	Directory
	Mailboxes
	Queue
	Retention
	Journal
	Admins
	Shared
	// The DKIM signing keys of the local domains (mailauth.KeyStore):
	// in the store, so that every node of a cluster signs with the same
	// keys. Domains and selectors are kept lower case; a key's domain
	// need not be a local domain (keys outlive a deleted domain, so
	// that adding it again signs as before).
	mailauth.KeyStore
	io.Closer
}
