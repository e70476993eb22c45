package queue

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/smtpclient"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	var got []time.Duration
	for a := 1; a <= 11; a++ {
		got = append(got, Backoff(a, time.Minute, 4*time.Hour))
	}
	m := time.Minute
	want := []time.Duration{m, 2 * m, 4 * m, 8 * m, 16 * m, 32 * m, 64 * m, 128 * m, 240 * m, 240 * m, 240 * m}
	if !slices.Equal(got, want) {
		t.Errorf("Backoff schedule = %v, want %v", got, want)
	}
	if d := Backoff(1000, time.Minute, 4*time.Hour); d != 4*time.Hour {
		t.Errorf("Backoff(1000) = %v, want the maximum (no overflow)", d)
	}
	if d := Backoff(3, 10*time.Second, 5*time.Second); d != 10*time.Second {
		t.Errorf("Backoff with max < initial = %v, want initial", d)
	}

	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	deadline := now.Add(90 * time.Second)
	if next, ok := NextAttempt(now, deadline, 1, time.Minute, time.Hour); !ok || !next.Equal(now.Add(time.Minute)) {
		t.Errorf("NextAttempt before the deadline = %v, %v", next, ok)
	}
	// The last retry is at the deadline itself.
	if next, ok := NextAttempt(now, deadline, 2, time.Minute, time.Hour); !ok || !next.Equal(deadline) {
		t.Errorf("NextAttempt past the deadline = %v, %v; want the deadline", next, ok)
	}
	if _, ok := NextAttempt(deadline, deadline, 3, time.Minute, time.Hour); ok {
		t.Errorf("NextAttempt at the deadline: ok, want expiry")
	}
}

func TestOrderMX(t *testing.T) {
	t.Parallel()
	mxs := []*net.MX{{Host: "b.example.", Pref: 20}, {Host: "A.example.", Pref: 10}, {Host: "c.example.", Pref: 10},
		{Host: "d.example.", Pref: 30}, {Host: "a.example", Pref: 40}}
	identity := func(int, func(int, int)) {}
	if got, want := orderMX(mxs, identity), []string{"a.example", "c.example", "b.example", "d.example"}; !slices.Equal(got, want) {
		t.Errorf("orderMX = %v, want %v (by preference, no duplicates, lower case, no final dot)", got, want)
	}
	reverse := func(n int, swap func(int, int)) {
		for i := 0; i < n/2; i++ {
			swap(i, n-1-i)
		}
	}
	// A different shuffle reorders only equal preferences; of a host
	// listed twice, the more preferred record counts.
	if got, want := orderMX(mxs, reverse), []string{"c.example", "a.example", "b.example", "d.example"}; !slices.Equal(got, want) {
		t.Errorf("orderMX with another shuffle = %v, want %v", got, want)
	}
	// RFC 5321 section 5.1: equal preferences in random order. Over 200
	// draws both orders of the two preference-10 hosts show up (the
	// chance that one never does is 2^-199).
	firsts := map[string]int{}
	for range 200 {
		got := orderMX(mxs, rand.Shuffle)
		firsts[got[0]]++
		if got[2] != "b.example" || got[3] != "d.example" {
			t.Fatalf("orderMX = %v: preference order broken", got)
		}
	}
	if firsts["a.example"] == 0 || firsts["c.example"] == 0 {
		t.Errorf("equal-preference hosts not randomized: first places %v", firsts)
	}
}

func TestLookupMX(t *testing.T) {
	t.Parallel()
	res := &fakeResolver{
		mx: map[string][]*net.MX{
			"mx.test":    {{Host: "mx2.mx.test.", Pref: 20}, {Host: "mx1.mx.test.", Pref: 10}},
			"null.test":  {{Host: ".", Pref: 0}},
			"mixed.test": {{Host: ".", Pref: 0}, {Host: "mx.mixed.test.", Pref: 10}},
		},
		ip:   map[string][]net.IP{"plain.test": {net.ParseIP("127.0.0.5")}},
		fail: map[string]bool{"broken.test": true},
	}
	for _, c := range []struct {
		domain   string
		hosts    []string
		implicit bool
		status   string // failure status, "" for none
		perm     bool
	}{
		{domain: "mx.test", hosts: []string{"mx1.mx.test", "mx2.mx.test"}},
		// RFC 7505: a null MX refuses mail, permanently (X.1.10).
		{domain: "null.test", status: "5.1.10", perm: true},
		// One "." among real records is ignored.
		{domain: "mixed.test", hosts: []string{"mx.mixed.test"}},
		// RFC 5321 section 5.1: no MX, an address: the implicit MX.
		{domain: "plain.test", hosts: []string{"plain.test"}, implicit: true},
		// Neither MX nor address: the domain cannot receive mail.
		{domain: "nowhere.test", status: "5.1.2", perm: true},
		// A failing lookup is temporary.
		{domain: "broken.test", status: "4.4.3"},
	} {
		mx, f := lookupMX(t.Context(), res, c.domain)
		switch {
		case c.status != "":
			if f == nil || f.status != c.status || f.perm != c.perm {
				t.Errorf("lookupMX(%s) = %+v, %+v; want failure %s (permanent %v)", c.domain, mx, f, c.status, c.perm)
			}
		case f != nil:
			t.Errorf("lookupMX(%s) failed: %+v", c.domain, f)
		case !slices.Equal(mx.hosts, c.hosts) || mx.implicit != c.implicit:
			t.Errorf("lookupMX(%s) = %+v, want hosts %v implicit %v", c.domain, mx, c.hosts, c.implicit)
		}
	}
}

