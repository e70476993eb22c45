package smtpclient

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// Postfix as the next hop: three messages over one connection, inside
// verified TLS, each transaction pipelined in one read, with DSN
// parameters that Postfix takes and acts on (its success notifications
// carry our ENVID and ORCPT back).
func TestPostfixNextHop(t *testing.T) {
	x := testlib.StartNextHop(t, testCert(t))
	cfg := testConfig()
	testCert(t)
	cfg.RootCAs = certPool
	p := NewPool(cfg, PoolConfig{})
	target := Target{Host: "mx.test", IP: net.IPv4(127, 0, 0, 1), Port: x.Port}
	start := len(x.Log()) // after the probes that saw it listen
	var groups []string   // each transaction's commands, as pipelined
	for i := 1; i <= 3; i++ {
		body := fmt.Sprintf("From: a@x.test\r\nTo: b@y.test\r\nSubject: message %d\r\nMessage-ID: <m%d@x.test>\r\n\r\nBody of message %d, caf\xc3\xa9.\r\n.leading dot\r\n", i, i, i)
		m := &Message{From: "a@x.test", Body: strings.NewReader(body), Size: int64(len(body)), EightBit: true,
			Ret: "HDRS", EnvID: fmt.Sprintf("env+%d", i),
			Rcpts: []Recipient{
				{Addr: "b@y.test", Notify: []string{NotifySuccess, NotifyFailure}, ORcpt: fmt.Sprintf("orig-b%d@y.test", i)},
				{Addr: "c@y.test", Notify: []string{NotifyNever}},
				{Addr: "nobody@y.test"},
			}}
		g := fmt.Sprintf("MAIL FROM:<a@x.test> SIZE=%d BODY=8BITMIME RET=HDRS ENVID=env+2B%d\r\n"+
			"RCPT TO:<b@y.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig-b%d@y.test\r\n"+
			"RCPT TO:<c@y.test> NOTIFY=NEVER\r\nRCPT TO:<nobody@y.test>\r\nDATA\r\n", len(body), i, i)
		if i > 1 {
			g = "RSET\r\n" + g
		}
		groups = append(groups, g)
		res, err := p.Send(context.Background(), target, Options{TLS: TLSVerify}, m)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if res.Delivered() != 2 || !res.DSN || res.Rcpts[2].Err == nil || res.Rcpts[2].Err.Status.String() != "5.1.1" {
			t.Errorf("message %d: %+v", i, res)
		}
	}
	p.Close()

	var log string
	waitFor(t, "postfix to log the disconnect", func() bool {
		log = x.Log()[start:]
		return testlib.SessionEnd.MatchString(log)
	})
	// One connection, three messages, one EHLO before and one inside TLS.
	// (The probes that saw it listen connected too, without a command.)
	if n := len(testlib.SessionEnd.FindAllString(log, -1)); n != 1 {
		t.Errorf("want one connection, log has %d", n)
	}
	disc := regexp.MustCompile(`disconnect from \S+ (ehlo=2 starttls=1 mail=3 rcpt=6/9 data=3 rset=2 quit=1 commands=\S+)`)
	if m := disc.FindStringSubmatch(log); m == nil {
		t.Errorf("want a disconnect line with ehlo=2 starttls=1 mail=3 rcpt=6/9 data=3 rset=2 quit=1")
	} else {
		t.Logf("postfix: %s", m[1])
	}
	if strings.Contains(log, "improper command pipelining") {
		t.Error("postfix saw improper pipelining")
	}
	if !strings.Contains(log, "Verified TLS connection established from") && !strings.Contains(log, "TLS connection established from") {
		t.Error("no TLS connection in the log")
	}
	// Pipelining: each transaction's RSET, MAIL, RCPTs and DATA came in
	// one read, and the replies went out in one write.
	reads := testlib.TLSReads(log)
	for i, g := range groups {
		if !slices.Contains(reads, testlib.ReadLogged(g)) {
			t.Errorf("transaction %d: no read of %q in postfix's log; reads: %q", i+1, testlib.ReadLogged(g), reads)
		}
	}
	if n := len(regexp.MustCompile(`Write \d+ chars: (250 2\.0\.0 Ok\?\?)?250 2\.1\.0 Ok\?\?250 2\.1\.5 Ok`).FindAllString(log, -1)); n != 3 {
		t.Errorf("%d writes of the replies to a pipelined group, want 3", n)
	}

	// Delivered, and Postfix's success notifications (NOTIFY=SUCCESS)
	// carry ENVID and ORCPT back to the sender; c@y.test asked NEVER.
	var dsns []string
	waitFor(t, "3 deliveries to b, 3 to c and 3 notifications to a", func() bool {
		dsns = x.Maildir("x.test", "a")
		return len(x.Maildir("y.test", "b")) == 3 && len(x.Maildir("y.test", "c")) == 3 && len(dsns) >= 3
	})
	for _, m := range x.Maildir("y.test", "b") {
		if !strings.Contains(m, "caf\xc3\xa9.\n.leading dot") {
			t.Errorf("delivered content changed:\n%s", m)
		}
	}
	for i := 1; i <= 3; i++ {
		found := false
		for _, d := range dsns {
			if strings.Contains(d, fmt.Sprintf("Original-Envelope-Id: env+%d", i)) &&
				strings.Contains(d, fmt.Sprintf("Original-Recipient: rfc822;orig-b%d@y.test", i)) &&
				strings.Contains(d, "Action: delivered") && !strings.Contains(d, "c@y.test") {
				found = true
			}
		}
		if !found {
			t.Errorf("no success notification with ENVID env+%d and its ORCPT among:\n%s", i, strings.Join(dsns, "\n----\n"))
		}
	}
	if len(dsns) != 3 {
		t.Errorf("%d notifications, want 3 (none for NOTIFY=NEVER, none for the refused one without NOTIFY, which we report)", len(dsns))
	}
}

// A Postfix smtpd that offers neither PIPELINING, 8BITMIME nor DSN: the
// commands go one at a time (Postfix disconnects a client that
// pipelines then), without DSN parameters, and the 8-bit message is
// converted to quoted-printable.
func TestPostfixWithoutExtensions(t *testing.T) {
	x := testlib.StartNextHop(t, testCert(t))
	p := NewPool(testConfig(), PoolConfig{})
	defer p.Close()
	target := Target{Host: "mx.test", IP: net.IPv4(127, 0, 0, 1), Port: x.Bare}
	body := "From: a@x.test\r\nTo: d@y.test\r\nSubject: 8 bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
	m := &Message{From: "a@x.test", Body: strings.NewReader(body), Size: int64(len(body)), EightBit: true, EnvID: "e1",
		Rcpts: []Recipient{{Addr: "d@y.test", Notify: []string{NotifySuccess}}}}
	res, err := p.Send(context.Background(), target, Options{TLS: TLSMay}, m)
	if err != nil || res.Delivered() != 1 || !res.Converted || res.DSN {
		t.Fatalf("Send: %+v, %v", res, err)
	}
	var got []string
	waitFor(t, "the delivery to d", func() bool {
		got = x.Maildir("y.test", "d")
		return len(got) == 1
	})
	if !strings.Contains(got[0], "Content-Transfer-Encoding: quoted-printable\n") || !strings.Contains(got[0], "\n\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\n") {
		t.Errorf("delivered:\n%s", got[0])
	}
	if log := x.Log(); strings.Contains(log, "improper command pipelining") {
		t.Errorf("postfix saw improper pipelining")
	}
}
