package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
)

var configCommand = &command{
	name:    "config",
	usage:   "show|set",
	summary: "show the effective configuration or change one setting",
	sub: []*command{
		{name: "show", usage: "[KEY]", summary: "print the effective configuration (the file over the defaults)", run: runConfigShow},
		{name: "set", usage: "KEY VALUE", summary: "change one setting in the configuration file and apply it", run: runConfigSet},
	},
}

// secretKey reports whether a key holds a secret that show masks.
func secretKey(key string) bool { return strings.Contains(key, "password") }

func runConfigShow(e *env, args []string) error {
	fs := newFlags(e, "config show", "[KEY]", `Print the effective configuration: every key, from the file given with
--config over the built-in defaults, as a TOML document that can serve as a
configuration file. With KEY (e.g. pop3.listen), print that key's value only.
Passwords are shown as "********".`)
	pos, err := e.parseArgs(fs, args, 0, 1)
	if err != nil {
		return err
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	if len(pos) == 1 {
		s, ok := config.Lookup(cfg, pos[0])
		if !ok {
			return fail(exitUsage, "unknown key %q (see: postoffice config show)", pos[0])
		}
		if secretKey(s.Key) && s.Value != `""` {
			s.Value = `"********"`
		}
		fmt.Fprintln(e.stdout, s.Value)
		return nil
	}
	section := ""
	for _, s := range config.Settings(cfg) {
		table, key := "", s.Key
		if i := strings.LastIndexByte(s.Key, '.'); i >= 0 {
			table, key = s.Key[:i], s.Key[i+1:]
		}
		if table != section {
			fmt.Fprintf(e.stdout, "\n[%s]\n", table)
			section = table
		}
		v := s.Value
		if secretKey(s.Key) && v != `""` {
			v = `"********"`
		}
		if s.Doc != "" {
			fmt.Fprintf(e.stdout, "%s = %s  # %s\n", key, v, s.Doc)
		} else {
			fmt.Fprintf(e.stdout, "%s = %s\n", key, v)
		}
	}
	return nil
}

func runConfigSet(e *env, args []string) error {
	fs := newFlags(e, "config set", "KEY VALUE", `Change one setting in the configuration file given with --config (created if
it does not exist), keeping the rest of the file and its comments, and check
that the result is valid before writing it. Lists are comma-separated
("127.0.0.1:110, [::1]:110", "" for none) or TOML arrays; expire takes a
number of days, a duration such as 36h, or never.

When 'postoffice serve' runs on the data directory it is told to reload, and
what that did is printed: new settings apply to new sessions at once, a
service whose addresses changed moves to them, data_dir and [log] need a
restart of serve. Examples:

  postoffice --config /etc/postoffice.toml config set pop3.login_delay 300
  postoffice --config /etc/postoffice.toml config set pop3.expire 30
  postoffice --config /etc/postoffice.toml config set smtp.max_sessions_per_ip 10`)
	pos, err := e.parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	if e.configPath == "" {
		return fail(exitUsage, "config set needs the configuration file: give it with --config FILE")
	}
	key := pos[0]
	before, after, err := config.Set(e.configPath, key, pos[1])
	if err != nil {
		return fail(exitConfig, "%v", err)
	}
	b, _ := config.Lookup(before, key)
	a, _ := config.Lookup(after, key)
	if secretKey(key) {
		b.Value, a.Value = "(hidden)", "(hidden)"
	}
	fmt.Fprintf(e.stdout, "%s: %s -> %s (written to %s)\n", key, b.Value, a.Value, e.configPath)
	// Ask the running server, on the data directory it runs on, to apply it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := control.Call(ctx, control.SocketPath(before.DataDir), control.Request{Cmd: "reload"})
	if errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintln(e.stdout, "postoffice serve is not running: the change applies when it starts")
		return nil
	}
	printNotes(e.stdout, resp.Notes)
	if err != nil {
		return fmt.Errorf("the file is changed, but the running server did not apply it: %v", err)
	}
	return nil
}
