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
		{name: "show", usage: "[KEY]", summary: "print the effective configuration and where each value comes from", run: runConfigShow},
		{name: "set", usage: "KEY VALUE", summary: "change one setting at run time and apply it", run: runConfigSet},
	},
}

func runConfigShow(e *env, args []string) error {
	fs := newFlags(e, "config show", "[KEY]", `Print the effective configuration: every key, as a TOML document that can
serve as a configuration file, each with a comment that says what it is and
where its value comes from: the settings changed at run time (DATA_DIR/`+config.OverlayName+`,
written by 'config set' and the web console) over the file given with
--config over the built-in defaults. With KEY (e.g. pop3.listen), print that
key's value only. Passwords are shown as "********".`)
	pos, err := e.parseArgs(fs, args, 0, 1)
	if err != nil {
		return err
	}
	layers, err := e.loadLayers()
	if err != nil {
		return err
	}
	cfg := layers.Config
	if len(pos) == 1 {
		s, ok := config.Lookup(cfg, pos[0])
		if !ok {
			return fail(exitUsage, "unknown key %q (see: postoffice config show)", pos[0])
		}
		fmt.Fprintln(e.stdout, s.Value)
		return nil
	}
	if layers.File != "" {
		fmt.Fprintf(e.stdout, "# configuration file: %s\n", layers.File)
	} else {
		fmt.Fprintln(e.stdout, "# no configuration file (--config): built-in defaults")
	}
	fmt.Fprintf(e.stdout, "# settings changed at run time: %s\n", layers.Overlay)
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
		comment := s.Doc
		switch layers.Source(s.Key) {
		case config.FromOverlay:
			comment = strings.TrimSuffix("set at run time; "+comment, "; ")
		case config.FromFile:
			comment = strings.TrimSuffix("from the file; "+comment, "; ")
		}
		if comment != "" {
			fmt.Fprintf(e.stdout, "%s = %s  # %s\n", key, s.Value, comment)
		} else {
			fmt.Fprintf(e.stdout, "%s = %s\n", key, s.Value)
		}
	}
	return nil
}

func runConfigSet(e *env, args []string) error {
	fs := newFlags(e, "config set", "KEY VALUE", `Change one setting at run time. The change is written to DATA_DIR/`+config.OverlayName+`
(owner-only), whose settings override the file given with --config: that
file is only read, so it may be root's and read-only (as under systemd's
ProtectSystem=strict, or a package's /etc/postoffice/postoffice.toml). The
overlay keeps its other lines and comments; the result is checked before it
is written. data_dir is set in the file only. Lists are comma-separated
("127.0.0.1:110, [::1]:110", "" for none) or TOML arrays; sizes take bytes or
500M, 2G; expire takes a number of days, a duration such as 36h, or never.
'postoffice config show' tells where each value comes from; to go back to the
file's value, delete the line from the overlay and reload.

When 'postoffice serve' runs on the data directory it is told to reload, and
what that did is printed: new settings apply to new sessions at once, a
service whose addresses changed moves to them, [log] and [store] need a
restart of serve. Run it as the user serve runs as. Examples:

  postoffice --config /etc/postoffice/postoffice.toml config set pop3.login_delay 300
  postoffice --config /etc/postoffice/postoffice.toml config set pop3.expire 30
  postoffice --config /etc/postoffice/postoffice.toml config set smtp.max_message_size 25M`)
	pos, err := e.parseArgs(fs, args, 2, 2)
	if err != nil {
		return err
	}
	key := pos[0]
	before, after, err := config.Set(e.configPath, key, pos[1])
	if err != nil {
		return configError(err)
	}
	fmt.Fprintln(e.stdout, config.DescribeChange(before, after, key))
	printNotes(e.stdout, after.Config.Warnings())
	// Ask the running server, on the data directory it runs on, to apply it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := control.Call(ctx, control.SocketPath(before.Config.DataDir), control.Request{Cmd: "reload"})
	if errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintln(e.stdout, "postoffice serve is not running: the change applies when it starts")
		return nil
	}
	printNotes(e.stdout, resp.Notes)
	if err != nil {
		return fmt.Errorf("the change is written, but the running server did not apply it: %v", err)
	}
	return nil
}
