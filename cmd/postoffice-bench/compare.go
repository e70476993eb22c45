package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// compareOpts configures a side-by-side run.
type compareOpts struct {
	Workloads []string
	Peer      string // auto, dovecot, postfix
	Rounds    int
	Hash      string // production, cheap
	AuthCache bool   // Dovecot's auth cache (postoffice always has one)
	Loader    string // bulk, api
	Bin       string // postoffice binary
	BenchDir  string // templates
	TmpDir    string
	Keep      bool
	// CPUProfile: directory for postoffice's CPU and allocation profiles,
	// "" for none.
	CPUProfile string
	Password   string
	Domain     string

	PollUsers, PollMessages, PollConcurrency int
	PollSize                                 sizeDist
	PollDuration                             time.Duration

	DownloadUsers, DownloadMessages, DownloadConcurrency int
	DownloadSizes                                        sizeDist
	// DownloadRate paces the download's RETRs (messages per second, all
	// clients together; 0: a closed loop, each client as fast as it can).
	DownloadRate float64

	BigMessages int
	BigSize     sizeDist

	IntakeMessages, IntakeUsers, IntakeConcurrency, IntakePerConn int
	IntakeSize                                                    sizeDist

	IdleSessions, IdleConcurrency int
	IdleHold                      time.Duration
	// IdleHash is the hash cost of the idle workload's users: by default
	// cheap on both sides, so that the memory read is that of the
	// sessions and not the argon2id working memory (19 MiB per login in
	// flight) that both servers' allocators have not yet given back.
	IdleHash string

	// Checks: the intake workload with signing, SPF/DKIM/DMARC checks and
	// one milter on both sides (checks.go); checks is what it runs.
	Checks bool
	// ChecksMilter is that milter, one of checksMilters: rspamd
	// (default), pass (passmilter.go) or none.
	ChecksMilter string
	// ChecksRspamdWorkers is how many rspamd processes scan (1, as
	// Debian's configuration has it).
	ChecksRspamdWorkers int
	checks              *checksEnv

	log io.Writer
}

// scales are the presets of --scale; flags given explicitly override them.
var scales = map[string]map[string]string{
	// A few minutes on a 2-core machine.
	"quick": {
		"poll-users": "200", "poll-messages": "100", "poll-duration": "10s", "poll-concurrency": "20",
		"download-users": "50", "download-messages": "40", "download-concurrency": "10",
		"bigmbox-messages": "20000",
		"intake-messages":  "2000", "intake-users": "100", "intake-concurrency": "20",
		"idle-sessions": "1000",
	},
	// The sizes of issue 7.
	"full": {
		"poll-users": "1000", "poll-messages": "100", "poll-duration": "30s", "poll-concurrency": "50",
		"download-users": "200", "download-messages": "100", "download-concurrency": "20",
		"bigmbox-messages": "100000",
		"intake-messages":  "20000", "intake-users": "1000", "intake-concurrency": "50",
		"idle-sessions": "10000",
	},
}

// roundResult is one workload run on one server in one round.
type roundResult struct {
	Round  int    `json:"round"`
	Server string `json:"server"`
	Result Result `json:"result"`
}

// workloadReport is everything measured for one workload.
type workloadReport struct {
	Workload string        `json:"workload"`
	Peer     string        `json:"peer"`
	Runs     []roundResult `json:"runs"`
	Summary  []summaryRow  `json:"summary"`
	Notes    []string      `json:"notes,omitempty"`
}

// summaryRow is the median of a metric over the rounds for both servers.
type summaryRow struct {
	Metric       string  `json:"metric"`
	Postoffice   float64 `json:"postoffice"`
	Peer         float64 `json:"peer"`
	Ratio        float64 `json:"ratio"` // postoffice / peer
	HigherBetter bool    `json:"higher_is_better"`
	// Advantage is how many times better postoffice is (>1) or worse (<1).
	Advantage float64 `json:"advantage"`
}

// MarshalJSON writes a ratio that has no finite value (a figure of 0 on
// one side, such as the filters' CPU of a server without filters) as
// null: JSON has no infinity, and encoding/json refuses the whole report
// for one.
func (r summaryRow) MarshalJSON() ([]byte, error) {
	type plain summaryRow
	return json.Marshal(struct {
		plain
		Ratio     *float64 `json:"ratio"`
		Advantage *float64 `json:"advantage"`
	}{plain(r), finiteOrNil(r.Ratio), finiteOrNil(r.Advantage)})
}

