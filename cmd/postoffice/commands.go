package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// command is one entry of the table: a command, or a group of them (sub).
type command struct {
	name    string
	usage   string // arguments and options after the name, as README.md lists them
	summary string // one line, for 'postoffice help'
	help    string // what --help says after the usage line (summary when empty)
	args    [2]int // least and most positional arguments; most -1: any number
	needs   needs  // what the command opens: the configuration, the store
	// password: the command reads a password, from the terminal or with
	// --password-stdin, and refuses one given as an argument.
	password bool
	flags    []option // its options, declared once each (options.go)
	noFlags  bool     // the arguments are passed as they are (help)
	run      func(*call) error
	sub      []*command
}

// The command table. Help texts and run functions are next to the code of
// each area (user.go, queue.go...).
var commands []*command

func init() {
	commands = []*command{
		{name: "serve", usage: "[--cpuprofile FILE] [--allocprofile FILE]", needs: needsServe, flags: []option{optCPUProfile, optAllocProfile},
			summary: serveSummary, help: serveHelp, run: runServe},
		{name: "domain", usage: "add|del|list|records|check [DOMAIN]", summary: "manage the mail domains this host receives mail for, and their DNS records", sub: []*command{
			{name: "add", usage: "DOMAIN", args: [2]int{1, 1}, needs: needsNewStore,
				summary: "add a mail domain", help: domainAddHelp, run: runDomainAdd},
			{name: "del", usage: "DOMAIN", args: [2]int{1, 1}, needs: needsStore,
				summary: "delete a domain that has no users, addresses or aliases left", help: domainDelHelp, run: runDomainDel},
			{name: "list", needs: needsStore,
				summary: "list the domains", help: "List the local domains, one per line, sorted.", run: runDomainList},
			{name: "records", usage: "DOMAIN", args: [2]int{1, 1}, needs: needsStore,
				summary: "print the DNS records a domain needs, ready to paste", help: domainRecordsHelp, run: runDomainRecords},
			{name: "check", usage: "DOMAIN", args: [2]int{1, 1}, needs: needsStore,
				summary: "look up a domain's records and say what is missing or wrong", help: domainCheckHelp, run: runDomainCheck},
		}},
		{name: "dkim", usage: "keygen|list|retire DOMAIN", summary: "manage the DKIM keys that sign the mail of a domain", sub: []*command{
			{name: "keygen", usage: "DOMAIN [--selector S] [--algorithm ed25519|rsa]", args: [2]int{1, 1}, needs: needsStore,
				flags:   []option{optSelector, optAlgorithm},
				summary: "create a domain's DKIM keys and print their DNS records", help: dkimKeygenHelp, run: runDKIMKeygen},
			{name: "list", usage: "[DOMAIN]", args: [2]int{0, 1}, needs: needsStore,
				summary: "list the DKIM keys, active and retired", help: dkimListHelp, run: runDKIMList},
			{name: "retire", usage: "DOMAIN SELECTOR", args: [2]int{2, 2}, needs: needsStore,
				summary: "stop signing with a key (rotation)", help: dkimRetireHelp, run: runDKIMRetire},
		}},
		{name: "user", usage: "add|passwd|del|list", summary: "manage users: each user has one mailbox and logs in with its full address", sub: []*command{
			{name: "add", usage: "ADDRESS [--password-stdin] [--name NAME] [--quota SIZE]", args: [2]int{1, 1}, needs: needsNewStore,
				password: true, flags: []option{optName, optQuota},
				summary: "add a user (and its domain if new)", help: userAddHelp, run: runUserAdd},
			{name: "passwd", usage: "ADDRESS [--password-stdin]", args: [2]int{1, 1}, needs: needsStore, password: true,
				summary: "change a user's password", help: userPasswdHelp, run: runUserPasswd},
			{name: "del", usage: "ADDRESS", args: [2]int{1, 1}, needs: needsStore,
				summary: "delete a user and its mailbox", help: userDelHelp, run: runUserDel},
			{name: "list", needs: needsStore,
				summary: "list users with their mailbox usage", help: userListHelp, run: runUserList},
			{name: "addr", usage: "add|del|list", summary: "manage a user's extra addresses (they deliver into the same mailbox)", sub: []*command{
				{name: "add", usage: "USER ADDRESS", args: [2]int{2, 2}, needs: needsStore,
					summary: "give USER the extra address ADDRESS", help: userAddrAddHelp, run: runUserAddrAdd},
				{name: "del", usage: "ADDRESS", args: [2]int{1, 1}, needs: needsStore,
					summary: "remove an extra address", help: userAddrDelHelp, run: runUserAddrDel},
				{name: "list", usage: "USER", args: [2]int{1, 1}, needs: needsStore,
					summary: "list a user's extra addresses", help: userAddrListHelp, run: runUserAddrList},
			}},
			{name: "set", usage: "ADDRESS [--name NAME] [--quota SIZE] [--enable|--disable] [--login-delay DURATION|default] [--expire DAYS|never|default] [--spam-reject-score SCORE|none]",
				args: [2]int{1, 1}, needs: needsStore, flags: []option{optName, optQuota, optEnable, optDisable, optLoginDelay, optExpire, optSpamRejectScore},
				summary: "change a user's attributes: name, quota, enabled, POP3 login delay and expire, spam score refused", help: userSetHelp, run: runUserSet},
		}},
		{name: "alias", usage: "add|del|list", summary: "manage aliases and distribution lists (one address to several local or remote addresses)", sub: []*command{
			{name: "add", usage: "ADDRESS TARGET...", args: [2]int{2, -1}, needs: needsNewStore,
				summary: "create or replace an alias; ADDRESS may be @DOMAIN for a catch-all", help: aliasAddHelp, run: runAliasAdd},
			{name: "del", usage: "ADDRESS", args: [2]int{1, 1}, needs: needsStore,
				summary: "delete an alias", help: aliasDelHelp, run: runAliasDel},
			{name: "list", needs: needsStore,
				summary: "list aliases and their targets", help: "List aliases and their targets, one alias per line: ADDRESS TARGET,TARGET...", run: runAliasList},
		}},
		{name: "deliver", usage: "--to ADDRESS [--from SENDER] < message", needs: needsStore, flags: []option{optTo, optSender},
			summary: deliverSummary, help: deliverHelp, run: runDeliver},
		{name: "queue", usage: "list|show|retry|delete|hold|release", summary: "inspect and manage the outbound queue of mail for remote recipients", sub: []*command{
			{name: "list", needs: needsStore,
				summary: "list queued messages with their recipients", help: "List queued messages, oldest first, with the state of each recipient.", run: runQueueList},
			{name: "show", usage: "ID", args: [2]int{1, 1}, needs: needsStore,
				summary: "show one queued message: recipients, attempts, errors, header", help: queueShowHelp, run: runQueueShow},
			{name: "retry", usage: "[ID]", args: [2]int{0, 1}, needs: needsStore,
				summary: "make one message (or all) due for delivery now", help: queueRetryHelp, run: runQueueRetry},
			{name: "delete", usage: "ID [--bounce]", args: [2]int{1, 1}, needs: needsStore, flags: []option{optBounce},
				summary: "remove a message from the queue, optionally bouncing it to its sender", help: queueDeleteHelp, run: runQueueDelete},
			{name: "hold", usage: "ID", args: [2]int{1, 1}, needs: needsStore,
				summary: "stop delivery attempts of a message until it is released", help: queueHoldHelp, run: runQueueHold},
			{name: "release", usage: "ID", args: [2]int{1, 1}, needs: needsStore,
				summary: "release a held message and make it due now", help: queueReleaseHelp, run: runQueueRelease},
		}},
		{name: "status", usage: "[--json]", needs: needsConfig, flags: []option{optJSON("print the status as JSON")},
			summary: "show the running server: each service, its addresses and sessions, the queue", help: statusHelp, run: runStatus},
		{name: "start", usage: serviceUsage, args: [2]int{1, 1}, needs: needsConfig,
			summary: "start a service of the running server", help: startHelp, run: runStart},
		{name: "stop", usage: serviceUsage + " [--grace DURATION]", args: [2]int{1, 1}, needs: needsConfig, flags: []option{optGrace},
			summary: "stop a service of the running server, letting sessions finish", help: stopHelp, run: runStop},
		{name: "reload", needs: needsConfig,
			summary: "make the running server re-read its configuration and certificates", help: reloadHelp, run: runReload},
		{name: "config", usage: "show|set", summary: "show the effective configuration or change one setting", sub: []*command{
			{name: "show", usage: "[KEY]", args: [2]int{0, 1}, needs: needsConfig,
				summary: "print the effective configuration and where each value comes from", help: configShowHelp, run: runConfigShow},
			{name: "set", usage: "KEY VALUE", args: [2]int{2, 2}, needs: needsConfig,
				summary: "change one setting at run time and apply it", help: configSetHelp, run: runConfigSet},
		}},
		{name: "admin", usage: "add|passwd|del|list", summary: "manage the operator accounts of the web console", sub: []*command{
			{name: "add", usage: "NAME [--password-stdin]", args: [2]int{1, 1}, needs: needsNewStore, password: true,
				summary: "add an operator account for the web console", help: adminAddHelp, run: runAdminAdd},
			{name: "passwd", usage: "NAME [--password-stdin]", args: [2]int{1, 1}, needs: needsStore, password: true,
				summary: "change an operator's password", help: adminPasswdHelp, run: runAdminPasswd},
			{name: "del", usage: "NAME", args: [2]int{1, 1}, needs: needsStore,
				summary: "delete an operator account", help: adminDelHelp, run: runAdminDel},
			{name: "list", needs: needsStore,
				summary: "list the operator accounts", help: adminListHelp, run: runAdminList},
		}},
		{name: "journal", usage: "[--since DURATION|DATE] [--user ADDRESS] [--event EVENT] [--grep TEXT] [--limit N] [--json]", needs: needsStore,
			flags:   []option{optSince, optUser, optEvent, optGrep, optLimit, optJSON("one JSON object per line")},
			summary: "show the mail journal: what happened to each message", help: journalHelp(), run: runJournal},
		importCommand(),
		{name: "migrate", usage: "--from CONFIG --to CONFIG", flags: []option{optFromConfig, optToConfig},
			summary: migrateSummary, help: migrateHelp, run: runMigrate},
		{name: "backup", usage: "DIR [--verify]", args: [2]int{1, 1}, needs: needsStore, flags: []option{optVerify},
			summary: backupSummary, help: backupHelp, run: runBackup},
		{name: "restore", usage: "DIR", args: [2]int{1, 1}, needs: needsNewStore,
			summary: restoreSummary, help: restoreHelp, run: runRestore},
		{name: "export", usage: "maildir", summary: "write mailboxes out in another server's format, for leaving postoffice", sub: []*command{
			{name: "maildir", usage: "DIR [--user ADDRESS]", args: [2]int{1, 1}, needs: needsStore, flags: []option{optMailboxUser},
				summary: exportMaildirSummary, help: exportMaildirHelp, run: runExportMaildir},
		}},
		{name: "version", summary: versionSummary, help: versionSummary + " and of the Go toolchain that built it.", run: runVersion},
		{name: "help", usage: "[COMMAND]", args: [2]int{0, -1}, noFlags: true, summary: "explain a command", run: runHelp},
	}
}

