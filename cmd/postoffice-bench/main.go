// Command postoffice-bench is postoffice's load generator and the driver of
// its side-by-side benchmark against Dovecot (POP3) and Postfix (SMTP
// intake).
//
//	postoffice-bench run --workload poll --addr 127.0.0.1:1110 --users 'user%d@bench.test' --nusers 100 ...
//	postoffice-bench compare [--scale quick|full] [--peer auto|dovecot|postfix] [--workload poll,download,...]
//
// run speaks POP3 or SMTP to any server and reports operations per second,
// bytes per second, latency percentiles and errors, as a table or as JSON.
// compare starts throwaway postoffice, Dovecot and Postfix instances on
// loopback from the templates in bench/, loads the same users and mail
// into each, runs every workload against postoffice and its peer in
// alternation for several rounds and reports medians and ratios. See
// bench/README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The load generator's own profile, to check that it is not what a
	// workload measures.
	if p := os.Getenv("POSTOFFICE_BENCH_CPUPROFILE"); p != "" {
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			f.Close()
			os.Exit(code)
		}
	}
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  postoffice-bench run --workload NAME --addr HOST:PORT [flags]   load one server
  postoffice-bench compare [flags]                                 postoffice vs Dovecot/Postfix
  postoffice-bench cluster [flags]                                 SQLite vs 1, 2, 3 nodes on one PostgreSQL (bench/cluster.sh)
  postoffice-bench milter-pass --listen HOST:PORT                  a milter that passes all mail (compare --checks-milter=pass)
  postoffice-bench help [run|compare]

