package main

import (
	"context"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const userSetUsage = "ADDRESS [--name NAME] [--quota SIZE] [--enable|--disable] [--login-delay SECONDS|default] [--expire DAYS|never|default]"

var userSetCommand = &command{name: "set", usage: userSetUsage, summary: "change a user's attributes: name, quota, enabled, POP3 login delay and expire", run: runUserSet}

func init() { userCommand.sub = append(userCommand.sub, userSetCommand) }

func runUserSet(e *env, args []string) error {
	fs := newFlags(e, "user set", userSetUsage, `Change a user's attributes; those not given stay as they are.

--login-delay and --expire override the server's POP3 settings for this user
(RFC 2449): the minimum seconds between two logins (LOGIN-DELAY), and how
long a message is kept after its first retrieval (EXPIRE): a number of days,
a duration such as 36h, or never. "default" follows the server again. The
user's CAPA shows its own values once it has logged in.`)
	name := fs.String("name", "", "display name")
	var quota config.Size
	fs.Var(&quota, "quota", "mailbox quota: bytes, or with K, M, G or T (500M, 2G); 0: unlimited")
	enable := fs.Bool("enable", false, "allow the user to log in and receive mail")
	disable := fs.Bool("disable", false, "refuse the user's logins and mail")
	delay := fs.String("login-delay", "", "seconds between logins, or default")
	expire := fs.String("expire", "", "days a retrieved message is kept, never, or default")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if len(set) == 0 {
		return fail(exitUsage, "user set: nothing to change (see postoffice user set --help)")
	}
	if *enable && *disable {
		return fail(exitUsage, "--enable and --disable exclude each other")
	}
	addr, err := addressArg(pos[0])
	if err != nil {
		return err
	}
	var delayVal, expireVal *time.Duration
	if set["login-delay"] && *delay != "default" {
		n, err := strconv.Atoi(strings.TrimSpace(*delay))
		if err != nil || n < 0 {
			return fail(exitUsage, "--login-delay %q: a number of seconds, or default", *delay)
		}
		d := time.Duration(n) * time.Second
		delayVal = &d
	}
	if set["expire"] && *expire != "default" {
		x, err := config.ParseExpire(*expire)
		if err != nil {
			return fail(exitUsage, "--expire: %v", err)
		}
		d := x.Duration()
		expireVal = &d
	}
	return e.withStore(func(st store.Store) error {
		return e.withUser(st, addr, func(u store.User) error {
			if set["name"] {
				u.DisplayName = *name
			}
			if set["quota"] {
				u.QuotaBytes = int64(quota)
			}
			if *enable {
				u.Enabled = true
			}
			if *disable {
				u.Enabled = false
			}
			if set["login-delay"] {
				u.LoginDelay = delayVal
			}
			if set["expire"] {
				u.Expire = expireVal
			}
			if err := st.UpdateUser(context.Background(), u); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "changed %s: %s\n", u.Address, describeUser(u))
			return nil
		})
	})
}

// describeUser is one line of a user's attributes.
func describeUser(u store.User) string {
	quota := "unlimited"
	if u.QuotaBytes > 0 {
		quota = config.Size(u.QuotaBytes).String()
	}
	delay, expire := "default", "default"
	if u.LoginDelay != nil {
		delay = fmt.Sprintf("%ds", int64(*u.LoginDelay/time.Second))
	}
	if u.Expire != nil {
		if *u.Expire < 0 {
			expire = "never"
		} else {
			expire = config.ExpireAfter(*u.Expire).String()
		}
	}
	return fmt.Sprintf("name %q, enabled %v, quota %s, login delay %s, expire %s", u.DisplayName, u.Enabled, quota, delay, expire)
}