// call is one run of a command: the command line parsed as the table
// says, and what the command needs, opened when it asks and closed after.
type call struct {
	*env
	cmd  *command
	path string   // "user add"
	args []string // the positional arguments
	opts          // the options' values
	set  map[string]bool
	fs   *flag.FlagSet

	layers *config.Layers
	log    *slog.Logger
	st     store.Store
}

// invoke runs cmd (at path, "user add") with its arguments.
func invoke(e *env, cmd *command, path []string, args []string) error {
	c := &call{env: e, cmd: cmd, path: strings.Join(path, " "), set: map[string]bool{}}
	if err := c.parse(args); err != nil {
		return err
	}
	defer c.close()
	return cmd.run(c)
}

// parse reads the options, which may stand between the positional
// arguments ("user add a@b --password-stdin" and "user add
// --password-stdin a@b"), and checks the number of the latter.
func (c *call) parse(args []string) error {
	if c.cmd.noFlags {
		c.args = args
		return nil
	}
	fs := flag.NewFlagSet(c.path, flag.ContinueOnError)
	c.fs = fs
	fs.SetOutput(c.stderr)
	for _, a := range args {
		if isHelp(a) && a != "help" {
			// Asked-for help goes to stdout; usage after an error to stderr.
			fs.SetOutput(c.stdout)
		}
	}
	fs.Usage = c.usage
	if c.cmd.password {
		optPasswordStdin(fs, &c.opts)
	}
	for _, o := range c.cmd.flags {
		o(fs, &c.opts)
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return fail(exitUsage, "%v", err)
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		c.args = append(c.args, args[0])
		args = args[1:]
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	least, most := c.cmd.args[0], c.cmd.args[1]
	if c.cmd.password && most >= 0 && len(c.args) == most+1 {
		return fail(exitUsage, "passwords are never taken from the command line (ps and the shell's history would show them): "+
			"type it at the prompt, or give it on standard input: echo 'PASSWORD' | postoffice %s %s --password-stdin", c.path, strings.Join(c.args[:most], " "))
	}
	if len(c.args) < least || (most >= 0 && len(c.args) > most) {
		fs.Usage()
		return fail(exitUsage, "%s: wrong number of arguments", c.path)
	}
	return nil
}

// usage is the command's --help.
func (c *call) usage() {
	out := c.fs.Output()
	help := c.cmd.help
	if help == "" {
		help = c.cmd.summary
	}
	fmt.Fprintf(out, "Usage: postoffice [--config FILE] %s %s\n\n%s\n", c.path, c.cmd.usage, help)
	hasFlags := false
	c.fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprintln(out, "\nOptions:")
		c.fs.PrintDefaults()
	}
}

