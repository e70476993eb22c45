package main

import (
	"context"

	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
)

// clusterOpts configures postoffice-bench cluster: the same workloads
// against one postoffice on SQLite and against 1, 2, 3... nodes sharing one
// PostgreSQL, reported as CPU per operation of the nodes and of
// PostgreSQL.
type clusterOpts struct {
	bin, benchDir string
	// pgDSN is a PostgreSQL database the benchmark owns: its public
	// schema is emptied before each configuration. pgPID is the
	// postmaster, whose process tree's CPU is measured (0: not measured).
	pgDSN    string
	pgPID    int
	nodes    []int
	sqlite   bool
	users    int
	messages int
	size     sizeDist
	hash     string
	password string
	pollDur  time.Duration
	domain   string
	settle   bool
	stderr   io.Writer
}

// clusterRow is one workload on one configuration.
type clusterRow struct {
	config   string // "sqlite" or "pg Nn"
	workload string
	op       string
	ops      int
	seconds  float64
	nodeCPU  float64 // seconds, all nodes
	pgCPU    float64 // seconds
	errors   int
}

func cmdCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := clusterOpts{stderr: stderr}
	fs.StringVar(&o.bin, "postoffice", "", "the postoffice binary under test")
	fs.StringVar(&o.benchDir, "bench-dir", "bench", "directory of the config templates")
	fs.StringVar(&o.pgDSN, "pg", "", "a PostgreSQL database for the benchmark alone: everything in the schema it selects (public, unless its search_path names another) is dropped (bench/cluster.sh starts a server and makes one)")
	fs.IntVar(&o.pgPID, "pg-pid", 0, "PID of the PostgreSQL postmaster, whose process tree's CPU is measured (0: not measured)")
	nodes := fs.String("nodes", "1,2,3", "node counts to measure, comma-separated")
	fs.BoolVar(&o.sqlite, "sqlite", true, "also measure one node on SQLite (the default store)")
	fs.IntVar(&o.users, "users", 200, "users (mailboxes)")
	fs.IntVar(&o.messages, "messages", 4000, "messages delivered by the intake workload (then polled and downloaded)")
	size := fs.String("size", "20k", "message sizes")
	fs.StringVar(&o.hash, "hash", "production", "password hash cost: production or cheap")
	fs.StringVar(&o.password, "password", "bench-password", "password of every user")
	fs.DurationVar(&o.pollDur, "poll-duration", 15*time.Second, "length of the poll workload")
	fs.StringVar(&o.domain, "domain", "bench.test", "mail domain of the users")
	fs.BoolVar(&o.settle, "settle", true, "wait for a quiet machine (at most 15 s) before each measured run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.bin == "" || o.pgDSN == "" {
		fmt.Fprintln(stderr, "cluster: --postoffice and --pg are required (bench/cluster.sh sets them)")
		return errUsage
	}
	for _, f := range strings.Split(*nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("--nodes: %q is not a node count", f)
		}
		o.nodes = append(o.nodes, n)
	}
	var err error
	if o.size, err = parseSizeDist(*size); err != nil {
		return err
	}
	rows, err := o.run(ctx)
	writeCluster(stdout, o, rows)
	return err
}

func (o *clusterOpts) logf(format string, args ...any) {
	fmt.Fprintf(o.stderr, time.Now().Format("15:04:05")+" "+format+"\n", args...)
}

func (o *clusterOpts) run(ctx context.Context) ([]clusterRow, error) {
	users, err := usersFromPattern("user%d@"+o.domain, o.users, o.password)
	if err != nil {
		return nil, err
	}
	hash, err := makeHash(o.password, o.hash)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "postoffice-cluster-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	var rows []clusterRow
	configs := o.nodes
	if o.sqlite {
		configs = append([]int{0}, configs...)
	}
	for _, n := range configs {
		name := "sqlite"
		if n > 0 {
			name = fmt.Sprintf("pg %dn", n)
		}
		o.logf("=== %s", name)
		r, err := o.runConfig(ctx, filepath.Join(tmp, strings.ReplaceAll(name, " ", "")), name, n, users, hash)
		rows = append(rows, r...)
		if err != nil {
			return rows, fmt.Errorf("%s: %w", name, err)
		}
	}
	return rows, nil
}

