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

var userCommand = &command{
	name:    "user",
	usage:   "add|passwd|del|list",
	summary: "manage users: each user has one mailbox and logs in with its full address",
	sub: []*command{
		{name: "add", usage: "ADDRESS [--password-stdin] [--name NAME] [--quota SIZE]", summary: "add a user (and its domain if new)", run: runUserAdd},
		{name: "passwd", usage: "ADDRESS [--password-stdin]", summary: "change a user's password", run: runUserPasswd},
		{name: "del", usage: "ADDRESS", summary: "delete a user and its mailbox", run: runUserDel},
		{name: "list", summary: "list users with their mailbox usage", run: runUserList},
	},
}

func addressArg(s string) (string, error) {
	a, err := address.Normalize(s)
	if err != nil {
		return "", fail(exitUsage, "%q is not a valid address: %v", s, err)
	}
	return a, nil
}

func runUserAdd(e *env, args []string) error {
	fs := newFlags(e, "user add", "ADDRESS [--password-stdin] [--name NAME] [--quota SIZE]",
		"Add a user. The password is read from standard input with --password-stdin,\notherwise prompted for on the terminal; never from the command line. The\nlogin name is the full address. Example:\n\n  echo 'correct horse' | postoffice user add you@example.com --password-stdin --quota 2G")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	name := fs.String("name", "", "display name")
	var quota config.Size
	fs.Var(&quota, "quota", "mailbox quota: bytes, or with K, M, G or T (500M, 2G); 0: unlimited")
	pos, err := e.parseArgs(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if err := noPasswordArg(pos, 1, "user add ADDRESS"); err != nil {
		return err
	}
	addr, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	pw, err := e.readPassword(*fromStdin, 1)
	if err != nil {
		return err
	}
	hash, err := directory.HashPassword(pw)
	if err != nil {
		return err
	}
	return e.withNewStore(func(st store.Store) error {
		_, err := st.AddUser(context.Background(), store.User{
			Address: addr, DisplayName: *name, PasswordHash: hash, Enabled: true, QuotaBytes: int64(quota),
		})
		if errors.Is(err, store.ErrExists) {
			return fail(exitFailure, "%s already exists (as a user, address or alias)", addr)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "added user %s\n", addr)
		return nil
	})
}

func runUserPasswd(e *env, args []string) error {
	fs := newFlags(e, "user passwd", "ADDRESS [--password-stdin]", "Change a user's password. The new password is read from standard input with\n--password-stdin, otherwise prompted for twice on the terminal; it is stored\nas an argon2id hash. Sessions already open are not affected.")
	fromStdin := fs.Bool("password-stdin", false, "read the password from the first line of standard input")
	pos, err := e.parseArgs(fs, args, 1, 2)
	if err != nil {
		return err
	}
	if err := noPasswordArg(pos, 1, "user passwd ADDRESS"); err != nil {
		return err
	}
	addr, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		return e.withUser(st, addr, func(u store.User) error {
			pw, err := e.readPassword(*fromStdin, 1)
			if err != nil {
				return err
			}
			if u.PasswordHash, err = directory.HashPassword(pw); err != nil {
				return err
			}
			if err := st.UpdateUser(context.Background(), u); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "changed password of %s\n", u.Address)
			return nil
		})
	})
}

func runUserDel(e *env, args []string) error {
	fs := newFlags(e, "user del", "ADDRESS", "Delete a user, its extra addresses and its mailbox with every message in it.\nIts UIDs are never given to anyone again (a new user of the same address\ngets another UID validity, RFC 1939 section 7).")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	addr, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		return e.withUser(st, addr, func(u store.User) error {
			if err := st.DeleteUser(context.Background(), u.ID); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "deleted user %s\n", u.Address)
			return nil
		})
	})
}

func runUserList(e *env, args []string) error {
	fs := newFlags(e, "user list", "", "List users with their display name, whether they are enabled, the messages\nand octets in their mailbox and their quota.")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		ctx := context.Background()
		users, err := st.ListUsers(ctx)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ADDRESS\tNAME\tENABLED\tMESSAGES\tBYTES\tQUOTA")
		for _, u := range users {
			n, size, err := st.Usage(ctx, u.ID)
			if err != nil {
				return err
			}
			quota := "unlimited"
			if u.QuotaBytes > 0 {
				quota = config.Size(u.QuotaBytes).String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t%s\n", u.Address, u.DisplayName, u.Enabled, n, size, quota)
		}
		return tw.Flush()
	})
}

