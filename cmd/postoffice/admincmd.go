package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// minAdminPassword is the shortest operator password: the web console can
// change everything (NIST SP 800-63B section 5.1.1.1: at least 8).
const minAdminPassword = 8

var adminCommand = &command{
	name:    "admin",
	usage:   "add|passwd|del|list",
	summary: "manage the operator accounts of the web console",
	sub: []*command{
		{name: "add", usage: "NAME [--password-stdin]", summary: "add an operator account for the web console", run: runAdminAdd},
		{name: "passwd", usage: "NAME [--password-stdin]", summary: "change an operator's password", run: runAdminPasswd},
		{name: "del", usage: "NAME", summary: "delete an operator account", run: runAdminDel},
		{name: "list", summary: "list the operator accounts", run: runAdminList},
	},
}

func runAdminAdd(e *env, args []string) error {
	fs := newFlags(e, "admin add", "NAME [--password-stdin]", `Add an operator account that signs in to the web console ([admin] listen).
NAME is 1 to 64 letters, digits, '.', '_', '@' or '-'. The password is read
from standard input with --password-stdin, otherwise prompted for twice on
the terminal; it needs at least `+fmt.Sprint(minAdminPassword)+` characters (the console can change
everything), is stored as an argon2id hash and is never taken from the
command line.`)
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	pos, err := e.parseArgs(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if err := noPasswordArg(pos, 1, "admin add NAME"); err != nil {
		return err
	}
	pw, err := e.readPassword(*fromStdin, minAdminPassword)
	if err != nil {
		return err
	}
	hash, err := directory.HashPassword(pw)
	if err != nil {
		return err
	}
	return e.withNewStore(func(st store.Store) error {
		err := st.AddAdmin(context.Background(), store.Admin{Name: pos[0], PasswordHash: hash})
		switch {
		case errors.Is(err, store.ErrExists):
			return fail(exitFailure, "admin %s already exists", pos[0])
		case errors.Is(err, store.ErrInvalid):
			return fail(exitUsage, "%v", err)
		case err != nil:
			return err
		}
		fmt.Fprintf(e.stdout, "added admin %s\n", pos[0])
		return nil
	})
}

func runAdminPasswd(e *env, args []string) error {
	fs := newFlags(e, "admin passwd", "NAME [--password-stdin]", "Change the password of an operator account of the web console (at least\n"+fmt.Sprint(minAdminPassword)+" characters).")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	pos, err := e.parseArgs(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if err := noPasswordArg(pos, 1, "admin passwd NAME"); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		ctx := context.Background()
		if _, err := st.AdminByName(ctx, pos[0]); errors.Is(err, store.ErrNotFound) {
			return fail(exitFailure, "no admin %s", pos[0])
		} else if err != nil {
			return err
		}
		pw, err := e.readPassword(*fromStdin, minAdminPassword)
		if err != nil {
			return err
		}
		hash, err := directory.HashPassword(pw)
		if err != nil {
			return err
		}
		if err := st.SetAdminPassword(ctx, pos[0], hash); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "changed password of admin %s\n", pos[0])
		return nil
	})
}

func runAdminDel(e *env, args []string) error {
	fs := newFlags(e, "admin del", "NAME", "Delete an operator account of the web console; its console sessions end at\nonce (the next page it asks for sends it to the sign-in page).")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		if err := st.DeleteAdmin(context.Background(), pos[0]); errors.Is(err, store.ErrNotFound) {
			return fail(exitFailure, "no admin %s", pos[0])
		} else if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "deleted admin %s\n", pos[0])
		return nil
	})
}

func runAdminList(e *env, args []string) error {
	fs := newFlags(e, "admin list", "", "List the operator accounts of the web console with the time each was added.\nThe console is served when [admin] listen is set; with no account, nobody\ncan sign in (serve says so when it starts).")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		as, err := st.ListAdmins(context.Background())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCREATED")
		for _, a := range as {
			fmt.Fprintf(tw, "%s\t%s\n", a.Name, a.CreatedAt.Local().Format("2006-01-02 15:04"))
		}
		return tw.Flush()
	})
}
