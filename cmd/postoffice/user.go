package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const (
	userAddHelp = `Add a user. The password is read from standard input with --password-stdin,
otherwise prompted for on the terminal; never from the command line. The
login name is the full address. Example:

  echo 'correct horse' | postoffice user add you@example.com --password-stdin --quota 2G`
	userPasswdHelp = `Change a user's password. The new password is read from standard input with
--password-stdin, otherwise prompted for twice on the terminal; it is stored
as an argon2id hash. Sessions already open are not affected.`
	userDelHelp = `Delete a user, its extra addresses and its mailbox with every message in it.
Its UIDs are never given to anyone again (a new user of the same address
gets another UID validity, RFC 1939 section 7).`
	userListHelp = `List users with their display name, whether they are enabled, the messages
and octets in their mailbox and their quota.`
	userAddrAddHelp = `Give USER the extra address ADDRESS: mail to it lands in USER's mailbox, and
USER may send from it (the login name stays the primary address). Adds its
domain if new. The address must not be a user, an extra address or an alias
already.`
	userAddrDelHelp = `Remove an extra address; mail to it is refused from then on. A primary address
goes only with its user (user del).`
	userAddrListHelp = `List a user's extra addresses, one per line, sorted (the primary address,
its login name, is not listed).`
)

// addressArg checks and normalises an address argument.
func addressArg(s string) (string, error) {
	a, err := address.Normalize(s)
	if err != nil {
		return "", fail(exitUsage, "%q is not a valid address: %v", s, err)
	}
	return a, nil
}

func runUserAdd(c *call) error {
	addr, err := c.address(0)
	if err != nil {
		return err
	}
	pw, err := c.readPassword(1)
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
	_, err = st.AddUser(context.Background(), store.User{
		Address: addr, DisplayName: c.name, PasswordHash: hash, Enabled: true, QuotaBytes: int64(c.quota),
	})
	if errors.Is(err, store.ErrExists) {
		return fail(exitFailure, "%s already exists (as a user, address or alias)", addr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "added user %s\n", addr)
	c.domainsChanged() // its domain may be new
	return nil
}

func runUserPasswd(c *call) error {
	addr, err := c.address(0)
	if err != nil {
		return err
	}
	u, err := c.user(addr)
	if err != nil {
		return err
	}
	pw, err := c.readPassword(1)
	if err != nil {
		return err
	}
	if u.PasswordHash, err = directory.HashPassword(pw); err != nil {
		return err
	}
	if err := c.st.UpdateUser(context.Background(), u); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "changed password of %s\n", u.Address)
	return nil
}

func runUserDel(c *call) error {
	addr, err := c.address(0)
	if err != nil {
		return err
	}
	u, err := c.user(addr)
	if err != nil {
		return err
	}
	if err := c.st.DeleteUser(context.Background(), u.ID); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "deleted user %s\n", u.Address)
	return nil
}

func runUserList(c *call) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	users, err := st.ListUsers(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ADDRESS\tNAME\tENABLED\tMESSAGES\tBYTES\tQUOTA")
	for _, u := range users {
		n, size, err := st.Usage(ctx, u.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\n", u.Address, u.DisplayName, u.Enabled, n, size, quotaText(u.QuotaBytes))
	}
	return tw.Flush()
}

// quotaText is a quota as --quota takes it.
func quotaText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return config.Size(n).String()
}

// readPassword reads a new password from stdin's first line with
// --password-stdin, or prompts twice on the terminal; it must have at
// least minLen characters. Passwords never come from arguments (they
// would show in ps and shell history).
func (c *call) readPassword(minLen int) (string, error) {
	var pw string
	if c.passwordStdin {
		line, err := bufio.NewReader(c.stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fail(exitUsage, "--password-stdin: no password on standard input")
		}
		pw = strings.TrimRight(line, "\r\n")
	} else {
		f, ok := c.stdin.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return "", fail(exitUsage, "standard input is not a terminal: use --password-stdin")
		}
		fmt.Fprint(c.stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(c.stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", fail(exitUsage, "the passwords do not match")
		}
		pw = string(a)
	}
	if pw == "" {
		return "", fail(exitUsage, "the password must not be empty")
	}
	if n := utf8.RuneCountInString(pw); n < minLen {
		return "", fail(exitUsage, "the password is too short (%d characters): at least %d", n, minLen)
	}
	return pw, nil
}

func runUserAddrAdd(c *call) error {
	user, err := c.address(0)
	if err != nil {
		return err
	}
	extra, err := c.address(1)
	if err != nil {
		return err
	}
	u, err := c.user(user)
	if err != nil {
		return err
	}
	if err := c.st.AddAddress(context.Background(), u.ID, extra); err != nil {
		if errors.Is(err, store.ErrExists) {
			return fail(exitFailure, "%s already exists (as a user, address or alias)", extra)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "%s now also receives mail for %s\n", u.Address, extra)
	return nil
}

func runUserAddrDel(c *call) error {
	extra, err := c.address(0)
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	if err := st.DeleteAddress(context.Background(), extra); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fail(exitFailure, "no extra address %s", extra)
		}
		return err
	}
	fmt.Fprintf(c.stdout, "removed address %s\n", extra)
	return nil
}

func runUserAddrList(c *call) error {
	user, err := c.address(0)
	if err != nil {
		return err
	}
	u, err := c.user(user)
	if err != nil {
		return err
	}
	addrs, err := c.st.ListAddresses(context.Background(), u.ID)
	if err != nil {
		return err
	}
	for _, a := range addrs {
		fmt.Fprintln(c.stdout, a)
	}
	return nil
}
