// Command postoffice is a mail host in one binary: SMTP for mail from the
// Internet (port 25) and from users' clients (submission, 587 and 465),
// one routing pipeline, mailboxes kept in SQLite or PostgreSQL and handed
// out by POP3 (110 with STLS, 995), an outbound queue that forwards what
// is not local, and a directory of domains, users, addresses and aliases.
// 'postoffice serve' runs it all; the other commands manage the directory,
// the queue and the running server (through its control socket), deliver
// one message as a local delivery agent, and copy stores. 'postoffice
// help' lists them.
//
// The commands are one table (commands.go): each entry's name, usage,
// options, the store access it needs and the function that runs it. Exit
// codes are those of sysexits.h.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/config"
)

// Exit codes from sysexits.h, as mail delivery agents use them.
const (
	exitOK       = 0
	exitFailure  = 1
	exitUsage    = 64 // EX_USAGE
	exitDataErr  = 65 // EX_DATAERR: the message cannot be accepted
	exitNoInput  = 66 // EX_NOINPUT: no store where the configuration points
	exitNoUser   = 67 // EX_NOUSER: unknown recipient
	exitSoftware = 70 // EX_SOFTWARE
	exitTempFail = 75 // EX_TEMPFAIL: try again later
	exitNoPerm   = 77 // EX_NOPERM: not allowed to read or write a file or socket
	exitConfig   = 78 // EX_CONFIG
)

// env is what every command gets: the global options and the standard files.
type env struct {
	configPath string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

// exitError carries an exit code and a one-line message for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func fail(code int, format string, a ...any) error {
	return &exitError{code: code, msg: fmt.Sprintf(format, a...)}
}

// exitCode maps what a command returned to the exit status and the line
// for stderr ("" for none): an exitError says both, asked-for help is
// success, anything else is a failure (1).
func exitCode(err error) (int, string) {
	var ee *exitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK, ""
	case errors.As(err, &ee):
		return ee.code, ee.msg
	}
	return exitFailure, err.Error()
}

func main() {
	privateUmask()
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(run(e, os.Args[1:]))
}

// run executes one command line and returns the exit code.
func run(e *env, args []string) int {
	args, cfgPath, err := extractConfig(args)
	if err != nil {
		fmt.Fprintln(e.stderr, "postoffice:", err)
		return exitUsage
	}
	e.configPath = cfgPath
	if len(args) == 0 {
		printUsage(e.stderr)
		return exitUsage
	}
	if isHelp(args[0]) && args[0] != "help" {
		printUsage(e.stdout)
		return exitOK
	}
	cmd, rest, path := lookup(commands, args)
	if cmd == nil {
		fmt.Fprintf(e.stderr, "postoffice: unknown command %q (try: postoffice help)\n", strings.Join(path, " "))
		return exitUsage
	}
	if cmd.run == nil {
		// A group such as "user" given without its subcommand.
		if len(rest) > 0 && !isHelp(rest[0]) {
			fmt.Fprintf(e.stderr, "postoffice: unknown command %q (try: postoffice help %s)\n", strings.Join(append(path, rest[0]), " "), cmd.name)
			return exitUsage
		}
		printGroupHelp(e.stdout, path, cmd)
		if len(rest) == 0 {
			return exitUsage
		}
		return exitOK
	}
	code, msg := exitCode(invoke(e, cmd, path, rest))
	if msg != "" {
		fmt.Fprintln(e.stderr, "postoffice:", msg)
	}
	return code
}

func isHelp(s string) bool { return s == "-h" || s == "--help" || s == "-help" || s == "help" }

// extractConfig removes the global --config option wherever it stands, so
// that it works before or after the subcommand.
func extractConfig(args []string) (rest []string, path string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest = append(rest, args[i:]...)
			break
		}
		switch {
		case a == "--config" || a == "-config" || a == "-c":
			if i+1 >= len(args) {
				return nil, "", errors.New("--config needs a file name")
			}
			path = args[i+1]
			i++
		case strings.HasPrefix(a, "--config="), strings.HasPrefix(a, "-config="):
			path = a[strings.Index(a, "=")+1:]
		default:
			rest = append(rest, a)
		}
	}
	return rest, path, nil
}

// lookup finds the command args name (a group's subcommand too), the
// arguments after its name and its path ("user add").
func lookup(cmds []*command, args []string) (*command, []string, []string) {
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		if len(c.sub) > 0 && len(args) > 1 {
			if sub, rest, subPath := lookup(c.sub, args[1:]); sub != nil {
				return sub, rest, append([]string{c.name}, subPath...)
			}
		}
		return c, args[1:], []string{c.name}
	}
	return nil, nil, args[:1]
}

