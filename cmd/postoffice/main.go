// Command postoffice is a POP3 mail server with its own directory of users
// and a local delivery agent. `postoffice help` lists the commands.
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
	exitNoUser   = 67 // EX_NOUSER: unknown recipient
	exitNoInput  = 66 // EX_NOINPUT: no store where the configuration points
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

type command struct {
	name    string
	usage   string // arguments, after the command name
	summary string
	run     func(e *env, args []string) error
	sub     []*command
}

var commands []*command

func init() {
	commands = []*command{
		serveCommand,
		domainCommand,
		userCommand,
		aliasCommand,
		deliverCommand,
		queueCommand,
		statusCommand,
		startCommand,
		stopCommand,
		reloadCommand,
		configCommand,
		adminCommand,
		journalCommand,
		migrateCommand,
		versionCommand,
		{name: "help", usage: "[COMMAND]", summary: "explain a command", run: runHelp},
	}
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
	if args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
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
		printCommandHelp(e.stdout, path, cmd)
		if len(rest) == 0 {
			return exitUsage
		}
		return exitOK
	}
	err = cmd.run(e, rest)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		fmt.Fprintln(e.stderr, "postoffice:", ee.msg)
		return ee.code
	}
	fmt.Fprintln(e.stderr, "postoffice:", err)
	return exitFailure
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

func lookup(cmds []*command, args []string) (*command, []string, []string) {
	var path []string
	for _, c := range cmds {
		if c.name != args[0] {
			continue
		}
		path = append(path, c.name)
		if len(c.sub) > 0 && len(args) > 1 {
			sub, rest, subPath := lookup(c.sub, args[1:])
			if sub != nil {
				return sub, rest, append(path, subPath...)
			}
		}
		return c, args[1:], path
	}
	return nil, nil, args[:1]
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `postoffice: a mail server (POP3, SMTP, submission) with its own user
directory, an outbound queue, a control socket and a web console.

Usage: postoffice [--config FILE] COMMAND [ARGS]

Commands:
`)
	var list func(prefix string, cs []*command)
	list = func(prefix string, cs []*command) {
		for _, c := range cs {
			if len(c.sub) > 0 {
				list(prefix+c.name+" ", c.sub)
				continue
			}
			fmt.Fprintf(w, "  %s\n      %s\n", strings.TrimSpace(prefix+c.name+" "+c.usage), c.summary)
		}
	}
	list("", commands)
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

// noConfig are the commands that read no configuration file.
var noConfig = map[string]bool{"migrate": true, "version": true, "help": true}

// synopsis is one line per command, in the table's order, with its
// arguments and options: README.md's list of commands is this text (a test
// holds them together).
func synopsis() string {
	var b strings.Builder
	var list func(prefix string, cs []*command)
	list = func(prefix string, cs []*command) {
		for _, c := range cs {
			if len(c.sub) > 0 {
				list(prefix+c.name+" ", c.sub)
				continue
			}
			head := "postoffice [--config FILE] "
			if noConfig[c.name] && prefix == "" {
				head = "postoffice "
			}
			fmt.Fprintln(&b, strings.TrimSpace(head+prefix+c.name+" "+c.usage))
		}
	}
	list("", commands)
	return b.String()
}

func printCommandHelp(w io.Writer, path []string, c *command) {
	fmt.Fprintf(w, "Usage: postoffice [--config FILE] %s %s\n\n%s\n", strings.Join(path, " "), c.usage, c.summary)
	if len(c.sub) > 0 {
		fmt.Fprintln(w, "\nSubcommands:")
		for _, s := range c.sub {
			fmt.Fprintf(w, "  %-30s %s\n", strings.TrimSpace(s.name+" "+s.usage), s.summary)
		}
	}
}

func runHelp(e *env, args []string) error {
	// "help user --help" is "help user".
	args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return isHelp(a) && a != "help" })
	if len(args) == 0 {
		printUsage(e.stdout)
		return nil
	}
	cmd, rest, path := lookup(commands, args)
	if cmd == nil || len(rest) > 0 {
		return fail(exitUsage, "no help for %q: unknown command", strings.Join(args, " "))
	}
	if cmd.run != nil && len(cmd.sub) == 0 && cmd.name != "help" {
		// Let the command print its own flags.
		return cmd.run(e, []string{"--help"})
	}
	printCommandHelp(e.stdout, path, cmd)
	return nil
}

// newFlags returns a FlagSet whose --help prints the command's usage and
// whose errors go to stderr.
func newFlags(e *env, name, usage, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: postoffice [--config FILE] %s %s\n\n%s\n", name, usage, summary)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(out, "\nOptions:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseArgs parses flags interspersed with positional arguments (so both
// "user add a@b --password-stdin" and "user add --password-stdin a@b" work)
// and checks the number of positional arguments.
func (e *env) parseArgs(fs *flag.FlagSet, args []string, minPos, maxPos int) ([]string, error) {
	for _, a := range args {
		if isHelp(a) && a != "help" {
			// Asked-for help goes to stdout; usage after an error to stderr.
			fs.SetOutput(e.stdout)
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &exitError{code: exitUsage, msg: err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if len(pos) < minPos || (maxPos >= 0 && len(pos) > maxPos) {
		fs.Usage()
		return nil, &exitError{code: exitUsage, msg: fmt.Sprintf("%s: wrong number of arguments", fs.Name())}
	}
	return pos, nil
}

// loadConfig reads the configuration named by --config (or the defaults)
// and the settings changed at run time.
func (e *env) loadConfig() (config.Config, error) {
	l, err := e.loadLayers()
	if err != nil {
		return config.Config{}, err
	}
	return l.Config, nil
}

func (e *env) loadLayers() (*config.Layers, error) {
	l, err := config.LoadLayers(e.configPath)
	if err != nil {
		return nil, configError(err)
	}
	return l, nil
}

// configError is a configuration that does not load: 78 (EX_CONFIG), or
// 77 (EX_NOPERM) when a file may not be read.
func configError(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return &exitError{code: exitNoPerm, msg: err.Error() + " (run as the user postoffice serve runs as, or as root)"}
	}
	return &exitError{code: exitConfig, msg: err.Error()}
}
