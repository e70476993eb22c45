package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The GTUBE test strings of rspamd: the standard one gets its reject
// action; the "Y" variant its "add header" action (with gtube_patterns
// = "all").
const (
	gtubeReject    = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
	gtubeAddHeader = "YJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
)

// milterTable is a [[milter]] table for the configuration.
func milterTable(name, address, onError string) string {
	return fmt.Sprintf("[[milter]]\nname = %q\naddress = %q\non_error = %q\nconnect_timeout = \"10s\"\ncommand_timeout = \"1m\"\nend_timeout = \"2m\"\n",
		name, address, onError)
}

func milterMsg(subject, body string) string {
	return "From: Alice <alice@example.net>\r\nTo: Bob <bob@example.org>\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.net>\r\nDate: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"X-Remove: delete me\r\nX-Change: old value\r\n\r\n" + body
}

// withSubject returns the message of msgs whose Subject field holds s.
func withSubject(msgs []string, s string) string {
	for _, m := range msgs {
		head, _, _ := strings.Cut(m, "\r\n\r\n")
		for _, l := range strings.Split(head, "\r\n") {
			if strings.HasPrefix(l, "Subject:") && strings.Contains(l, s) {
				return m
			}
		}
	}
	return ""
}

func headerOf(m string) string {
	head, _, _ := strings.Cut(m, "\r\n\r\n")
	return head
}