workloads:
`

func printUsage(w io.Writer) {
	fmt.Fprint(w, usage)
	for _, wl := range workloads {
		fmt.Fprintf(w, "  %-9s %s\n", wl.name, wl.doc)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "run":
		err = cmdRun(ctx, args[1:], stdout, stderr)
	case "compare":
		err = cmdCompare(ctx, args[1:], stdout, stderr)
	case "cluster":
		err = cmdCluster(ctx, args[1:], stdout, stderr)
	case "milter-pass":
		err = cmdMilterPass(ctx, args[1:], stderr)
	case "help", "-h", "--help":
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, stdout, stderr)
		}
		printUsage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "postoffice-bench: unknown command %q\n", args[0])
		printUsage(stderr)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errUsage) {
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "postoffice-bench: %v\n", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// usersFlags are the flags that name the accounts to log in with.
type usersFlags struct {
	pattern  *string
	n        *int
	file     *string
	password *string
}

func addUsersFlags(fs *flag.FlagSet) usersFlags {
	return usersFlags{
		pattern:  fs.String("users", "user%d@bench.test", "login names: a pattern with one %d, numbered from 1"),
		n:        fs.Int("nusers", 100, "how many users the pattern makes"),
		file:     fs.String("users-file", "", `file of accounts, one a line: "name" or "name password" (instead of --users)`),
		password: fs.String("password", "bench-password", "password of every user (a throwaway one: it shows in ps)"),
	}
}

func (u usersFlags) accounts() ([]account, error) {
	if *u.file != "" {
		return readUsersFile(*u.file, *u.password)
	}
	return usersFromPattern(*u.pattern, *u.n, *u.password)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	workload := fs.String("workload", "poll", "poll, download, bigmbox, intake or idle")
	addr := fs.String("addr", "", "server address, host:port (POP3, or SMTP for intake)")
	uf := addUsersFlags(fs)
	conc := fs.Int("concurrency", 10, "clients at once")
	dur := fs.Duration("duration", 0, "run for this long (0: until --count)")
	count := fs.Int("count", 0, "operations: sessions, or messages for intake (0: one pass over the users; 1000 messages for intake)")
	sizes := fs.String("sizes", "20k", "intake message sizes: 20k, or MIN-MAX/MEDIAN log-normal, or mix (2k-1m/20k)")
	perConn := fs.Int("per-conn", 10, "intake: messages per SMTP connection")
	from := fs.String("from", "sender@bench.invalid", "intake: envelope sender")
	authPassword := fs.String("auth-password", "", "intake: log in as --from with AUTH PLAIN and this password (submission; a throwaway one: it shows in ps)")
	rate := fs.Float64("rate", 0, "download: pace the RETRs at this many per second, all clients together (0: as fast as each client can)")
	hold := fs.Duration("hold", 10*time.Second, "idle: how long to hold the sessions open")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: postoffice-bench run --workload NAME --addr HOST:PORT [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *addr == "" {
		fs.Usage()
		return errUsage
	}
	users, err := uf.accounts()
	if err != nil {
		return err
	}
	dist, err := parseSizeDist(*sizes)
	if err != nil {
		return err
	}
	res, err := runWorkload(ctx, *workload, loadOpts{Addr: *addr, Users: users, Concurrency: *conc,
		Duration: *dur, Count: *count, Sizes: dist, PerConn: *perConn, From: *from, AuthPassword: *authPassword, Hold: *hold, Rate: *rate})
	if err != nil {
		return err
	}
	if *asJSON {
		err = writeJSON(stdout, res)
	} else {
		err = writeTable(stdout, []Result{res})
	}
	if err == nil && res.Errors() > 0 {
		err = fmt.Errorf("%d operations failed", res.Errors())
	}
	return err
}

func cmdCompare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &compareOpts{log: stderr}
	scale := fs.String("scale", "quick", "preset sizes: quick (a few minutes) or full (issue 7's sizes)")
	wl := fs.String("workload", "poll,download,bigmbox,intake,idle", "workloads, comma-separated")
	fs.StringVar(&o.Peer, "peer", "auto", "peer: auto (Dovecot for POP3, Postfix for intake), dovecot or postfix")
	fs.IntVar(&o.Rounds, "rounds", 3, "rounds per workload, servers alternating")
	fs.StringVar(&o.Hash, "hash", "production", "password hash cost on both sides: production (argon2id m=19456,t=2) or cheap (m=64,t=1)")
	fs.BoolVar(&o.AuthCache, "dovecot-auth-cache", true, "Dovecot's auth cache (postoffice's is always on)")
	fs.StringVar(&o.Loader, "loader", "bulk", "how mail is loaded into postoffice: bulk (direct, fast) or api (store.Deliver)")
	fs.StringVar(&o.Bin, "postoffice", "", "postoffice binary (default: go build ./cmd/postoffice into the temp directory)")
	fs.StringVar(&o.BenchDir, "bench-dir", "bench", "directory of the config templates")
	fs.StringVar(&o.TmpDir, "tmp", "", "parent of the throwaway data directory (default: $TMPDIR)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the data directory")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "directory for a CPU profile and an allocation profile of each postoffice round (serve --cpuprofile, --allocprofile)")
	fs.StringVar(&o.Password, "password", "bench-password", "password of every user")
	fs.StringVar(&o.Domain, "domain", "bench.test", "mail domain of the users")
	jsonOut := fs.String("json", "", "also write every round's results and the summary as JSON to this file (- for stdout)")

	fs.IntVar(&o.PollUsers, "poll-users", 0, "poll: users")
	fs.IntVar(&o.PollMessages, "poll-messages", 0, "poll: messages per user")
	pollSize := fs.String("poll-size", "4k", "poll: message sizes")
	fs.IntVar(&o.PollConcurrency, "poll-concurrency", 0, "poll: clients at once")
	fs.DurationVar(&o.PollDuration, "poll-duration", 0, "poll: length of a round")
	fs.IntVar(&o.DownloadUsers, "download-users", 0, "download: users (each downloads its mailbox once per round)")
	fs.IntVar(&o.DownloadMessages, "download-messages", 0, "download: messages per user")
	dlSizes := fs.String("download-sizes", "mix", "download: message sizes (mix: 2 KiB-1 MiB, median 20 KiB)")
	fs.IntVar(&o.DownloadConcurrency, "download-concurrency", 0, "download: clients at once")
	fs.Float64Var(&o.DownloadRate, "download-rate", 0, "download: pace the RETRs at this many per second, all clients together, latency counted from when each was due (0: each client as fast as it can)")
	fs.IntVar(&o.BigMessages, "bigmbox-messages", 0, "bigmbox: messages in the mailbox")
	bigSize := fs.String("bigmbox-size", "4k", "bigmbox: message sizes")
	fs.IntVar(&o.IntakeMessages, "intake-messages", 0, "intake: messages per round")
	fs.IntVar(&o.IntakeUsers, "intake-users", 0, "intake: recipients (in turn)")
	fs.IntVar(&o.IntakeConcurrency, "intake-concurrency", 0, "intake: SMTP senders at once")
	fs.IntVar(&o.IntakePerConn, "intake-per-conn", 10, "intake: messages per SMTP connection")
	intakeSize := fs.String("intake-size", "20k", "intake: message sizes")
	fs.IntVar(&o.IdleSessions, "idle-sessions", 0, "idle: sessions held open (one user each)")
	fs.IntVar(&o.IdleConcurrency, "idle-concurrency", 50, "idle: logins at once")
	fs.DurationVar(&o.IdleHold, "idle-hold", 5*time.Second, "idle: how long the sessions are held before memory is read")
	fs.BoolVar(&o.Checks, "checks", false, "intake: DKIM signing, SPF/DKIM/DMARC checks and one milter (--checks-milter) on both sides (Postfix with OpenDKIM and OpenDMARC; needs opendkim, opendmarc, and rspamd for its milter)")
	fs.IntVar(&o.ChecksRspamdWorkers, "checks-rspamd-workers", 1, "with --checks: rspamd's scanning processes (1, as in Debian's configuration: one normal worker)")
	fs.StringVar(&o.ChecksMilter, "checks-milter", "rspamd", "with --checks: the milter of both servers: rspamd, pass (a milter that takes every stage of every message and accepts it: the servers' milter clients' cost) or none (the checks and signing alone)")
	fs.StringVar(&o.IdleHash, "idle-hash", "cheap", "idle: password hash cost on both sides (cheap: memory of sessions, not of hashing)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	preset, ok := scales[*scale]
	if !ok {
		return fmt.Errorf("--scale %q: want quick or full", *scale)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range preset {
		if !set[name] {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("preset %s=%s: %w", name, v, err)
			}
		}
	}
	o.Workloads = strings.Split(*wl, ",")
	for _, w := range o.Workloads {
		if !knownWorkload(w) {
			return fmt.Errorf("unknown workload %q", w)
		}
		if p := o.peerFor(w); (w == "intake") != (p == "postfix") || (p != "dovecot" && p != "postfix") {
			return fmt.Errorf("workload %s cannot be compared with peer %q (POP3 workloads: dovecot; intake: postfix)", w, p)
		}
	}
	var err error
	for _, s := range []struct {
		spec string
		dst  *sizeDist
	}{{*pollSize, &o.PollSize}, {*dlSizes, &o.DownloadSizes}, {*bigSize, &o.BigSize}, {*intakeSize, &o.IntakeSize}} {
		if *s.dst, err = parseSizeDist(s.spec); err != nil {
			return err
		}
	}
	if o.Rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", o.Rounds)
	}
	if !slices.Contains(checksMilters, o.ChecksMilter) {
		return fmt.Errorf("--checks-milter %q: want one of %s", o.ChecksMilter, strings.Join(checksMilters, ", "))
	}
	if o.BenchDir, err = filepath.Abs(o.BenchDir); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(o.BenchDir, "dovecot.conf.tmpl")); err != nil {
		return fmt.Errorf("config templates not found (run from the repository root or give --bench-dir): %w", err)
	}
	if o.Bin == "" {
		bin, err := buildPostoffice(o.TmpDir)
		if err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(bin))
		o.Bin = bin
	}
	o.describe(stderr)
	start := time.Now()
	reports, err := runCompare(ctx, o)
	fmt.Fprintf(stdout, "\npostoffice vs peers, medians of %d rounds (%s, %s scale, hash %s, %v)\n",
		o.Rounds, time.Now().Format("2006-01-02"), *scale, o.Hash, time.Since(start).Round(time.Second))
	writeSummary(stdout, reports)
	for _, rep := range reports {
		for _, n := range rep.Notes {
			fmt.Fprintf(stdout, "note (%s): %s\n", rep.Workload, n)
		}
	}
	if *jsonOut != "" {
		out := struct {
			Date    string           `json:"date"`
			Options *compareOpts     `json:"options"`
			Reports []workloadReport `json:"reports"`
		}{time.Now().Format(time.RFC3339), o, reports}
		if *jsonOut == "-" {
			if jerr := writeJSON(stdout, out); jerr != nil {
				return errors.Join(err, jerr)
			}
		} else {
			f, ferr := os.Create(*jsonOut)
			if ferr != nil {
				return errors.Join(err, ferr)
			}
			jerr := writeJSON(f, out)
			if ferr := f.Close(); jerr != nil || ferr != nil {
				return errors.Join(err, fmt.Errorf("writing %s: %w", *jsonOut, errors.Join(jerr, ferr)))
			}
		}
	}
	return err
}

func knownWorkload(name string) bool {
	for _, w := range workloads {
		if w.name == name {
			return true
		}
	}
	return false
}

// buildPostoffice builds ./cmd/postoffice into a new temporary directory.
func buildPostoffice(tmp string) (string, error) {
	dir, err := os.MkdirTemp(tmp, "postoffice-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "postoffice")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/postoffice")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("go build ./cmd/postoffice (run from the repository root or give --postoffice): %v\n%s", err, out)
	}
	return bin, nil
}
