package queue

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/smtpclient"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// Postfix (Debian's package) as the queue's next hop: three messages go
// over one connection, inside TLS, RSET between them (connection reuse),
// each transaction pipelined in one read (RFC 2920), as Postfix's log
// shows; Postfix offers DSN, so it gets RET, ENVID, NOTIFY and ORCPT and
// sends the success notifications itself (RFC 3461 section 5.2.1), none
// coming from the queue.
func TestPostfixNextHop(t *testing.T) {
	cert, _ := selfSigned(t, "mx.y.test")
	x := testlib.StartNextHop(t, cert)
	h := newHarness(t, func(c *Config) { c.TLS = smtpclient.TLSEncrypt; c.MXPort = x.Port })
	h.res.mx["y.test"] = []*net.MX{{Host: "mx.y.test.", Pref: 10}}
	h.res.ip["mx.y.test"] = []net.IP{net.ParseIP("127.0.0.1")}
	addr := fmt.Sprintf("127.0.0.1:%d", x.Port)
	h.dial.route(addr, addr)
	start := len(x.Log()) // after the probes that saw it listen

	var groups []string
	var ids []int64
	for i := 1; i <= 3; i++ {
		body := fmt.Sprintf("From: a@x.test\r\nTo: b@y.test\r\nSubject: queued %d\r\nMessage-ID: <q%d@x.test>\r\n\r\nMessage %d.\r\n", i, i, i)
		ids = append(ids, h.enqueueEnv(store.QueueEnvelope{From: "a@x.test", To: []string{"b@y.test", "c@y.test"},
			DSN: []dsn.RcptParams{{Notify: []string{dsn.NotifySuccess}, ORcptType: "rfc822", ORcpt: fmt.Sprintf("orig-b%d@y.test", i)}, {}},
			Ret: dsn.RetHdrs, EnvID: fmt.Sprintf("queue-env-%d", i)}, body))
		g := fmt.Sprintf("MAIL FROM:<a@x.test> SIZE=%d RET=HDRS ENVID=queue-env-%d\r\n"+
			"RCPT TO:<b@y.test> NOTIFY=SUCCESS ORCPT=rfc822;orig-b%d@y.test\r\nRCPT TO:<c@y.test>\r\nDATA\r\n", len(body), i, i)
		if i > 1 {
			g = "RSET\r\n" + g
		}
		groups = append(groups, g)
	}
	if n := h.attempt(); n != 3 {
		t.Fatalf("attempted %d messages, want 3", n)
	}
	for _, id := range ids {
		if m, ok := h.queued(id); ok {
			t.Errorf("message %d still queued: %+v", id, m)
		}
	}
	if err := h.r.Shutdown(context.Background()); err != nil { // QUIT
		t.Fatal(err)
	}

	var log string
	waitFor(t, "postfix to log the disconnect", func() bool {
		log = x.Log()[start:]
		return testlib.SessionEnd.MatchString(log)
	})
	if n := len(testlib.SessionEnd.FindAllString(log, -1)); n != 1 {
		t.Errorf("want one connection for three messages, the log has %d sessions", n)
	}
	disc := regexp.MustCompile(`disconnect from \S+ (ehlo=2 starttls=1 mail=3 rcpt=6 data=3 rset=2 quit=1 commands=\S+)`)
	if m := disc.FindStringSubmatch(log); m == nil {
		t.Errorf("no disconnect line with ehlo=2 starttls=1 mail=3 rcpt=6 data=3 rset=2 quit=1 in:\n%s", log)
	} else {
		t.Logf("postfix: %s", m[1])
	}
	if strings.Contains(log, "improper command pipelining") {
		t.Error("postfix saw improper pipelining")
	}
	reads := testlib.TLSReads(log)
	for i, g := range groups {
		if !slices.Contains(reads, testlib.ReadLogged(g)) {
			t.Errorf("message %d: no read of %q in postfix's log; reads: %q", i+1, testlib.ReadLogged(g), reads)
		}
	}

	var dsns []string
	waitFor(t, "3 deliveries each to b and c, and 3 notifications to a", func() bool {
		dsns = x.Maildir("x.test", "a")
		return len(x.Maildir("y.test", "b")) == 3 && len(x.Maildir("y.test", "c")) == 3 && len(dsns) >= 3
	})
	for i := 1; i <= 3; i++ {
		found := false
		for _, d := range dsns {
			if strings.Contains(d, fmt.Sprintf("Original-Envelope-Id: queue-env-%d", i)) &&
				strings.Contains(d, fmt.Sprintf("Original-Recipient: rfc822;orig-b%d@y.test", i)) && strings.Contains(d, "Action: delivered") {
				found = true
			}
		}
		if !found {
			t.Errorf("no success notification from postfix with ENVID queue-env-%d among:\n%s", i, strings.Join(dsns, "\n----\n"))
		}
	}
	if b := h.bounces.sent(); len(b) != 0 {
		t.Errorf("the queue sent notifications itself: %+v", b)
	}
}