// startDNS serves zone (presentation-format records) on a loopback UDP
// and TCP port. Names under "fail." answer SERVFAIL; "big.test" answers
// are truncated over UDP.
func startDNS(t *testing.T, zone ...string) string {
	t.Helper()
	d := testlib.StartDNS(t, zone...)
	d.ServFail("fail.test.")
	d.Truncate("big.test.")
	return d.Addr
}

func TestResolverOverDNS(t *testing.T) {
	t.Parallel()
	addr := startDNS(t,
		"b.test. 60 IN MX 10 mx1.b.test.",
		"b.test. 60 IN MX 20 mx2.b.test.",
		"mx1.b.test. 60 IN A 127.0.0.2",
		"mx2.b.test. 60 IN A 127.0.0.3",
		"mx2.b.test. 60 IN AAAA ::1",
		"null.test. 60 IN MX 0 .",
		"noMX.test. 60 IN A 127.0.0.4",
		"big.test. 60 IN MX 10 mx1.b.test.",
	)
	res := NewResolver(resolver.CachingServer(addr, 0))
	ctx := t.Context()

	mx, f := lookupMX(ctx, res, "b.test")
	if f != nil || !slices.Equal(mx.hosts, []string{"mx1.b.test", "mx2.b.test"}) {
		t.Errorf("MX of b.test = %+v, %+v", mx, f)
	}
	ips, err := res.LookupIP(ctx, "mx2.b.test")
	if err != nil || len(ips) != 2 || !ips[0].Equal(net.ParseIP("127.0.0.3")) || !ips[1].Equal(net.ParseIP("::1")) {
		t.Errorf("LookupIP(mx2.b.test) = %v, %v; want A and AAAA", ips, err)
	}
	if _, f := lookupMX(ctx, res, "null.test"); f == nil || f.status != "5.1.10" || !f.perm {
		t.Errorf("null MX over DNS: %+v", f)
	}
	if mx, f := lookupMX(ctx, res, "nomx.test"); f != nil || !mx.implicit || !slices.Equal(mx.hosts, []string{"nomx.test"}) {
		t.Errorf("domain without MX over DNS: %+v, %+v; want the implicit MX", mx, f)
	}
	if _, f := lookupMX(ctx, res, "nxdomain.test"); f == nil || f.status != "5.1.2" || !f.perm {
		t.Errorf("NXDOMAIN over DNS: %+v", f)
	}
	if _, f := lookupMX(ctx, res, "x.fail.test"); f == nil || f.perm || f.status != "4.4.3" {
		t.Errorf("SERVFAIL over DNS: %+v; want a temporary failure", f)
	}
	// A truncated UDP answer is asked again over TCP.
	if mx, f := lookupMX(ctx, res, "big.test"); f != nil || !slices.Equal(mx.hosts, []string{"mx1.b.test"}) {
		t.Errorf("MX of big.test (truncated over UDP) = %+v, %+v", mx, f)
	}
	// Nothing listening: a temporary failure.
	dead := NewResolver(resolver.Server("127.0.0.1:9", time.Second))
	if _, f := lookupMX(ctx, dead, "b.test"); f == nil || f.perm {
		t.Errorf("lookup with no DNS server: %+v, want a temporary failure", f)
	}
}

