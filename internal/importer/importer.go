// Package importer moves mail in from another server: Dovecot (maildir,
// dovecot-uidlist, passwd-file), Courier (maildir with
// courierpop3dsizelist), qpopper (mbox with X-UIDL) and plain maildirs.
// Every message keeps the unique-id (RFC 1939 section 7) and the size its
// POP3 clients saw, so that clients that leave mail on the server do not
// download it again; users keep their passwords (see
// internal/directory's Schemes).
//
// The source is only read (files opened read-only, nothing renamed or
// written). An import that is interrupted resumes when run again: a
// message whose unique-id the mailbox has already is skipped.
package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/maildrop"
	"github.com/postoffice-mail/postoffice/internal/message"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Message is one message of a source mailbox.
type Message struct {
	UIDL string
	// ListSize is the size the old server's LIST showed, 0 if the source
	// does not say (then the size of the message as stored counts).
	ListSize int64
	// Bytes is the size in the source, for the dry run's report.
	Bytes int64
	// Date is when it arrived at the old server (zero: now).
	Date time.Time
	// Name says where it is, for messages: a file, or FILE:N in an mbox.
	Name string
	// open reads it as the source has it (LF or CRLF line endings).
	open func() ([]byte, error)
}

// Mailbox is one user's mail and password at the old server.
type Mailbox struct {
	Address string
	// PasswordHash is "{SCHEME}hash", or "" for none.
	PasswordHash string
	// UIDLSource says where the unique-ids come from, for the report.
	UIDLSource string
	Messages   []Message
	// Problems found reading the source (a message that cannot be
	// imported, a malformed line), for the report.
	Problems []string
}

// Options of an import.
type Options struct {
	// DryRun reads the source and the store and reports what an import
	// would do, changing nothing.
	DryRun bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Progress, when set, is told of each user done.
	Progress func(address string, imported, skipped int)
}

// Report says what an import did, or what a dry run would do.
type Report struct {
	DryRun        bool
	Users         int // mailboxes in the source
	NewUsers      int // created (or to be created)
	ExistingUsers []string
	Messages      int   // imported (or to be imported)
	Bytes         int64 // their size in the source
	Skipped       int   // already there (by unique-id)
	// UIDLSources counts messages by where their unique-ids come from.
	UIDLSources map[string]int
	// Schemes counts the passwords of new users by scheme ("none": no
	// password).
	Schemes map[string]int
	// Conflicts: unique-ids or addresses taken by something else.
	Conflicts []string
	// Problems: what could not be imported and why.
	Problems []string
}

// Import writes the mailboxes into st (which must implement
// store.Importer and store.Exporter, as both backends do), or with
// DryRun only reports what it would do. It stops at the first store
// error; what it imported until then stays, and running it again
// resumes.
func Import(ctx context.Context, st store.Store, boxes []Mailbox, o Options) (*Report, error) {
	imp, ok1 := st.(store.Importer)
	exp, ok2 := st.(store.Exporter)
	if !ok1 || !ok2 {
		return nil, fmt.Errorf("the store (%T) cannot import messages", st)
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	r := &Report{DryRun: o.DryRun, UIDLSources: map[string]int{}, Schemes: map[string]int{}}
	for _, b := range boxes {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		r.Users++
		r.Problems = append(r.Problems, b.Problems...)
		if err := importBox(ctx, st, imp, exp, b, o, now, r); err != nil {
			return r, fmt.Errorf("%s: %w", b.Address, err)
		}
	}
	return r, nil
}

func importBox(ctx context.Context, st store.Store, imp store.Importer, exp store.Exporter, b Mailbox, o Options,
	now func() time.Time, r *Report) error {
	addr, err := address.Normalize(b.Address)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("%q is not an address: %v", b.Address, err))
		return nil
	}

	u, err := st.UserByAddress(ctx, addr)
	var have map[string]bool // unique-ids the mailbox has
	switch {
	case err == nil && u.Address != addr:
		r.Conflicts = append(r.Conflicts, fmt.Sprintf("%s is an extra address of user %s: not imported", addr, u.Address))
		return nil
	case err == nil:
		r.ExistingUsers = append(r.ExistingUsers, addr)
		if have, err = uidls(ctx, st, u); err != nil {
			return err
		}
	case errors.Is(err, store.ErrNotFound):
		// Only a new user takes the old password: one that exists keeps
		// its own.
		hash, scheme, problem := checkHash(addr, b.PasswordHash)
		if problem != "" {
			r.Problems = append(r.Problems, problem)
		}
		r.NewUsers++
		r.Schemes[scheme]++
		have = map[string]bool{}
		if !o.DryRun {
			u, err = st.AddUser(ctx, store.User{Address: addr, PasswordHash: hash, Enabled: true})
			if errors.Is(err, store.ErrExists) {
				r.Conflicts = append(r.Conflicts, fmt.Sprintf("%s: %v: not imported", addr, err))
				return nil
			} else if err != nil {
				return err
			}
		}
	default:
		return err
	}

	var next uint64
	if u.ID != 0 {
		if next, err = exp.NextUID(ctx, u.ID); err != nil {
			return err
		}
	}
	imported, skipped := 0, 0
	seen := map[string]string{} // unique-id to message, in the source
	for _, m := range b.Messages {
		if reason := store.CheckUIDL(m.UIDL); reason != "" {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %s: unique-id %q %s: not imported", addr, m.Name, m.UIDL, reason))
			continue
		}
		if first, dup := seen[m.UIDL]; dup {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %s has the unique-id %s of %s: not imported", addr, m.Name, m.UIDL, first))
			continue
		}
		seen[m.UIDL] = m.Name
		if have[m.UIDL] {
			skipped++
			continue
		}
		r.UIDLSources[b.UIDLSource]++
		r.Bytes += m.Bytes
		if o.DryRun {
			imported++
			continue
		}
		raw, err := m.open()
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s: %s: %v: not imported", addr, m.Name, err))
			continue
		}
		body, err := canonical(raw)
		if err != nil {
			return err
		}
		c := store.MessageCopy{UserID: u.ID, UID: next, UIDL: m.UIDL, DeliveredAt: m.Date}
		if c.DeliveredAt.IsZero() {
			c.DeliveredAt = now()
		}
		if m.ListSize > 0 && m.ListSize != int64(len(body)) {
			c.ListSize = m.ListSize
		}
		n, err := imp.ImportMessage(ctx, func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(body)), nil
		}, []store.MessageCopy{c})
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name, err)
		}
		if n == 1 {
			next++
			imported++
		} else {
			skipped++
		}
	}
	r.Messages += imported
	r.Skipped += skipped
	if o.Progress != nil {
		o.Progress(addr, imported, skipped)
	}
	return nil
}