func finiteOrNil(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// metric extracts one figure from a run.
type metric struct {
	name         string
	higherBetter bool
	get          func(Result) float64
}

func opsPerSec(op string) func(Result) float64 {
	return func(r Result) float64 { return r.Ops[op].OpsPerSec }
}

func p50(op string) func(Result) float64 {
	return func(r Result) float64 { return r.Ops[op].Latency.P50 }
}

func p99(op string) func(Result) float64 {
	return func(r Result) float64 { return r.Ops[op].Latency.P99 }
}

// msPer is the CPU time under Values[key] (seconds) per operation op,
// in milliseconds: server_cpu_s (the server's), client_cpu_s (the load
// generator's, which shares the cores: a faster server leaves it more of
// them), filter_cpu_s (the filters' with --checks) or milter_cpu_s
// (the one milter's alone).
func msPer(key, op string) func(Result) float64 {
	return func(r Result) float64 {
		n := r.Ops[op].Ops
		if n == 0 {
			return math.NaN()
		}
		return r.Values[key] * 1000 / float64(n)
	}
}

// perOp is the count under Values[key] per operation op: server_minflt,
// the server's minor page faults (memory mapped in without I/O; on a VM
// whose host takes back the memory its guest frees, a fault on a page the
// host took back is a fault on the host too).
func perOp(key, op string) func(Result) float64 {
	return func(r Result) float64 {
		n := r.Ops[op].Ops
		if n == 0 {
			return math.NaN()
		}
		return r.Values[key] / float64(n)
	}
}

// intakeMetrics are the intake's figures, with extra (the filters' CPU
// with --checks) after the server's CPU.
func intakeMetrics(extra []metric) []metric {
	ms := []metric{
		{"messages/s (all retrievable)", true, intakeRate},
		{"250 p50 ms", false, p50("message")},
		{"250 p99 ms", false, p99("message")},
		{"server CPU ms/message", false, msPer("server_cpu_s", "message")},
		{"server page faults/message", false, perOp("server_minflt", "message")},
		{"load generator CPU ms/message", false, msPer("client_cpu_s", "message")},
	}
	ms = append(ms, extra...)
	return append(ms,
		metric{"peak memory MiB (PSS)", false, value("peak_pss_mib")},
		metric{"peak RSS MiB", false, value("peak_rss_mib")})
}

// filterMetrics are the filters' CPU with --checks: all of them (the
// milter's, OpenDKIM's and OpenDMARC's processes), and the milter's alone,
// the one both servers pass every message through.
var filterMetrics = []metric{
	{"filters CPU ms/message", false, msPer("filter_cpu_s", "message")},
	{"milter CPU ms/message", false, msPer("milter_cpu_s", "message")},
	{"server+filters CPU ms/message", false, func(r Result) float64 {
		return msPer("server_cpu_s", "message")(r) + msPer("filter_cpu_s", "message")(r)
	}},
}

// intakeRate is messages per second until all were retrievable.
func intakeRate(r Result) float64 {
	if r.Seconds == 0 {
		return 0
	}
	return float64(r.Ops["message"].Ops) / r.Seconds
}

func value(k string) func(Result) float64 {
	return func(r Result) float64 { return r.Values[k] }
}

// metrics are the figures summarized per workload ("first"/"again" runs of
// bigmbox are told apart by Result.Workload).
var metrics = map[string][]metric{
	"poll": {
		{"sessions/s", true, opsPerSec("session")},
		{"session p50 ms", false, p50("session")},
		{"session p99 ms", false, p99("session")},
		{"server CPU ms/session", false, msPer("server_cpu_s", "session")},
	},
	"download": {
		{"messages/s", true, opsPerSec("retr")},
		{"MB/s", true, func(r Result) float64 { return r.Ops["retr"].BytesPerSec / 1e6 }},
		{"RETR p50 ms", false, p50("retr")},
		{"session p50 ms", false, p50("session")},
		{"server CPU ms/message", false, msPer("server_cpu_s", "retr")},
		{"server page faults/message", false, perOp("server_minflt", "retr")},
		{"load generator CPU ms/message", false, msPer("client_cpu_s", "retr")},
		{"peak memory MiB (PSS)", false, value("peak_pss_mib")},
		{"peak RSS MiB", false, value("peak_rss_mib")},
	},
	// The download with --download-rate: the same offered load on both,
	// latencies from when each RETR was due.
	"download-paced": {
		{"messages/s", true, opsPerSec("retr")},
		{"RETR p50 ms", false, p50("retr")},
		{"RETR p99 ms", false, p99("retr")},
		{"RETR p50 ms from sending", false, p50("retr-sent")},
		{"server CPU ms/message", false, msPer("server_cpu_s", "retr")},
		{"load generator CPU ms/message", false, msPer("client_cpu_s", "retr")},
		{"peak memory MiB (PSS)", false, value("peak_pss_mib")},
	},
	"bigmbox-first": {
		{"first session ms", false, p50("session")},
		{"first login ms", false, p50("login")},
		{"first UIDL ms", false, p50("uidl")},
		{"first LIST ms", false, p50("list")},
	},
	"bigmbox-again": {
		{"next session ms", false, p50("session")},
		{"next UIDL ms", false, p50("uidl")},
	},
	"intake":        intakeMetrics(nil),
	"intake-checks": intakeMetrics(filterMetrics),
	"idle": {
		{"KiB per idle session", false, value("kib_per_session")},
		{"memory MiB (all sessions)", false, value("mib_after")},
		{"logins/s", true, opsPerSec("login")},
	},
}

func summarizeRuns(runs []roundResult, peer string) []summaryRow {
	var rows []summaryRow
	var kinds []string
	seen := map[string]bool{}
	for _, r := range runs {
		if !seen[r.Result.Workload] {
			seen[r.Result.Workload] = true
			kinds = append(kinds, r.Result.Workload)
		}
	}
	for _, kind := range kinds {
		for _, m := range metrics[kind] {
			var po, pe []float64
			for _, r := range runs {
				if r.Result.Workload != kind {
					continue
				}
				v := m.get(r.Result)
				if r.Server == "postoffice" {
					po = append(po, v)
				} else if r.Server == peer {
					pe = append(pe, v)
				}
			}
			row := summaryRow{Metric: m.name, Postoffice: median(po), Peer: median(pe), HigherBetter: m.higherBetter}
			row.Ratio = row.Postoffice / row.Peer
			if m.higherBetter {
				row.Advantage = row.Ratio
			} else {
				row.Advantage = row.Peer / row.Postoffice
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func writeSummary(w io.Writer, reports []workloadReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tmetric\tpostoffice\tpeer\tpeer value\tpostoffice/peer\tverdict")
	for _, rep := range reports {
		for _, row := range rep.Summary {
			verdict := "-"
			switch a := row.Advantage; {
			case math.IsNaN(a) || math.IsInf(a, 0):
			case a >= 1:
				verdict = fmt.Sprintf("%.2fx better", a)
			default:
				verdict = fmt.Sprintf("%.2fx worse", 1/a)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.3f\t%s\n", rep.Workload, row.Metric,
				formatFig(row.Postoffice), rep.Peer, formatFig(row.Peer), row.Ratio, verdict)
		}
	}
	return tw.Flush()
}

func formatFig(v float64) string {
	switch {
	case math.IsNaN(v):
		return "-"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func (o *compareOpts) logf(format string, args ...any) {
	fmt.Fprintf(o.log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// peerFor returns the peer a workload is compared with.
func (o *compareOpts) peerFor(workload string) string {
	if o.Peer != "auto" {
		return o.Peer
	}
	if workload == "intake" {
		return "postfix"
	}
	return "dovecot"
}

// ensurePackages installs Dovecot and Postfix from Debian's packages when
// absent, and with --checks what the checks run (checks.go).
func (o *compareOpts) ensurePackages(peers map[string]bool) error {
	var need []string
	want := func(bin, pkg string) {
		if _, err := exec.LookPath(bin); err != nil {
			need = append(need, pkg)
		}
	}
	if peers["dovecot"] {
		want("dovecot", "dovecot-pop3d")
	}
	if peers["postfix"] {
		want("postfix", "postfix")
		if o.Checks && o.ChecksMilter == "rspamd" {
			want("rspamd", "rspamd")
		}
		if o.Checks {
			want("opendkim", "opendkim")
			want("opendmarc", "opendmarc")
		}
	}
	if len(need) == 0 {
		return nil
	}
	o.logf("installing %s", strings.Join(need, " "))
	for _, args := range [][]string{{"update", "-qq"}, append([]string{"install", "-y", "-qq", "--no-install-recommends"}, need...)} {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v\n%s", args[0], err, out)
		}
	}
	return nil
}

// raiseFileLimit lets the benchmark and the servers it starts hold tens of
// thousands of connections.
func raiseFileLimit(n uint64) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur >= n {
		return nil
	}
	l.Cur = n
	if l.Max < n {
		l.Max = n
	}
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
}

func runCompare(ctx context.Context, o *compareOpts) ([]workloadReport, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("compare runs Dovecot and Postfix as root: run it as root")
	}
	peers := map[string]bool{}
	for _, w := range o.Workloads {
		peers[o.peerFor(w)] = true
	}
	if err := o.ensurePackages(peers); err != nil {
		return nil, err
	}
	if err := raiseFileLimit(uint64(o.IdleSessions) + 2000); err != nil {
		o.logf("warning: could not raise the open files limit to %d: %v", o.IdleSessions+2000, err)
	}
	tmp, err := os.MkdirTemp(o.TmpDir, "postoffice-bench-")
	if err != nil {
		return nil, err
	}
	// Dovecot's and Postfix's unprivileged processes must reach their
	// directories inside.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	if o.Keep {
		o.logf("data in %s (kept)", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	hash, err := makeHash(o.Password, o.Hash)
	if err != nil {
		return nil, err
	}
	c := hashCosts[o.Hash]
	o.logf("machine: %d CPUs, %s; password hash %s: argon2id m=%d,t=%d,p=1", runtime.NumCPU(), runtime.Version(), o.Hash, c.m, c.t)
	var reports []workloadReport
	for _, w := range o.Workloads {
		peer := o.peerFor(w)
		o.logf("=== %s: postoffice vs %s, %d rounds", w, peer, o.Rounds)
		rep, err := o.compareWorkload(ctx, filepath.Join(tmp, w), w, peer, hash)
		if err != nil {
			return reports, fmt.Errorf("%s: %w", w, err)
		}
		reports = append(reports, rep)
		writeSummary(o.log, []workloadReport{rep})
	}
	return reports, nil
}

// pair is the two servers of a workload.
type pair struct {
	po   *postoffice
	peer instance
	ids  map[string]int64 // postoffice user IDs
}

func (p *pair) both() []instance { return []instance{p.po, p.peer} }

func (p *pair) stop() {
	for _, s := range p.both() {
		if s != nil && !isNil(s) {
			s.Stop()
		}
	}
}

func isNil(s instance) bool {
	switch v := s.(type) {
	case *postoffice:
		return v == nil
	case *dovecot:
		return v == nil
	case *postfix:
		return v == nil
	}
	return false
}

// setup creates both servers' directories, configs and users.
func (o *compareOpts) setup(ctx context.Context, dir, peer string, users []account, hash string, sessions int) (*pair, error) {
	p := &pair{}
	var err error
	if p.po, err = newPostoffice(o.Bin, o.BenchDir, filepath.Join(dir, "postoffice"), o.checks); err != nil {
		return nil, err
	}
	if o.CPUProfile != "" {
		p.po.profile = filepath.Join(o.CPUProfile, filepath.Base(dir))
	}
	if p.ids, err = addPostofficeUsers(ctx, p.po.dataDir(), users, hash); err != nil {
		return nil, err
	}
	if o.checks != nil {
		// One RSA-2048 key, as OpenDKIM's (postoffice's default is an
		// Ed25519 and an RSA key, two signatures per message).
		out, err := exec.CommandContext(ctx, o.Bin, "dkim", "keygen", "--config", p.po.config(),
			"--algorithm", "rsa", "--selector", "bench", o.Domain).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("postoffice dkim keygen: %v: %s", err, out)
		}
	}
	switch peer {
	case "dovecot":
		v, err := newDovecot(o.BenchDir, filepath.Join(dir, "dovecot"), o.AuthCache, sessions)
		if err != nil {
			return nil, err
		}
		if err := v.writePasswd(users, hash); err != nil {
			return nil, err
		}
		p.peer = v
	case "postfix":
		x, err := newPostfix(o.BenchDir, filepath.Join(dir, "postfix"), o.Domain, users, o.checks)
		if err != nil {
			return nil, err
		}
		p.peer = x
	default:
		return nil, fmt.Errorf("unknown peer %q", peer)
	}
	return p, nil
}

// fill loads the same messages into both servers' mailboxes: for user i,
// perUser messages with sizes from dist (seeded by round and user).
func (o *compareOpts) fill(ctx context.Context, p *pair, users []account, perUser int, dist sizeDist, round int) error {
	var items []mailItem
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		if o.Loader == "api" {
			err := apiDeliver(ctx, p.po.dataDir(), p.ids, items)
			items = items[:0]
			return err
		}
		err := bulkDeliver(ctx, p.po.dataDir(), p.ids, items)
		items = items[:0]
		return err
	}
	v, _ := p.peer.(*dovecot)
	for ui, u := range users {
		r := rand.New(rand.NewPCG(uint64(round), uint64(ui)))
		msgs := make([][]byte, perUser)
		for i := range msgs {
			msgs[i] = generateMessage(u.Name, round*10_000_000+ui*perUser+i, dist.draw(r))
			items = append(items, mailItem{user: u.Name, body: msgs[i]})
		}
		if v != nil {
			if err := writeMaildir(filepath.Join(v.dir, "mail"), v.maildir(u.Name), msgs); err != nil {
				return err
			}
		}
		if len(items) >= 20_000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	syscall.Sync()
	return nil
}

// touchAll logs every user in once on s (STAT, QUIT), unmeasured: Dovecot
// then has indexed the mail a foreign MTA put into new/, as its own LDA
// would have done at delivery, and both servers have the users in their
// auth caches.
func touchAll(ctx context.Context, s instance, users []account, conc int) error {
	res := runPOP3Sessions(ctx, "touch", loadOpts{Addr: s.POP3Addr(), Users: users, Concurrency: conc, Count: len(users)},
		func(ctx context.Context, c *collector, addr string, u account) error {
			p, err := login(ctx, c, addr, u)
			if err != nil {
				return err
			}
			defer p.Close()
			if _, _, err := p.stat(); err != nil {
				return err
			}
			return p.quit()
		})
	if n := res.Errors(); n > 0 {
		return fmt.Errorf("%s: %d of %d logins failed: %v", s.Name(), n, len(users), res.ErrorSamples)
	}
	return nil
}

// verifySame checks that both servers serve the user's mailbox with the
// same sizes and the same octets.
func verifySame(ctx context.Context, a, b instance, u account) error {
	type msg struct {
		size int64
		body []byte
	}
	get := func(s instance) ([]msg, error) {
		var out []msg
		err := fetchAll(ctx, s.POP3Addr(), u, func(i int, size int64, content []byte) {
			out = append(out, msg{size, content})
		})
		return out, err
	}
	ma, err := get(a)
	if err != nil {
		return fmt.Errorf("%s: %w", a.Name(), err)
	}
	mb, err := get(b)
	if err != nil {
		return fmt.Errorf("%s: %w", b.Name(), err)
	}
	if len(ma) != len(mb) {
		return fmt.Errorf("%s has %d messages, %s %d", a.Name(), len(ma), b.Name(), len(mb))
	}
	// Both list in delivery order; compare as multisets of contents in
	// case one orders differently.
	seen := map[string]int{}
	for _, m := range ma {
		seen[string(m.body)]++
	}
	for i, m := range mb {
		if seen[string(m.body)] == 0 {
			return fmt.Errorf("message %d of %s (%d octets) not served by %s", i+1, b.Name(), m.size, a.Name())
		}
		seen[string(m.body)]--
	}
	return nil
}

func (o *compareOpts) compareWorkload(ctx context.Context, dir, w, peer, hash string) (workloadReport, error) {
	rep := workloadReport{Workload: w, Peer: peer}
	var err error
	switch w {
	case "poll":
		err = o.comparePoll(ctx, dir, peer, hash, &rep)
	case "download":
		err = o.compareDownload(ctx, dir, peer, hash, &rep)
	case "bigmbox":
		err = o.compareBigMailbox(ctx, dir, peer, hash, &rep)
	case "intake":
		err = o.compareIntake(ctx, dir, peer, hash, &rep)
	case "idle":
		err = o.compareIdle(ctx, dir, peer, hash, &rep)
	default:
		err = fmt.Errorf("unknown workload")
	}
	rep.Summary = summarizeRuns(rep.Runs, peer)
	return rep, err
}

// order alternates which server goes first from round to round.
func order(p *pair, round int) []instance {
	if round%2 == 0 {
		return []instance{p.po, p.peer}
	}
	return []instance{p.peer, p.po}
}

func (o *compareOpts) record(rep *workloadReport, round int, s instance, res Result) {
	res.Server = s.Name()
	rep.Runs = append(rep.Runs, roundResult{Round: round, Server: s.Name(), Result: res})
	var parts []string
	for _, n := range res.opNames() {
		op := res.Ops[n]
		parts = append(parts, fmt.Sprintf("%s %d ops %.1f/s p50 %.2fms", n, op.Ops, op.OpsPerSec, op.Latency.P50))
	}
	o.logf("round %d %-10s %-13s %s", round+1, s.Name(), res.Workload, strings.Join(parts, "; "))
	for _, e := range res.ErrorSamples {
		o.logf("  error: %s", e)
	}
}

func (o *compareOpts) startBoth(ctx context.Context, p *pair) error {
	for _, s := range p.both() {
		if err := s.Start(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (o *compareOpts) users(n int) ([]account, error) {
	return usersFromPattern("user%d@"+o.Domain, n, o.Password)
}

func (o *compareOpts) comparePoll(ctx context.Context, dir, peer, hash string, rep *workloadReport) error {
	users, err := o.users(o.PollUsers)
	if err != nil {
		return err
	}
	p, err := o.setup(ctx, dir, peer, users, hash, o.PollConcurrency)
	if err != nil {
		return err
	}
	defer p.stop()
	o.logf("loading %d users x %d messages of %v", len(users), o.PollMessages, o.PollSize)
	if err := o.fill(ctx, p, users, o.PollMessages, o.PollSize, 0); err != nil {
		return err
	}
	if err := o.startBoth(ctx, p); err != nil {
		return err
	}
	if err := verifySame(ctx, p.po, p.peer, users[0]); err != nil {
		return fmt.Errorf("the servers do not serve the same mail: %w", err)
	}
	for _, s := range p.both() {
		if err := touchAll(ctx, s, users, o.PollConcurrency); err != nil {
			return err
		}
	}
	for r := range o.Rounds {
		for _, s := range order(p, r) {
			res, err := o.measured(ctx, s, "poll", loadOpts{Addr: s.POP3Addr(), Users: users,
				Concurrency: o.PollConcurrency, Duration: o.PollDuration})
			if err != nil {
				return err
			}
			o.record(rep, r, s, res)
		}
	}
	return nil
}

func (o *compareOpts) compareDownload(ctx context.Context, dir, peer, hash string, rep *workloadReport) error {
	users, err := o.users(o.DownloadUsers)
	if err != nil {
		return err
	}
	p, err := o.setup(ctx, dir, peer, users, hash, o.DownloadConcurrency)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := o.startBoth(ctx, p); err != nil {
		return err
	}
	for r := range o.Rounds {
		o.logf("loading %d users x %d messages of %v", len(users), o.DownloadMessages, o.DownloadSizes)
		if err := o.fill(ctx, p, users, o.DownloadMessages, o.DownloadSizes, r); err != nil {
			return err
		}
		if r == 0 {
			if err := verifySame(ctx, p.po, p.peer, users[0]); err != nil {
				return fmt.Errorf("the servers do not serve the same mail: %w", err)
			}
		}
		for _, s := range p.both() {
			if err := touchAll(ctx, s, users, o.DownloadConcurrency); err != nil {
				return err
			}
		}
		for _, s := range order(p, r) {
			res, err := o.measured(ctx, s, "download", loadOpts{Addr: s.POP3Addr(), Users: users,
				Concurrency: o.DownloadConcurrency, Rate: o.DownloadRate})
			if err != nil {
				return err
			}
			o.record(rep, r, s, res)
		}
	}
	return nil
}

func (o *compareOpts) compareBigMailbox(ctx context.Context, dir, peer, hash string, rep *workloadReport) error {
	users, err := o.users(1)
	if err != nil {
		return err
	}
	p, err := o.setup(ctx, dir, peer, users, hash, 1)
	if err != nil {
		return err
	}
	defer p.stop()
	o.logf("loading 1 user x %d messages of %v", o.BigMessages, o.BigSize)
	if err := o.fill(ctx, p, users, o.BigMessages, o.BigSize, 0); err != nil {
		return err
	}
	if err := o.startBoth(ctx, p); err != nil {
		return err
	}
	v, _ := p.peer.(*dovecot)
	for r := range o.Rounds {
		for _, s := range order(p, r) {
			if s == instance(v) {
				// A first login: no index yet, as after delivery by a
				// foreign MTA.
				if err := dropDovecotIndexes(v.maildir(users[0].Name)); err != nil {
					return err
				}
			}
			for _, kind := range []string{"bigmbox-first", "bigmbox-again"} {
				res, err := o.measured(ctx, s, "bigmbox", loadOpts{Addr: s.POP3Addr(), Users: users, Count: 1})
				if err != nil {
					return err
				}
				res.Workload = kind
				o.record(rep, r, s, res)
			}
		}
	}
	rep.Notes = append(rep.Notes, "first: Dovecot's index files removed before the session (mail as a foreign MTA leaves it); next: the session right after")
	return nil
}

func (o *compareOpts) compareIntake(ctx context.Context, dir, peer, hash string, rep *workloadReport) error {
	users, err := o.users(o.IntakeUsers)
	if err != nil {
		return err
	}
	if o.Checks {
		o.logf("starting the checks: DNS zone on %s, OpenDKIM, OpenDMARC, milter %s", checksDNSAddr, o.ChecksMilter)
		chk, err := startChecks(ctx, filepath.Join(dir, "checks"), o.Domain, o.ChecksMilter, max(o.ChecksRspamdWorkers, 1))
		if err != nil {
			return err
		}
		o.checks = chk
		defer func() { chk.stop(); o.checks = nil }()
	}
	p, err := o.setup(ctx, dir, peer, users, hash, 0)
	if err != nil {
		return err
	}
	defer p.stop()
	if err := o.startBoth(ctx, p); err != nil {
		return err
	}
	x, _ := p.peer.(*postfix)
	for r := range o.Rounds {
		for _, s := range order(p, r) {
			lo := loadOpts{Addr: s.SMTPAddr(), Users: users, Concurrency: o.IntakeConcurrency,
				Count: o.IntakeMessages, PerConn: o.IntakePerConn, Sizes: o.IntakeSize}
			if o.checks != nil {
				lo.Streams = o.checkedStreams(p, s, users)
			}
			var before int
			if s == instance(x) && x != nil {
				dirs := make([]string, len(users))
				for i, u := range users {
					dirs[i] = x.maildirNew(u.Name)
				}
				if before, err = countFiles(dirs); err != nil {
					return err
				}
				want := before + o.IntakeMessages
				lo.waitDone = func(ctx context.Context) error {
					return waitForFiles(ctx, dirs, want, 10*time.Minute)
				}
			}
			res, err := o.measured(ctx, s, "intake", lo)
			if err != nil {
				return err
			}
			if s == instance(p.po) {
				if err := o.checkPostofficeCount(ctx, p, users, (r+1)*o.IntakeMessages); err != nil {
					return err
				}
			}
			o.record(rep, r, s, res)
		}
	}
	rep.Notes = append(rep.Notes, "postoffice: mail is retrievable when 250 is sent; Postfix: when virtual(8) has put every message into the maildirs (counted)")
	if o.checks != nil {
		var milter string
		switch o.checks.milterKind {
		case "rspamd":
			milter = fmt.Sprintf("rspamd as milter on both (%d scanning processes)", o.checks.rspamdWorkers)
		case "pass":
			milter = "the pass milter on both (every stage of every message, one field added, accepted)"
		default:
			milter = "no milter beyond Postfix's OpenDKIM and OpenDMARC (--checks-milter=none)"
		}
		rep.Notes = append(rep.Notes, "checks: half the connections inbound from "+senderDomain+" (DKIM-signed, SPF/DKIM/DMARC pass, p=reject), half submitted by "+users[0].Name+" and signed by the server (RSA-2048); "+milter+"; Postfix with OpenDKIM and OpenDMARC; filters CPU: the milter, OpenDKIM, OpenDMARC")
	}
	return nil
}

// checkedStreams are the intake's clients with --checks: inbound mail
// from sender.example, DKIM-signed, from senderIP to the SMTP port; and
// mail the first user submits: to postoffice's submission port with
// AUTH PLAIN, to Postfix's SMTP port from 127.0.0.1 (mynetworks).
func (o *compareOpts) checkedStreams(p *pair, s instance, users []account) []intakeStream {
	inbound := intakeStream{Addr: s.SMTPAddr(), LocalIP: senderIP, Helo: senderHelo,
		From: "sender@" + senderDomain, FromField: "Sender <sender@" + senderDomain + ">", Sign: o.checks.signedBy}
	submitter := users[0]
	submit := intakeStream{Addr: s.SMTPAddr(), From: submitter.Name, FromField: "<" + submitter.Name + ">"}
	if s == instance(p.po) {
		submit.Addr = p.po.SubmissionAddr()
		submit.AuthUser, submit.AuthPassword = submitter.Name, submitter.Password
	}
	return []intakeStream{inbound, submit}
}

// waitForFiles waits until the directories hold want entries.
func waitForFiles(ctx context.Context, dirs []string, want int, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		n, err := countFiles(dirs)
		if err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d messages delivered after %v", n, want, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// checkPostofficeCount checks that postoffice's mailboxes hold want
// messages in all (the store's own counters, as STAT reports them).
func (o *compareOpts) checkPostofficeCount(ctx context.Context, p *pair, users []account, want int) error {
	st, err := sqlite.Open(p.po.dataDir())
	if err != nil {
		return err
	}
	defer st.Close()
	total := 0
	for _, u := range users {
		n, _, err := st.Usage(ctx, p.ids[u.Name])
		if err != nil {
			return err
		}
		total += n
	}
	if total != want {
		return fmt.Errorf("postoffice holds %d messages, want %d", total, want)
	}
	return nil
}

func (o *compareOpts) compareIdle(ctx context.Context, dir, peer, hash string, rep *workloadReport) error {
	users, err := o.users(o.IdleSessions)
	if err != nil {
		return err
	}
	if o.IdleHash != o.Hash {
		if hash, err = makeHash(o.Password, o.IdleHash); err != nil {
			return err
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("password hash %s on both sides (--idle-hash)", o.IdleHash))
	}
	p, err := o.setup(ctx, dir, peer, users, hash, o.IdleSessions)
	if err != nil {
		return err
	}
	defer p.stop()
	o.logf("loading %d users x 1 message", len(users))
	if err := o.fill(ctx, p, users, 1, sizeDist{min: 4096, max: 4096, median: 4096}, 0); err != nil {
		return err
	}
	for r := range o.Rounds {
		for _, s := range order(p, r) {
			// A fresh server each round: the memory before is that of a
			// server that has served nobody yet.
			if err := s.Start(ctx); err != nil {
				return err
			}
			time.Sleep(2 * time.Second)
			before, err := s.Memory()
			if err != nil {
				s.Stop()
				return err
			}
			n := len(users)
			res, err := runWorkload(ctx, "idle", loadOpts{Addr: s.POP3Addr(), Users: users,
				Concurrency: o.IdleConcurrency, Hold: o.IdleHold,
				measure: func(c *collector) {
					after, err := s.Memory()
					if err != nil {
						c.fail("memory", err)
						return
					}
					c.set("processes", float64(after.Processes))
					c.set("mib_before", float64(before.PSS)/(1<<20))
					c.set("mib_after", float64(after.PSS)/(1<<20))
					c.set("rss_mib_after", float64(after.RSS)/(1<<20))
					c.set("kib_per_session", float64(after.PSS-before.PSS)/1024/float64(n))
				}})
			s.Stop()
			if err != nil {
				return err
			}
			o.record(rep, r, s, res)
		}
	}
	rep.Notes = append(rep.Notes, "memory is the proportional set size (PSS) summed over the server's processes, after all sessions logged in and were held idle")
	return nil
}

// measured runs a workload on s and records the CPU time s's processes
// used meanwhile (server_cpu_s): on a machine the client and the server
// share, and other work may share too, the cost per operation is steadier
// than the rate. It also records the peak memory of s's processes during
// the run (peak_rss_mib, peak_pss_mib), sampled every memSample.
func (o *compareOpts) measured(ctx context.Context, s instance, workload string, lo loadOpts) (Result, error) {
	o.settle(ctx)
	pid, err := s.PID()
	if err != nil {
		return Result{}, err
	}
	before, err := treeUsage(pid)
	if err != nil {
		return Result{}, err
	}
	var filtersBefore, milterBefore float64
	if o.checks != nil {
		if filtersBefore, milterBefore, err = o.checks.filterCPU(); err != nil {
			return Result{}, err
		}
	}
	stop := make(chan struct{})
	peak := make(chan memStats, 1)
	go func() { peak <- peakMemory(pid, stop) }()
	selfBefore := selfCPU()
	res, err := runWorkload(ctx, workload, lo)
	selfAfter := selfCPU()
	close(stop)
	top := <-peak
	if err != nil {
		return res, err
	}
	after, err := treeUsage(pid)
	if err != nil {
		return res, err
	}
	if res.Values == nil {
		res.Values = map[string]float64{}
	}
	res.Values["server_cpu_s"] = after.cpu - before.cpu
	res.Values["server_minflt"] = float64(after.minflt - before.minflt)
	res.Values["client_cpu_s"] = selfAfter - selfBefore
	if o.checks != nil {
		filters, milter, err := o.checks.filterCPU()
		if err != nil {
			return res, err
		}
		res.Values["filter_cpu_s"] = filters - filtersBefore
		if o.checks.milter != nil {
			res.Values["milter_cpu_s"] = milter - milterBefore
		}
		res.Workload += "-checks"
	}
	res.Values["peak_rss_mib"] = float64(top.RSS) / (1 << 20)
	res.Values["peak_pss_mib"] = float64(top.PSS) / (1 << 20)
	return res, nil
}

// selfCPU is the user and system CPU time, in seconds, this process (the
// load generator, without the servers it started) has used so far.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// memSample is how often peakMemory reads the server's resident size.
const memSample = 200 * time.Millisecond

// pssSpacing paces peakMemory's PSS readings: each waits at least
// pssSpacing times as long as the last one took (and memSample). Reading
// smaps_rollup walks every mapping of every process: for Postfix's
// tree of some 70 processes it took about 30 ms, which at five readings a
// second was 15 % of a core taken from the server under measurement (the
// load generator's CPU per message against Postfix was 2.78 ms, against
// postoffice's one process 0.72). Spaced so, the readings take at most
// 2 % of a core.
const pssSpacing = 50

// peakMemory samples the memory of root's process tree until stop is
// closed and returns the largest RSS and PSS seen (each its own maximum;
// the sum over the processes at one instant, so a multi-process server's
// peak is that of its processes together). The RSS is read every
// memSample, the PSS as pssSpacing allows.
func peakMemory(root int, stop <-chan struct{}) memStats {
	var top memStats
	var nextPSS time.Time
	t := time.NewTicker(memSample)
	defer t.Stop()
	for {
		if pids, err := descendants(root); err == nil {
			var rss int64
			n := 0
			for _, pid := range pids {
				if r, err := residentSize(pid); err == nil {
					rss += r
					n++
				}
			}
			top.RSS = max(top.RSS, rss)
			top.Processes = max(top.Processes, n)
			if now := time.Now(); !now.Before(nextPSS) {
				var pss int64
				for _, pid := range pids {
					if _, p, err := processMemory(pid); err == nil {
						pss += p
					}
				}
				top.PSS = max(top.PSS, pss)
				nextPSS = now.Add(pssSpacing * time.Since(now))
			}
		}
		select {
		case <-stop:
			return top
		case <-t.C:
		}
	}
}

// settle waits before a measured run for what the previous steps left
// running (the other server's deferred writes and index updates, the
// kernel writing back its files): it syncs, then waits until the CPUs are
// at least settleIdle idle over a settleStep, for at most settleMax.
// Without it the server measured second in a round paid for the first.
func (o *compareOpts) settle(ctx context.Context) {
	syscall.Sync()
	deadline := time.Now().Add(settleMax)
	prev, err := readCPUTimes()
	for err == nil && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(settleStep):
		}
		var cur cpuTimes
		if cur, err = readCPUTimes(); err != nil {
			break
		}
		if cur.idleShare(prev) >= settleIdle {
			return
		}
		prev = cur
	}
	if err != nil {
		o.logf("warning: not waiting for an idle machine: %v", err)
		return
	}
	o.logf("warning: machine still busy after %v; measuring anyway", settleMax)
}

const (
	settleIdle = 0.9
	settleStep = 250 * time.Millisecond
	settleMax  = 15 * time.Second
)

// cpuTimes are the machine's CPU times from /proc/stat, in ticks.
type cpuTimes struct{ idle, total int64 }

// idleShare is the share of the CPU time since prev that was idle.
func (c cpuTimes) idleShare(prev cpuTimes) float64 {
	if c.total <= prev.total {
		return 0
	}
	return float64(c.idle-prev.idle) / float64(c.total-prev.total)
}

func readCPUTimes() (cpuTimes, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUTimes(b)
}

// parseCPUTimes reads the first line of /proc/stat: "cpu" and the times
// user, nice, system, idle, iowait, irq, softirq, steal (and guest times,
// already counted in user and nice). I/O wait is not idle: the writes
// still going on are what settle waits for.
func parseCPUTimes(b []byte) (cpuTimes, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t cpuTimes
	for i, v := range f[1:9] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		t.total += n
		if i == 3 {
			t.idle = n
		}
	}
	return t, nil
}

// describe prints the settings of a compare run.
func (o *compareOpts) describe(w io.Writer) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "workloads %s, %d rounds, hash %s, Dovecot auth cache %v, loader %s\n",
		strings.Join(o.Workloads, ","), o.Rounds, o.Hash, o.AuthCache, o.Loader)
	fmt.Fprintf(&b, "poll: %d users x %d messages of %v, %d clients, %v per round\n",
		o.PollUsers, o.PollMessages, o.PollSize, o.PollConcurrency, o.PollDuration)
	fmt.Fprintf(&b, "download: %d users x %d messages of %v, %d clients",
		o.DownloadUsers, o.DownloadMessages, o.DownloadSizes, o.DownloadConcurrency)
	if o.DownloadRate > 0 {
		fmt.Fprintf(&b, ", paced at %g RETRs/s", o.DownloadRate)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "bigmbox: %d messages of %v\n", o.BigMessages, o.BigSize)
	fmt.Fprintf(&b, "intake: %d messages of %v to %d users, %d senders, %d per connection\n",
		o.IntakeMessages, o.IntakeSize, o.IntakeUsers, o.IntakeConcurrency, o.IntakePerConn)
	fmt.Fprintf(&b, "idle: %d sessions, logged in %d at a time, held %v, hash %s\n", o.IdleSessions, o.IdleConcurrency, o.IdleHold, o.IdleHash)
	w.Write(b.Bytes())
}
