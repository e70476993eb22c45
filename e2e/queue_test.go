package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The outbound queue end to end: the real binary delivering to another
// postoffice instance or to SMTP sinks on loopback addresses
// (127.0.0.0/8), with MX and address records from a miekg/dns server on
// loopback. Nothing leaves the machine: every name resolves to 127.0.0.x.

// startDNS serves the records (presentation format) on a loopback UDP
// and TCP port and returns the address for [queue] dns_server. Names not
// in the zone do not exist (NXDOMAIN).
func startDNS(t *testing.T, zone ...string) string {
	t.Helper()
	return testlib.StartDNS(t, zone...).Addr
}

// commonPort finds one TCP port free on every given loopback address
// (the MX port is one setting for all MX hosts) and returns it with a
// listener on each address.
func commonPort(t *testing.T, ips ...string) (int, map[string]net.Listener) {
	t.Helper()
	for range 50 {
		first, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := first.Addr().(*net.TCPAddr).Port
		ls := map[string]net.Listener{ips[0]: first}
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			ls[ip] = l
		}
		if ok {
			return port, ls
		}
		for _, l := range ls {
			l.Close()
		}
	}
	t.Fatal("no port free on all of", ips)
	return 0, nil
}

// received is one transaction a sink accepted: the paths as written
// between their angle brackets, the data with dot-stuffing undone.
type received struct {
	from  string
	rcpts []string
	data  string
	tls   bool
}

// mailSink is testlib's SMTP sink on a listener of the test's, recording
// what it accepts; its hooks may refuse.
type mailSink struct {
	*testlib.SMTPSink
	mu    sync.Mutex
	datas int // messages sent, refused or not
	// rcpt and data, when set, may refuse with an smtpreply.Reply (data
	// counts the messages sent, refused or not).
	rcpt func(to string) error
	data func(n int) error
}

func startSink(t *testing.T, l net.Listener, cert *tls.Certificate) *mailSink {
	t.Helper()
	k := &mailSink{}
	k.SMTPSink = testlib.StartSMTPSink(t, testlib.SinkOptions{Listener: l, Cert: cert, SMTPUTF8: true,
		Rcpt: func(to string) string {
			k.mu.Lock()
			f := k.rcpt
			k.mu.Unlock()
			return refusal(f, to)
		},
		Data: func(n int) string {
			k.mu.Lock()
			k.datas = n
			f := k.data
			k.mu.Unlock()
			return refusal(f, n)
		},
	})
	return k
}

// refusal is the reply line of a hook's refusal, "" when it takes.
func refusal[T any](f func(T) error, arg T) string {
	if f == nil {
		return ""
	}
	err := f(arg)
	if err == nil {
		return ""
	}
	r, ok := smtpreply.As(err)
	if !ok {
		r = smtpreply.New(451, "4.3.0", err.Error())
	}
	return strings.TrimSuffix(r.Wire(), "\r\n")
}

func (k *mailSink) got() []received {
	var out []received
	for _, tx := range k.Txns() {
		r := received{from: testlib.Path(tx.Mail), data: string(tx.Data), tls: tx.TLS}
		for _, l := range tx.Rcpts {
			r.rcpts = append(r.rcpts, testlib.Path(l))
		}
		out = append(out, r)
	}
	return out
}

func (k *mailSink) set(f func()) {
	k.mu.Lock()
	defer k.mu.Unlock()
	f()
}

// submit sends a message through an instance's submission service
// (STARTTLS, AUTH PLAIN) with Python's smtplib.
func submit(t *testing.T, in *instance, user, pass string, to []string, msg string) {
	t.Helper()
	r := sendmail(t, smtpSend{addr: in.addr("submission"), from: user, to: to, msg: msg, starttls: true, user: user, password: pass})
	if r.code() != 250 || len(r.Refused) != 0 {
		t.Fatalf("submitting to %v: %+v", to, r)
	}
}

