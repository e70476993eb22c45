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

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
)

// The commands that drive a running 'postoffice serve' over its control
// socket, DATA_DIR/control.sock (owner-only).

// serviceUsage names the services start and stop take.
const serviceUsage = "pop3|smtp|submission|http|queue|all"

const controlHelp = `
The command talks to 'postoffice serve' through the control socket in the
data directory (DATA_DIR/control.sock, readable by its owner only): run it
as the user serve runs as, with the same --config.`

const (
	statusHelp = `Show the running server: its version, process id and uptime; each service
(pop3 with pop3s, smtp, submission with submissions, http with https, and
the outbound queue), whether it runs, the addresses it listens on, its open
sessions and since when it runs; the messages in the outbound queue; the web
console's address; with [acme], each name's certificate: when it expires,
and the last failure to renew it.
On PostgreSQL: this process's instance id, and the process holding each
node name (alive with the time its lease has left, or gone since when).
Exits 75 when no server runs on the data directory.` + controlHelp
	startHelp = `Start a service of the running server: it binds its configured addresses and
accepts sessions again (pop3 includes pop3s, submission includes submissions,
http includes https; queue resumes outbound delivery). "all" starts every stopped service.
A service with autostart = false is started this way.` + controlHelp
	stopHelp = `Stop a service of the running server: it stops accepting connections at
once, lets open sessions finish within the grace period, then closes them.
A POP3 session closed so applies none of its deletions (RFC 1939 section 6:
only QUIT does); an SMTP transaction cut short is not acknowledged, so the
client sends it again. queue stops outbound delivery (messages stay queued).
The server process keeps running: 'postoffice start' brings the service back.` + controlHelp
	reloadHelp = `Make the running server read its configuration file and its certificates
again, without dropping sessions (as SIGHUP does): new sessions get the new
settings, open ones finish as they are (an SMTP connection idle between
transactions is answered 421 and reconnects); a service whose addresses
changed moves to them; session limits apply at once. A configuration that does not
load changes nothing. data_dir and [log] need a restart of serve.` + controlHelp
)

// callControl sends one request to the server running on cfg's data
// directory: 75 when none runs, 77 when the socket is another user's.
func callControl(cfg config.Config, req control.Request) (control.Response, error) {
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

func runStatus(c *call) error {
	resp, err := c.control(control.Request{Cmd: "status"})
	if err != nil {
		return err
	}
	st := resp.Status
	if st == nil {
		return errors.New("empty status")
	}
	if c.json {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(c.stdout, "postoffice %s, pid %d, up %s, hostname %s\n", st.Version, st.PID, roundDuration(time.Since(st.Started)), st.Hostname)
	fmt.Fprintf(c.stdout, "data %s", st.DataDir)
	if st.ConfigFile != "" {
		fmt.Fprintf(c.stdout, ", config %s", st.ConfigFile)
	}
	fmt.Fprintln(c.stdout)
	if st.Node != "" {
		fmt.Fprintf(c.stdout, "store %s, node %s", st.Store, st.Node)
		if st.Instance != "" {
			fmt.Fprintf(c.stdout, ", instance %s", st.Instance)
		}
		fmt.Fprintln(c.stdout)
	}
	if len(st.Instances) > 0 {
		printInstances(c.stdout, st)
	}
	fmt.Fprintln(c.stdout)
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
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
	fmt.Fprintf(c.stdout, "\nqueue: %s", plural(st.Queue.Messages, "message"))
	if st.Queue.Held > 0 {
		fmt.Fprintf(c.stdout, " (%d held)", st.Queue.Held)
	}
	fmt.Fprintln(c.stdout)
	if st.Console != "" {
		fmt.Fprintf(c.stdout, "web console: %s\n", st.Console)
	}
	if len(st.Certificates) > 0 {
		printCertificates(c.stdout, st.Certificates, time.Now())
	}
	return nil
}

// printCertificates lists the names ACME covers and their certificates.
func printCertificates(w io.Writer, certs []control.Certificate, now time.Time) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tEXPIRES\tDAYS LEFT\tISSUER\tSTATE")
	for _, ct := range certs {
		expires, days, issuer := "-", "-", ct.Issuer
		if !ct.NotAfter.IsZero() {
			expires = ct.NotAfter.Local().Format("2006-01-02 15:04")
			days = fmt.Sprintf("%.0f", ct.NotAfter.Sub(now).Hours()/24)
		}
		if issuer == "" {
			issuer = "-"
		}
		state := ct.Warning(now)
		if state == "" {
			state = "ok"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ct.Name, expires, days, issuer, state)
	}
	tw.Flush()
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

func runStart(c *call) error {
	if err := serviceArg(c.args[0]); err != nil {
		return err
	}
	resp, err := c.control(control.Request{Cmd: "start", Service: c.args[0]})
	printNotes(c.stdout, resp.Notes)
	return err
}

func runStop(c *call) error {
	if err := serviceArg(c.args[0]); err != nil {
		return err
	}
	if c.grace < 0 {
		return fail(exitUsage, "--grace must not be negative")
	}
	resp, err := c.control(control.Request{Cmd: "stop", Service: c.args[0], Grace: c.grace.String()})
	printNotes(c.stdout, resp.Notes)
	return err
}

func runReload(c *call) error {
	resp, err := c.control(control.Request{Cmd: "reload"})
	printNotes(c.stdout, resp.Notes)
	return err
}