// TestMilterRspamd: the real binary with a real rspamd (its proxy worker
// in milter mode) as [[milter]]: GTUBE refused at the end of the data
// with rspamd's reply and journaled, a clean message delivered with
// rspamd's header fields, a message rspamd marks ("add header")
// delivered with X-Spam: yes and the subject tag to a POP3 user, and
// refused to a user whose spam reject score it exceeds; /metrics counts
// rspamd's verdicts.
func TestMilterRspamd(t *testing.T) {
	if testing.Short() {
		t.Skip("starting rspamd takes a while")
	}
	dns := testlib.StartDNS(t,
		"example.net. 60 IN MX 10 client.example.net.",
		"example.net. 60 IN A 127.0.0.1",
		"client.example.net. 60 IN A 127.0.0.1")
	// Debian's rspamd (3.4) names the switch of its test patterns
	// enable_test_patterns; 3.8 and later gtube_patterns = "all".
	rs := testlib.StartRspamd(t, dns.Addr, "enable_test_patterns = true;", `gtube_patterns = "all";`)
	in := newInstanceWith(t, map[string]string{
		"tables": "[spam]\nsubject_tag = \"[SPAM]\"\n" + milterTable("rspamd", rs.Milter, "tempfail"),
	})
	in.start()
	in.addUser("bob@example.org", "bob-pw")
	in.addUser("carol@example.org", "carol-pw")
	in.must("", "user", "set", "carol@example.org", "--spam-reject-score", "2")
	send := func(to, subject, body string) smtpResult {
		return sendmail(t, smtpSend{addr: in.addr("smtp"), from: "alice@example.net", to: []string{to}, msg: milterMsg(subject, body)})
	}

	r := send("bob@example.org", "gtube", "This is the GTUBE, the\r\n"+gtubeReject+"\r\n")
	if r.code()/100 != 5 {
		t.Fatalf("GTUBE: %+v, want rspamd's rejection\nrspamd's log:\n%s\npostoffice:\n%s", r, rs.Log(), in.logText())
	}
	t.Logf("rspamd's reply to GTUBE, as the client got it: %v", r.Error)
	if text := fmt.Sprint(r.Error[1]); text == "" || strings.Contains(text, "Command rejected") {
		t.Errorf("GTUBE refused with %q, not rspamd's own reply", text)
	}
	if j := in.journal(func(j string) bool { return strings.Contains(j, "milter rspamd at end of data") }, "--event", "refused"); !strings.Contains(j, "milter rspamd at end of data") {
		t.Errorf("the refusal is not journaled:\n%s", j)
	}

	r = send("bob@example.org", "lunch on Friday", "Hi Bob,\r\n\r\nshall we have lunch on Friday?\r\n\r\nAlice\r\n")
	if r.code() != 250 {
		t.Fatalf("clean message: %+v\nrspamd's log:\n%s", r, rs.Log())
	}
	msgs := mailbox(t, in, "bob@example.org", "bob-pw")
	if len(msgs) != 1 {
		t.Fatalf("bob has %d messages, want the clean one only", len(msgs))
	}
	clean := headerOf(msgs[0])
	for _, want := range []string{"X-Spamd-Result:", "X-Rspamd-Server:", "Subject: lunch on Friday\r\n"} {
		if !strings.Contains(clean+"\r\n", want) {
			t.Errorf("clean message lacks %q:\n%s", want, clean)
		}
	}
	if strings.Contains(strings.ToLower(clean), "x-spam: yes") {
		t.Errorf("clean message marked as spam:\n%s", clean)
	}

	r = send("bob@example.org", "cheap watches", "Buy now\r\n"+gtubeAddHeader+"\r\n")
	if r.code() != 250 {
		t.Fatalf("add header: %+v\nrspamd's log:\n%s", r, rs.Log())
	}
	spam := headerOf(withSubject(mailbox(t, in, "bob@example.org", "bob-pw"), "cheap watches"))
	t.Logf("the spam's header:\n%s", spam)
	if !strings.Contains(strings.ToLower(spam), "\r\nx-spam: yes") && !strings.HasPrefix(strings.ToLower(spam), "x-spam: yes") {
		t.Errorf("spam not marked X-Spam: yes:\n%s", spam)
	}
	// rspamd's own X-Spam field is kept (GTUBE patterns stop its other
	// modules: no X-Spamd-Result on this one).
	if !strings.Contains(spam, "Subject: [SPAM] cheap watches\r\n") || strings.Count(strings.ToLower(spam), "x-spam: yes") != 1 {
		t.Errorf("spam lacks the subject tag, or has its X-Spam field twice:\n%s", spam)
	}
	if j := in.journal(func(j string) bool { return strings.Contains(j, "marked as spam") }, "--event", "received"); !strings.Contains(j, "marked as spam") {
		t.Errorf("the journal does not say the spam was marked:\n%s", j)
	}

	// carol refuses mail scored above 2: a message without Message-ID
	// and Date scores more with rspamd (MISSING_MID, MISSING_DATE).
	r = sendmail(t, smtpSend{addr: in.addr("smtp"), from: "alice@example.net", to: []string{"carol@example.org"},
		msg: "From: Alice <alice@example.net>\r\nTo: carol@example.org\r\nSubject: cheap pills\r\n\r\nBuy now.\r\n"})
	if r.code() != 550 || !strings.Contains(fmt.Sprint(r.Error[1]), "5.7.1") || !strings.Contains(fmt.Sprint(r.Error[1]), "spam") {
		t.Errorf("spam to a user with a spam reject score: %+v, want 550 5.7.1\nrspamd's log:\n%s", r, rs.Log())
	}
	if n := len(mailbox(t, in, "carol@example.org", "carol-pw")); n != 0 {
		t.Errorf("carol got %d messages, want none", n)
	}
	r = send("carol@example.org", "dinner", "Hi Carol,\r\n\r\ndinner at eight?\r\n\r\nAlice\r\n")
	if r.code() != 250 {
		t.Errorf("a clean message to carol: %+v", r)
	}

	m := in.metrics()
	if m[`postoffice_milter_verdicts_total{action="reject",milter="rspamd"}`] < 1 || m[`postoffice_milter_verdicts_total{action="continue",milter="rspamd"}`] < 2 {
		t.Errorf("rspamd's verdicts are not counted: %v", m)
	}
	if m[`postoffice_messages_total{event="refused"}`] < 1 {
		t.Errorf("refusals are not counted")
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

// TestMilterDown: a milter that cannot be reached gets its on_error:
// tempfail refuses the mail for now (451) and delivers nothing; accept
// delivers it unfiltered, which the log and the journal say.
func TestMilterDown(t *testing.T) {
	for _, tc := range []struct {
		onError string
		code    int
	}{{"tempfail", 451}, {"accept", 250}} {
		t.Run(tc.onError, func(t *testing.T) {
			in := newInstanceWith(t, map[string]string{"tables": milterTable("down", "tcp:"+closedPort(t), tc.onError)})
			in.start()
			in.addUser("bob@example.org", "bob-pw")
			r := sendmail(t, smtpSend{addr: in.addr("smtp"), from: "alice@example.net", to: []string{"bob@example.org"},
				msg: milterMsg("while the milter is down", "Hello\r\n")})
			if r.code() != tc.code {
				t.Fatalf("with on_error = %s: %+v, want %d", tc.onError, r, tc.code)
			}
			if tc.code == 451 && !strings.Contains(fmt.Sprint(r.Error[1]), "4.7.1") {
				t.Errorf("reply %v, want 4.7.1", r.Error)
			}
			n := len(mailbox(t, in, "bob@example.org", "bob-pw"))
			if want := map[int]int{451: 0, 250: 1}[tc.code]; n != want {
				t.Errorf("bob has %d messages, want %d", n, want)
			}
			if !strings.Contains(in.logText(), "milter failed") {
				t.Errorf("no log line for the milter's failure:\n%s", in.logText())
			}
			if tc.onError == "accept" {
				if j := in.journal(func(j string) bool { return strings.Contains(j, "unfiltered by milter down") }, "--event", "received"); !strings.Contains(j, "unfiltered by milter down") {
					t.Errorf("the journal does not say the message passed unfiltered:\n%s", j)
				}
			}
			if m := in.metrics(); m[`postoffice_milter_verdicts_total{action="error",milter="down"}`] < 1 {
				t.Errorf("the failure is not counted")
			}
			if tc.onError != "tempfail" {
				return
			}
			// Reload applies a change of [[milter]]: the milter taken out,
			// the mail goes through.
			cfg, err := os.ReadFile(in.cfgPath)
			if err != nil {
				t.Fatal(err)
			}
			text, _, _ := strings.Cut(string(cfg), "[[milter]]")
			if err := os.WriteFile(in.cfgPath, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			in.must("", "reload")
			r = sendmail(t, smtpSend{addr: in.addr("smtp"), from: "alice@example.net", to: []string{"bob@example.org"},
				msg: milterMsg("after the reload", "Hello\r\n")})
			if r.code() != 250 || len(mailbox(t, in, "bob@example.org", "bob-pw")) != 1 {
				t.Errorf("after taking the milter out and reloading: %+v", r)
			}
		})
	}
}

// testMilter is a milter on go-milter's server side that acts as the
// message's subject says, for the actions rspamd does not take.
type testMilter struct {
	mu     sync.Mutex
	macros map[string]map[string]string // MAIL FROM -> macro -> value, at MAIL
}

type testMilterConn struct {
	gomilter.NoOpMilter
	tm      *testMilter
	subject string
}

func (c *testMilterConn) MailFrom(from, _ string, m gomilter.Modifier) (*gomilter.Response, error) {
	c.tm.mu.Lock()
	got := map[string]string{}
	for _, name := range []string{"j", "i", "{daemon_name}", "{client_addr}", "{client_name}", "{auth_authen}", "{mail_addr}"} {
		got[name] = m.Get(name)
	}
	c.tm.macros[from] = got
	c.tm.mu.Unlock()
	if strings.HasPrefix(from, "tempfail@") {
		return gomilter.RejectWithCodeAndReason(451, "4.7.1 Try again later, says the milter")
	}
	return gomilter.RespContinue, nil
}

func (c *testMilterConn) RcptTo(to, _ string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if strings.HasPrefix(to, "refused@") {
		return gomilter.RejectWithCodeAndReason(550, "5.7.1 Not this one, says the milter")
	}
	return gomilter.RespContinue, nil
}

func (c *testMilterConn) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if strings.EqualFold(name, "Subject") {
		c.subject = strings.TrimSpace(value)
	}
	return gomilter.RespContinue, nil
}

func (c *testMilterConn) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	var err error
	switch c.subject {
	case "change sender":
		err = m.ChangeFrom("<changed@example.net>", "")
	case "add recipient":
		err = m.AddRecipient("<carol@example.org>", "")
	case "delete recipient":
		err = m.DeleteRecipient("<dave@example.org>")
	case "replace body":
		err = m.ReplaceBody(strings.NewReader("The milter's own body.\r\n"))
	case "headers":
		for _, e := range []error{
			m.InsertHeader(0, "X-Inserted", "at the top"),
			m.ChangeHeader(1, "X-Remove", ""), // deletes
			m.ChangeHeader(1, "X-Change", "new value"),
			m.AddHeader("X-Added", "at the end"),
		} {
			if e != nil {
				err = e
			}
		}
	case "quarantine":
		err = m.Quarantine("held by the test milter")
	case "discard":
		return gomilter.RespDiscard, nil
	case "reject":
		return gomilter.RejectWithCodeAndReason(554, "5.7.0 Rejected at the end, says the milter")
	}
	if err != nil {
		return nil, err
	}
	return gomilter.RespAccept, nil
}

// TestMilterActions: the real binary with a milter served by go-milter's
// server side over a real socket, taking every action rspamd does not:
// per-recipient and MAIL refusals with the milter's reply, change of
// sender, added and deleted recipients, a replaced body, inserted,
// changed and deleted header fields, quarantine (delivered marked),
// discard (250, nobody gets it, journaled), a rejection at the end; and
// the macros rspamd and OpenDKIM read.
func TestMilterActions(t *testing.T) {
	tm := &testMilter{macros: map[string]map[string]string{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &testMilterConn{tm: tm} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks&^gomilter.OptSetMacros))
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	in := newInstanceWith(t, map[string]string{
		"tables": "[spam]\nsubject_tag = \"[SPAM]\"\n" + milterTable("test", "tcp:"+ln.Addr().String(), "tempfail"),
	})
	in.start()
	for _, u := range []string{"bob", "carol", "dave", "refused"} {
		in.addUser(u+"@example.org", u+"-pw")
	}
	send := func(from string, to []string, subject string) smtpResult {
		t.Helper()
		return sendmail(t, smtpSend{addr: in.addr("smtp"), from: from, to: to, msg: milterMsg(subject, "Hello from the test.\r\n")})
	}
	want := func(what string, r smtpResult, code int) {
		t.Helper()
		if r.code() != code {
			t.Errorf("%s: %+v, want %d", what, r, code)
		}
	}

	r := send("alice@example.net", []string{"bob@example.org", "refused@example.org"}, "per recipient")
	want("per-recipient refusal", r, 250)
	if got := r.Refused["refused@example.org"]; len(got) != 2 || got[0].(float64) != 550 || !strings.Contains(fmt.Sprint(got[1]), "Not this one, says the milter") {
		t.Errorf("refused@ got %v, want the milter's 550", got)
	}
	want("MAIL refused", send("tempfail@example.net", []string{"bob@example.org"}, "tempfail"), 451)
	want("change sender", send("alice@example.net", []string{"bob@example.org"}, "change sender"), 250)
	want("add recipient", send("alice@example.net", []string{"bob@example.org"}, "add recipient"), 250)
	want("delete recipient", send("alice@example.net", []string{"bob@example.org", "dave@example.org"}, "delete recipient"), 250)
	want("replace body", send("alice@example.net", []string{"bob@example.org"}, "replace body"), 250)
	want("headers", send("alice@example.net", []string{"bob@example.org"}, "headers"), 250)
	want("quarantine", send("alice@example.net", []string{"bob@example.org"}, "quarantine"), 250)
	want("discard", send("alice@example.net", []string{"bob@example.org"}, "discard"), 250)
	r = send("alice@example.net", []string{"bob@example.org"}, "reject")
	want("reject at the end", r, 554)
	if len(r.Error) == 2 && !strings.Contains(fmt.Sprint(r.Error[1]), "Rejected at the end, says the milter") {
		t.Errorf("rejection text %v, want the milter's", r.Error)
	}

	bob := mailbox(t, in, "bob@example.org", "bob-pw")
	if m := withSubject(bob, "per recipient"); m == "" {
		t.Errorf("bob did not get the message whose other recipient was refused")
	}
	if n := len(mailbox(t, in, "refused@example.org", "refused-pw")); n != 0 {
		t.Errorf("refused@ got %d messages", n)
	}
	if m := withSubject(bob, "change sender"); !strings.Contains(m, "Return-Path: <changed@example.net>\r\n") {
		t.Errorf("the changed sender is not the Return-Path:\n%s", headerOf(m))
	}
	if withSubject(mailbox(t, in, "carol@example.org", "carol-pw"), "add recipient") == "" {
		t.Errorf("the recipient the milter added got nothing")
	}
	if withSubject(bob, "delete recipient") == "" {
		t.Errorf("bob lost the message whose other recipient was deleted")
	}
	if n := len(mailbox(t, in, "dave@example.org", "dave-pw")); n != 0 {
		t.Errorf("the recipient the milter deleted got %d messages", n)
	}
	if m := withSubject(bob, "replace body"); !strings.HasSuffix(m, "\r\n\r\nThe milter's own body.\r\n") {
		t.Errorf("the body was not replaced:\n%s", m)
	}
	h := headerOf(withSubject(bob, "headers"))
	if !strings.Contains(h, "X-Inserted: at the top\r\n") || strings.Contains(h, "X-Remove") ||
		!strings.Contains(h, "X-Change: new value") || !strings.HasSuffix(h, "X-Added: at the end") {
		t.Errorf("header changes not applied:\n%s", h)
	}
	if q := headerOf(withSubject(bob, "quarantine")); !strings.HasPrefix(q, "X-Spam: yes\r\n") && !strings.Contains(q, "\r\nX-Spam: yes\r\n") ||
		!strings.Contains(q, "Subject: [SPAM] quarantine\r\n") {
		t.Errorf("the quarantined message is not marked:\n%s", q)
	}
	if withSubject(bob, "discard") != "" || withSubject(bob, "reject") != "" || withSubject(bob, "tempfail") != "" {
		t.Errorf("a discarded or refused message was delivered")
	}
	if j := in.journal(func(j string) bool { return strings.Contains(j, "discarded by milter test") }, "--event", "discarded"); !strings.Contains(j, "discarded by milter test") {
		t.Errorf("the discard is not journaled:\n%s", j)
	}
	refusals := []string{"milter test at RCPT", "milter test at MAIL", "milter test at end of data"}
	j := in.journal(func(j string) bool {
		for _, w := range refusals {
			if !strings.Contains(j, w) {
				return false
			}
		}
		return true
	}, "--event", "refused")
	for _, w := range refusals {
		if !strings.Contains(j, w) {
			t.Errorf("the journal's refusals lack %q:\n%s", w, j)
		}
	}

	// Submission: the macros of an authenticated session.
	r = sendmail(t, smtpSend{addr: in.addr("submission"), from: "bob@example.org", to: []string{"carol@example.org"},
		msg: milterMsg("from bob", "Hi.\r\n"), user: "bob@example.org", password: "bob-pw"})
	want("submission", r, 250)
	tm.mu.Lock()
	mx, sub := tm.macros["alice@example.net"], tm.macros["bob@example.org"]
	tm.mu.Unlock()
	if mx["j"] != "mail.test" || mx["{daemon_name}"] != "smtp" || mx["{client_addr}"] != "127.0.0.1" || mx["i"] == "" ||
		mx["{mail_addr}"] != "alice@example.net" || mx["{auth_authen}"] != "" {
		t.Errorf("macros at MAIL on port 25: %v", mx)
	}
	if sub["{daemon_name}"] != "submission" || sub["{auth_authen}"] != "bob@example.org" {
		t.Errorf("macros at MAIL on submission: %v", sub)
	}
	m := in.metrics()
	for _, k := range []string{`{action="reject",milter="test"}`, `{action="tempfail",milter="test"}`, `{action="discard",milter="test"}`, `{action="quarantine",milter="test"}`} {
		if m["postoffice_milter_verdicts_total"+k] < 1 {
			t.Errorf("postoffice_milter_verdicts_total%s not counted", k)
		}
	}
}
