package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// Several postoffice nodes on one PostgreSQL database (skipped without
// POSTOFFICE_TEST_POSTGRES): each node is a serve process with its own
// data directory (certificate, control socket) and ports.

// clusterLease is the nodes' lease in these tests, in seconds: a killed
// node's locks and claims go within it.
const clusterLease = 3

// storeSection is the [store] table of a node on dsn.
func storeSection(dsn, node string) string {
	return fmt.Sprintf("\n[store]\nbackend = \"postgres\"\npostgres_dsn = %q\nnode_name = %q\nlease = %d\n", dsn, node, clusterLease)
}

// newNode is an instance of the cluster on dsn. queue is its [queue]
// section; [store] follows it.
func newNode(t *testing.T, dsn, node, queue string) *instance {
	t.Helper()
	return newInstanceWith(t, map[string]string{"queue": queue + storeSection(dsn, node)})
}

// sendMX sends one message to an MX listener with Python's smtplib.
func sendMX(t *testing.T, addr, from string, to []string, msg string) {
	t.Helper()
	if r := sendmail(t, smtpSend{addr: addr, from: from, to: to, msg: msg}); r.code() != 250 || len(r.Refused) != 0 {
		t.Fatalf("sending to %s: %+v", addr, r)
	}
}

// TestClusterTwoNodes is the proof with two nodes: mail in through
// node A's SMTP and out through node B's POP3, byte-exact, with the same
// UIDLs on both; a user added on one node is known to the other at once;
// the maildrop lock holds across nodes, and a node killed while holding it
// loses it within the lease; the outbound queue is worked by both nodes
// without any message delivered twice.
func TestClusterTwoNodes(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	port, ls := commonPort(t, "127.0.0.3")
	sink := startSink(t, ls["127.0.0.3"], nil)
	dnsAddr := startDNS(t,
		"remote.test. 60 IN MX 10 mx.remote.test.",
		"mx.remote.test. 60 IN A 127.0.0.3",
	)
	queue := fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\n", dnsAddr, port)
	a := newNode(t, dsn, "node-a", queue)
	b := newNode(t, dsn, "node-b", queue)

	// The directory is shared: a user added with A's configuration is
	// there for B's commands at once.
	a.addUser("alice@example.org", "pw-alice")
	if out := b.must("", "user", "list"); !strings.Contains(out, "alice@example.org") {
		t.Fatalf("user list on node B after adding on A:\n%s", out)
	}
	a.start()
	b.start()
	if st := b.must("", "status"); !strings.Contains(st, "node-b") {
		t.Errorf("status of node B does not name it:\n%s", st)
	}

	// In through A's MX, out through B's POP3.
	sendMX(t, a.addr("smtp"), "sender@example.net", []string{"alice@example.org"}, plainMsg)
	got := retrieveAll(t, b, "alice@example.org", "pw-alice")
	if len(got) != 1 || bodyAfterTrace(t, got[0]) != plainMsg {
		t.Fatalf("node B serves %d messages (want 1, byte-exact): %q", len(got), got)
	}
	uidls := func(in *instance) []string {
		p := dialPOP(t, in.addr("pop3"))
		p.login("alice@example.org", "pw-alice")
		defer p.quit()
		return p.uidls()
	}
	sendMX(t, b.addr("smtp"), "sender@example.net", []string{"alice@example.org"}, plainMsg)
	ua, ub := uidls(a), uidls(b)
	if len(ua) != 2 || !slices.Equal(ua, ub) || ua[0] == ua[1] {
		t.Errorf("UIDLs on A %v, on B %v; want the same two", ua, ub)
	}

	// The outbound queue: messages submitted to both nodes, each
	// delivered once.
	const n = 20
	for i := range n {
		in := a
		if i%2 == 1 {
			in = b
		}
		msg := fmt.Sprintf("From: alice@example.org\r\nTo: bob@remote.test\r\nMessage-ID: <%d@cluster.test>\r\nSubject: %d\r\n\r\nbody %d\r\n", i, i, i)
		submitPlain(t, in, "alice@example.org", "pw-alice", []string{"bob@remote.test"}, msg)
	}
	waitFor(t, "the queue to empty", func() bool { return len(a.queueIDs()) == 0 })
	ids := map[string]int{}
	idRE := regexp.MustCompile(`Message-ID: <(\d+)@cluster\.test>`)
	for _, r := range sink.got() {
		if m := idRE.FindStringSubmatch(r.data); m != nil {
			ids[m[1]]++
		}
	}
	for i := range n {
		if c := ids[fmt.Sprint(i)]; c != 1 {
			t.Errorf("message %d delivered %d times, want once", i, c)
		}
	}
	t.Logf("deliveries logged by node A: %d, by node B: %d",
		strings.Count(a.logText(), "msg=delivered"), strings.Count(b.logText(), "msg=delivered"))

	// A POP3 session on A holds the mailbox; B refuses it.
	pa := dialPOP(t, a.addr("pop3"))
	pa.login("alice@example.org", "pw-alice")
	pb := dialPOP(t, b.addr("pop3"))
	pb.cmd("USER alice@example.org")
	if r := pb.cmd("PASS pw-alice"); !strings.HasPrefix(r, "-ERR [IN-USE]") {
		t.Fatalf("PASS on node B while A has the mailbox: %q, want -ERR [IN-USE]", r)
	}
	// A is killed with the lock: B gets the mailbox once the lease has
	// run out, and A's session deleted nothing.
	pa.cmd("DELE 1")
	killed := time.Now()
	a.kill()
	var last string
	deadline := time.Now().Add(3*clusterLease*time.Second + 10*time.Second)
	for {
		p := dialPOP(t, b.addr("pop3"))
		p.cmd("USER alice@example.org")
		last = p.cmd("PASS pw-alice")
		if strings.HasPrefix(last, "+OK") {
			if l := p.uidls(); !slices.Equal(l, ua) {
				t.Errorf("after A died B lists %v, want %v (A's DELE never applied)", l, ua)
			}
			p.quit()
			break
		}
		p.c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("node B still refused the mailbox %v after node A was killed: %q", time.Since(killed), last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("mailbox of the killed node taken over after %v (lease %ds)", time.Since(killed).Round(100*time.Millisecond), clusterLease)
}

// submitPlain submits over submission with STARTTLS, whatever the
// server's certificate.
func submitPlain(t *testing.T, in *instance, user, pass string, to []string, msg string) {
	t.Helper()
	submit(t, in, user, pass, to, msg)
}

// popAll returns a user's UIDLs and messages over POP3.
func popAll(t *testing.T, in *instance, user, pass string) (uidls, msgs []string) {
	t.Helper()
	p := dialPOP(t, in.addr("pop3"))
	p.login(user, pass)
	uidls = p.uidls()
	p.quit()
	return uidls, retrieveAll(t, in, user, pass)
}

// TestClusterMigrate: an embedded data directory with 1,000 messages
// moves into PostgreSQL with postoffice migrate; a node on PostgreSQL then
// serves every message byte for byte under the same UIDL, and a second
// migrate run copies nothing.
func TestClusterMigrate(t *testing.T) {
	_, dsn := pgtest.Schema(t)
	old := newInstance(t, "")
	old.addUser("alice@example.org", "pw-alice")
	old.addUser("bob@example.org", "pw-bob")

	// 1,000 messages, a third of them to both users (one stored body),
	// with deletions so that UIDs have gaps: through the store, quickly.
	st, err := sqlite.Open(filepath.Join(old.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := st.UserByAddress(t.Context(), "alice@example.org")
	bob, _ := st.UserByAddress(t.Context(), "bob@example.org")
	var drop []uint64
	for i := range 1000 {
		body := fmt.Sprintf("From: sender@example.net\r\nSubject: %d\r\nMessage-ID: <%d@migrate.test>\r\n\r\n%s\r\n", i, i, strings.Repeat("line of text\r\n", i%50))
		rcpts := []store.Delivery{{UserID: alice.ID, Header: []byte("Delivered-To: alice@example.org\r\n")}}
		if i%3 == 0 {
			rcpts = append(rcpts, store.Delivery{UserID: bob.ID, Header: []byte("Delivered-To: bob@example.org\r\n")})
		}
		uids, err := st.Deliver(t.Context(), strings.NewReader(body), rcpts)
		if err != nil {
			t.Fatal(err)
		}
		if i%97 == 0 {
			drop = append(drop, uids[0])
		}
	}
	if err := st.Delete(t.Context(), alice.ID, drop); err != nil {
		t.Fatal(err)
	}
	st.Close()

	old.start()
	aliceUIDLs, aliceMsgs := popAll(t, old, "alice@example.org", "pw-alice")
	bobUIDLs, bobMsgs := popAll(t, old, "bob@example.org", "pw-bob")
	old.stop()
	if len(aliceMsgs) != 1000-len(drop) || len(bobMsgs) != 334 {
		t.Fatalf("before the migration: alice %d, bob %d messages", len(aliceMsgs), len(bobMsgs))
	}

	node := newNode(t, dsn, "node-a", "")
	out := old.must("", "migrate", "--from", old.cfgPath, "--to", node.cfgPath)
	if !strings.Contains(out, "counts match") || !strings.Contains(out, fmt.Sprintf("%-16s %12d %12d", "messages", 1000-len(drop)+334, 1000-len(drop)+334)) {
		t.Fatalf("migrate:\n%s", out)
	}
	t.Logf("migrate:\n%s", out)
	if again := old.must("", "migrate", "--from", old.cfgPath, "--to", node.cfgPath); !strings.Contains(again, "copied 0 users, 0 messages") ||
		!strings.Contains(again, "counts match") {
		t.Errorf("second migrate run:\n%s", again)
	}

	node.start()
	var wg sync.WaitGroup
	for _, u := range []struct {
		addr, pass  string
		uidls, msgs []string
	}{{"alice@example.org", "pw-alice", aliceUIDLs, aliceMsgs}, {"bob@example.org", "pw-bob", bobUIDLs, bobMsgs}} {
		wg.Go(func() {
			uidls, msgs := popAll(t, node, u.addr, u.pass)
			if !slices.Equal(uidls, u.uidls) {
				t.Errorf("%s: UIDLs differ after the migration (%d, %d)", u.addr, len(uidls), len(u.uidls))
			}
			if !slices.Equal(msgs, u.msgs) {
				t.Errorf("%s: messages differ after the migration", u.addr)
			}
		})
	}
	wg.Wait()

	// New mail after the move gets a new UIDL.
	sendMX(t, node.addr("smtp"), "sender@example.net", []string{"bob@example.org"}, plainMsg)
	uidls, _ := popAll(t, node, "bob@example.org", "pw-bob")
	if len(uidls) != len(bobUIDLs)+1 || slices.Contains(bobUIDLs, uidls[len(uidls)-1]) {
		t.Errorf("UIDL of a message delivered after the migration: %v", uidls[len(uidls)-1:])
	}
}
