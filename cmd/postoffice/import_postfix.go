package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/importer/postfix"
)

var importPostfixCommand = &command{name: "postfix", usage: "--main-cf FILE [--dry-run]",
	needs: needsNewStore, flags: []option{optMainCF, optDryRun},
	summary: "import the virtual domains, mailboxes and aliases of a Postfix configuration", help: importPostfixHelp, run: runImportPostfix}

var optMainCF option = func(fs *flag.FlagSet, o *opts) {
	fs.StringVar(&o.imp.mainCF, "main-cf", "", "Postfix's main.cf (e.g. /etc/postfix/main.cf) (required)")
}

const importPostfixHelp = `Import the domains, users and aliases of a Postfix configuration that
delivers to virtual mailboxes: the domains of virtual_mailbox_domains and
virtual_alias_domains, a user for each address of virtual_mailbox_maps, an
alias for each entry of virtual_alias_maps (several targets, and @DOMAIN
catch-alls). The tables are read from their text source, the file beside
the .db that postmap makes (hash:, btree:, lmdb:, cdb:, dbm:, sdbm:), or
the text file of texthash:; $parameters in main.cf are expanded as postconf
-x does, and of several tables the first with a key counts, as in Postfix.

The users have no password (Postfix's maps hold none; Dovecot's passdb
does: postoffice import dovecot --passwd-file brings them): they cannot log
in until one is set with postoffice user passwd ADDRESS. What postoffice
cannot express is listed and not imported: catch-all mailboxes, aliases
without a domain, rewriting one domain to another, an address that is both
a mailbox and an alias, tables of other types (regexp:, pcre:, mysql:,
ldap:...). Users and aliases that exist already are kept. The source is
only read; run again, the import adds only what is missing.`

func runImportPostfix(c *call) error {
	if c.imp.mainCF == "" {
		return fail(exitUsage, "import postfix: --main-cf FILE is required")
	}
	plan, err := postfix.Read(c.imp.mainCF)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return fail(exitNoInput, "import postfix: %v", err)
	}
	if err != nil {
		return fail(exitDataErr, "import postfix: %v", err)
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	r, err := postfix.Apply(ctx, plan, st, c.imp.dryRun)
	if err != nil {
		return fail(exitFailure, "import postfix: %v (run again to resume)", err)
	}
	verb := "imported"
	if c.imp.dryRun {
		verb = "would import (dry run, nothing changed)"
	}
	fmt.Fprintf(c.stdout, "%s from %s: %d domains, %d users, %d aliases (%d there already)\n",
		verb, c.imp.mainCF, r.Domains, r.Users, r.Aliases, r.Existing)
	for _, d := range plan.Domains {
		fmt.Fprintf(c.stdout, "domain %s\n", d)
	}
	for _, u := range plan.Users {
		fmt.Fprintf(c.stdout, "user %s\n", u.Address)
	}
	for _, a := range plan.Aliases {
		fmt.Fprintf(c.stdout, "alias %s -> %s\n", a.Address, strings.Join(a.Targets, ", "))
	}
	if len(plan.Users) > 0 {
		fmt.Fprintf(c.stdout, "The users have no password (Postfix's maps hold none): each needs one, set with\n  postoffice user passwd ADDRESS\nor their hashes imported from Dovecot's passdb with postoffice import dovecot --passwd-file FILE.\n")
	}
	for _, n := range plan.Notes {
		fmt.Fprintf(c.stdout, "note: %s\n", n)
	}
	problems := append(plan.Problems, r.Problems...)
	for _, p := range problems {
		fmt.Fprintf(c.stdout, "not imported: %s\n", p)
	}
	if len(problems) > 0 {
		fmt.Fprintf(c.stdout, "%d entries not imported: see above\n", len(problems))
	}
	return nil
}