func TestGroup(t *testing.T) {
	t.Parallel()
	r := New(Config{Routes: map[string]string{"Routed.Test.": "127.0.0.9:2525"}})
	got := r.group(pendingRcpts("a@one.test", "b@Two.test", "c@ONE.test", "d@routed.test", "e@two.test", "f@[127.0.0.7]", "bad"))
	var desc []string
	for _, g := range got {
		desc = append(desc, g.dest.key+": "+strings.Join(addrs(g.rcpts), " "))
	}
	want := []string{"mx one.test: a@one.test c@ONE.test", "mx two.test: b@Two.test e@two.test",
		"route 127.0.0.9:2525: d@routed.test", "literal 127.0.0.7:25: f@[127.0.0.7]", "invalid: bad"}
	if !slices.Equal(desc, want) {
		t.Errorf("groups:\n got %q\nwant %q", desc, want)
	}
	// With a relay host everything but the routes goes there, in one group.
	r = New(Config{Relay: &Relay{Addr: "127.0.0.8:587"}, Routes: map[string]string{"routed.test": "127.0.0.9:2525"}})
	desc = nil
	for _, g := range r.group(pendingRcpts("a@one.test", "b@two.test", "c@routed.test")) {
		desc = append(desc, g.dest.key+": "+strings.Join(addrs(g.rcpts), " "))
	}
	if want := []string{"relay: a@one.test b@two.test", "route 127.0.0.9:2525: c@routed.test"}; !slices.Equal(desc, want) {
		t.Errorf("groups with a relay:\n got %q\nwant %q", desc, want)
	}
}

const testMsg = "Received: from client\r\nFrom: alice@a.test\r\nTo: bob@b.test\r\nSubject: hi\r\nMessage-ID: <m1@a.test>\r\n\r\nHello.\r\n.leading dot\r\n"

// TestOneTransactionPerDomain: all recipients of one domain in one
// transaction, one transaction per domain, the body byte-exact.
func TestOneTransactionPerDomain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t)
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	h.mx("c.test", mxHost{"mx.c.test", 10, "127.0.0.3", k})
	id := h.enqueue("alice@a.test", []string{"bob@b.test", "carol@c.test", "dan@b.test", "eve@B.TEST"}, testMsg)
	h.attempt()

	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued after every recipient was delivered")
	}
	txns := k.transactions()
	if len(txns) != 2 {
		t.Fatalf("%d transactions, want 2 (one per domain): %+v", len(txns), txns)
	}
	slices.SortFunc(txns, func(a, b txn) int { return len(b.rcpts) - len(a.rcpts) })
	if want := []string{"bob@b.test", "dan@b.test", "eve@B.TEST"}; !slices.Equal(txns[0].rcpts, want) {
		t.Errorf("b.test transaction recipients %v, want %v", txns[0].rcpts, want)
	}
	if !slices.Equal(txns[1].rcpts, []string{"carol@c.test"}) {
		t.Errorf("c.test transaction recipients %v", txns[1].rcpts)
	}
	for _, tx := range txns {
		if tx.data != testMsg {
			t.Errorf("body changed:\n got %q\nwant %q", tx.data, testMsg)
		}
		if tx.from != "alice@a.test" || tx.helo != "out.test" {
			t.Errorf("MAIL FROM %q, EHLO %q", tx.from, tx.helo)
		}
		if tx.tls {
			// The sink offers no STARTTLS without a certificate.
			t.Errorf("TLS without a certificate?")
		}
	}
	if len(h.bounces.sent()) != 0 {
		t.Errorf("bounces sent: %+v", h.bounces.sent())
	}
}

// TestMXFallback: RFC 5321 section 5.1, the next MX when the first
// refuses connections; the null MX and a domain without mail hosts bounce
// without any connection.
func TestMXFallback(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t)
	h.mx("b.test", mxHost{"mx2.b.test", 20, "127.0.0.3", k}, mxHost{"mx1.b.test", 10, "127.0.0.2", nil})
	h.res.mx["null.test"] = []*net.MX{{Host: ".", Pref: 0}}
	id := h.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
	null := h.enqueue("alice@a.test", []string{"x@null.test"}, testMsg)
	h.attempt()

	if got := h.dial.dialed(); len(got) != 2 || got[0] != "127.0.0.2:25" || got[1] != "127.0.0.3:25" {
		t.Errorf("dialed %v, want the preferred MX first, then the other", got)
	}
	if txns := k.transactions(); len(txns) != 1 || txns[0].rcpts[0] != "bob@b.test" {
		t.Errorf("second MX got %+v", txns)
	}
	if _, ok := h.queued(id); ok {
		t.Errorf("delivered message still queued")
	}
	if _, ok := h.queued(null); ok {
		t.Errorf("message to a null MX domain still queued")
	}
	b := h.bounces.sent()
	if len(b) != 1 || b[0].to != "alice@a.test" || field(b[0].msg, "Status") != "5.1.10" ||
		field(b[0].msg, "Final-Recipient") != "rfc822; x@null.test" || !strings.Contains(b[0].msg, "null MX") {
		t.Errorf("null MX bounce = %+v", b)
	}
}

