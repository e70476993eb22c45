package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// cli runs command lines in-process against one configuration whose data
// directory starts empty, and a real store once a command creates it.
type cli struct {
	t   *testing.T
	cfg string
	dir string
}

func newCLI(t *testing.T) *cli {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "postoffice.toml")
	if err := os.WriteFile(cfg, []byte("data_dir = \"data\"\nhostname = \"mail.test\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &cli{t: t, cfg: cfg, dir: dir}
}

type outcome struct {
	code           int
	stdout, stderr string
}

func (c *cli) run(stdin string, args ...string) outcome {
	var out, errb strings.Builder
	code := run(&env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}, append(args, "--config", c.cfg))
	return outcome{code, out.String(), errb.String()}
}

// TestArguments: each command line gets its exit status (sysexits.h) and
// a message that says what is wrong; a usage error also shows the usage.
func TestArguments(t *testing.T) {
	c := newCLI(t)
	const msg = "From: a@example.net\r\nSubject: hi\r\n\r\nhello\r\n"
	for _, tc := range []struct {
		stdin  string
		args   string
		code   int
		stdout string // in stdout, when not ""
		stderr string // in stderr, when not ""
	}{
		// Before there is a store: the commands that need one say so.
		{"", "user list", exitNoInput, "", "no store in " + filepath.Join(c.dir, "data")},
		{msg, "deliver --to a@example.org", exitTempFail, "", "no store"},
		{"", "queue retry", exitNoInput, "", "no store"},
		{"", "status", exitTempFail, "", "not running"},
		// The commands that set a server up create it.
		{"pw\n", "user add a@example.org --password-stdin", exitOK, "added user a@example.org", ""},
		{"pw\n", "user add a@example.org --password-stdin", exitFailure, "", "already exists"},
		// Options stand before, between or after the arguments.
		{"pw\n", "user add --name Bob --password-stdin b@example.org --quota 2G", exitOK, "added user b@example.org", ""},
		{"", "user list", exitOK, "Bob", ""},
		{"", "user list", exitOK, "2G", ""},
		{"", "user", exitUsage, "Subcommands:", ""},
		{"", "user --help", exitOK, "Subcommands:", ""},
		{"", "user frob", exitUsage, "", `unknown command "user frob"`},
		{"", "frob", exitUsage, "", `unknown command "frob"`},
		{"", "user add", exitUsage, "", "user add: wrong number of arguments"},
		{"", "user add", exitUsage, "", "Usage: postoffice [--config FILE] user add ADDRESS"},
		{"", "user list extra", exitUsage, "", "wrong number of arguments"},
		{"", "user add c@example.org secret", exitUsage, "", "passwords are never taken from the command line"},
		{"", "user add c@example.org", exitUsage, "", "not a terminal: use --password-stdin"},
		{"", "user add c@example.org --password-stdin", exitUsage, "", "no password on standard input"},
		{"", "user add not-an-address --password-stdin", exitUsage, "", `"not-an-address" is not a valid address`},
		{"", "user add --quota lots c@example.org", exitUsage, "", "500M or 2G"},
		{"", "user add --frob c@example.org", exitUsage, "", "flag provided but not defined: -frob"},
		{"", "user del nobody@example.org", exitNoUser, "", "no user nobody@example.org"},
		{"", "user set a@example.org", exitUsage, "", "nothing to change"},
		{"", "user set a@example.org --enable --disable", exitUsage, "", "exclude each other"},
		{"", "user set a@example.org --login-delay soon", exitUsage, "", `--login-delay "soon"`},
		{"", "user set a@example.org --login-delay 5m --expire 30", exitOK, "login delay 5m, expire 30", ""},
		{"", "user set a@example.org --spam-reject-score lots", exitUsage, "", `--spam-reject-score "lots"`},
		{"", "user set a@example.org --spam-reject-score NaN", exitUsage, "", `--spam-reject-score "NaN"`},
		{"", "user set a@example.org --spam-reject-score 7.5", exitOK, "spam reject score 7.5", ""},
		{"", "user set a@example.org --spam-reject-score none", exitOK, "spam reject score none", ""},
		{"", "user addr add a@example.org", exitUsage, "", "wrong number of arguments"},
		{"", "user addr add nobody@example.org x@example.org", exitNoUser, "", "no user"},
		{"", "domain add bad..domain", exitUsage, "", "not a valid domain"},
		{"", "domain list", exitOK, "example.org", ""},
		{"", "alias add team@example.org", exitUsage, "", "wrong number of arguments"},
		{"", "alias add team@example.org a@example.org b@example.org", exitOK, "alias team@example.org -> a@example.org, b@example.org", ""},
		{"x\n", "admin add ops --password-stdin", exitUsage, "", "at least 8"},
		// deliver exits only 0, 64, 65, 67 or 75.
		{msg, "deliver", exitUsage, "", "--to ADDRESS is required"},
		{msg, "deliver --to nobody@example.org", exitNoUser, "", "unknown recipient"},
		{msg, "deliver --to not-an-address", exitNoUser, "", "unknown recipient"},
		{"", "deliver --to a@example.org", exitDataErr, "", "empty message"},
		{msg, "deliver --from no-at-sign --to a@example.org", exitUsage, "", `--from "no-at-sign"`},
		{msg, "deliver --to A@Example.org", exitOK, "", ""},
		{"", "queue show x", exitUsage, "", `"x" is not a queue ID`},
		{"", "queue show 99", exitFailure, "", "no message 99 in the queue"},
		{"", "queue retry 1 2", exitUsage, "", "wrong number of arguments"},
		{"", "start frob", exitUsage, "", `unknown service "frob"`},
		{"", "stop pop3 --grace -1s", exitUsage, "", "--grace must not be negative"},
		{"", "config show nosuch.key", exitUsage, "", `unknown key "nosuch.key"`},
		{"", "config show hostname", exitOK, `"mail.test"`, ""},
		{"", "config set pop3.login_delay soon", exitConfig, "", `key "pop3.login_delay": "soon" is not a duration`},
		{"", "journal --event frob", exitUsage, "", `--event "frob"`},
		{"", "journal --limit 0", exitUsage, "", "--limit must be positive"},
		{"", "journal --since yesterday", exitUsage, "", `--since "yesterday"`},
		{"", "journal --event delivered", exitOK, "delivered", ""},
		{"", "migrate", exitUsage, "", "--from and --to are both needed"},
		{"", "version extra", exitUsage, "", "wrong number of arguments"},
		{"", "version", exitOK, "postoffice ", ""},
		{"", "help nosuch", exitUsage, "", `no help for "nosuch"`},
		{"", "help user add --help", exitOK, "Usage: postoffice [--config FILE] user add ADDRESS", ""},
		{"", "help help", exitOK, "Usage: postoffice [--config FILE] help [COMMAND]", ""},
	} {
		r := c.run(tc.stdin, strings.Fields(tc.args)...)
		if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("postoffice %s: exit %d, stdout %q, stderr %q; want exit %d, %q in stdout, %q in stderr",
				tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stdout, tc.stderr)
		}
		// An error is one line, unless it shows the usage too.
		if r.stderr != "" && !strings.Contains(r.stderr, "Usage:") && strings.Count(r.stderr, "\n") != 1 {
			t.Errorf("postoffice %s: stderr %q is not one line", tc.args, r.stderr)
		}
	}
}

