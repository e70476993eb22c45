package milter

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// gtube is the Generic Test for Unsolicited Bulk Email: rspamd rejects a
// message that holds it.
const gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

// A real rspamd, its proxy worker in milter mode: GTUBE refused at the
// end of the data with rspamd's reply, a clean message accepted with
// rspamd's header fields added.
func TestRspamd(t *testing.T) {
	if testing.Short() {
		t.Skip("starting rspamd takes a while")
	}
	// The sender's domain and host resolve, as a legitimate sender's
	// do: rspamd's host checks have nothing to say.
	dns := testlib.StartDNS(t,
		"example.net. 60 IN MX 10 client.example.net.",
		"example.net. 60 IN A 198.51.100.7",
		"client.example.net. 60 IN A 198.51.100.7",
		"7.100.51.198.in-addr.arpa. 60 IN PTR client.example.net.")
	rs := testlib.StartRspamd(t, dns.Addr)
	ctx := context.Background()
	c, log := newClient(t, Config{Name: "rspamd", Address: rs.Milter, CommandTimeout: time.Minute, EndTimeout: time.Minute})

	spam := "From: Spammer <spammer@example.net>\r\nTo: bob@example.org\r\nSubject: test\r\n" +
		"Message-ID: <gtube@example.net>\r\nDate: Sun, 15 Mar 2026 10:00:00 +0000\r\n\r\n" +
		"This is the GTUBE, the\r\n" + gtube + "\r\n"
	s := c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), spam)
	if res.Action != Reject || res.Milter != "rspamd" || res.Reply.Code/100 != 5 || len(res.Reply.Lines) == 0 || res.Reply.Lines[0] == "" {
		t.Fatalf("GTUBE: %+v (%q), want rspamd's rejection\nlog: %s\nrspamd's log:\n%s", res.Verdict, res.Reply.String(), log, rs.Log())
	}
	t.Logf("rspamd's reply to GTUBE: %s", res.Reply.String())

	clean := "From: Alice <alice@example.net>\r\nTo: Bob <bob@example.org>\r\nSubject: lunch on Friday\r\n" +
		"Message-ID: <clean-1@example.net>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" +
		"Hi Bob,\r\n\r\nshall we have lunch on Friday at the usual place?\r\n\r\nAlice\r\n"
	// The same session, a second transaction.
	tx := transactionFrom(t, ctx, s, "alice@example.net", "bob@example.org")
	res = end(t, ctx, tx, clean)
	if res.Action != Continue {
		t.Fatalf("clean message: %+v (%q)\nlog: %s\nrspamd's log:\n%s", res.Verdict, res.Reply.String(), log, rs.Log())
	}
	msg := readAll(t, res.Message())
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	t.Logf("the clean message's header after rspamd:\n%s", head)
	for _, want := range []string{"X-Spamd-Result:", "X-Rspamd-Server:", "X-Spam-Status: No"} {
		if !strings.Contains(head, want) {
			t.Errorf("rspamd's %s is missing from the header:\n%s", want, head)
		}
	}
	if !strings.Contains(head, "Subject: lunch on Friday\r\n") || body != "Hi Bob,\r\n\r\nshall we have lunch on Friday at the usual place?\r\n\r\nAlice\r\n" {
		t.Errorf("the message itself changed:\n%s", msg)
	}
	var added int
	for _, ch := range res.Changes {
		if ch.Milter == "rspamd" && (ch.Kind == AddHeader || ch.Kind == InsertHeader || ch.Kind == ChangeHeader) {
			added++
		}
	}
	if added == 0 {
		t.Errorf("no header changes recorded: %+v", res.Changes)
	}

	// A message without a body (its one empty chunk): rspamd scans it
	// and lets it pass, with its fields, the empty body kept.
	empty := "From: Alice <alice@example.net>\r\nTo: Bob <bob@example.org>\r\nSubject: see subject\r\n" +
		"Message-ID: <empty-1@example.net>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n\r\n"
	res = end(t, ctx, transactionFrom(t, ctx, s, "alice@example.net", "bob@example.org"), empty)
	if res.Action != Continue {
		t.Fatalf("message without a body: %+v (%q)\nlog: %s\nrspamd's log:\n%s", res.Verdict, res.Reply.String(), log, rs.Log())
	}
	msg = readAll(t, res.Message())
	if head, body, _ := strings.Cut(msg, "\r\n\r\n"); !strings.Contains(head, "X-Spamd-Result:") || body != "" {
		t.Errorf("the message without a body after rspamd:\n%s", msg)
	}
}