// TestFailures: 5xx fails a recipient at once (one bounce), 4xx defers it
// on the schedule, others of the same transaction are delivered.
func TestFailures(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	var mu sync.Mutex
	greylisted := true
	k := newSink(t, withRcpt(func(to string) string {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case strings.HasPrefix(to, "nobody@"):
			return "550 5.1.1 No such user"
		case strings.HasPrefix(to, "grey@") && greylisted:
			return "451 4.7.1 Greylisted, try later"
		}
		return ""
	}))
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueue("alice@a.test", []string{"bob@b.test", "nobody@b.test", "grey@b.test"}, testMsg)
	t0 := h.clock()
	h.attempt()

	// Each remote reply is kept as it came, with its command and host.
	if rc := h.recipient(id, "bob@b.test"); rc.State != store.QueueDelivered || rc.RemoteMTA != "mx.b.test" ||
		rc.Remote.Reply.Code != 250 || rc.Remote.Command != "end of data" || rc.Remote.Host != "mx.b.test[127.0.0.2]:25" {
		t.Errorf("bob: %+v", rc)
	}
	if rc := h.recipient(id, "nobody@b.test"); rc.State != store.QueueFailed || !rc.Notified || rc.Status != "5.1.1" ||
		rc.Remote.String() != "mx.b.test[127.0.0.2]:25 said: 550 5.1.1 No such user (in reply to RCPT TO)" || rc.LastError != "" {
		t.Errorf("nobody: %+v", rc)
	}
	rc := h.recipient(id, "grey@b.test")
	if rc.State != store.QueuePending || rc.Status != "4.7.1" || rc.Remote.Reply.Code != 451 || rc.Remote.Reply.Message() != "Greylisted, try later" {
		t.Errorf("grey: %+v", rc)
	}
	m, _ := h.queued(id)
	if m.Attempts != 1 || !m.NextAttempt.Equal(t0.Add(time.Minute)) || !m.LastAttempt.Equal(t0) {
		t.Errorf("after the first attempt: attempts %d, last %v, next %v; want 1, %v, %v", m.Attempts, m.LastAttempt, m.NextAttempt, t0, t0.Add(time.Minute))
	}
	b := h.bounces.sent()
	if len(b) != 1 {
		t.Fatalf("%d bounces, want 1", len(b))
	}
	for _, want := range []string{"Action: failed", "Status: 5.1.1", "Final-Recipient: rfc822; nobody@b.test", "Remote-MTA: dns; mx.b.test",
		"Diagnostic-Code: smtp; 550 5.1.1 No such user\r\n", "Content-Type: multipart/report; report-type=delivery-status", "Message-ID: <m1@a.test>", "Reporting-MTA: dns; out.test"} {
		if !strings.Contains(b[0].msg, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b[0].msg)
		}
	}
	if strings.Contains(b[0].msg, "grey@b.test") || strings.Contains(b[0].msg, "Final-Recipient: rfc822; bob@b.test") {
		t.Errorf("bounce names recipients that did not fail:\n%s", b[0].msg)
	}

	// Not due yet: nothing happens.
	if n := h.attempt(); n != 0 {
		t.Errorf("attempted %d messages before the retry time", n)
	}
	mu.Lock()
	greylisted = false
	mu.Unlock()
	h.advance(time.Minute)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued after the retry delivered the last recipient")
	}
	txns := k.transactions()
	if len(txns) != 2 || !slices.Equal(txns[0].rcpts, []string{"bob@b.test"}) || !slices.Equal(txns[1].rcpts, []string{"grey@b.test"}) {
		t.Errorf("transactions %+v: want bob first, grey on the retry, nobody never", txns)
	}
	if len(h.bounces.sent()) != 1 {
		t.Errorf("a second bounce was sent")
	}
}

// TestDataFailure: a 5xx after the data fails every recipient of the
// transaction; a 4xx defers them.
func TestDataFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t, withData(func(n int) string {
		if n == 1 {
			return "452 4.3.1 Insufficient storage"
		}
		return "554 5.7.1 Spam"
	}))
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueue("alice@a.test", []string{"bob@b.test", "carol@b.test"}, testMsg)
	h.attempt()
	for _, a := range []string{"bob@b.test", "carol@b.test"} {
		if rc := h.recipient(id, a); rc.State != store.QueuePending || rc.Status != "4.3.1" {
			t.Errorf("%s after 452 at the end of data: %+v", a, rc)
		}
	}
	h.advance(time.Minute)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued after 554")
	}
	b := h.bounces.sent()
	if len(b) != 1 || strings.Count(b[0].msg, "Status: 5.7.1") != 2 {
		t.Errorf("bounces %+v, want one naming both recipients", b)
	}
}