// uidls returns the unique-ids POP3 shows for the user's messages.
func uidls(ctx context.Context, st store.Store, u store.User) (map[string]bool, error) {
	list, err := st.List(ctx, u.ID, 0)
	if err != nil {
		return nil, err
	}
	have := make(map[string]bool, len(list))
	for _, m := range list {
		have[maildrop.Shown(u, m).UID] = true
	}
	return have, nil
}

// checkHash returns the hash to store for a user, its scheme for the
// report, and a problem to report. A hash without a {SCHEME} prefix is
// crypt(3)'s, as in Dovecot's passwd-file (default_pass_scheme CRYPT).
func checkHash(addr, h string) (hash, scheme, problem string) {
	if h == "" {
		return "", "none", addr + ": no password: set one with postoffice user passwd " + addr
	}
	if !strings.HasPrefix(h, "{") {
		h = "{CRYPT}" + h
	}
	scheme, _, _ = directory.SplitScheme(h)
	if err := directory.CheckScheme(h); err != nil {
		if errors.Is(err, directory.ErrCRAMMD5) {
			return "", scheme, fmt.Sprintf("%s: %v", addr, directory.ErrCRAMMD5)
		}
		return "", scheme, fmt.Sprintf("%s: password not imported: %v; set one with postoffice user passwd %s", addr, err, addr)
	}
	return h, scheme, ""
}

// canonical is the message as the store keeps it: CRLF line endings and
// a final CRLF (internal/message).
func canonical(raw []byte) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(len(raw) + len(raw)/30 + 2)
	if _, err := b.ReadFrom(message.Canonical(bytes.NewReader(raw))); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Print writes the report for a person.
func (r *Report) Print(w io.Writer) {
	verb := "imported"
	if r.DryRun {
		verb = "would import"
		fmt.Fprintln(w, "dry run: nothing was changed")
	}
	fmt.Fprintf(w, "users: %d in the source, %d new, %d existing\n", r.Users, r.NewUsers, len(r.ExistingUsers))
	fmt.Fprintf(w, "messages: %s %d (%d bytes), %d already there\n", verb, r.Messages, r.Bytes, r.Skipped)
	for _, k := range sortedKeys(r.UIDLSources) {
		fmt.Fprintf(w, "unique-ids from %s: %d messages\n", k, r.UIDLSources[k])
	}
	for _, k := range sortedKeys(r.Schemes) {
		fmt.Fprintf(w, "passwords %s: %d users\n", k, r.Schemes[k])
	}
	for _, u := range r.ExistingUsers {
		fmt.Fprintf(w, "existing user: %s (gets the messages it lacks; its password stays)\n", u)
	}
	for _, c := range r.Conflicts {
		fmt.Fprintf(w, "conflict: %s\n", c)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
