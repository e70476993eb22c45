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

const configShowHelp = `Print the effective configuration: every key, as a TOML document that can
serve as a configuration file, each with a comment that says what it is and
where its value comes from: the settings changed at run time (DATA_DIR/` + config.OverlayName + `,
written by 'config set' and the web console) over the file given with
--config over the built-in defaults. With KEY (e.g. pop3.listen), print that
key's value only. Passwords are shown as "********".`

const configSetHelp = `Change one setting at run time. The change is written to DATA_DIR/` + config.OverlayName + `
(owner-only), whose settings override the file given with --config: that
file is only read, so it may be root's and read-only (as under systemd's
ProtectSystem=strict, or a package's /etc/postoffice/postoffice.toml). The
overlay keeps its other lines and comments; the result is checked before it
is written. data_dir is set in the file only. Lists are comma-separated
("127.0.0.1:110, [::1]:110", "" for none) or TOML arrays; durations take a
unit (90s, 10m, 36h, 5d) or seconds; sizes take bytes or 500M, 2G; expire
takes a number of days, a duration such as 36h, or never.
'postoffice config show' tells where each value comes from; to go back to the
file's value, delete the line from the overlay and reload.

When 'postoffice serve' runs on the data directory it is told to reload, and
what that did is printed: new settings apply to new sessions at once, a
service whose addresses changed moves to them, [log] and [store] need a
restart of serve. Run it as the user serve runs as. Examples:

  postoffice --config /etc/postoffice/postoffice.toml config set pop3.login_delay 5m
  postoffice --config /etc/postoffice/postoffice.toml config set pop3.expire 30
  postoffice --config /etc/postoffice/postoffice.toml config set smtp.max_message_size 25M`

func runConfigShow(c *call) error {
	layers, err := c.configLayers()
	if err != nil {
		return err
	}
	cfg := layers.Config
	if len(c.args) == 1 {
		s, ok := config.Lookup(cfg, c.args[0])
		if !ok {
			return fail(exitUsage, "unknown key %q (see: postoffice config show)", c.args[0])
		}
		fmt.Fprintln(c.stdout, s.Value)
		return nil
	}
	if layers.File != "" {
		fmt.Fprintf(c.stdout, "# configuration file: %s\n", layers.File)
	} else {
		fmt.Fprintln(c.stdout, "# no configuration file (--config): built-in defaults")
	}
	fmt.Fprintf(c.stdout, "# settings changed at run time: %s\n", layers.Overlay)
	section := ""
	for _, s := range config.Settings(cfg) {
		table, key := "", s.Key
		if i := strings.LastIndexByte(s.Key, '.'); i >= 0 {
			table, key = s.Key[:i], s.Key[i+1:]
		}
		if table != section {
			fmt.Fprintf(c.stdout, "\n[%s]\n", table)
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
			fmt.Fprintf(c.stdout, "%s = %s  # %s\n", key, s.Value, comment)
		} else {
			fmt.Fprintf(c.stdout, "%s = %s\n", key, s.Value)
		}
	}
	return nil
}

func runConfigSet(c *call) error {
	key := c.args[0]
	before, after, err := config.Set(c.configPath, key, c.args[1])
	if err != nil {
		return configError(err)
	}
	fmt.Fprintln(c.stdout, config.DescribeChange(before, after, key))
	printNotes(c.stdout, after.Config.Warnings())
	// Ask the running server, on the data directory it runs on, to apply it.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := control.Call(ctx, control.SocketPath(before.Config.DataDir), control.Request{Cmd: "reload"})
	if errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintln(c.stdout, "postoffice serve is not running: the change applies when it starts")
		return nil
	}
	printNotes(c.stdout, resp.Notes)
	if err != nil {
		return fmt.Errorf("the change is written, but the running server did not apply it: %v", err)
	}
	return nil
}