// waitFor polls cond until it holds, failing the test after a bounded
// wait (deliveries are asynchronous).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// setSMTPListen moves the instance's MX listener to addr (the test's MX
// port on its own loopback address).
func (in *instance) setSMTPListen(addr string) {
	in.t.Helper()
	b, err := os.ReadFile(in.cfgPath)
	if err != nil {
		in.t.Fatal(err)
	}
	old := "[smtp]\nlisten = [\"127.0.0.1:0\"]"
	if !strings.Contains(string(b), old) {
		in.t.Fatalf("config has no %q", old)
	}
	b = []byte(strings.Replace(string(b), old, fmt.Sprintf("[smtp]\nlisten = [%q]", addr), 1))
	if err := os.WriteFile(in.cfgPath, b, 0o600); err != nil {
		in.t.Fatal(err)
	}
}

// queueIDs returns the IDs "queue list" shows.
func (in *instance) queueIDs() []string {
	in.t.Helper()
	var ids []string
	for _, l := range strings.Split(in.must("", "queue", "list"), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 1 && f[1] != "message(s)" && regexp.MustCompile(`^\d+$`).MatchString(f[0]) {
			ids = append(ids, f[0])
		}
	}
	return ids
}

var attemptsRE = regexp.MustCompile(`(?m)^Attempts:\s+(\d+)$`)

