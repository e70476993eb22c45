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

var (
	adminAddHelp = `Add an operator account that signs in to the web console ([admin] listen).
NAME is 1 to 64 letters, digits, '.', '_', '@' or '-'. The password is read
from standard input with --password-stdin, otherwise prompted for twice on
the terminal; it needs at least ` + fmt.Sprint(minAdminPassword) + ` characters (the console can change
everything), is stored as an argon2id hash and is never taken from the
command line.`
	adminPasswdHelp = "Change the password of an operator account of the web console (at least\n" + fmt.Sprint(minAdminPassword) + " characters)."
)

const (
	adminDelHelp = `Delete an operator account of the web console; its console sessions end at
once (the next page it asks for sends it to the sign-in page).`
	adminListHelp = `List the operator accounts of the web console with the time each was added.
The console is served when [admin] listen is set; with no account, nobody
can sign in (serve says so when it starts).`
)

func runAdminAdd(c *call) error {
	name := c.args[0]
	pw, err := c.readPassword(minAdminPassword)
	if err != nil {
		return err
	}
	hash, err := directory.HashPassword(pw)
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	err = st.AddAdmin(context.Background(), store.Admin{Name: name, PasswordHash: hash})
	switch {
	case errors.Is(err, store.ErrExists):
		return fail(exitFailure, "admin %s already exists", name)
	case errors.Is(err, store.ErrInvalid):
		return fail(exitUsage, "%v", err)
	case err != nil:
		return err
	}
	fmt.Fprintf(c.stdout, "added admin %s\n", name)
	return nil
}

func runAdminPasswd(c *call) error {
	name := c.args[0]
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if _, err := st.AdminByName(ctx, name); errors.Is(err, store.ErrNotFound) {
		return fail(exitFailure, "no admin %s", name)
	} else if err != nil {
		return err
	}
	pw, err := c.readPassword(minAdminPassword)
	if err != nil {
		return err
	}
	hash, err := directory.HashPassword(pw)
	if err != nil {
		return err
	}
	if err := st.SetAdminPassword(ctx, name, hash); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "changed password of admin %s\n", name)
	return nil
}

func runAdminDel(c *call) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := st.DeleteAdmin(context.Background(), c.args[0]); errors.Is(err, store.ErrNotFound) {
		return fail(exitFailure, "no admin %s", c.args[0])
	} else if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "deleted admin %s\n", c.args[0])
	return nil
}

func runAdminList(c *call) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	as, err := st.ListAdmins(context.Background())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCREATED")
	for _, a := range as {
		fmt.Fprintf(tw, "%s\t%s\n", a.Name, a.CreatedAt.Local().Format("2006-01-02 15:04"))
	}
	return tw.Flush()
}
