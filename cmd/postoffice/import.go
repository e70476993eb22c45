package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"github.com/postoffice-mail/postoffice/internal/importer"
)

// The import commands: mail, users and passwords moved in from another
// server. The group is one table entry in commands.go; each source is one
// entry of importCommands.

// importOpts are the options of the import commands.
type importOpts struct {
	mailRoot   string
	layout     string
	passwdFile string
	domain     string
	uidlFormat string
	uidlFrom   string
	user       string
	mainCF     string // import_postfix.go
	dryRun     bool
}

var (
	optMailRoot option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.mailRoot, "mail-root", "", "the directory under which the users' maildirs are (required)")
	}
	optLayout option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.layout, "layout", importer.DefaultLayout, "where a user's maildir is under the mail root, with Dovecot's %u (user@domain), %n (user), %d (domain)")
	}
	optPasswdFile option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.passwdFile, "passwd-file", "", "Dovecot passwd-file with the users and their password hashes")
	}
	optDomain option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.domain, "domain", "", "domain of the user names that have none")
	}
	optUIDLFormat option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.uidlFormat, "uidl-format", importer.DefaultUIDLFormat, "Dovecot's pop3_uidl_format (%u UID, %v UIDVALIDITY, %g GUID, %f file name)")
	}
	optUIDLFrom option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.uidlFrom, "uidl-from", importer.UIDLFromFilename, "where the unique-ids come from: filename, or courier (courierpop3dsizelist)")
	}
	optImportUser option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.imp.user, "user", "", "the user (address) the mail is for")
	}
	optDryRun option = func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.imp.dryRun, "dry-run", false, "report what would be imported and change nothing")
	}
)

// importCommands are the sources of postoffice import.
var importCommands = []*command{
	{name: "dovecot", usage: `--mail-root DIR [--layout "%d/%n"] [--passwd-file FILE] [--domain DOMAIN] [--uidl-format FORMAT] [--user ADDRESS] [--dry-run]`,
		needs: needsNewStore, flags: []option{optMailRoot, optLayout, optPasswdFile, optDomain, optUIDLFormat, optImportUser, optDryRun},
		summary: "import the users, passwords and mail of a Dovecot server, keeping its POP3 unique-ids", help: importDovecotHelp, run: runImportDovecot},
	{name: "maildir", usage: "DIR --user ADDRESS [--uidl-from filename|courier] [--dry-run]", args: [2]int{1, 1},
		needs: needsNewStore, flags: []option{optImportUser, optUIDLFrom, optDryRun},
		summary: "import one user's maildir (Courier's, or any)", help: importMaildirHelp, run: runImportMaildir},
	{name: "mbox", usage: "FILE --user ADDRESS [--dry-run]", args: [2]int{1, 1},
		needs: needsNewStore, flags: []option{optImportUser, optDryRun},
		summary: "import one user's mbox (qpopper's X-UIDL unique-ids kept)", help: importMboxHelp, run: runImportMbox},
	importPostfixCommand,
}

// importCommand is the group's entry in the command table.
func importCommand() *command {
	return &command{name: "import", usage: "dovecot|maildir|mbox|postfix ...",
		summary: "move users and mail in from another server, keeping POP3 unique-ids and passwords", sub: importCommands}
}

const importDovecotHelp = `Import the users, their password hashes and their mail from a Dovecot
server's maildirs, so that POP3 clients that leave mail on the server see
the same messages with the same unique-ids (UIDL) and download nothing
again, and users log in with their old passwords.

Users come from --passwd-file (Dovecot's passwd-file: user:{SCHEME}hash:...)
or, without one, from every maildir the layout finds under --mail-root.
Unique-ids are Dovecot's: the P field of dovecot-uidlist where there is
one, else --uidl-format (Dovecot's pop3_uidl_format) from the UID,
UIDVALIDITY and GUID there. Message sizes are those Dovecot's LIST showed.
Passwords (BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT, ARGON2I, ARGON2ID,
PBKDF2, SSHA512, SSHA, PLAIN) keep working and are replaced with
postoffice's own hash at each user's next login; CRAM-MD5 hashes cannot
be used: those users need a new password (postoffice user passwd).

The source is only read. Stop Dovecot (or its deliveries) first. Run again,
the import adds only what is missing.`

const importMaildirHelp = `Import one user's maildir (new/ and cur/) into the user's mailbox,
creating the user (without a password) if needed. The unique-ids are the
file names up to their flags (--uidl-from filename), or those Courier's
pop3d showed, from its courierpop3dsizelist (--uidl-from courier). The
source is only read; run again, the import adds only what is missing.`

const importMboxHelp = `Import one user's mbox file into the user's mailbox, creating the user
(without a password) if needed. A message's unique-id is its X-UIDL header
field (qpopper's), or the MD5 of the message when it has none. Lines
quoted as ">From " lose one ">" (mboxrd and mboxo). The source is only
read; run again, the import adds only what is missing.`

func runImportDovecot(c *call) error {
	if c.imp.mailRoot == "" {
		return fail(exitUsage, "import dovecot: --mail-root DIR is required")
	}
	d := importer.Dovecot{MailRoot: c.imp.mailRoot, Layout: c.imp.layout, PasswdFile: c.imp.passwdFile,
		Domain: c.imp.domain, UIDLFormat: c.imp.uidlFormat, User: c.imp.user}
	boxes, err := d.Mailboxes()
	if err != nil {
		return sourceError(err)
	}
	return runImport(c, boxes)
}

func runImportMaildir(c *call) error {
	if c.imp.user == "" {
		return fail(exitUsage, "import maildir: --user ADDRESS is required")
	}
	b, err := importer.Maildir(c.args[0], c.imp.user, c.imp.uidlFrom)
	if err != nil {
		return sourceError(err)
	}
	return runImport(c, []importer.Mailbox{b})
}

func runImportMbox(c *call) error {
	if c.imp.user == "" {
		return fail(exitUsage, "import mbox: --user ADDRESS is required")
	}
	b, err := importer.Mbox(c.args[0], c.imp.user)
	if err != nil {
		return sourceError(err)
	}
	return runImport(c, []importer.Mailbox{b})
}

// sourceError: a source that is absent is 66 (EX_NOINPUT), one that
// cannot be read or understood 65 (EX_DATAERR).
func sourceError(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fail(exitNoInput, "%v", err)
	}
	return fail(exitDataErr, "%v", err)
}

func runImport(c *call, boxes []importer.Mailbox) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := importer.Import(ctx, st, boxes, importer.Options{DryRun: c.imp.dryRun,
		Progress: func(addr string, imported, skipped int) {
			if !c.imp.dryRun {
				fmt.Fprintf(c.stderr, "%s: %d messages imported, %d already there\n", addr, imported, skipped)
			}
		}})
	if r != nil {
		r.Print(c.stdout)
	}
	if err != nil {
		return tempFail(fmt.Errorf("import stopped (run it again to resume): %w", err))
	}
	return nil
}
