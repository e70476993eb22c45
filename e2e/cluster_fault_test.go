package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The cluster under faults: nodes killed with SIGKILL, a second process
// under a node's name, and database outages. An outage is a
// pgtest.Proxy between a node and the test database, cut and restored:
// the test database may be a server shared with other tests, which a test
// must never stop, and the proxy takes it away from the nodes as a stopped
// server would (open connections closed, new ones refused at once) without
// the cost of starting a server of its own.

// faultNode is a node of the cluster on dsn, whose outbound queue starts
// only when the test says (autostart off), so that a whole batch is
// queued first. hostname names it in its EHLO to the sink.
func faultNode(t *testing.T, dsn, node, hostname, queue string, lease int) *instance {
	t.Helper()
	return newInstanceWith(t, map[string]string{
		"hostname": hostname,
		"queue": "autostart = false\n" + queue + fmt.Sprintf("\n[store]\nbackend = \"postgres\"\npostgres_dsn = %q\nnode_name = %q\nlease = %d\n",
			dsn, node, lease),
	})
}

// statusInstance is one entry of status --json's instances.
type statusInstance struct {
	Node     string `json:"node"`
	Instance string `json:"instance"`
	Alive    bool   `json:"alive"`
}

// instanceID is the instance id the node's status gives, which its list
// of instances shows alive.
func instanceID(t *testing.T, in *instance) string {
	t.Helper()
	var st struct {
		Instance  string           `json:"instance"`
		Instances []statusInstance `json:"instances"`
	}
	if err := json.Unmarshal([]byte(in.must("", "status", "--json")), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	if st.Instance == "" || !slices.ContainsFunc(st.Instances, func(i statusInstance) bool { return i.Instance == st.Instance && i.Alive }) {
		t.Fatalf("status --json does not list this process's instance %q as alive: %+v", st.Instance, st.Instances)
	}
	return st.Instance
}

// runFor runs a postoffice command that must end within d.
func runFor(t *testing.T, in *instance, d time.Duration, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(args, "--config", in.cfgPath)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("postoffice %s still running after %v:\n%s", strings.Join(args, " "), d, errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// countSink is an SMTP sink that takes a while to accept each message
// (so that a node killed in the middle of queue work has deliveries in
// flight) and counts, for each recipient, who delivered it (the EHLO
// name). It has a message once the delay has passed, as a real server
// has it on disk before its 250.
type countSink struct{ *testlib.SMTPSink }

func startCountSink(t *testing.T, l net.Listener, delay time.Duration) *countSink {
	t.Helper()
	return &countSink{testlib.StartSMTPSink(t, testlib.SinkOptions{Listener: l, DataDelay: delay})}
}

func (k *countSink) count() int { return len(k.Txns()) }

func (k *countSink) deliveries() map[string][]string {
	out := map[string][]string{}
	for _, tx := range k.Txns() {
		for _, r := range tx.Rcpts {
			to := testlib.Path(r)
			out[to] = append(out[to], tx.Helo)
		}
	}
	return out
}

// queueBatch submits n messages, each to its own remote recipient
// (rNNN@remote.test), spread over the nodes, several at a time.
func queueBatch(t *testing.T, n int, nodes ...*instance) []string {
	t.Helper()
	rcpts := make([]string, n)
	for i := range rcpts {
		rcpts[i] = fmt.Sprintf("r%03d@remote.test", i)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for i := range work {
				msg := fmt.Sprintf("From: alice@example.org\r\nTo: %s\r\nMessage-ID: <%d@fault.test>\r\nSubject: %d\r\n\r\nbody %d\r\n", rcpts[i], i, i, i)
				submitPlain(t, nodes[i%len(nodes)], "alice@example.org", "pw-alice", []string{rcpts[i]}, msg)
			}
		})
	}
	for i := range rcpts {
		work <- i
	}
	close(work)
	wg.Wait()
	return rcpts
}

// claimedBy lists the recipients of the messages that an instance has
// claimed, read from the database.
func claimedBy(t *testing.T, dsn, instance string) map[string]bool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rows, err := pool.Query(t.Context(), `SELECT r.address FROM queue q JOIN queue_recipients r ON r.queue_id = q.id
		WHERE q.claimed_by = $1`, instance)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		out[a] = true
	}
	return out
}

// checkDeliveries checks that every recipient got its message at least
// once, and more than once only if the killed instance had it claimed
// when it died and delivered it itself (it was in flight). It returns the
// number of duplicate deliveries.
func checkDeliveries(t *testing.T, rcpts []string, got map[string][]string, inFlight map[string]bool, killedEHLO string) int {
	t.Helper()
	dups := 0
	for _, r := range rcpts {
		by := got[r]
		switch {
		case len(by) == 0:
			t.Errorf("%s: never delivered", r)
		case len(by) > 1:
			dups += len(by) - 1
			if !inFlight[r] || !slices.Contains(by, killedEHLO) {
				t.Errorf("%s delivered %d times (by %v) but was not in flight at the killed node (claimed by it: %v)", r, len(by), by, inFlight[r])
			}
		}
	}
	return dups
}