// runConfig measures intake, poll and download on one configuration: n
// nodes on a fresh PostgreSQL database, or (n == 0) one node on SQLite.
func (o *clusterOpts) runConfig(ctx context.Context, dir, name string, n int, users []account, hash string) ([]clusterRow, error) {
	dsn := ""
	if n > 0 {
		var err error
		if err = o.emptyDatabase(ctx); err != nil {
			return nil, err
		}
		dsn = o.pgDSN
	}
	// The nodes: n on PostgreSQL, or one on SQLite.
	var nodes []*postoffice
	for k := range max(n, 1) {
		p, err := newPostoffice(o.bin, o.benchDir, filepath.Join(dir, fmt.Sprintf("node%d", k+1)), nil)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			f, err := os.OpenFile(p.config(), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return nil, err
			}
			_, err = fmt.Fprintf(f, "\n[store]\nbackend = \"postgres\"\npostgres_dsn = %q\nnode_name = \"node%d\"\n", dsn, k+1)
			f.Close()
			if err != nil {
				return nil, err
			}
		}
		nodes = append(nodes, p)
	}
	o.logf("adding %d users", len(users))
	if n > 0 {
		if err := addPostgresUsers(ctx, dsn, users, hash); err != nil {
			return nil, err
		}
	} else if _, err := addPostofficeUsers(ctx, nodes[0].dataDir(), users, hash); err != nil {
		return nil, err
	}
	for _, p := range nodes {
		if err := p.Start(ctx); err != nil {
			return nil, err
		}
		defer p.Stop()
	}
	// Users are split among the nodes (user i on node i mod n), as a
	// load balancer with affinity would: a maildrop is locked
	// cluster-wide, so one user's sessions never run on two nodes at once.
	part := make([][]account, len(nodes))
	for i, u := range users {
		part[i%len(nodes)] = append(part[i%len(nodes)], u)
	}
	var rows []clusterRow
	steps := []struct {
		workload, op string
		conc         int
		opts         func(k int) loadOpts
	}{
		{"intake", "message", 50, func(k int) loadOpts {
			return loadOpts{Addr: nodes[k].SMTPAddr(), Users: users, Count: share(o.messages, len(nodes), k), Sizes: o.size, PerConn: 10}
		}},
		{"poll", "session", 50, func(k int) loadOpts {
			return loadOpts{Addr: nodes[k].POP3Addr(), Users: part[k], Duration: o.pollDur}
		}},
		{"download", "retr", 20, func(k int) loadOpts {
			return loadOpts{Addr: nodes[k].POP3Addr(), Users: part[k], Count: len(part[k])}
		}},
	}
	for _, st := range steps {
		if st.workload == "poll" {
			// Unmeasured: every user logs in once on its node, whose
			// verification cache then holds it, as after a day of
			// polling (the compare harness does the same).
			var wg sync.WaitGroup
			for k := range nodes {
				wg.Go(func() {
					runWorkload(ctx, "poll", loadOpts{Addr: nodes[k].POP3Addr(), Users: part[k], Count: len(part[k]), Concurrency: share(st.conc, len(nodes), k)})
				})
			}
			wg.Wait()
		}
		if o.settle {
			(&compareOpts{log: o.stderr}).settle(ctx)
		}
		row, err := o.measure(ctx, name, st.workload, st.op, nodes, func(k int) loadOpts {
			lo := st.opts(k)
			lo.Concurrency = share(st.conc, len(nodes), k)
			return lo
		})
		if err != nil {
			return rows, err
		}
		o.logf("%s %s: %d %s in %.1fs, nodes %.2f ms CPU, PostgreSQL %.2f ms CPU per %s, %d errors", name, st.workload,
			row.ops, row.op, row.seconds, 1000*row.nodeCPU/float64(max(row.ops, 1)), 1000*row.pgCPU/float64(max(row.ops, 1)), row.op, row.errors)
		rows = append(rows, row)
	}
	return rows, nil
}

// share is node k's part of total split among n.
func share(total, n, k int) int {
	s := total / n
	if k < total%n {
		s++
	}
	return max(s, 1)
}