// TestGlobalOptions: --config stands anywhere, in any of its spellings;
// without a command the usage goes to stderr (64), asked for to stdout.
func TestGlobalOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		rest []string
		path string
	}{
		{[]string{"--config", "a.toml", "user", "list"}, []string{"user", "list"}, "a.toml"},
		{[]string{"user", "list", "--config", "a.toml"}, []string{"user", "list"}, "a.toml"},
		{[]string{"user", "-c", "a.toml", "list"}, []string{"user", "list"}, "a.toml"},
		{[]string{"--config=a.toml", "status"}, []string{"status"}, "a.toml"},
		{[]string{"-config=a.toml", "status", "--json"}, []string{"status", "--json"}, "a.toml"},
		{[]string{"alias", "add", "--", "--config", "x"}, []string{"alias", "add", "--", "--config", "x"}, ""},
	} {
		rest, path, err := extractConfig(tc.args)
		if err != nil || path != tc.path || !slices.Equal(rest, tc.rest) {
			t.Errorf("extractConfig(%q) = %q, %q, %v; want %q, %q", tc.args, rest, path, err, tc.rest, tc.path)
		}
	}
	if _, _, err := extractConfig([]string{"status", "--config"}); err == nil {
		t.Error("--config without a file name accepted")
	}
	for _, tc := range []struct {
		args     []string
		code     int
		inStdout bool
	}{
		{nil, exitUsage, false},
		{[]string{"--help"}, exitOK, true},
		{[]string{"-h"}, exitOK, true},
		{[]string{"help"}, exitOK, true},
		{[]string{"status", "--config"}, exitUsage, false},
	} {
		var out, errb strings.Builder
		code := run(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, tc.args)
		usage := out.String()
		if !tc.inStdout {
			usage = errb.String()
		}
		if code != tc.code || (tc.args == nil || tc.inStdout) && !strings.Contains(usage, "Usage: postoffice [--config FILE] COMMAND") {
			t.Errorf("postoffice %q: exit %d, stdout %q, stderr %q", tc.args, code, out.String(), errb.String())
		}
	}
	// A configuration that does not load is 78, naming the file.
	missing := filepath.Join(t.TempDir(), "absent.toml")
	var out, errb strings.Builder
	if code := run(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, []string{"--config", missing, "user", "list"}); code != exitConfig || !strings.Contains(errb.String(), missing) {
		t.Errorf("missing config: exit %d, %q", code, errb.String())
	}
	// ...and deliver makes it a temporary failure, so that the mail waits.
	errb.Reset()
	if code := run(&env{stdin: strings.NewReader("Subject: x\r\n\r\nx\r\n"), stdout: &out, stderr: &errb}, []string{"--config", missing, "deliver", "--to", "a@example.org"}); code != exitTempFail {
		t.Errorf("deliver with a missing config: exit %d, %q", code, errb.String())
	}
}