// close closes what the command opened.
func (c *call) close() {
	if c.st != nil {
		c.st.Close()
	}
}

// config reads the configuration named by --config (or the defaults) and
// the settings changed at run time, once.
func (c *call) config() (config.Config, error) {
	l, err := c.configLayers()
	if err != nil {
		return config.Config{}, err
	}
	return l.Config, nil
}

func (c *call) configLayers() (*config.Layers, error) {
	if c.cmd.needs == needsNothing {
		panic(c.path + ": the command table says it needs no configuration")
	}
	if c.layers == nil {
		l, err := config.LoadLayers(c.configPath)
		if err != nil {
			return nil, configError(err)
		}
		c.layers = l
	}
	return c.layers, nil
}

// logger is the process's one logger, made from [log].
func (c *call) logger() (*slog.Logger, error) {
	if c.log == nil {
		cfg, err := c.config()
		if err != nil {
			return nil, err
		}
		c.log = newLogger(c.stderr, cfg.Log)
	}
	return c.log, nil
}

// store opens the store as the command's needs say (the existing one, or
// created when absent), once.
func (c *call) store() (store.Store, error) {
	if c.cmd.needs < needsStore {
		panic(c.path + ": the command table says it needs no store")
	}
	if c.st == nil {
		cfg, err := c.config()
		if err != nil {
			return nil, err
		}
		log, _ := c.logger()
		if c.st, err = openStore(cfg, c.cmd.needs, log); err != nil {
			return nil, err
		}
	}
	return c.st, nil
}

// user looks a user up by address: 67 (EX_NOUSER) when there is none.
func (c *call) user(addr string) (store.User, error) {
	st, err := c.store()
	if err != nil {
		return store.User{}, err
	}
	u, err := st.UserByAddress(context.Background(), addr)
	if errors.Is(err, store.ErrNotFound) {
		return u, fail(exitNoUser, "no user %s", addr)
	}
	return u, err
}

// control sends one request to the running server on the configured data
// directory.
func (c *call) control(req control.Request) (control.Response, error) {
	cfg, err := c.config()
	if err != nil {
		return control.Response{}, err
	}
	return callControl(cfg, req)
}

// Positional arguments, checked: a bad one is a usage error (64).

func (c *call) address(i int) (string, error) { return addressArg(c.args[i]) }

func (c *call) queueID(i int) (int64, error) {
	id, err := strconv.ParseInt(c.args[i], 10, 64)
	if err != nil || id <= 0 {
		return 0, fail(exitUsage, "%q is not a queue ID (see: postoffice queue list)", c.args[i])
	}
	return id, nil
}
