package store

import (
	"context"
	"time"
)

// Retention records what the POP3 policies of RFC 2449 need: when each
// message was first retrieved (EXPIRE, section 6.7) and when each user last
// logged in (LOGIN-DELAY, section 6.5).
type Retention interface {
	// MarkRetrieved records that the user's messages uids were retrieved
	// at t. Only the first retrieval counts: a message already marked keeps
	// its time. Missing UIDs are ignored.
	MarkRetrieved(ctx context.Context, userID int64, uids []uint64, t time.Time) error
	// ExpireRetrieved removes durably, in one transaction, the user's
	// messages first retrieved before the given time, and returns them
	// (UID and size), in UID order. Messages never retrieved are kept.
	ExpireRetrieved(ctx context.Context, userID int64, before time.Time) ([]MessageInfo, error)
	// RecordLogin sets the user's LastLogin to t; ErrNotFound for an
	// unknown user.
	RecordLogin(ctx context.Context, userID int64, t time.Time) error
}

// JournalEvent is the kind of one mail journal entry.
type JournalEvent string

// The events of the mail journal.
const (
	// EventReceived: a message was accepted (SMTP, submission, the deliver
	// command or a bounce), with its envelope.
	EventReceived JournalEvent = "received"
	// EventDelivered: a copy was stored in a local mailbox.
	EventDelivered JournalEvent = "delivered"
	// EventQueued: a copy was queued for a remote recipient.
	EventQueued JournalEvent = "queued"
	// EventForwarded: the outbound queue delivered a copy to a remote host.
	EventForwarded JournalEvent = "forwarded"
	// EventDeferred: a delivery attempt failed temporarily.
	EventDeferred JournalEvent = "deferred"
	// EventBounced: a recipient failed for good; a bounce was sent when
	// there was a sender to send it to.
	EventBounced JournalEvent = "bounced"
	// EventRetrieved: a POP3 client retrieved the message (RETR).
	EventRetrieved JournalEvent = "retrieved"
	// EventDeleted: a POP3 client deleted the message (DELE and QUIT), or
	// an operator did.
	EventDeleted JournalEvent = "deleted"
	// EventExpired: the message was removed by the expire policy.
	EventExpired JournalEvent = "expired"
	// EventRejected: a message was refused at the end of its data by a
	// check (DMARC policy, a DNS failure where it would refuse), with the
	// reply given and the results; the sender keeps it.
	EventRejected JournalEvent = "rejected"
	// EventRefused: a filter (a milter, a recipient's spam score) refused
	// the message or one of its recipients during the SMTP conversation;
	// Detail says who and the reply.
	EventRefused JournalEvent = "refused"
	// EventDiscarded: a milter had the message dropped after it was
	// accepted (SMFIR_DISCARD): the client was told 250, nobody got it.
	EventDiscarded JournalEvent = "discarded"
)

// JournalEvents lists every event, in the order a message meets them.
var JournalEvents = []JournalEvent{
	EventReceived, EventDelivered, EventQueued, EventForwarded, EventDeferred,
	EventBounced, EventRetrieved, EventDeleted, EventExpired, EventRefused, EventDiscarded,
}

// JournalEntry is one event of the mail journal.
type JournalEntry struct {
	ID    int64 // assigned by AppendJournal, increasing
	Time  time.Time
	Event JournalEvent
	// MessageID is the Message-ID header field of the message, if known.
	MessageID string
	// TxID is the transaction id given when the message was received (the
	// "id" of its Received field); it ties the events of one message.
	TxID string
	From string   // envelope sender, "" for the null sender
	To   []string // envelope recipients (received) or the one recipient
	// User is the local mailbox concerned (delivered, retrieved,
	// deleted, expired), "" otherwise.
	User   string
	Size   int64
	Client string // remote address or door: "192.0.2.1:4321", "deliver"
	Detail string // free text: a reason, a remote reply, a UID
}

// JournalQuery selects journal entries. Zero fields do not restrict.
type JournalQuery struct {
	Since, Until time.Time // Since <= Time < Until
	// User matches entries whose User, From or any To is this address.
	User  string
	Event JournalEvent
	// Text matches a substring (case-insensitive) of the message id,
	// transaction id, addresses, client or detail.
	Text string
	// BeforeID returns only entries with a smaller ID (paging backwards).
	BeforeID int64
	// Limit caps the number of entries; 0 means 100.
	Limit int
}

// Journal is the durable mail journal.
type Journal interface {
	// AppendJournal stores entries durably in one transaction, in order,
	// and returns once committed. Entries with a zero Time get the
	// current time.
	AppendJournal(ctx context.Context, entries []JournalEntry) error
	// QueryJournal returns matching entries, newest first.
	QueryJournal(ctx context.Context, q JournalQuery) ([]JournalEntry, error)
	// CountJournal counts the entries of each event at or after since.
	CountJournal(ctx context.Context, since time.Time) (map[JournalEvent]int64, error)
	// JournalHistogram counts the entries of each event in n consecutive
	// periods of length step from since: out[event][i] counts those at or
	// after since+i*step and before since+(i+1)*step. Events without
	// entries are absent; step is whole milliseconds, at least one.
	JournalHistogram(ctx context.Context, since time.Time, step time.Duration, n int) (map[JournalEvent][]int64, error)
	// PruneJournal removes entries older than before and returns how many.
	PruneJournal(ctx context.Context, before time.Time) (int64, error)
}

// Admin is an operator account of the web console.
type Admin struct {
	Name         string // 1-64 characters of [A-Za-z0-9._@-]
	PasswordHash string // as for User
	CreatedAt    time.Time
}

// Admins stores the operator accounts of the web console.
type Admins interface {
	AddAdmin(ctx context.Context, a Admin) error // ErrExists; ErrInvalid for a bad name
	AdminByName(ctx context.Context, name string) (Admin, error)
	ListAdmins(ctx context.Context) ([]Admin, error) // sorted by name
	SetAdminPassword(ctx context.Context, name, hash string) error
	DeleteAdmin(ctx context.Context, name string) error
}
