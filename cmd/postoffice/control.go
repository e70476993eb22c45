package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/control"
)

// The commands that drive a running 'postoffice serve' over its control
// socket, DATA_DIR/control.sock (owner-only).

var (
	statusCommand = &command{name: "status", usage: "[--json]", summary: "show the running server: each service, its addresses and sessions, the queue", run: runStatus}
	startCommand  = &command{name: "start", usage: "pop3|smtp|submission|queue|all", summary: "start a service of the running server", run: runStart}
	stopCommand   = &command{name: "stop", usage: "pop3|smtp|submission|queue|all [--grace DURATION]", summary: "stop a service of the running server, letting sessions finish", run: runStop}
	reloadCommand = &command{name: "reload", summary: "make the running server re-read its configuration and certificates", run: runReload}
)

const controlHelp = `
The command talks to 'postoffice serve' through the control socket in the
data directory (DATA_DIR/control.sock, readable by its owner only): run it
as the user serve runs as, with the same --config.`

// call sends one request to the running server.
func (e *env) call(req control.Request) (control.Response, error) {
	cfg, err := e.loadConfig()
	if err != nil {
		return control.Response{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resp, err := control.Call(ctx, control.SocketPath(cfg.DataDir), req)
	switch {
	case errors.Is(err, control.ErrNotRunning):
		return resp, fail(exitTempFail, "%v", err)
	case errors.Is(err, os.ErrPermission):
		return resp, fail(exitNoPerm, "%v (the control socket is its owner's: run as the user postoffice serve runs as)", err)
	}
	return resp, err
}

func printNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

func runStatus(e *env, args []string) error {
	fs := newFlags(e, "status", "[--json]", `Show the running server: its version, process id and uptime; each service
(pop3 with pop3s, smtp, submission with submissions, and the outbound queue),
whether it runs, the addresses it listens on, its open sessions and since
when it runs; the messages in the outbound queue; the web console's address.
On PostgreSQL: this process's instance id, and the process holding each
node name (alive with the time its lease has left, or gone since when).
Exits 75 when no server runs on the data directory.`+controlHelp)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	resp, err := e.call(control.Request{Cmd: "status"})
	if err != nil {
		return err
	}
	st := resp.Status
	if st == nil {
		return errors.New("empty status")
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(e.stdout, "postoffice %s, pid %d, up %s, hostname %s\n", st.Version, st.PID, roundDuration(time.Since(st.Started)), st.Hostname)
	fmt.Fprintf(e.stdout, "data %s", st.DataDir)
	if st.ConfigFile != "" {
		fmt.Fprintf(e.stdout, ", config %s", st.ConfigFile)
	}
	fmt.Fprintln(e.stdout)
	if st.Node != "" {
		fmt.Fprintf(e.stdout, "store %s, node %s", st.Store, st.Node)
		if st.Instance != "" {
			fmt.Fprintf(e.stdout, ", instance %s", st.Instance)
		}
		fmt.Fprintln(e.stdout)
	}
	if len(st.Instances) > 0 {
		printInstances(e.stdout, st)
	}
	fmt.Fprintln(e.stdout)
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tSESSIONS\tUPTIME\tADDRESSES")
	for _, s := range st.Services {
		state, up := "stopped", "-"
		if s.Running {
			state, up = "running", roundDuration(time.Since(s.Since))
		}
		if !s.Autostart {
			state += " (manual)"
		}
		sessions := fmt.Sprint(s.Sessions)
		if s.Draining > 0 {
			sessions += fmt.Sprintf(" (%d draining)", s.Draining)
		}
		addrs := strings.Join(s.Addrs, ", ")
		if addrs == "" {
			addrs = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, state, sessions, up, addrs)
		if s.Error != "" {
			fmt.Fprintf(tw, "\t  last error: %s\t\t\t\n", s.Error)
		}
	}
	tw.Flush()
	fmt.Fprintf(e.stdout, "\nqueue: %s", plural(st.Queue.Messages, "message"))
	if st.Queue.Held > 0 {
		fmt.Fprintf(e.stdout, " (%d held)", st.Queue.Held)
	}
	fmt.Fprintln(e.stdout)
	if st.Console != "" {
		fmt.Fprintf(e.stdout, "web console: %s\n", st.Console)
	}
	return nil
}

// printInstances lists the process holding each node name on a shared
// database, and how long its lease runs (or since when it ran out).
func printInstances(w io.Writer, st *control.Status) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tINSTANCE\tHOST\tPID\tUPTIME\tLEASE")
	for _, i := range st.Instances {
		lease := "alive, " + roundDuration(time.Until(i.LeaseUntil)) + " left"
		if !i.Alive {
			lease = "gone: ran out " + roundDuration(time.Since(i.LeaseUntil)) + " ago"
		}
		if i.Instance == st.Instance {
			lease += " (this process)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", i.Node, i.Instance, i.Host, i.PID, roundDuration(time.Since(i.Started)), lease)
	}
	tw.Flush()
}

// plural is "1 message", "2 messages".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func roundDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return d.Round(time.Minute).String()
	default:
		days := int(d / (24 * time.Hour))
		return fmt.Sprintf("%dd%s", days, (d - time.Duration(days)*24*time.Hour).Round(time.Hour))
	}
}

func serviceArg(name string) error {
	for _, s := range append(control.Services, "all") {
		if name == s {
			return nil
		}
	}
	return fail(exitUsage, "unknown service %q: one of %s, all", name, strings.Join(control.Services, ", "))
}

func runStart(e *env, args []string) error {
	fs := newFlags(e, "start", "pop3|smtp|submission|queue|all", `Start a service of the running server: it binds its configured addresses and
accepts sessions again (pop3 includes pop3s, submission includes submissions;
queue resumes outbound delivery). "all" starts every stopped service.
A service with autostart = false is started this way.`+controlHelp)
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if err := serviceArg(pos[0]); err != nil {
		return err
	}
	resp, err := e.call(control.Request{Cmd: "start", Service: pos[0]})
	printNotes(e.stdout, resp.Notes)
	return err
}

func runStop(e *env, args []string) error {
	fs := newFlags(e, "stop", "pop3|smtp|submission|queue|all [--grace DURATION]", `Stop a service of the running server: it stops accepting connections at
once, lets open sessions finish within the grace period, then closes them.
A POP3 session closed so applies none of its deletions (RFC 1939 section 6:
only QUIT does); an SMTP transaction cut short is not acknowledged, so the
client sends it again. queue stops outbound delivery (messages stay queued).
The server process keeps running: 'postoffice start' brings the service back.`+controlHelp)
	grace := fs.Duration("grace", control.DefaultGrace, "how long open sessions may take to finish")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	if err := serviceArg(pos[0]); err != nil {
		return err
	}
	if *grace < 0 {
		return fail(exitUsage, "--grace must not be negative")
	}
	resp, err := e.call(control.Request{Cmd: "stop", Service: pos[0], Grace: grace.String()})
	printNotes(e.stdout, resp.Notes)
	return err
}

func runReload(e *env, args []string) error {
	fs := newFlags(e, "reload", "", `Make the running server read its configuration file and its certificates
again, without dropping sessions (as SIGHUP does): new sessions get the new
settings, open ones finish as they are (an SMTP connection idle between
transactions is answered 421 and reconnects); a service whose addresses
changed moves to them; session limits apply at once. A configuration that does not
load changes nothing. data_dir and [log] need a restart of serve.`+controlHelp)
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	resp, err := e.call(control.Request{Cmd: "reload"})
	printNotes(e.stdout, resp.Notes)
	return err
}
