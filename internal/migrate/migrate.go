// Package migrate copies a whole store into another, whatever their
// backends: the directory (domains, users with their password hashes, UID
// validities and next UIDs, extra addresses, aliases), the web console's
// operators, every mailbox with its UIDs (so that POP3 clients see the same
// UIDLs), the outbound queue, the journal, and the ACME certificates and
// account and the server's secrets (store.Shared), and the DKIM signing
// keys, active and retired.
//
// A copy can be run again: what the target has already is skipped, so an
// interrupted copy resumes, and a copy made while the source still serves
// can be completed by a second run once it has stopped. The target is
// meant to be new (or the target of an earlier run): entries of its own
// whose IDs a source entry has would be taken for copies.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Store is a store a migration reads or writes.
type Store interface {
	store.Store
	store.Exporter
	store.Importer
}

// Stats counts what one run copied (not what it skipped).
type Stats struct {
	Domains, Users, Addresses, Aliases, Admins int
	Bodies, Messages                           int
	Queue, Journal                             int
	Shared                                     int // ACME values and secrets
	DKIMKeys                                   int // DKIM keys copied or retired
}

// Options tune a copy.
type Options struct {
	// Progress, if set, receives a line now and then.
	Progress func(format string, args ...any)
	// PageSize is how many bodies (and journal entries) are read at once;
	// 500 if 0.
	PageSize int
}

// Copy copies from into to; see the package comment.
func Copy(ctx context.Context, from, to Store, o Options) (Stats, error) {
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	progress := o.Progress
	if progress == nil {
		progress = func(string, ...any) {}
	}
	var st Stats
	if err := copyDirectory(ctx, from, to, &st); err != nil {
		return st, err
	}
	progress("directory: %d domains, %d users, %d extra addresses, %d aliases, %d operators copied",
		st.Domains, st.Users, st.Addresses, st.Aliases, st.Admins)
	if err := copyShared(ctx, from, to, &st); err != nil {
		return st, err
	}
	progress("certificates and secrets: %d values copied", st.Shared)
	if err := copyDKIMKeys(ctx, from, to, &st); err != nil {
		return st, err
	}
	progress("DKIM keys: %d copied", st.DKIMKeys)
	if err := copyMailboxes(ctx, from, to, o.PageSize, &st, progress); err != nil {
		return st, err
	}
	progress("mailboxes: %d messages (%d bodies) copied", st.Messages, st.Bodies)
	if err := copyQueue(ctx, from, to, &st); err != nil {
		return st, err
	}
	progress("queue: %d messages copied", st.Queue)
	if err := copyJournal(ctx, from, to, o.PageSize, &st); err != nil {
		return st, err
	}
	progress("journal: %d entries copied", st.Journal)
	return st, nil
}

func copyDirectory(ctx context.Context, from, to Store, st *Stats) error {
	domains, err := from.ListDomains(ctx)
	if err != nil {
		return fmt.Errorf("reading domains: %w", err)
	}
	have, err := to.ListDomains(ctx)
	if err != nil {
		return err
	}
	for _, d := range domains {
		if slices.ContainsFunc(have, func(h store.Domain) bool { return h.Name == d.Name }) {
			continue
		}
		if err := to.ImportDomain(ctx, d); err != nil {
			return fmt.Errorf("domain %s: %w", d.Name, err)
		}
		st.Domains++
	}

	users, err := from.ListUsers(ctx)
	if err != nil {
		return fmt.Errorf("reading users: %w", err)
	}
	for _, u := range users {
		next, err := from.NextUID(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("user %s: %w", u.Address, err)
		}
		_, err = to.UserByID(ctx, u.ID)
		existed := err == nil
		if err := to.ImportUser(ctx, u, next); err != nil {
			return fmt.Errorf("user %s (ID %d): %w", u.Address, u.ID, err)
		}
		if !existed {
			st.Users++
		}
		addrs, err := from.ListAddresses(ctx, u.ID)
		if err != nil {
			return fmt.Errorf("addresses of %s: %w", u.Address, err)
		}
		for _, a := range addrs {
			owner, err := to.UserByAddress(ctx, a)
			switch {
			case err == nil && owner.ID == u.ID:
				continue
			case err == nil:
				return fmt.Errorf("address %s of %s belongs to %s in the target: %w", a, u.Address, owner.Address, store.ErrExists)
			case !errors.Is(err, store.ErrNotFound):
				return err
			}
			if err := to.AddAddress(ctx, u.ID, a); err != nil {
				return fmt.Errorf("address %s of %s: %w", a, u.Address, err)
			}
			st.Addresses++
		}
	}

	aliases, err := from.ListAliases(ctx)
	if err != nil {
		return fmt.Errorf("reading aliases: %w", err)
	}
	for _, a := range aliases {
		got, err := to.Alias(ctx, a.Address)
		if err == nil && slices.Equal(got.Targets, a.Targets) {
			continue
		}
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := to.SetAlias(ctx, a); err != nil {
			return fmt.Errorf("alias %s: %w", a.Address, err)
		}
		st.Aliases++
	}

	admins, err := from.ListAdmins(ctx)
	if err != nil {
		return fmt.Errorf("reading operators: %w", err)
	}
	for _, a := range admins {
		if _, err := to.AdminByName(ctx, a.Name); err == nil {
			continue
		}
		if err := to.ImportAdmin(ctx, a); err != nil {
			return fmt.Errorf("operator %s: %w", a.Name, err)
		}
		st.Admins++
	}
	return nil
}