// measure runs a workload on every node at once and measures the CPU
// time of the nodes and of PostgreSQL meanwhile.
func (o *clusterOpts) measure(ctx context.Context, config, workload, op string, nodes []*postoffice, opts func(k int) loadOpts) (clusterRow, error) {
	row := clusterRow{config: config, workload: workload, op: op}
	cpu := func() (float64, float64, error) {
		var sum float64
		for _, p := range nodes {
			pid, err := p.PID()
			if err != nil {
				return 0, 0, err
			}
			c, err := treeCPU(pid)
			if err != nil {
				return 0, 0, err
			}
			sum += c
		}
		if o.pgPID == 0 {
			return sum, 0, nil
		}
		pg, err := treeCPU(o.pgPID)
		return sum, pg, err
	}
	n0, pg0, err := cpu()
	if err != nil {
		return row, err
	}
	start := time.Now()
	results := make([]Result, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for k := range nodes {
		wg.Go(func() { results[k], errs[k] = runWorkload(ctx, workload, opts(k)) })
	}
	wg.Wait()
	row.seconds = time.Since(start).Seconds()
	n1, pg1, err := cpu()
	if err != nil {
		return row, err
	}
	row.nodeCPU, row.pgCPU = n1-n0, pg1-pg0
	for k, r := range results {
		if errs[k] != nil {
			return row, errs[k]
		}
		row.ops += r.Ops[op].Ops
		for _, s := range r.Ops {
			row.errors += s.Errors
		}
	}
	return row, nil
}

// emptyDatabase drops everything in the schema the connection string
// selects (the first of its search_path that exists: public unless it
// names another) and makes it anew, so that each configuration starts from
// an empty store.
func (o *clusterOpts) emptyDatabase(ctx context.Context) error {
	// A pool, which takes the pool_* parameters a plain connection refuses.
	pool, err := pgxpool.New(ctx, o.pgDSN)
	if err != nil {
		return err
	}
	defer pool.Close()
	var schema *string
	if err := pool.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return err
	}
	if schema == nil {
		return fmt.Errorf("--pg: its search_path names no schema that exists")
	}
	id := pgx.Identifier{*schema}.Sanitize()
	_, err = pool.Exec(ctx, "DROP SCHEMA "+id+" CASCADE; CREATE SCHEMA "+id)
	return err
}

// addPostgresUsers creates the users through the PostgreSQL store's API.
func addPostgresUsers(ctx context.Context, dsn string, users []account, hash string) error {
	st, err := postgres.Open(ctx, dsn, "bench-loader")
	if err != nil {
		return err
	}
	defer st.Close()
	for _, u := range users {
		if _, err := st.AddUser(ctx, store.User{Address: u.Name, PasswordHash: hash, Enabled: true}); err != nil {
			return fmt.Errorf("adding %s: %w", u.Name, err)
		}
	}
	return nil
}

// writeCluster prints the rows: CPU per operation of the nodes, of
// PostgreSQL and both, and the rate (which, on one machine, is bounded
// by its cores, not by the cluster).
func writeCluster(w io.Writer, o clusterOpts, rows []clusterRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "config\tworkload\tops\tops/s\tnodes CPU ms/op\tPostgreSQL CPU ms/op\ttotal CPU ms/op\terrors\n")
	for _, r := range rows {
		per := func(s float64) string {
			if r.ops == 0 {
				return "-"
			}
			return formatFig(1000 * s / float64(r.ops))
		}
		pg := per(r.pgCPU)
		if o.pgPID == 0 {
			pg = "-"
		}
		fmt.Fprintf(tw, "%s\t%s (%s)\t%d\t%s\t%s\t%s\t%s\t%d\n", r.config, r.workload, r.op, r.ops,
			formatFig(float64(r.ops)/r.seconds), per(r.nodeCPU), pg, per(r.nodeCPU+r.pgCPU), r.errors)
	}
	tw.Flush()
	fmt.Fprintf(w, "note: %d users, %d messages of %s through intake, then poll (%v) and download; hash %s; one machine, so CPU per operation is the figure, not the rate\n",
		o.users, o.messages, o.size, o.pollDur, o.hash)
}
