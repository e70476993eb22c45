package main

import (
	"flag"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
)

// opts holds the options of every command; a command's entry in the table
// lists those it takes, and its run function reads them from its call.
type opts struct {
	passwordStdin bool
	name          string
	quota         config.Size
	json          bool
	cpuProfile    string
	allocProfile  string
	to, sender    string // deliver
	bounce        bool
	grace         time.Duration
	enable        bool
	disable       bool
	loginDelay    string
	expire        string
	since         string
	userFilter    string
	event         string
	grep          string
	limit         int
	fromConfig    string // migrate
	toConfig      string
	selector      string // dkim keygen
	algorithm     string
	// spamRejectScore: user set --spam-reject-score, a number or "none".
	spamRejectScore string
	imp             importOpts // import.go
	verify          bool       // backup
}

// option declares one option: each is declared once here, whichever
// commands take it.
type option func(fs *flag.FlagSet, o *opts)

var (
	optPasswordStdin option = func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	}
	optName  option = func(fs *flag.FlagSet, o *opts) { fs.StringVar(&o.name, "name", "", "display name") }
	optQuota option = func(fs *flag.FlagSet, o *opts) {
		fs.Var(&o.quota, "quota", "mailbox quota: bytes, or with K, M, G or T (500M, 2G); 0: unlimited")
	}
	optCPUProfile option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile (go tool pprof) to this file until shutdown")
	}
	optAllocProfile option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.allocProfile, "allocprofile", "", "write an allocation profile (go tool pprof: every allocation since the start, sampled) to this file at shutdown")
	}
	optTo     option = func(fs *flag.FlagSet, o *opts) { fs.StringVar(&o.to, "to", "", "recipient address (required)") }
	optSender option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.sender, "from", "", "envelope sender, recorded as Return-Path (default: the null sender <>)")
	}
	optBounce option = func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.bounce, "bounce", false, "notify the sender that the message will not be delivered")
	}
	optGrace option = func(fs *flag.FlagSet, o *opts) {
		fs.DurationVar(&o.grace, "grace", control.DefaultGrace, "how long open sessions may take to finish")
	}
	optEnable option = func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.enable, "enable", false, "allow the user to log in and receive mail")
	}
	optDisable option = func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.disable, "disable", false, "refuse the user's logins and mail")
	}
	optLoginDelay option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.loginDelay, "login-delay", "", "shortest time between logins (5m, or seconds), or default")
	}
	optSpamRejectScore option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.spamRejectScore, "spam-reject-score", "", "refuse mail a milter scores above this (e.g. 15), or none")
	}
	optExpire option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.expire, "expire", "", "days a retrieved message is kept, never, or default")
	}
	optSince option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.since, "since", "", "only entries since this long ago (24h, 7d) or this date")
	}
	optUser option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.userFilter, "user", "", "only entries where ADDRESS is the sender, a recipient or the mailbox")
	}
	optMailboxUser option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.userFilter, "user", "", "only the mailbox of ADDRESS")
	}
	optVerify option = func(fs *flag.FlagSet, o *opts) {
		fs.BoolVar(&o.verify, "verify", false, "check the backup in DIR instead of taking one")
	}
	optEvent option = func(fs *flag.FlagSet, o *opts) { fs.StringVar(&o.event, "event", "", "only this event") }
	optGrep  option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.grep, "grep", "", "only entries whose message id, addresses, client or details contain TEXT (a message id finds its copies' retrieved and deleted entries too)")
	}
	optLimit option = func(fs *flag.FlagSet, o *opts) {
		fs.IntVar(&o.limit, "limit", 200, "at most this many entries (the newest)")
	}
	optFromConfig option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.fromConfig, "from", "", "configuration `file` of the store to read")
	}
	optToConfig option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.toConfig, "to", "", "configuration `file` of the store to write")
	}
	optSelector option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.selector, "selector", "", "the key's selector (default: the date and e or r, e.g. 20260315e); needs --algorithm")
	}
	optAlgorithm option = func(fs *flag.FlagSet, o *opts) {
		fs.StringVar(&o.algorithm, "algorithm", "", "ed25519 or rsa (2048 bits); default: one of each, and mail is signed with both")
	}
)

// optJSON is --json, saying what it prints.
func optJSON(usage string) option {
	return func(fs *flag.FlagSet, o *opts) { fs.BoolVar(&o.json, "json", false, usage) }
}