// copyShared copies the ACME state and the secrets; the target keeps what
// it has of its own.
func copyShared(ctx context.Context, from, to Store, st *Stats) error {
	vs, err := from.ExportShared(ctx)
	if err != nil {
		return fmt.Errorf("reading certificates and secrets: %w", err)
	}
	for _, v := range vs {
		stored, err := to.ImportShared(ctx, v)
		if err != nil {
			return fmt.Errorf("%s %s: %w", v.Kind, v.Name, err)
		}
		if stored {
			st.Shared++
		}
	}
	return nil
}

// copyDKIMKeys copies every DKIM key with its times, so that the target
// signs with the keys whose records are published; a key retired in the
// source since an earlier run is retired in the target too.
func copyDKIMKeys(ctx context.Context, from, to Store, st *Stats) error {
	keys, err := from.ExportDKIMKeys(ctx)
	if err != nil {
		return fmt.Errorf("reading DKIM keys: %w", err)
	}
	for _, k := range keys {
		changed, err := to.ImportDKIMKey(ctx, k)
		if err != nil {
			return fmt.Errorf("DKIM key %s of %s: %w", k.Selector, k.Domain, err)
		}
		if changed {
			st.DKIMKeys++
		}
	}
	return nil
}

func copyMailboxes(ctx context.Context, from, to Store, page int, st *Stats, progress func(string, ...any)) error {
	after := ""
	for {
		bodies, err := from.ExportBodies(ctx, after, page)
		if err != nil {
			return fmt.Errorf("reading messages: %w", err)
		}
		if len(bodies) == 0 {
			return nil
		}
		for _, b := range bodies {
			n, err := to.ImportMessage(ctx, func() (io.ReadCloser, error) { return from.OpenBody(ctx, b.Key) }, b.Copies)
			if err != nil {
				return fmt.Errorf("message %d of user %d (and its other copies): %w", b.Copies[0].UID, b.Copies[0].UserID, err)
			}
			if n > 0 {
				st.Bodies++
				st.Messages += n
			}
		}
		after = bodies[len(bodies)-1].Key
		progress("mailboxes: %d messages copied so far", st.Messages)
	}
}

func copyQueue(ctx context.Context, from, to Store, st *Stats) error {
	q, err := from.ListQueue(ctx)
	if err != nil {
		return fmt.Errorf("reading the queue: %w", err)
	}
	for _, m := range q {
		if _, err := to.QueuedMessage(ctx, m.ID); err == nil {
			continue
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		err := func() error {
			body, err := from.OpenQueued(ctx, m.ID)
			if errors.Is(err, store.ErrNotFound) {
				return nil // delivered meanwhile
			}
			if err != nil {
				return err
			}
			defer body.Close()
			return to.ImportQueued(ctx, m, body)
		}()
		if err != nil {
			return fmt.Errorf("queued message %d: %w", m.ID, err)
		}
		st.Queue++
	}
	return nil
}

func copyJournal(ctx context.Context, from, to Store, page int, st *Stats) error {
	var before int64
	for {
		es, err := from.QueryJournal(ctx, store.JournalQuery{BeforeID: before, Limit: page})
		if err != nil {
			return fmt.Errorf("reading the journal: %w", err)
		}
		if len(es) == 0 {
			return nil
		}
		n, err := to.ImportJournal(ctx, es)
		if err != nil {
			return fmt.Errorf("journal entries %d to %d: %w", es[len(es)-1].ID, es[0].ID, err)
		}
		st.Journal += n
		before = es[len(es)-1].ID
	}
}

// journalStart is before any journal entry.
var journalStart = time.Unix(0, 0)

// Counts is what a store holds, for comparing two of them.
type Counts struct {
	Domains, Users, Addresses, Aliases, Admins int64
	Messages, Bytes                            int64
	Queue, Journal                             int64
}

// Count counts what st holds.
func Count(ctx context.Context, st store.Store) (Counts, error) {
	var c Counts
	ds, err := st.ListDomains(ctx)
	if err != nil {
		return c, err
	}
	c.Domains = int64(len(ds))
	us, err := st.ListUsers(ctx)
	if err != nil {
		return c, err
	}
	c.Users = int64(len(us))
	for _, u := range us {
		as, err := st.ListAddresses(ctx, u.ID)
		if err != nil {
			return c, err
		}
		c.Addresses += int64(len(as))
		n, b, err := st.Usage(ctx, u.ID)
		if err != nil {
			return c, err
		}
		c.Messages += int64(n)
		c.Bytes += b
	}
	al, err := st.ListAliases(ctx)
	if err != nil {
		return c, err
	}
	c.Aliases = int64(len(al))
	ad, err := st.ListAdmins(ctx)
	if err != nil {
		return c, err
	}
	c.Admins = int64(len(ad))
	q, err := st.ListQueue(ctx)
	if err != nil {
		return c, err
	}
	c.Queue = int64(len(q))
	jc, err := st.CountJournal(ctx, journalStart)
	if err != nil {
		return c, err
	}
	for _, n := range jc {
		c.Journal += n
	}
	return c, nil
}

// Rows lists the counts by name, in a fixed order.
func (c Counts) Rows() []struct {
	Name  string
	Value int64
} {
	return []struct {
		Name  string
		Value int64
	}{
		{"domains", c.Domains}, {"users", c.Users}, {"extra addresses", c.Addresses}, {"aliases", c.Aliases},
		{"operators", c.Admins}, {"messages", c.Messages}, {"message bytes", c.Bytes},
		{"queued messages", c.Queue}, {"journal entries", c.Journal},
	}
}