// TestExpiry: temporary failures until the lifetime is over, then a
// bounce (X.4.7); the delay warning goes out once on the way.
func TestExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) {
		c.MaxLifetime = 2 * time.Hour
		c.DelayWarning = 30 * time.Minute
		c.RetryInitial, c.RetryMax = 20*time.Minute, 40*time.Minute
	})
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", nil}) // refuses connections
	id := h.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
	m, _ := h.queued(id)
	t0 := m.CreatedAt
	var attempts int
	for range 20 {
		if h.attempt() > 0 {
			attempts++
		}
		if _, ok := h.queued(id); !ok {
			break
		}
		h.advance(10 * time.Minute)
	}
	if _, ok := h.queued(id); ok {
		t.Fatalf("message still queued after its lifetime")
	}
	// Attempts at 0, 20, 60 (+40), 100, and 120 (the deadline): 5.
	if attempts != 5 {
		t.Errorf("%d attempts, want 5 (at 0, 20, 60, 100 and 120 minutes)", attempts)
	}
	b := h.bounces.sent()
	if len(b) != 2 {
		t.Fatalf("%d notifications, want a delay warning and a bounce", len(b))
	}
	warn, bounce := b[0].msg, b[1].msg
	if field(warn, "Action") != "delayed" || field(warn, "Subject") != "Delayed Mail (still being retried)" ||
		field(warn, "Will-Retry-Until") != t0.Add(2*time.Hour).Format(time.RFC1123Z) || !strings.Contains(warn, "connection refused") {
		t.Errorf("delay warning:\n%s", warn)
	}
	if field(bounce, "Action") != "failed" || field(bounce, "Status") != "4.4.7" || !strings.Contains(bounce, "delivery time expired") {
		t.Errorf("expiry bounce:\n%s", bounce)
	}
}

// TestNoBounceToNullSender: RFC 5321 section 4.5.5.
func TestNoBounceToNullSender(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t, withRcpt(func(string) string { return "550 5.1.1 No" }))
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueue("", []string{"bob@b.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("failed null-sender message still queued")
	}
	if b := h.bounces.sent(); len(b) != 0 {
		t.Errorf("bounce of a bounce sent: %+v", b)
	}
}

// TestBounceRetried: a notification that cannot be sent yet is sent on a
// later attempt (the failure is kept, unnotified); one that never can be
// is dropped.
func TestBounceRetried(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.res.mx["null.test"] = []*net.MX{{Host: ".", Pref: 0}}
	h.bounces.err = errors.New("store busy")
	id := h.enqueue("alice@a.test", []string{"x@null.test"}, testMsg)
	h.attempt()
	if rc := h.recipient(id, "x@null.test"); rc.State != store.QueueFailed || rc.Notified {
		t.Fatalf("after a failed bounce: %+v, want failed, not notified", rc)
	}
	h.bounces.mu.Lock()
	h.bounces.err = nil
	h.bounces.mu.Unlock()
	h.advance(time.Minute)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued once its bounce was sent")
	}
	if b := h.bounces.sent(); len(b) != 1 || field(b[0].msg, "Status") != "5.1.10" {
		t.Errorf("bounces %+v", b)
	}

	h.bounces.mu.Lock()
	h.bounces.err = fmt.Errorf("%w: 550 no such user", ErrUndeliverable)
	h.bounces.mu.Unlock()
	id = h.enqueue("gone@a.test", []string{"x@null.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message whose bounce is undeliverable still queued")
	}
}

