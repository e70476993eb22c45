package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/migrate"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
)

const migrateSummary = "copy every user, mailbox, queued message and journal entry from one store to another"

const migrateHelp = migrateSummary + `.

Reads the store of the --from configuration ([store] backend and data_dir or
postgres_dsn) and writes into that of --to: domains, users (password hashes,
UID validities and next UIDs kept), extra addresses, aliases, web console
operators, every mailbox with its messages' UIDs (so POP3 clients see the same
UIDLs and download nothing twice), the outbound queue, the mail journal, and
the ACME account and certificates and the secret of profile links (so that
nothing is obtained again and the links given out keep working). A body
shared by several mailboxes stays shared.

The copy can be run again: what the target has already is skipped, so an
interrupted copy resumes, and a copy made while the source still serves is
completed by a second run once postoffice is stopped on it. The target should
be new. At the end both stores are counted; different counts (the source
changed meanwhile, or the target had data of its own) give exit status 1.

Example, from the embedded store to PostgreSQL:
  postoffice migrate --from /etc/postoffice.toml --to /etc/postoffice-pg.toml`

func runMigrate(c *call) error {
	if c.fromConfig == "" || c.toConfig == "" {
		c.fs.Usage()
		return fail(exitUsage, "migrate: --from and --to are both needed")
	}
	cfgFrom, err := config.Load(c.fromConfig)
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	cfgTo, err := config.Load(c.toConfig)
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	if sameStore(cfgFrom, cfgTo) {
		return fail(exitUsage, "migrate: --from and --to name the same store")
	}

	src, err := openStore(cfgFrom, needsStore, newLogger(c.stderr, cfgFrom.Log))
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := openStore(cfgTo, needsNewStore, newLogger(c.stderr, cfgTo.Log))
	if err != nil {
		return err
	}
	defer dst.Close()
	msrc, ok1 := src.(migrate.Store)
	mdst, ok2 := dst.(migrate.Store)
	if !ok1 || !ok2 {
		return fail(exitSoftware, "migrate: a backend cannot export or import")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(c.stdout, "copying %s into %s\n", describeStore(cfgFrom), describeStore(cfgTo))
	st, err := migrate.Copy(ctx, msrc, mdst, migrate.Options{Progress: func(format string, a ...any) {
		fmt.Fprintf(c.stdout, format+"\n", a...)
	}})
	if err != nil {
		return fail(exitFailure, "migrate: %v (run again to resume)", err)
	}
	fmt.Fprintf(c.stdout, "copied %d users, %d messages (%d bodies), %d queued messages, %d journal entries\n",
		st.Users, st.Messages, st.Bodies, st.Queue, st.Journal)

	cs, err := migrate.Count(ctx, msrc)
	if err != nil {
		return fail(exitFailure, "migrate: counting the source: %v", err)
	}
	cd, err := migrate.Count(ctx, mdst)
	if err != nil {
		return fail(exitFailure, "migrate: counting the target: %v", err)
	}
	fmt.Fprintf(c.stdout, "%-16s %12s %12s\n", "", "source", "target")
	rs, rd := cs.Rows(), cd.Rows()
	for i := range rs {
		mark := ""
		if rs[i].Value != rd[i].Value {
			mark = "  differs"
		}
		fmt.Fprintf(c.stdout, "%-16s %12d %12d%s\n", rs[i].Name, rs[i].Value, rd[i].Value, mark)
	}
	if cs != cd {
		return fail(exitFailure, "migrate: the counts differ: if the source changed during the copy, stop postoffice on it and run migrate again")
	}
	fmt.Fprintln(c.stdout, "counts match")
	return nil
}

// sameStore reports whether two configurations name the same store.
func sameStore(a, b config.Config) bool {
	if a.Store.Backend != b.Store.Backend {
		return false
	}
	if a.Store.Backend == config.BackendPostgres {
		return a.Store.PostgresDSN == b.Store.PostgresDSN
	}
	pa, err1 := filepath.Abs(a.DataDir)
	pb, err2 := filepath.Abs(b.DataDir)
	return err1 == nil && err2 == nil && pa == pb
}

// describeStore names a store without any secret.
func describeStore(c config.Config) string {
	if c.Store.Backend == config.BackendPostgres {
		return "PostgreSQL (" + postgres.RedactDSN(c.Store.PostgresDSN) + ")"
	}
	return "the embedded store in " + c.DataDir
}