// noPasswordArg refuses a password given as an argument after the n
// expected ones, saying how to give it instead.
func noPasswordArg(pos []string, n int, cmd string) error {
	if len(pos) <= n {
		return nil
	}
	return fail(exitUsage, "passwords are never taken from the command line (ps and the shell's history would show them): "+
		"type it at the prompt, or give it on standard input: echo 'PASSWORD' | postoffice %s --password-stdin", cmd)
}

// readPassword reads a new password from stdin's first line, or prompts
// twice on the terminal; it must have at least minLen characters.
// Passwords never come from arguments (they would show in ps and shell
// history).
func (e *env) readPassword(fromStdin bool, minLen int) (string, error) {
	var pw string
	if fromStdin {
		line, err := bufio.NewReader(e.stdin).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", fail(exitUsage, "--password-stdin: no password on standard input")
		}
		pw = strings.TrimRight(line, "\r\n")
	} else {
		f, ok := e.stdin.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return "", fail(exitUsage, "standard input is not a terminal: use --password-stdin")
		}
		fmt.Fprint(e.stderr, "Password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(e.stderr, "Again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(e.stderr)
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

var userAddrCommand = &command{
	name:    "addr",
	usage:   "add|del|list",
	summary: "manage a user's extra addresses (they deliver into the same mailbox)",
	sub: []*command{
		{name: "add", usage: "USER ADDRESS", summary: "give USER the extra address ADDRESS", run: runUserAddrAdd},
		{name: "del", usage: "ADDRESS", summary: "remove an extra address", run: runUserAddrDel},
		{name: "list", usage: "USER", summary: "list a user's extra addresses", run: runUserAddrList},
	},
}

func init() { userCommand.sub = append(userCommand.sub, userAddrCommand) }

// withUser looks a user up by address and runs f with it.
func (e *env) withUser(st store.Store, addr string, f func(store.User) error) error {
	u, err := st.UserByAddress(context.Background(), addr)
	if errors.Is(err, store.ErrNotFound) {
		return fail(exitNoUser, "no user %s", addr)
	}
	if err != nil {
		return err
	}
	return f(u)
}

func runUserAddrAdd(e *env, args []string) error {
	fs := newFlags(e, "user addr add", "USER ADDRESS", "Give USER the extra address ADDRESS: mail to it lands in USER's mailbox, and\nUSER may send from it (the login name stays the primary address). Adds its\ndomain if new. The address must not be a user, an extra address or an alias\nalready.")
	pos, err := e.parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	user, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	extra, err := addressArg(pos[1])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		return e.withUser(st, user, func(u store.User) error {
			if err := st.AddAddress(context.Background(), u.ID, extra); err != nil {
				if errors.Is(err, store.ErrExists) {
					return fail(exitFailure, "%s already exists (as a user, address or alias)", extra)
				}
				return err
			}
			fmt.Fprintf(e.stdout, "%s now also receives mail for %s\n", u.Address, extra)
			return nil
		})
	})
}

func runUserAddrDel(e *env, args []string) error {
	fs := newFlags(e, "user addr del", "ADDRESS", "Remove an extra address; mail to it is refused from then on. A primary address\ngoes only with its user (user del).")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	extra, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		if err := st.DeleteAddress(context.Background(), extra); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fail(exitFailure, "no extra address %s", extra)
			}
			return err
		}
		fmt.Fprintf(e.stdout, "removed address %s\n", extra)
		return nil
	})
}

func runUserAddrList(e *env, args []string) error {
	fs := newFlags(e, "user addr list", "USER", "List a user's extra addresses, one per line, sorted (the primary address,\nits login name, is not listed).")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	user, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		return e.withUser(st, user, func(u store.User) error {
			addrs, err := st.ListAddresses(context.Background(), u.ID)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				fmt.Fprintln(e.stdout, a)
			}
			return nil
		})
	})
}