// TestStartTLS: RFC 3207 at each level.
func TestStartTLS(t *testing.T) {
	t.Parallel()
	cert, leaf := selfSigned(t, "mx.b.test")
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	for _, c := range []struct {
		level     smtpclient.TLSLevel
		certified bool // the sink offers STARTTLS
		broken    bool // ... but every handshake fails
		roots     *x509.CertPool
		delivered bool
		tls       bool
		status    string
	}{
		{level: smtpclient.TLSMay, certified: true, delivered: true, tls: true},
		// Opportunistic TLS falls back to plaintext after a failed
		// handshake; "encrypt" defers.
		{level: smtpclient.TLSMay, certified: true, broken: true, delivered: true},
		{level: smtpclient.TLSEncrypt, certified: true, broken: true, status: "4.7.5"},
		{level: smtpclient.TLSMay, delivered: true},
		{level: smtpclient.TLSNone, certified: true, delivered: true},
		{level: smtpclient.TLSEncrypt, certified: true, delivered: true, tls: true},
		{level: smtpclient.TLSEncrypt, status: "4.7.4"},
		{level: smtpclient.TLSVerify, certified: true, status: "4.7.5"},
		{level: smtpclient.TLSVerify, certified: true, roots: pool, delivered: true, tls: true},
	} {
		t.Run(fmt.Sprintf("%s-cert%v-broken%v-roots%v", c.level, c.certified, c.broken, c.roots != nil), func(t *testing.T) {
			h := newHarness(t, func(cfg *Config) { cfg.TLS, cfg.RootCAs = c.level, c.roots })
			var k *sink
			switch {
			case c.broken:
				k = newSink(t, withBrokenTLS(cert))
			case c.certified:
				k = newSink(t, withTLS(cert))
			default:
				k = newSink(t)
			}
			h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
			id := h.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
			h.attempt()
			txns := k.transactions()
			if !c.delivered {
				rc := h.recipient(id, "bob@b.test")
				if len(txns) != 0 || rc.State != store.QueuePending || rc.Status != c.status {
					t.Errorf("delivered %d times, recipient %+v; want deferred with %s", len(txns), rc, c.status)
				}
				return
			}
			if len(txns) != 1 || txns[0].tls != c.tls || txns[0].data != testMsg {
				m, _ := h.queued(id)
				t.Errorf("transactions %+v, want one with TLS %v; queue: %+v", txns, c.tls, m)
			}
		})
	}
}

// TestRelay: all remote mail to the relay in one transaction, AUTH PLAIN
// inside TLS; a per-domain route overrides it; a refused login defers.
func TestRelay(t *testing.T) {
	t.Parallel()
	cert, _ := selfSigned(t, "relay.test")
	relay := newSink(t, withTLS(cert), withAuth("out", "s3cret"))
	routed := newSink(t)
	h := newHarness(t, func(c *Config) {
		c.Relay = &Relay{Addr: "127.0.0.9:587", User: "out", Password: "s3cret", TLS: smtpclient.TLSEncrypt}
		c.Routes = map[string]string{"routed.test": "127.0.0.10:2525"}
	})
	h.dial.route("127.0.0.9:587", relay.addr)
	h.dial.route("127.0.0.10:2525", routed.addr)
	id := h.enqueue("alice@a.test", []string{"bob@b.test", "carol@c.test", "dan@routed.test"}, testMsg)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued")
	}
	txns := relay.transactions()
	if len(txns) != 1 || !slices.Equal(txns[0].rcpts, []string{"bob@b.test", "carol@c.test"}) || txns[0].authUser != "out" || !txns[0].tls {
		t.Errorf("relay transactions %+v: want one, both domains, authenticated, TLS", txns)
	}
	if txns := routed.transactions(); len(txns) != 1 || !slices.Equal(txns[0].rcpts, []string{"dan@routed.test"}) {
		t.Errorf("route transactions %+v", txns)
	}
	if len(h.res.asked) != 0 {
		t.Errorf("MX lookups with a relay: %v", h.res.asked)
	}

	h2 := newHarness(t, func(c *Config) {
		c.Relay = &Relay{Addr: "127.0.0.9:587", User: "out", Password: "wrong", TLS: smtpclient.TLSMay}
	})
	h2.dial.route("127.0.0.9:587", relay.addr)
	id = h2.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
	h2.attempt()
	if rc := h2.recipient(id, "bob@b.test"); rc.State != store.QueuePending || rc.Remote.Command != "AUTH" || rc.Remote.Reply.Code != 535 || rc.Status != "4.7.8" {
		t.Errorf("with a wrong password: %+v, want deferred (4.7.8) with the refusal of AUTH", rc)
	}

	// No TLS offered: the credentials are not sent.
	plain := newSink(t, withAuth("out", "s3cret"))
	h3 := newHarness(t, func(c *Config) {
		c.Relay = &Relay{Addr: "127.0.0.9:587", User: "out", Password: "s3cret", TLS: smtpclient.TLSMay}
	})
	h3.dial.route("127.0.0.9:587", plain.addr)
	id = h3.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
	h3.attempt()
	if rc := h3.recipient(id, "bob@b.test"); rc.State != store.QueuePending || !strings.Contains(rc.LastError, "without TLS") {
		t.Errorf("relay without STARTTLS: %+v, want deferred without sending credentials", rc)
	}
}