// TestClusterNodeNameOnce: a node name is held by one process at a time,
// and a node killed in the middle of queue work costs no message. Nodes A
// and B work one queue of 150 messages. A second serve under A's name is
// refused, naming the holder, and A's work goes on without a duplicate.
// Then A is killed (SIGKILL): B takes A's claims once A's lease has run
// out (not after the hour of a claim), and a serve under A's name waits
// for that lease, then holds the name. Every message reaches the sink at
// least once, and a second time only if it was in flight at A.
func TestClusterNodeNameOnce(t *testing.T) {
	t.Parallel() // waits on timers most of its time: see TestMain
	_, dsn := pgtest.Schema(t)
	port, ls := commonPort(t, "127.0.0.3")
	// 5 connections per node, 400 ms per message: 25 messages a second.
	sink := startCountSink(t, ls["127.0.0.3"], 400*time.Millisecond)
	dnsAddr := startDNS(t, "remote.test. 60 IN MX 10 mx.remote.test.", "mx.remote.test. 60 IN A 127.0.0.3")
	queue := fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\nmax_per_host = 5\n", dnsAddr, port)
	a := faultNode(t, dsn, "node-a", "a.mail.test", queue, clusterLease)
	twin := faultNode(t, dsn, "node-a", "twin.mail.test", queue, clusterLease)
	b := faultNode(t, dsn, "node-b", "b.mail.test", queue, clusterLease)
	a.addUser("alice@example.org", "pw-alice")
	a.start()
	b.start()
	idA := instanceID(t, a)
	rcpts := queueBatch(t, 150, a, b)
	a.must("", "start", "queue")
	b.must("", "start", "queue")
	waitFor(t, "the first deliveries", func() bool { return sink.count() >= 20 })

	// A second serve under node-a's name, while node-a works: refused.
	started := time.Now()
	r := runFor(t, twin, 3*clusterLease*time.Second+30*time.Second, "serve")
	if r.code != 75 || !strings.Contains(r.stderr, idA) || !strings.Contains(r.stderr, "node_name") || !strings.Contains(r.stderr, "held by a running postoffice") {
		t.Fatalf("second serve as node-a while the first runs: exit %d, want 75 and an error naming instance %s:\n%s", r.code, idA, r.stderr)
	}
	t.Logf("second serve under a live node's name refused after %v: %s", time.Since(started).Round(10*time.Millisecond),
		regexp.MustCompile(`node name "node-a" is held by a running.*`).FindString(r.stderr))

	// A is killed in the middle of its queue work.
	waitFor(t, "more deliveries", func() bool { return sink.count() >= 60 })
	a.kill()
	killed := time.Now()
	inFlight := claimedBy(t, dsn, idA)
	deliveredAtKill := sink.count()
	if len(inFlight) == 0 {
		t.Fatalf("node A had no message claimed when it was killed (after %d deliveries)", deliveredAtKill)
	}
	// A serve under A's name waits for A's lease, then holds the name.
	twin.start()
	joined := time.Since(killed)
	if !strings.Contains(twin.logText(), "taken over from a process whose lease ran out") {
		t.Errorf("the new node-a's log does not tell of the takeover:\n%s", twin.logText())
	}
	if id := instanceID(t, twin); id == idA {
		t.Fatalf("the new process has the dead one's instance id %s", idA)
	}
	// B takes what A had claimed: when the first and the last of those
	// messages reached the sink from B.
	var first, last time.Duration
	waitFor(t, "A's claimed messages to be delivered", func() bool {
		got := sink.deliveries()
		all := true
		for r := range inFlight {
			if first == 0 && slices.Contains(got[r], "b.mail.test") {
				first = time.Since(killed)
			}
			all = all && len(got[r]) > 0
		}
		if all {
			last = time.Since(killed)
		}
		return all
	})
	waitFor(t, "the queue to empty", func() bool { return len(b.queueIDs()) == 0 })
	drained := time.Since(killed)
	got := sink.deliveries()
	dups := checkDeliveries(t, rcpts, got, inFlight, "a.mail.test")
	byNode := map[string]int{}
	for _, by := range got {
		for _, n := range by {
			byNode[n]++
		}
	}
	t.Logf("node A killed after %d deliveries with %d messages claimed (lease %ds); after the kill: the new node-a held the name after %v, "+
		"B delivered the first of A's claimed messages after %v and the last after %v, the queue was empty after %v; %d duplicate deliveries; deliveries by node %v",
		deliveredAtKill, len(inFlight), clusterLease, joined.Round(10*time.Millisecond), first.Round(10*time.Millisecond),
		last.Round(10*time.Millisecond), drained.Round(10*time.Millisecond), dups, byNode)
}

