package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// dsnScript submits one message with Python's smtplib, giving DSN
// parameters (RFC 3461) with MAIL and each RCPT: swaks (Debian's
// 20201014.0) has no option for them.
const dsnScript = `
import base64, json, smtplib, ssl, sys
a = json.loads(sys.stdin.read())
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(a["host"], a["port"], timeout=60)
s.ehlo("client.test")
s.starttls(context=ctx)
s.ehlo("client.test")
if not s.has_extn("dsn"):
    sys.exit("no DSN in the EHLO reply: " + str(s.esmtp_features))
s.login(a["user"], a["password"])
out = {}
code, msg = s.mail(a["from"], a["mail_options"])
out["mail"] = [code, msg.decode()]
out["rcpt"] = []
for to, opts in a["rcpts"]:
    code, msg = s.rcpt(to, opts)
    out["rcpt"].append([code, msg.decode()])
code, msg = s.data(base64.b64decode(a["msg"]))
out["data"] = [code, msg.decode()]
s.quit()
print(json.dumps(out))
`

type dsnRcpt struct {
	to   string
	opts []string
}

func sendDSN(t *testing.T, in *instance, user, pass, from string, mailOpts []string, rcpts []dsnRcpt, msg string) {
	t.Helper()
	need(t, "python3")
	host, port, _ := strings.Cut(in.addr("submission"), ":")
	var portN int
	fmt.Sscan(port, &portN)
	var rs [][]any
	for _, r := range rcpts {
		rs = append(rs, []any{r.to, r.opts})
	}
	arg, _ := json.Marshal(map[string]any{"host": host, "port": portN, "user": user, "password": pass,
		"from": from, "mail_options": mailOpts, "rcpts": rs, "msg": base64.StdEncoding.EncodeToString([]byte(msg))})
	cmd := exec.Command("python3", "-c", dsnScript)
	cmd.Stdin = bytes.NewReader(arg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	var res struct {
		Mail []any   `json:"mail"`
		Rcpt [][]any `json:"rcpt"`
		Data []any   `json:"data"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("smtplib said %s: %v", out, err)
	}
	if res.Mail[0].(float64) != 250 || res.Data[0].(float64) != 250 {
		t.Fatalf("submission: %s", out)
	}
	for i, r := range res.Rcpt {
		if r[0].(float64) != 250 {
			t.Fatalf("RCPT %s: %v", rcpts[i].to, r)
		}
	}
}

// notices returns the delivery status notifications in a mailbox by
// Action and final recipient ("relayed dan@plain.test").
func notices(msgs []string) map[string]string {
	out := map[string]string{}
	for _, m := range msgs {
		if !strings.Contains(m, "report-type=delivery-status") {
			continue
		}
		var final string // Action follows Final-Recipient (RFC 3464 section 2.3)
		for _, l := range strings.Split(m, "\r\n") {
			if f, ok := strings.CutPrefix(l, "Final-Recipient: rfc822; "); ok {
				final = f
			}
			if a, ok := strings.CutPrefix(l, "Action: "); ok {
				out[a+" "+final] = m
			}
		}
	}
	return out
}

// DSN end to end (RFC 3461): a client submits with RET=HDRS, ENVID and,
// per recipient, NOTIFY and ORCPT; a next hop that offers DSN gets them
// all, one without DSN does not and the sender gets a "relayed" report,
// a local recipient a "delivered" one, a recipient that waits a delay
// warning, one that fails a bounce with the header section only, and one
// that asked NOTIFY=NEVER nothing.
func TestDSNEndToEnd(t *testing.T) {
	dsnHop := testlib.StartSMTPSink(t, testlib.SinkOptions{DSN: true})
	plainHop := testlib.StartSMTPSink(t, testlib.SinkOptions{
		Refuse: []string{"gone@plain.test", "quiet@plain.test"},
		Rcpt: func(addr string) string {
			if strings.HasPrefix(addr, "grey@") {
				return "451 4.7.1 Greylisted, try later"
			}
			return ""
		},
	})
	a := newInstanceWith(t, map[string]string{
		"hostname": "mail.a.test",
		"queue": fmt.Sprintf("poll_interval = 1\nretry_initial = 1\nretry_max = 1\ndelay_warning = 1\n[queue.routes]\n\"dsn.test\" = %q\n\"plain.test\" = %q\n",
			dsnHop.Addr, plainHop.Addr),
	})
	a.addUser("alice@a.test", "pw-alice")
	a.addUser("carol@a.test", "pw-carol")
	a.start()

	msg := "From: alice@a.test\r\nTo: many\r\nSubject: with DSN\r\nMessage-ID: <dsn1@a.test>\r\n\r\nThe body, not to come back.\r\n"
	sendDSN(t, a, "alice@a.test", "pw-alice", "alice@a.test", []string{"RET=HDRS", "ENVID=QQ314159"}, []dsnRcpt{
		{"bob@dsn.test", []string{"NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;bob-orig@dsn.test"}},
		{"dan@plain.test", []string{"NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;dan-orig@plain.test"}},
		{"carol@a.test", []string{"NOTIFY=SUCCESS,DELAY"}},
		{"grey@plain.test", []string{"NOTIFY=DELAY"}},
		{"gone@plain.test", []string{"NOTIFY=FAILURE"}},
		{"quiet@plain.test", []string{"NOTIFY=NEVER"}},
	}, msg)

	// The next hop with DSN got every parameter, encoded as xtext.
	waitFor(t, "the delivery to dsn.test", func() bool { return len(dsnHop.Txns()) == 1 })
	tx := dsnHop.Txns()[0]
	if !strings.HasSuffix(tx.Mail, " RET=HDRS ENVID=QQ314159") ||
		!slices.Equal(tx.Rcpts, []string{"RCPT TO:<bob@dsn.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;bob-orig@dsn.test"}) {
		t.Errorf("next hop with DSN got %q %q", tx.Mail, tx.Rcpts)
	}
	waitFor(t, "the delivery to plain.test", func() bool { return len(plainHop.Txns()) == 1 })
	if tx := plainHop.Txns()[0]; strings.Contains(tx.Mail, "RET=") || !slices.Equal(tx.Rcpts, []string{"RCPT TO:<dan@plain.test>"}) {
		t.Errorf("next hop without DSN got %q %q", tx.Mail, tx.Rcpts)
	}

	var got map[string]string
	waitFor(t, "the notifications to alice", func() bool {
		got = notices(mailbox(t, a, "alice@a.test", "pw-alice"))
		return len(got) >= 4
	})
	for _, want := range []string{"relayed dan@plain.test", "delivered carol@a.test", "delayed grey@plain.test", "failed gone@plain.test"} {
		m := got[want]
		if m == "" {
			t.Errorf("no %q notification among %q", want, keys(got))
			continue
		}
		if !strings.Contains(m, "Original-Envelope-Id: QQ314159\r\n") || !strings.Contains(m, "Content-Type: text/rfc822-headers") ||
			strings.Contains(m, "The body, not to come back.") || !strings.Contains(m, "Subject: with DSN") {
			t.Errorf("%s notification:\n%s", want, m)
		}
	}
	if m := got["relayed dan@plain.test"]; !strings.Contains(m, "Original-Recipient: rfc822; dan-orig@plain.test\r\n") ||
		!strings.Contains(m, "Diagnostic-Code: smtp; 250 2.0.0 ok") {
		t.Errorf("relayed report:\n%s", m)
	}
	if m := got["failed gone@plain.test"]; !strings.Contains(m, "Diagnostic-Code: smtp; 550 5.1.1 no such user") {
		t.Errorf("bounce:\n%s", m)
	}
	for k := range got {
		if strings.Contains(k, "bob@dsn.test") || strings.Contains(k, "quiet@") {
			t.Errorf("a notification that should not be: %s", k)
		}
	}
	if n := len(mailbox(t, a, "carol@a.test", "pw-carol")); n != 1 {
		t.Errorf("carol has %d messages", n)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// deliver as the delivery agent of Postfix's pipe(8) with the R flag,
// which prepends its own Return-Path: the mailbox gets one Return-Path,
// ours, from --from (RFC 5321 section 4.4).
func TestDeliverReplacesReturnPath(t *testing.T) {
	a := newInstance(t, "")
	a.addUser("rp@mail.test", "pw-rp")
	a.must("Return-Path: <bounces@lists.example>\nFrom: list@lists.example\nSubject: piped\n\nbody\n",
		"deliver", "--to", "rp@mail.test", "--from", "bounces@lists.example")
	a.start()
	msgs := mailbox(t, a, "rp@mail.test", "pw-rp")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if n := strings.Count(strings.ToLower(msgs[0]), "return-path:"); n != 1 || !strings.HasPrefix(msgs[0], "Return-Path: <bounces@lists.example>\r\n") {
		t.Errorf("%d Return-Path fields:\n%s", n, msgs[0])
	}
}