// TestSize: RFC 1870, a message larger than the peer's SIZE bounces
// without being sent.
func TestSize(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t, withMaxSize(100))
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg+strings.Repeat("x", 200)+"\r\n")
	h.attempt()
	if _, ok := h.queued(id); ok || len(k.transactions()) != 0 {
		t.Errorf("queued %v, transactions %d", ok, len(k.transactions()))
	}
	if b := h.bounces.sent(); len(b) != 1 || field(b[0].msg, "Status") != "5.3.4" || !strings.Contains(b[0].msg, "SIZE 100") {
		t.Errorf("bounces %+v", b)
	}
}

// TestEightBitAndUTF8: RFC 6152 and RFC 6531 towards peers without the
// extensions. A peer without 8BITMIME gets 8-bit content converted to 7
// bit (RFC 6152 section 3); one without SMTPUTF8 gets no UTF-8 envelope
// or header: such a recipient or message fails with X.6.7 (RFC 6531
// sections 3.2 and 3.5), while the others of the transaction get it; a
// peer with SMTPUTF8 gets them, announced.
func TestEightBitAndUTF8(t *testing.T) {
	t.Parallel()
	const eightBody = "From: alice@a.test\r\nSubject: cafe\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9\r\n"
	const utf8Header = "From: alice@a.test\r\nSubject: caf\xc3\xa9\r\n\r\ncaf\xc3\xa9\r\n"

	// No 8BITMIME: the 8-bit body goes as quoted-printable; no SMTPUTF8
	// either: the message with a UTF-8 header bounces, unsent.
	h := newHarness(t, nil)
	k := newSink(t, without8BitMIME())
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	conv := h.enqueue("alice@a.test", []string{"bob@b.test"}, eightBody)
	hdr := h.enqueue("alice@a.test", []string{"carol@b.test"}, utf8Header)
	h.attempt()
	for _, id := range []int64{conv, hdr} {
		if _, ok := h.queued(id); ok {
			t.Errorf("message %d still queued", id)
		}
	}
	txns := k.transactions()
	if len(txns) != 1 || !strings.Contains(txns[0].data, "Content-Transfer-Encoding: quoted-printable\r\n") ||
		!strings.Contains(txns[0].data, "\r\n\r\ncaf=C3=A9\r\n") || strings.Contains(txns[0].mail, "BODY=8BITMIME") {
		t.Errorf("transactions %+v, want the 8-bit message converted to 7 bit", txns)
	}
	if b := h.bounces.sent(); len(b) != 1 || field(b[0].msg, "Status") != "5.6.7" || field(b[0].msg, "Final-Recipient") != "rfc822; carol@b.test" ||
		!strings.Contains(b[0].msg, "SMTPUTF8") {
		t.Errorf("bounces %+v, want the UTF-8 header's, 5.6.7", b)
	}

	// 8BITMIME but no SMTPUTF8: a non-ASCII recipient fails (X.6.7), the
	// others of the transaction get the message.
	h = newHarness(t, nil)
	k = newSink(t)
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueue("alice@a.test", []string{"j\xc3\xb6rg@b.test", "bob@b.test"}, eightBody)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued")
	}
	txns = k.transactions()
	if len(txns) != 1 || txns[0].mail != fmt.Sprintf("MAIL FROM:<alice@a.test> SIZE=%d BODY=8BITMIME", len(eightBody)) ||
		!slices.Equal(txns[0].rcptCmds, []string{"RCPT TO:<bob@b.test>"}) {
		t.Errorf("transactions %+v", txns)
	}
	if b := h.bounces.sent(); len(b) != 1 || field(b[0].msg, "Status") != "5.6.7" || field(b[0].msg, "Final-Recipient") != "rfc822; j\xc3\xb6rg@b.test" {
		t.Errorf("bounces %+v", b)
	}

	// A peer with SMTPUTF8 gets the UTF-8 address and header, announced.
	h = newHarness(t, nil)
	k = newSink(t, withSMTPUTF8())
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	h.enqueue("alice@a.test", []string{"j\xc3\xb6rg@b.test"}, utf8Header)
	h.attempt()
	if txns := k.transactions(); len(txns) != 1 || !txns[0].utf8 || txns[0].rcpts[0] != "j\xc3\xb6rg@b.test" || txns[0].data != utf8Header {
		t.Errorf("transactions %+v, want the UTF-8 recipient with SMTPUTF8", txns)
	}
}