// walkCommands calls f for every command that runs (not the groups), in
// the table's order, with its path.
func walkCommands(cmds []*command, prefix []string, f func(path []string, c *command)) {
	for _, c := range cmds {
		path := append(slices.Clip(prefix), c.name)
		if len(c.sub) > 0 {
			walkCommands(c.sub, path, f)
			continue
		}
		f(path, c)
	}
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `postoffice: a mail server (POP3, SMTP, submission) with its own user
directory, an outbound queue, a control socket and a web console.

Usage: postoffice [--config FILE] COMMAND [ARGS]

Commands:
`)
	walkCommands(commands, nil, func(path []string, c *command) {
		fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(strings.Join(path, " ")+" "+c.usage), c.summary)
	})
	fmt.Fprint(w, `
Global option:
  --config FILE   TOML configuration (before or after the command); relative
                  paths in it are taken from its directory. Without it
                  built-in defaults are used: data in ./data, standard ports.

Files:
  DATA_DIR/`+config.OverlayName+`     settings changed at run time (config set, the
                             web console), over the --config file
  DATA_DIR/postoffice.db     the directory, mailbox index, queue, journal
                             and message bodies of up to 64 KiB
  DATA_DIR/blobs/            larger message bodies, one file per message
  DATA_DIR/tls/              the self-signed certificate made on first start
  DATA_DIR/control.sock      control socket of a running serve (owner only),
                             used by status, start, stop and reload

Signals (to serve):
  SIGTERM, SIGINT  stop gracefully: sessions get 10 seconds to finish
  SIGHUP           reload the configuration and the certificates

Exit status (sysexits.h):
  0 success; 1 failure; 64 usage error; 65 message refused (deliver);
  66 no store in the data directory (commands other than serve and the
  adding ones); 67 unknown recipient (deliver); 75 temporary failure, or no
  running serve (status, start, stop, reload); 77 permission denied (a file,
  the store or the control socket belongs to another user); 78 configuration
  error. deliver exits only 0, 64, 65, 67 or 75, so that the calling MTA
  never bounces mail for a problem of this host.

'postoffice help COMMAND' or 'postoffice COMMAND --help' explains a command.
`)
}

// synopsis is one line per command, in the table's order, with its
// arguments and options: README.md's list of commands is this text (a test
// holds them together).
func synopsis() string {
	var b strings.Builder
	walkCommands(commands, nil, func(path []string, c *command) {
		head := "postoffice [--config FILE] "
		if c.needs == needsNothing {
			head = "postoffice "
		}
		fmt.Fprintln(&b, strings.TrimSpace(head+strings.Join(path, " ")+" "+c.usage))
	})
	return b.String()
}

// printGroupHelp explains a group of commands ("user").
func printGroupHelp(w io.Writer, path []string, c *command) {
	fmt.Fprintf(w, "Usage: postoffice [--config FILE] %s %s\n\n%s\n", strings.Join(path, " "), c.usage, c.summary)
	fmt.Fprintln(w, "\nSubcommands:")
	for _, s := range c.sub {
		fmt.Fprintf(w, "  %-30s %s\n", strings.TrimSpace(s.name+" "+s.usage), s.summary)
	}
}

// runHelp is 'postoffice help [COMMAND]'.
func runHelp(c *call) error {
	// "help user --help" is "help user".
	args := slices.DeleteFunc(slices.Clone(c.args), func(a string) bool { return isHelp(a) && a != "help" })
	if len(args) == 0 {
		printUsage(c.stdout)
		return nil
	}
	cmd, rest, path := lookup(commands, args)
	if cmd == nil || len(rest) > 0 {
		return fail(exitUsage, "no help for %q: unknown command", strings.Join(args, " "))
	}
	switch {
	case cmd.run == nil:
		printGroupHelp(c.stdout, path, cmd)
	case cmd.noFlags: // help help
		fmt.Fprintf(c.stdout, "Usage: postoffice [--config FILE] %s %s\n\n%s\n", strings.Join(path, " "), cmd.usage, cmd.summary)
	default:
		return invoke(c.env, cmd, path, []string{"--help"})
	}
	return nil
}

// configError is a configuration that does not load: 78 (EX_CONFIG), or
// 77 (EX_NOPERM) when a file may not be read.
func configError(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return &exitError{code: exitNoPerm, msg: err.Error() + " (run as the user postoffice serve runs as, or as root)"}
	}
	return &exitError{code: exitConfig, msg: err.Error()}
}
