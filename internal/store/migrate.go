package store

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/postoffice-mail/postoffice/internal/mailauth"
)

// Moving a whole store from one backend to another (postoffice migrate)
// needs what the interfaces above keep to themselves: a mailbox's next
// UID, which copies share a body, and a way to write users, messages,
// queue entries and journal entries with their identities (IDs, UID
// validities, UIDs) kept, so that POP3 clients see the same UIDLs after
// the move. Every backend implements both interfaces.

// MessageCopy is one mailbox's copy of a stored body.
type MessageCopy struct {
	UserID int64
	UID    uint64
	// Header is the copy's own header (trace fields), prepended to the
	// body when read; the copy's size is len(Header) plus the body's.
	Header      []byte
	DeliveredAt time.Time
	RetrievedAt time.Time // zero if never retrieved (RFC 2449 EXPIRE)
	// UIDL is the unique-id (RFC 1939 section 7) the copy keeps from the
	// server it came from, so that POP3 clients that leave mail on the
	// server do not fetch it again; "" gives it the store's own. At most
	// one copy of a mailbox has a given UIDL (CheckUIDL says which are
	// valid).
	UIDL string
	// ListSize is the size that server's LIST showed for the copy (RFC
	// 1939 section 5), kept with it; 0 means the copy's own size.
	ListSize int64
}

// MaxUIDL is the longest unique-id RFC 1939 section 7 allows.
const MaxUIDL = 70

// CheckUIDL says why uidl cannot be a message's unique-id, "" if it can:
// RFC 1939 section 7 allows 1 to 70 characters in the range 0x21 to 0x7E.
func CheckUIDL(uidl string) string {
	if uidl == "" || len(uidl) > MaxUIDL {
		return fmt.Sprintf("is %d characters long, not 1 to %d", len(uidl), MaxUIDL)
	}
	for i := 0; i < len(uidl); i++ {
		if c := uidl[i]; c < 0x21 || c > 0x7e {
			return fmt.Sprintf("has the character %q (only 0x21 to 0x7E are allowed)", c)
		}
	}
	return ""
}

// ExportedBody is one stored body and every mailbox copy of it.
type ExportedBody struct {
	// Key names the body in the store that exported it (see OpenBody);
	// it means nothing to another store.
	Key    string
	Size   int64
	Copies []MessageCopy // by user ID, then UID
}

// Exporter reads a store for a migration.
type Exporter interface {
	// NextUID returns the UID the user's next message would get: more
	// than any UID the mailbox ever had.
	NextUID(ctx context.Context, userID int64) (uint64, error)
	// ExportBodies returns up to limit bodies that have mailbox copies,
	// those whose keys come after after ("" to start) in the store's own
	// order, each with all its copies. An empty result is the end.
	ExportBodies(ctx context.Context, after string, limit int) ([]ExportedBody, error)
	// OpenBody reads a body (without any copy's header); ErrNotFound if
	// it is gone.
	OpenBody(ctx context.Context, key string) (io.ReadCloser, error)
	// ExportShared returns every value of store.Shared (not the locks),
	// by kind and name.
	ExportShared(ctx context.Context) ([]SharedValue, error)
	// ExportDKIMKeys returns every DKIM key of every domain, retired
	// ones included, by domain and then oldest first.
	ExportDKIMKeys(ctx context.Context) ([]mailauth.Key, error)
}

// The kinds of SharedValue.
const (
	SharedACME   = "acme"   // a blob of ACMEStorage
	SharedSecret = "secret" // a Secret, named by its purpose
)

// SharedValue is one value of store.Shared, as a migration copies it: the
// certificates and account key of ACME, so that the target does not
// obtain them again, and the secrets, so that the links they signed keep
// working.
type SharedValue struct {
	Kind string // SharedACME or SharedSecret
	Name string
	Data []byte
}

// Importer writes what an Exporter read, keeping identities. Every method
// may be called again for what it already wrote (a migration that is run
// again resumes): it then does nothing, or returns ErrExists where it
// says so.
type Importer interface {
	// ImportDomain adds a domain with its creation time; nothing if it is
	// there already.
	ImportDomain(ctx context.Context, d Domain) error
	// ImportUser creates u with its ID, UIDValidity, CreatedAt and
	// LastLogin, its domain if needed, and nextUID as its mailbox's next
	// UID; the store's own counters move past them, so that it never
	// hands out that ID or UID validity again. If the user is there
	// already (same ID, address and UID validity), it only raises the next
	// UID to nextUID. ErrExists if the ID or the address belongs to
	// something else.
	ImportUser(ctx context.Context, u User, nextUID uint64) error
	// ImportMessage stores one body for the given copies, each in its
	// user's mailbox with its UID, in one transaction, without quota
	// checks; a mailbox's next UID is raised past the copy's. Copies
	// already there (by user and UID, or by user and UIDL when the copy
	// has one) are skipped, and open is not called when all are: an
	// import that is run again resumes without duplicates. It returns how
	// many copies it stored. ErrNotFound for an unknown user; ErrInvalid
	// for a UIDL that CheckUIDL refuses or a negative ListSize.
	ImportMessage(ctx context.Context, open func() (io.ReadCloser, error), copies []MessageCopy) (int, error)
	// ImportQueued stores a queue entry with its ID, sender, recipients
	// (states, results, notifications), times, attempts and hold, not
	// claimed. ErrExists if an entry has that ID.
	ImportQueued(ctx context.Context, m QueuedMessage, body io.Reader) error
	// ImportJournal stores entries with their IDs and times; entries
	// whose ID is taken are skipped. It returns how many it stored.
	ImportJournal(ctx context.Context, entries []JournalEntry) (int, error)
	// ImportAdmin adds an operator account with its hash and creation
	// time; nothing if an account of that name exists.
	ImportAdmin(ctx context.Context, a Admin) error
	// ImportShared stores v unless the target has a value of that kind
	// and name (a secret in use there stays), and reports whether it
	// stored it. ErrInvalid for an unknown kind.
	ImportShared(ctx context.Context, v SharedValue) (bool, error)
	// ImportDKIMKey stores a DKIM key with its creation and retirement
	// times and reports whether it changed anything: a key the target has
	// (same domain, selector and private key) is only retired if k is
	// and it is not. mailauth.ErrKeyExists if the target has another key
	// under that selector; ErrInvalid for a key that is not whole.
	ImportDKIMKey(ctx context.Context, k mailauth.Key) (bool, error)
}

// CheckImportedCopy refuses (ErrInvalid) a copy's UIDL or ListSize that
// Importer.ImportMessage does not take.
func CheckImportedCopy(c MessageCopy) error {
	if c.UIDL != "" {
		if reason := CheckUIDL(c.UIDL); reason != "" {
			return fmt.Errorf("UIDL of UID %d of user %d %s: %w", c.UID, c.UserID, reason, ErrInvalid)
		}
	}
	if c.ListSize < 0 {
		return fmt.Errorf("LIST size %d of UID %d of user %d: %w", c.ListSize, c.UID, c.UserID, ErrInvalid)
	}
	return nil
}