// respLockLost is the POP3 answer of a session whose maildrop lock was
// lost (internal/pop3).
const respLockLost = "-ERR [SYS/TEMP] Maildrop lock lost"

// TestClusterLockLostToOutage: the database is out of reach for longer
// than the lease while a POP3 session on node A holds a mailbox with a
// message marked deleted. When the database is back, node B gets the
// mailbox at once and its deletion stands; A's session answers its QUIT
// with -ERR [SYS/TEMP] saying that its lock was lost, and deletes nothing;
// another of A's sessions answers its next command so too.
func TestClusterLockLostToOutage(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	pa, dsnA := pgtest.NewProxy(t, dsn)
	pb, dsnB := pgtest.NewProxy(t, dsn)
	a := faultNode(t, dsnA, "node-a", "mail.test", "", clusterLease)
	b := faultNode(t, dsnB, "node-b", "mail.test", "", clusterLease)
	a.addUser("alice@example.org", "pw-alice")
	a.addUser("bob@example.org", "pw-bob")
	for i := range 3 {
		a.deliver("alice@example.org", fmt.Sprintf("Subject: %d\r\n\r\nmessage %d\r\n", i, i))
	}
	a.deliver("bob@example.org", "Subject: bob\r\n\r\nfor bob\r\n")
	a.start()
	b.start()
	uidls := func() []string {
		p := dialPOP(t, b.addr("pop3"))
		p.login("alice@example.org", "pw-alice")
		defer p.quit()
		return p.uidls()
	}
	before := uidls()

	alice := dialPOP(t, a.addr("pop3"))
	alice.login("alice@example.org", "pw-alice")
	alice.multi("RETR 1")
	if r := alice.cmd("DELE 1"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("DELE 1 on A: %s", r)
	}
	bob := dialPOP(t, a.addr("pop3"))
	bob.login("bob@example.org", "pw-bob")

	pa.Cut()
	pb.Cut()
	time.Sleep(2 * clusterLease * time.Second)
	pa.Restore()
	pb.Restore()
	back := time.Now()

	// B gets the mailbox (A's lock ran out), and deletes message 2.
	var onB *popConn
	var last string
	for deadline := time.Now().Add(30 * time.Second); ; {
		p := dialPOP(t, b.addr("pop3"))
		p.cmd("USER alice@example.org")
		if last = p.cmd("PASS pw-alice"); strings.HasPrefix(last, "+OK") {
			onB = p
			break
		}
		p.c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("B refused the mailbox %v after the database came back: %q", time.Since(back), last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("node B had the mailbox %v after the database came back (A's session still open; lease %ds, outage %ds)",
		time.Since(back).Round(10*time.Millisecond), clusterLease, 2*clusterLease)
	if r := onB.cmd("DELE 2"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("DELE 2 on B: %s", r)
	}
	if r := onB.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("QUIT on B: %s", r)
	}

	// A's sessions: the QUIT deletes nothing and says so; the other
	// session ends at its next command.
	if r := alice.cmd("QUIT"); !strings.HasPrefix(r, respLockLost) || !strings.Contains(r, "no messages deleted") {
		t.Errorf("QUIT on A after its lock was lost: %q, want %q...", r, respLockLost)
	}
	alice.expectClosed()
	if r := bob.cmd("RETR 1"); !strings.HasPrefix(r, respLockLost) {
		t.Errorf("RETR on A after its lock was lost: %q, want %q...", r, respLockLost)
	}
	bob.expectClosed()

	after := uidls()
	if want := []string{before[0], before[2]}; !slices.Equal(after, want) {
		t.Errorf("alice's UIDLs after both sessions: %v, want %v (A's deletion not applied, B's applied)", after, want)
	}
	if !strings.Contains(a.logText(), "maildrop lock lost") {
		t.Errorf("node A's log does not tell of the lost lock")
	}
	// Both nodes outlived the outage, and still serve.
	if bob2 := uidlsOf(t, a, "bob@example.org", "pw-bob"); len(bob2) != 1 {
		t.Errorf("bob's mailbox on A after the outage: %v", bob2)
	}
}

// uidlsOf logs in and lists the UIDLs.
func uidlsOf(t *testing.T, in *instance, user, pass string) []string {
	t.Helper()
	p := dialPOP(t, in.addr("pop3"))
	p.login(user, pass)
	defer p.quit()
	return p.uidls()
}

// TestClusterLockReleasedAfterOutage: a session on node A ends (QUIT)
// while the database is out of reach for a few seconds; its deletion
// fails (-ERR [SYS/TEMP]) and so does the release of its lock. Once the
// database is back the lock is released in the background: the user
// gets the mailbox on node B within seconds, not after the lease (30 s).
func TestClusterLockReleasedAfterOutage(t *testing.T) {
	const lease = 30
	_, dsn := pgtest.Schema(t)
	pa, dsnA := pgtest.NewProxy(t, dsn)
	pb, dsnB := pgtest.NewProxy(t, dsn)
	a := faultNode(t, dsnA, "node-a", "mail.test", "", lease)
	b := faultNode(t, dsnB, "node-b", "mail.test", "", lease)
	a.addUser("alice@example.org", "pw-alice")
	a.deliver("alice@example.org", "Subject: one\r\n\r\none\r\n")
	a.deliver("alice@example.org", "Subject: two\r\n\r\ntwo\r\n")
	a.start()
	b.start()

	p := dialPOP(t, a.addr("pop3"))
	p.login("alice@example.org", "pw-alice")
	if r := p.cmd("DELE 1"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("DELE 1: %s", r)
	}
	pa.Cut()
	pb.Cut()
	if r := p.cmd("QUIT"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("QUIT while the database is out of reach: %q, want -ERR [SYS/TEMP]", r)
	}
	time.Sleep(3 * time.Second)
	pa.Restore()
	pb.Restore()
	back := time.Now()

	var last string
	for deadline := time.Now().Add(lease / 2 * time.Second); ; {
		q := dialPOP(t, b.addr("pop3"))
		q.cmd("USER alice@example.org")
		if last = q.cmd("PASS pw-alice"); strings.HasPrefix(last, "+OK") {
			if l := q.uidls(); len(l) != 2 {
				t.Errorf("after the failed QUIT the mailbox lists %v, want both messages", l)
			}
			q.quit()
			break
		}
		q.c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the mailbox was still refused on B %v after the database came back (lease %ds): %q", time.Since(back), lease, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("mailbox free on node B %v after the database came back (outage 3s, lease %ds)", time.Since(back).Round(10*time.Millisecond), lease)
	if !strings.Contains(a.logText(), "released once the database answered again") {
		t.Errorf("node A's log does not tell of the release:\n%s", a.logText())
	}
}

// expectClosed checks that the server closed the connection.
func (p *popConn) expectClosed() {
	p.t.Helper()
	p.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if l, err := p.r.ReadString('\n'); err == nil {
		p.t.Errorf("connection still open: %q", l)
	} else if !strings.Contains(err.Error(), "EOF") && !strings.Contains(err.Error(), "reset") {
		p.t.Errorf("connection not closed: %v", err)
	}
}

// TestClusterNodeNameLost: node A is cut off from the database for longer
// than its lease; meanwhile a serve under A's name starts, waits for A's
// lease and takes the name. When A reaches the database again it finds
// its name held by another process: it stops, with exit status 75 and a
// message naming the other, rather than run as a second node-a.
func TestClusterNodeNameLost(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	pa, dsnA := pgtest.NewProxy(t, dsn)
	a := faultNode(t, dsnA, "node-a", "a.mail.test", "", clusterLease)
	twin := faultNode(t, dsn, "node-a", "twin.mail.test", "", clusterLease)
	a.addUser("alice@example.org", "pw-alice")
	a.start()
	idA := instanceID(t, a)
	pa.Cut()
	cut := time.Now()
	twin.start()
	t.Logf("the namesake held node-a %v after node A was cut off (lease %ds)", time.Since(cut).Round(10*time.Millisecond), clusterLease)
	idTwin := instanceID(t, twin)
	pa.Restore()
	back := time.Now()
	code, ok := a.waitExit(30 * time.Second)
	if !ok {
		t.Fatalf("node A still runs %v after it reached the database again, its name held by %s:\n%s", time.Since(back), idTwin, a.logText())
	}
	t.Logf("node A stopped %v after it reached the database again", time.Since(back).Round(10*time.Millisecond))
	if code != 75 || !strings.Contains(a.logText(), "no longer holds its node name") || !strings.Contains(a.logText(), idTwin) {
		t.Errorf("node A exited %d, want 75 with a message naming %s:\n%s", code, idTwin, a.logText())
	}
	if id := instanceID(t, twin); id != idTwin || id == idA {
		t.Errorf("node-a is held by %s, want the namesake %s", id, idTwin)
	}
}

// waitExit waits until the serve process ends by itself and returns its
// exit status.
func (in *instance) waitExit(d time.Duration) (int, bool) {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.mu.Unlock()
	select {
	case <-exited:
		return cmd.ProcessState.ExitCode(), true
	case <-time.After(d):
		return 0, false
	}
}
