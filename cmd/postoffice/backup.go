package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/postoffice-mail/postoffice/internal/backup"
	"github.com/postoffice-mail/postoffice/internal/migrate"
)

const (
	backupSummary = "take a consistent backup of the store while postoffice runs, or check one (--verify)"
	backupHelp    = backupSummary + `.

Writes into DIR, which must not exist or be empty, the store as it is at one
instant while postoffice keeps serving: the directory (users with their
password hashes and UID validities, addresses, aliases, operators), every
mailbox with its UIDs, the queue, the journal, the ACME certificates and the
secrets. With the embedded store, the database is copied with SQLite's VACUUM
INTO together with exactly the message files it refers to; with PostgreSQL,
everything is read in one REPEATABLE READ transaction. DIR/store is a data
directory of the embedded backend, DIR/manifest.json lists the counts and the
size and SHA-256 of every message; it is written last, so a directory without
it is not a backup.

With --verify, takes no backup but checks the one in DIR: every message is
there with its size and checksum, the database opens, the counts match the
manifest. Exit status 1 if anything is wrong, each problem on a line.

postoffice restore DIR copies a backup into a new store.`

	restoreSummary = "restore a backup into a new data directory or an empty PostgreSQL database"
	restoreHelp    = restoreSummary + `.

Checks the backup in DIR (as backup --verify does), then copies it into the
store of the configuration (data_dir, or the PostgreSQL database of [store]):
users keep their password hashes, UID validities and next UIDs, messages
their UIDs, so POP3 clients see the same UIDLs and download nothing again.
The target must be empty (a new data directory, or a database without
postoffice data): restore refuses one that holds anything, and changes
nothing in it. Run it with postoffice stopped on the target; a backup of one
backend restores into the other.`

	exportMaildirSummary = "write every mailbox (or one) as a standard maildir, with Dovecot's UID list"
	exportMaildirHelp    = exportMaildirSummary + `.

Writes DIR/DOMAIN/USER/ for each user (or for ADDRESS only): the maildir
subdirectories cur, new and tmp, each message in a file of its own in cur,
as stored, and a dovecot-uidlist that carries the mailbox's UID validity, the
UIDs and, in its P field, each message's POP3 UIDL as postoffice showed it.
Dovecot with mail_location = maildir:DIR/%d/%n then shows POP3 clients the
same UIDLs (it takes them from P, whatever its pop3_uidl_format; the form
%08Xv%08Xu is postoffice's own), so clients that leave mail on the server
download nothing again. A user's maildir that exists already is
refused. Postoffice may keep running: a message deleted meanwhile is left out.`
)

func runBackup(c *call) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dir := c.args[0]
	if c.verify {
		m, problems, err := backup.Verify(ctx, dir)
		for _, p := range problems {
			fmt.Fprintln(c.stdout, p)
		}
		if err != nil {
			return fail(exitFailure, "backup --verify: %v", err)
		}
		fmt.Fprintf(c.stdout, "backup of %s taken %s: %d users, %d messages (%d bodies), %d queued messages: all present, checksums match\n",
			m.Source, m.Created.Format(time.RFC3339), m.Counts.Users, m.Counts.Messages, len(m.Bodies), len(m.Queue))
		return nil
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	start := time.Now()
	m, err := backup.Backup(ctx, st, dir, backup.Options{Progress: c.progress})
	if err != nil {
		return fail(exitFailure, "backup: %v (DIR holds no backup; run again into an empty directory)", err)
	}
	fmt.Fprintf(c.stdout, "backup of %s written to %s in %s: %d users, %d messages (%d bodies, %d bytes), %d queued messages, %d journal entries\n",
		m.Source, dir, time.Since(start).Round(time.Millisecond), m.Counts.Users, m.Counts.Messages, len(m.Bodies), m.Counts.Bytes, m.Counts.Queue, m.Counts.Journal)
	return nil
}

func (c *call) progress(format string, args ...any) {
	fmt.Fprintf(c.stdout, format+"\n", args...)
}

func runRestore(c *call) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := c.store()
	if err != nil {
		return err
	}
	target, ok := st.(migrate.Store)
	if !ok {
		return fail(exitSoftware, "restore: the backend cannot import")
	}
	start := time.Now()
	s, err := backup.Restore(ctx, c.args[0], target, backup.Options{Progress: c.progress})
	switch {
	case errors.Is(err, backup.ErrNotEmpty):
		return fail(exitUsage, "restore: %v", err)
	case errors.Is(err, backup.ErrDamaged):
		return fail(exitDataErr, "restore: %v", err)
	case err != nil:
		return fail(exitFailure, "restore: %v", err)
	}
	fmt.Fprintf(c.stdout, "restored %d users, %d messages (%d bodies), %d queued messages, %d journal entries in %s; counts match the backup\n",
		s.Users, s.Messages, s.Bodies, s.Queue, s.Journal, time.Since(start).Round(time.Millisecond))
	return nil
}

func runExportMaildir(c *call) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	st, err := c.store()
	if err != nil {
		return err
	}
	es, ok := st.(backup.ExportStore)
	if !ok {
		return fail(exitSoftware, "export: the backend cannot export")
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	if c.userFilter != "" {
		if _, err := c.user(c.userFilter); err != nil {
			return err
		}
	}
	s, err := backup.ExportMaildir(ctx, es, c.args[0], c.userFilter, cfg.Hostname)
	if err != nil {
		return fail(exitFailure, "export maildir: %v", err)
	}
	fmt.Fprintf(c.stdout, "exported %d users, %d messages, %d bytes into %s\n", s.Users, s.Messages, s.Bytes, c.args[0])
	return nil
}