// TestRunner: the background loop delivers what is queued (Kick), keeps
// to the per-host limit, and a restart recovers a crash's leftovers.
func TestRunner(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.MaxPerHost = 2; c.Now = time.Now })
	k := newSink(t)
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	h.res.mx["null.test"] = []*net.MX{{Host: ".", Pref: 0}}

	// A crash left a claim and a failure whose bounce was not sent.
	claimed := h.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
	if _, err := h.st.ClaimQueued(t.Context(), time.Now(), time.Hour, 10); err != nil {
		t.Fatal(err)
	}
	failed := h.enqueue("alice@a.test", []string{"x@null.test"}, testMsg)
	if err := h.st.UpdateQueued(t.Context(), failed, store.QueueUpdate{Recipients: []store.QueueRecipient{
		{Address: "x@null.test", State: store.QueueFailed, Status: "5.1.10", LastError: "null MX"}}}); err != nil {
		t.Fatal(err)
	}
	if err := h.r.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		h.enqueue("alice@a.test", []string{fmt.Sprintf("r%d@b.test", i)}, testMsg)
		h.r.Kick()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ms, err := h.st.ListQueue(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue not empty after 30s: %+v", ms)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(k.transactions()); n != 11 {
		t.Errorf("%d transactions, want 11", n)
	}
	if maxOpen := k.maxOpen(); maxOpen > 2 {
		t.Errorf("%d connections at once to one host, limit 2", maxOpen)
	}
	if b := h.bounces.sent(); len(b) != 1 || field(b[0].msg, "Status") != "5.1.10" {
		t.Errorf("the crash's unsent bounce: %+v", b)
	}
	if err := h.r.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if _, ok := h.queued(claimed); ok {
		t.Errorf("the message a crashed runner had claimed is still queued")
	}
}

// TestShutdownAborts: an attempt still running at the end of the grace
// period is aborted and its recipients are due again at once.
func TestShutdownAborts(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.Now = time.Now })
	block := make(chan struct{})
	k := newSink(t, withData(func(int) string { <-block; return "" }))
	t.Cleanup(func() { close(block) })
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueue("alice@a.test", []string{"bob@b.test"}, testMsg)
	if err := h.r.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if k.Datas() > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sink never got the data")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // no grace at all
	if err := h.r.Shutdown(ctx); err == nil {
		t.Errorf("Shutdown with an attempt under way and no grace: no error")
	}
	m, ok := h.queued(id)
	if !ok || m.Recipients[0].State != store.QueuePending || !m.ClaimedUntil.IsZero() || m.NextAttempt.After(time.Now()) {
		t.Errorf("after an aborted attempt: %+v (queued %v); want pending, unclaimed, due", m, ok)
	}
	if len(k.transactions()) != 0 {
		t.Errorf("the aborted transaction was completed")
	}
}

// TestAddressesOnTheWire: MAIL FROM and RCPT TO carry the addresses as
// address.Quote writes them, quoted where the local part needs it (RFC
// 5321 section 4.1.2); a queued sender or recipient that cannot be
// written safely (queued by a version that let it in) is never sent and
// fails with 5.1.7 or 5.1.3.
func TestAddressesOnTheWire(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t)
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	good := h.enqueue(`"john smith"@a.test`, []string{`"x@y z"@b.test`, "bob@b.test", "x>y@b.test"}, testMsg)
	bad := h.enqueue("ceo@bank.com> ENVID=x@evil.test", []string{"carol@b.test"}, testMsg)
	h.attempt()

	txns := k.transactions()
	if len(txns) != 1 || !strings.HasPrefix(txns[0].mail, `MAIL FROM:<"john smith"@a.test> `) {
		t.Fatalf("transactions %+v, want one from <\"john smith\"@a.test>", txns)
	}
	if want := []string{`RCPT TO:<"x@y z"@b.test>`, "RCPT TO:<bob@b.test>"}; !slices.Equal(txns[0].rcptCmds, want) {
		t.Errorf("RCPT commands %q, want %q", txns[0].rcptCmds, want)
	}
	// Both failures were bounced (the messages are done).
	for _, id := range []int64{good, bad} {
		if _, ok := h.queued(id); ok {
			t.Errorf("message %d still queued", id)
		}
	}
	status := map[string]string{}
	for _, b := range h.bounces.sent() {
		status[b.to] = field(b.msg, "Status")
	}
	if status[`"john smith"@a.test`] != "5.1.3" || status["ceo@bank.com> ENVID=x@evil.test"] != "5.1.7" {
		t.Errorf("bounces: %q", status)
	}
}

// pendingRcpts makes pending queue recipients of addresses.
func pendingRcpts(as ...string) []store.QueueRecipient {
	out := make([]store.QueueRecipient, len(as))
	for i, a := range as {
		out[i] = store.QueueRecipient{Address: a, State: store.QueuePending}
	}
	return out
}

func addrs(rcpts []store.QueueRecipient) []string {
	out := make([]string, len(rcpts))
	for i, rc := range rcpts {
		out[i] = rc.Address
	}
	return out
}