// attempts returns the attempts "queue show" reports for id.
func (in *instance) attempts(id string) int {
	in.t.Helper()
	m := attemptsRE.FindStringSubmatch(in.must("", "queue", "show", id))
	if m == nil {
		in.t.Fatalf("queue show %s has no Attempts line", id)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// mailbox returns the messages of a user, over POP3.
func mailbox(t *testing.T, in *instance, user, pass string) []string {
	t.Helper()
	return retrieveAll(t, in, user, pass)
}

// bodyAfterTrace strips the trace fields both hops added.
func bodyAfterTrace(t *testing.T, m string) string {
	t.Helper()
	_, rest := splitTrace(t, m)
	return rest
}

const queueMsg = "From: alice@a.test\r\nTo: bob@b.test\r\nSubject: over the queue\r\nMessage-ID: <q1@a.test>\r\n\r\nHello Bob,\r\n.a line starting with a dot\r\n\r\n8-bit: caf\xc3\xa9\r\n"

// pair is the setup: instance A (a.test, alice) delivering to
// instance B (b.test, bob), B's MX on its own loopback address at the MX
// port, found through MX records.
type pair struct {
	a, b    *instance
	dnsAddr string
	mxPort  int
}

func newPair(t *testing.T, queueExtra string, bExtra map[string]string) *pair {
	t.Helper()
	port, ls := commonPort(t, "127.0.0.2")
	ls["127.0.0.2"].Close() // B binds it
	dnsAddr := startDNS(t,
		"b.test. 60 IN MX 10 mx.b.test.",
		"mx.b.test. 60 IN A 127.0.0.2",
	)
	if bExtra == nil {
		bExtra = map[string]string{}
	}
	bExtra["hostname"] = "mx.b.test"
	b := newInstanceWith(t, bExtra)
	b.setSMTPListen(fmt.Sprintf("127.0.0.2:%d", port))
	b.addUser("bob@b.test", "pw-bob")
	a := newInstanceWith(t, map[string]string{
		"hostname": "mail.a.test",
		"queue":    fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\n%s", dnsAddr, port, queueExtra),
	})
	a.addUser("alice@a.test", "pw-alice")
	return &pair{a: a, b: b, dnsAddr: dnsAddr, mxPort: port}
}

// TestQueueBetweenInstances: alice@a.test submits to A for bob@b.test; A
// finds B by MX and delivers; bob reads it from B over POP3, byte-exact.
// Mail for an unknown user at B comes back to alice's POP mailbox as a
// delivery status notification.
func TestQueueBetweenInstances(t *testing.T) {
	p := newPair(t, "", nil)
	p.b.start()
	p.a.start()

	submit(t, p.a, "alice@a.test", "pw-alice", []string{"bob@b.test"}, queueMsg)
	var got []string
	waitFor(t, "bob's mail at B", func() bool {
		got = mailbox(t, p.b, "bob@b.test", "pw-bob")
		return len(got) > 0
	})
	if len(got) != 1 {
		t.Fatalf("bob has %d messages, want 1", len(got))
	}
	trace, rest := splitTrace(t, got[0])
	if rest != queueMsg {
		t.Errorf("message changed on the way:\n got %q\nwant %q", rest, queueMsg)
	}
	// Both hops are in the trace: B's Received names A, A's names the
	// submission.
	for _, want := range []string{"Return-Path: <alice@a.test>", "Delivered-To: bob@b.test", "Received: from mail.a.test", "by mx.b.test", "by mail.a.test", "with ESMTPSA"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	waitFor(t, "A's queue to empty", func() bool { return len(p.a.queueIDs()) == 0 })

	// B refuses an unknown user at RCPT: A bounces to alice at once.
	submit(t, p.a, "alice@a.test", "pw-alice", []string{"nobody@b.test"}, queueMsg)
	var bounce string
	waitFor(t, "the bounce in alice's mailbox", func() bool {
		for _, m := range mailbox(t, p.a, "alice@a.test", "pw-alice") {
			if strings.Contains(m, "multipart/report") {
				bounce = m
				return true
			}
		}
		return false
	})
	for _, want := range []string{"Return-Path: <>", "report-type=delivery-status", "Final-Recipient: rfc822; nobody@b.test",
		"Action: failed", "Status: 5.1.1", "Remote-MTA: dns; mx.b.test", "Diagnostic-Code: smtp; 550 5.1.1", "Subject: over the queue", "Message-ID: <q1@a.test>"} {
		if !strings.Contains(bounce, want) {
			t.Errorf("bounce lacks %q:\n%s", want, bounce)
		}
	}
	waitFor(t, "A's queue to empty after the bounce", func() bool { return len(p.a.queueIDs()) == 0 })
}

// TestQueueRetry: B is down; A retries on its schedule and delivers once
// B is up.
func TestQueueRetry(t *testing.T) {
	p := newPair(t, "retry_initial = 1\nretry_max = 1\n", nil)
	p.a.start()
	submit(t, p.a, "alice@a.test", "pw-alice", []string{"bob@b.test"}, queueMsg)
	ids := p.a.queueIDs()
	if len(ids) != 1 {
		t.Fatalf("queue list shows %v, want one message", ids)
	}
	waitFor(t, "two failed attempts", func() bool { return p.a.attempts(ids[0]) >= 2 })
	if show := p.a.must("", "queue", "show", ids[0]); !strings.Contains(show, "bob@b.test (pending) 4.4.1") || !strings.Contains(show, "connection refused") {
		t.Errorf("queue show while B is down:\n%s", show)
	}

	p.b.start()
	waitFor(t, "delivery after B came up", func() bool { return len(mailbox(t, p.b, "bob@b.test", "pw-bob")) > 0 })
	waitFor(t, "A's queue to empty", func() bool { return len(p.a.queueIDs()) == 0 })
	if got := mailbox(t, p.b, "bob@b.test", "pw-bob"); len(got) != 1 || bodyAfterTrace(t, got[0]) != queueMsg {
		t.Errorf("bob got %d messages (want 1, byte-exact)", len(got))
	}
	if msgs := mailbox(t, p.a, "alice@a.test", "pw-alice"); len(msgs) != 0 {
		t.Errorf("alice got %d notifications for a delivered message", len(msgs))
	}
}

// TestQueueSurvivesKill: the queue is durable across a SIGKILL of serve
// between retries; the message is delivered once after the restart.
func TestQueueSurvivesKill(t *testing.T) {
	p := newPair(t, "retry_initial = 1\nretry_max = 1\n", nil)
	p.a.start()
	submit(t, p.a, "alice@a.test", "pw-alice", []string{"bob@b.test"}, queueMsg)
	ids := p.a.queueIDs()
	if len(ids) != 1 {
		t.Fatalf("queue list shows %v, want one message", ids)
	}
	waitFor(t, "a failed attempt", func() bool { return p.a.attempts(ids[0]) >= 1 })
	p.a.kill()

	p.b.start()
	p.a.start()
	waitFor(t, "delivery after the restart", func() bool { return len(mailbox(t, p.b, "bob@b.test", "pw-bob")) > 0 })
	waitFor(t, "A's queue to empty", func() bool { return len(p.a.queueIDs()) == 0 })
	// B was down until after the kill, so no attempt can have reached it
	// before: exactly one copy, byte-exact.
	if got := mailbox(t, p.b, "bob@b.test", "pw-bob"); len(got) != 1 || bodyAfterTrace(t, got[0]) != queueMsg {
		t.Errorf("bob got %d messages, want exactly 1, byte-exact", len(got))
	}
}

// TestQueueRelayHost: the same through relay_host: A sends everything to
// B's submission service (STARTTLS required, AUTH PLAIN), not to the MX.
func TestQueueRelayHost(t *testing.T) {
	b := newInstanceWith(t, map[string]string{"hostname": "relay.b.test", "submission": "require_sender_match = false"})
	b.addUser("bob@b.test", "pw-bob")
	b.addUser("relay@b.test", "pw-relay")
	b.start()
	// No DNS records at all: with a relay host nothing is looked up.
	a := newInstanceWith(t, map[string]string{
		"hostname": "mail.a.test",
		"queue": fmt.Sprintf("dns_server = %q\npoll_interval = 1\nrelay_host = %q\nrelay_user = \"relay@b.test\"\nrelay_password = \"pw-relay\"\nrelay_tls = \"encrypt\"\n",
			startDNS(t), b.addr("submission")),
	})
	a.addUser("alice@a.test", "pw-alice")
	a.start()

	submit(t, a, "alice@a.test", "pw-alice", []string{"bob@b.test"}, queueMsg)
	var got []string
	waitFor(t, "bob's mail through the relay", func() bool {
		got = mailbox(t, b, "bob@b.test", "pw-bob")
		return len(got) > 0
	})
	trace, rest := splitTrace(t, got[0])
	if rest != queueMsg {
		t.Errorf("message changed through the relay:\n got %q\nwant %q", rest, queueMsg)
	}
	for _, want := range []string{"with ESMTPSA", "(authenticated as relay@b.test)", "Received: from mail.a.test"} {
		if !strings.Contains(trace, want) {
			t.Errorf("relay's trace lacks %q:\n%s", want, trace)
		}
	}
	waitFor(t, "A's queue to empty", func() bool { return len(a.queueIDs()) == 0 })
}

// TestQueueDelivery: MX preference and fallback, one transaction per
// domain, null MX and 5xx bounces (one notification in the sender's POP
// mailbox), 4xx then success, a per-domain route, opportunistic STARTTLS
// to a self-signed peer.
func TestQueueDelivery(t *testing.T) {
	// 127.0.0.3 listens on nothing (refuses); .4 is c.test's second MX;
	// .5 greylists; .6 is the route's target.
	port, ls := commonPort(t, "127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6")
	ls["127.0.0.3"].Close()
	cert := testlib.Cert(t, "mx2.c.test")
	sinkC := startSink(t, ls["127.0.0.4"], &cert)
	sinkC.rcpt = func(to string) error {
		if strings.HasPrefix(to, "reject@") {
			return smtpreply.New(550, "5.1.1", "No such mailbox")
		}
		return nil
	}
	sinkG := startSink(t, ls["127.0.0.5"], nil)
	sinkG.data = func(n int) error {
		if n == 1 {
			return smtpreply.New(451, "4.7.1", "Greylisted")
		}
		return nil
	}
	sinkR := startSink(t, ls["127.0.0.6"], nil)
	dnsAddr := startDNS(t,
		"c.test. 60 IN MX 10 mx1.c.test.",
		"c.test. 60 IN MX 20 mx2.c.test.",
		"mx1.c.test. 60 IN A 127.0.0.3",
		"mx2.c.test. 60 IN A 127.0.0.4",
		"n.test. 60 IN MX 0 .",
		"g.test. 60 IN A 127.0.0.5", // no MX: the implicit MX
	)
	a := newInstanceWith(t, map[string]string{
		"hostname": "mail.a.test",
		"queue": fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\nretry_initial = 1\nretry_max = 1\ntls = \"may\"\n[queue.routes]\n\"r.test\" = \"127.0.0.6:%d\"\n",
			dnsAddr, port, port),
	})
	a.addUser("alice@a.test", "pw-alice")
	a.start()

	rcpts := []string{"x@c.test", "y@c.test", "reject@c.test", "z@n.test", "w@g.test", "v@r.test"}
	submit(t, a, "alice@a.test", "pw-alice", rcpts, queueMsg)
	waitFor(t, "the queue to empty", func() bool { return len(a.queueIDs()) == 0 })

	// c.test: the second MX (the first refuses), one transaction for both
	// accepted recipients, over STARTTLS with the self-signed certificate.
	if got := sinkC.got(); len(got) != 1 || !slices.Equal(got[0].rcpts, []string{"x@c.test", "y@c.test"}) || !got[0].tls ||
		got[0].from != "alice@a.test" || bodyAfterTrace(t, got[0].data) != queueMsg {
		t.Errorf("c.test transactions: %+v", got)
	}
	// g.test: 451 at the end of the data, then delivered on a retry.
	if got := sinkG.got(); len(got) != 1 || !slices.Equal(got[0].rcpts, []string{"w@g.test"}) {
		t.Errorf("g.test transactions: %+v", got)
	}
	sinkG.set(func() {
		if sinkG.datas != 2 {
			t.Errorf("g.test saw %d DATA commands, want 2 (451, then the retry)", sinkG.datas)
		}
	})
	// r.test: the route, not DNS.
	if got := sinkR.got(); len(got) != 1 || !slices.Equal(got[0].rcpts, []string{"v@r.test"}) {
		t.Errorf("r.test transactions: %+v", got)
	}
	// One notification for both failures, in alice's POP mailbox.
	msgs := mailbox(t, a, "alice@a.test", "pw-alice")
	if len(msgs) != 1 {
		t.Fatalf("alice has %d messages, want one bounce", len(msgs))
	}
	for _, want := range []string{"Final-Recipient: rfc822; reject@c.test", "Status: 5.1.1", "Remote-MTA: dns; mx2.c.test",
		"Final-Recipient: rfc822; z@n.test", "Status: 5.1.10", "null MX"} {
		if !strings.Contains(msgs[0], want) {
			t.Errorf("bounce lacks %q:\n%s", want, msgs[0])
		}
	}
	for _, not := range []string{"x@c.test", "w@g.test", "v@r.test"} {
		if strings.Contains(msgs[0], "Final-Recipient: rfc822; "+not) {
			t.Errorf("bounce names %s, which was delivered", not)
		}
	}
}

// TestQueueTLSVerify: tls = "verify" refuses the self-signed peer: the
// message stays queued with the reason, and nothing reaches the peer.
func TestQueueTLSVerify(t *testing.T) {
	port, ls := commonPort(t, "127.0.0.4")
	cert := testlib.Cert(t, "mx.c.test")
	sink := startSink(t, ls["127.0.0.4"], &cert)
	dnsAddr := startDNS(t, "c.test. 60 IN MX 10 mx.c.test.", "mx.c.test. 60 IN A 127.0.0.4")
	a := newInstanceWith(t, map[string]string{
		"hostname": "mail.a.test",
		"queue":    fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\ntls = \"verify\"\n", dnsAddr, port),
	})
	a.addUser("alice@a.test", "pw-alice")
	a.start()
	submit(t, a, "alice@a.test", "pw-alice", []string{"x@c.test"}, queueMsg)
	ids := a.queueIDs()
	if len(ids) != 1 {
		t.Fatalf("queue: %v", ids)
	}
	waitFor(t, "a failed attempt", func() bool { return a.attempts(ids[0]) >= 1 })
	show := a.must("", "queue", "show", ids[0])
	if !strings.Contains(show, "x@c.test (pending) 4.7.5") || !strings.Contains(show, "certificate") {
		t.Errorf("queue show:\n%s", show)
	}
	if got := sink.got(); len(got) != 0 {
		t.Errorf("the unverified peer got %+v", got)
	}
}

// TestQueueCommands: queue show, hold, release, retry and delete with and
// without a bounce, on the store while serve runs.
func TestQueueCommands(t *testing.T) {
	port, ls := commonPort(t, "127.0.0.7")
	sink := startSink(t, ls["127.0.0.7"], nil)
	deferAll := func(to string) error {
		return smtpreply.New(451, "4.3.0", "Try again later")
	}
	sink.set(func() { sink.rcpt = deferAll })
	dnsAddr := startDNS(t, "h.test. 60 IN MX 10 mx.h.test.", "mx.h.test. 60 IN A 127.0.0.7")
	a := newInstanceWith(t, map[string]string{
		"hostname": "mail.a.test",
		// Retries an hour away: only the commands make attempts happen.
		"queue": fmt.Sprintf("dns_server = %q\nmx_port = %d\npoll_interval = 1\nretry_initial = 3600\n", dnsAddr, port),
	})
	a.addUser("alice@a.test", "pw-alice")
	a.start()

	// Five messages, each deferred by its first attempt.
	var ids []string
	for i := range 5 {
		submit(t, a, "alice@a.test", "pw-alice", []string{fmt.Sprintf("u%d@h.test", i)}, queueMsg)
		all := a.queueIDs()
		ids = append(ids, all[len(all)-1])
		id := ids[i]
		waitFor(t, "the first attempt of "+id, func() bool { return a.attempts(id) >= 1 })
	}
	show := a.must("", "queue", "show", ids[0])
	for _, want := range []string{"From:         alice@a.test", "Attempts:     1", "u0@h.test (pending) 4.3.0 via mx.h.test",
		"451 4.3.0 Try again later", "Subject: over the queue"} {
		if !strings.Contains(show, want) {
			t.Errorf("queue show lacks %q:\n%s", want, show)
		}
	}
	if r := a.run("", "queue", "show", "999"); r.code == 0 || !strings.Contains(r.stderr, "no message 999") {
		t.Errorf("queue show of an unknown ID: %+v", r)
	}

	// The journal renders the deferral from the reply's parts, as
	// Postfix writes it: host, reply, the command it answered.
	waitFor(t, "the deferral in the journal", func() bool {
		return strings.Contains(a.must("", "journal", "--event", "deferred"),
			"mx.h.test[127.0.0.7]:"+strconv.Itoa(port)+" said: 451 4.3.0 Try again later (in reply to RCPT TO)")
	})

	sink.set(func() { sink.rcpt = nil })
	delivered := func(rcpt string) bool {
		for _, tx := range sink.got() {
			if slices.Contains(tx.rcpts, rcpt) {
				return true
			}
		}
		return false
	}

	// hold ids[1]; retry both ids[0] and ids[1]: only ids[0] goes.
	a.must("", "queue", "hold", ids[1])
	if l := a.must("", "queue", "list"); !regexp.MustCompile(`(?m)^` + ids[1] + `\s.*\sheld\s`).MatchString(l) {
		t.Errorf("queue list does not show %s held:\n%s", ids[1], l)
	}
	a.must("", "queue", "retry", ids[1])
	a.must("", "queue", "retry", ids[0])
	waitFor(t, "delivery of the retried message", func() bool { return delivered("u0@h.test") })
	waitFor(t, "the retried message to leave the queue", func() bool { return !slices.Contains(a.queueIDs(), ids[0]) })
	// Both were due at that poll: the held one was not tried.
	if delivered("u1@h.test") || a.attempts(ids[1]) != 1 {
		t.Errorf("the held message was tried")
	}
	a.must("", "queue", "release", ids[1])
	waitFor(t, "delivery of the released message", func() bool { return delivered("u1@h.test") })

	// delete --bounce: the sender is told; delete: silently gone.
	if out := a.must("", "queue", "delete", ids[2], "--bounce"); !strings.Contains(out, "bounce sent for 1 recipient") {
		t.Errorf("queue delete --bounce: %q", out)
	}
	a.must("", "queue", "delete", ids[3])
	if got := a.queueIDs(); !slices.Equal(got, ids[4:]) {
		t.Errorf("queue after the deletions: %v, want %v", got, ids[4:])
	}
	msgs := mailbox(t, a, "alice@a.test", "pw-alice")
	if len(msgs) != 1 || !strings.Contains(msgs[0], "Final-Recipient: rfc822; u2@h.test") || !strings.Contains(msgs[0], "deleted from the queue by the postmaster") {
		t.Errorf("alice's mailbox after delete --bounce: %d messages %q", len(msgs), msgs)
	}

	// retry without an ID: everything due.
	if out := a.must("", "queue", "retry"); !strings.Contains(out, "1 message(s) due now") {
		t.Errorf("queue retry: %q", out)
	}
	waitFor(t, "the queue to empty", func() bool { return len(a.queueIDs()) == 0 })
	if delivered("u2@h.test") || delivered("u3@h.test") || !delivered("u4@h.test") {
		t.Errorf("deliveries after the commands: %+v", sink.got())
	}
}
