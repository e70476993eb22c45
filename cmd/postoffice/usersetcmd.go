package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/store"
)

const userSetHelp = `Change a user's attributes; those not given stay as they are.

--login-delay and --expire override the server's POP3 settings for this user
(RFC 2449): the shortest time between two logins (LOGIN-DELAY), a duration
such as 5m or a number of seconds, and how long a message is kept after its
first retrieval (EXPIRE): a number of days, a duration such as 36h, or never.
"default" follows the server again. The user's CAPA shows its own values once
it has logged in.

--spam-reject-score refuses mail to this user that a milter (rspamd) scores
above SCORE (550 5.7.1 at the end of the data) instead of delivering it marked
with X-Spam: yes; "none" (the default) never refuses mail for its score. When a
message has several recipients and one of them refuses it, it is refused for
all: the sender is told and can send again without that recipient.`

func runUserSet(c *call) error {
	if len(c.set) == 0 {
		return fail(exitUsage, "user set: nothing to change (see postoffice user set --help)")
	}
	if c.enable && c.disable {
		return fail(exitUsage, "--enable and --disable exclude each other")
	}
	addr, err := c.address(0)
	if err != nil {
		return err
	}
	var delayVal, expireVal *time.Duration
	if c.set["login-delay"] && c.loginDelay != "default" {
		d, err := config.ParseDuration(c.loginDelay)
		if err != nil || d < 0 {
			return fail(exitUsage, "--login-delay %q: a duration (5m) or a number of seconds, or default", c.loginDelay)
		}
		delayVal = (*time.Duration)(&d)
	}
	if c.set["expire"] && c.expire != "default" {
		x, err := config.ParseExpire(c.expire)
		if err != nil {
			return fail(exitUsage, "--expire: %v", err)
		}
		d := x.Duration()
		expireVal = &d
	}
	var spamVal *float64
	if c.set["spam-reject-score"] && c.spamRejectScore != "none" {
		f, err := strconv.ParseFloat(c.spamRejectScore, 64)
		if err != nil || store.SpamScoreProblem(&f) != "" {
			return fail(exitUsage, "--spam-reject-score %q: a number (15, 7.5) or none", c.spamRejectScore)
		}
		spamVal = &f
	}
	u, err := c.user(addr)
	if err != nil {
		return err
	}
	if c.set["name"] {
		u.DisplayName = c.name
	}
	if c.set["quota"] {
		u.QuotaBytes = int64(c.quota)
	}
	if c.enable {
		u.Enabled = true
	}
	if c.disable {
		u.Enabled = false
	}
	if c.set["login-delay"] {
		u.LoginDelay = delayVal
	}
	if c.set["expire"] {
		u.Expire = expireVal
	}
	if c.set["spam-reject-score"] {
		u.SpamRejectScore = spamVal
	}
	if err := c.st.UpdateUser(context.Background(), u); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "changed %s: %s\n", u.Address, describeUser(u))
	return nil
}

// describeUser is one line of a user's attributes.
func describeUser(u store.User) string {
	delay, expire := "default", "default"
	if u.LoginDelay != nil {
		delay = config.Duration(*u.LoginDelay).String()
	}
	if u.Expire != nil {
		if *u.Expire < 0 {
			expire = "never"
		} else {
			expire = config.ExpireAfter(*u.Expire).String()
		}
	}
	spam := "none"
	if u.SpamRejectScore != nil {
		spam = strconv.FormatFloat(*u.SpamRejectScore, 'g', -1, 64)
	}
	return fmt.Sprintf("name %q, enabled %v, quota %s, login delay %s, expire %s, spam reject score %s",
		u.DisplayName, u.Enabled, quotaText(u.QuotaBytes), delay, expire, spam)
}