// TestExitCode: what a command returns maps to the status and the line on
// stderr.
func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
		msg  string
	}{
		{nil, exitOK, ""},
		{flag.ErrHelp, exitOK, ""},
		{fail(exitNoUser, "no user %s", "x@y"), exitNoUser, "no user x@y"},
		{fmt.Errorf("opening: %w", fail(exitTempFail, "busy")), exitTempFail, "busy"},
		{errors.New("disk on fire"), exitFailure, "disk on fire"},
		{configError(fmt.Errorf("config /etc/p.toml: %w", fs.ErrPermission)), exitNoPerm, "run as the user postoffice serve runs as"},
		{configError(errors.New(`config p.toml: key "x": bad`)), exitConfig, `key "x": bad`},
		{tempFail(configError(errors.New("bad file"))), exitTempFail, "bad file"},
	} {
		code, msg := exitCode(tc.err)
		if code != tc.code || !strings.Contains(msg, tc.msg) || (tc.msg == "" && msg != "") {
			t.Errorf("exitCode(%v) = %d, %q; want %d, %q", tc.err, code, msg, tc.code, tc.msg)
		}
	}
}

var optionInUsage = regexp.MustCompile(`\[--[^\]]*\]|--\S+ [A-Z]+`)

// TestCommandTable: every command of the table runs or groups others, has
// a summary, and takes the arguments its usage shows.
func TestCommandTable(t *testing.T) {
	walkCommands(commands, nil, func(path []string, c *command) {
		name := strings.Join(path, " ")
		if c.run == nil || c.summary == "" {
			t.Errorf("%s: no run function or summary", name)
		}
		// The positional arguments: what is left of the usage without
		// its options ("[--name NAME]", "--to ADDRESS") and stdin.
		rest := optionInUsage.ReplaceAllString(c.usage, "")
		rest, _, _ = strings.Cut(rest, "<")
		pos := strings.Fields(rest)
		least, most := c.args[0], c.args[1]
		required := 0
		for _, p := range pos {
			if !strings.HasPrefix(p, "[") {
				required++
			}
		}
		if c.noFlags {
			return
		}
		if least != required || (most >= 0 && most != len(pos)) || (most < 0 && !strings.HasSuffix(rest, "...")) {
			t.Errorf("%s: usage %q shows %d arguments (%d required), the table takes %d to %d", name, c.usage, len(pos), required, least, most)
		}
	})
}
