package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to look into a data directory
)

// smtpScript sends one message with Python's smtplib and prints the
// outcome as JSON: refused recipients, or the error code and text.
const smtpScript = `
import base64, json, smtplib, ssl, sys
a = json.loads(sys.stdin.read())
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
out = {}
try:
    if a.get("ssl"):
        s = smtplib.SMTP_SSL(a["host"], a["port"], context=ctx, timeout=60)
    else:
        s = smtplib.SMTP(a["host"], a["port"], timeout=60)
    s.ehlo("client.test")
    if a.get("starttls"):
        s.starttls(context=ctx)
        s.ehlo("client.test")
    if a.get("user"):
        s.login(a["user"], a["password"])
    msg = base64.b64decode(a["msg"])
    opts, ropts = a.get("mail_options") or [], a.get("rcpt_options") or []
    out["refused"] = {k: [v[0], v[1].decode()] for k, v in s.sendmail(a["from"], a["to"], msg, mail_options=opts, rcpt_options=ropts).items()}
    s.quit()
except smtplib.SMTPRecipientsRefused as e:
    out["refused"] = {k: [v[0], v[1].decode()] for k, v in e.recipients.items()}
    out["error"] = [0, "all recipients refused"]
except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError, smtplib.SMTPAuthenticationError, smtplib.SMTPResponseException) as e:
    out["error"] = [e.smtp_code, e.smtp_error.decode() if isinstance(e.smtp_error, bytes) else str(e.smtp_error)]
print(json.dumps(out))
`

type smtpResult struct {
	Refused map[string][]any `json:"refused"`
	Error   []any            `json:"error"`
}

func (r smtpResult) code() int {
	if len(r.Error) == 0 {
		return 250
	}
	return int(r.Error[0].(float64))
}

type smtpSend struct {
	addr, from     string
	to             []string
	msg            string
	starttls, ssl  bool
	user, password string
	options        []string // MAIL FROM parameters, e.g. SMTPUTF8
	rcptOptions    []string // RCPT TO parameters, for every recipient
}

func sendmail(t *testing.T, s smtpSend) smtpResult {
	t.Helper()
	need(t, "python3")
	host, port, _ := strings.Cut(s.addr, ":")
	var portN int
	fmt.Sscan(port, &portN)
	arg, _ := json.Marshal(map[string]any{
		"host": host, "port": portN, "from": s.from, "to": s.to,
		"msg": base64.StdEncoding.EncodeToString([]byte(s.msg)), "starttls": s.starttls, "ssl": s.ssl,
		"user": s.user, "password": s.password, "mail_options": s.options, "rcpt_options": s.rcptOptions,
	})
	cmd := exec.Command("python3", "-c", smtpScript)
	cmd.Stdin = bytes.NewReader(arg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("smtplib: %v\n%s", err, out)
	}
	var r smtpResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("smtplib output %q: %v", out, err)
	}
	return r
}

// retrieveAll logs in and returns every message's bytes (via the raw
// client, which reads the exact octets and undoes byte-stuffing).
func retrieveAll(t *testing.T, in *instance, user, pass string) []string {
	t.Helper()
	p := dialPOP(t, in.addr("pop3"))
	p.login(user, pass)
	n := len(p.uidls())
	var out []string
	for i := 1; i <= n; i++ {
		fmt.Fprintf(p.c, "RETR %d\r\n", i)
		if st := p.line(); !strings.HasPrefix(st, "+OK") {
			t.Fatalf("RETR %d: %s", i, st)
		}
		var b strings.Builder
		for {
			l, err := p.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == ".\r\n" {
				break
			}
			b.WriteString(strings.TrimPrefix(l, "."))
		}
		out = append(out, b.String())
	}
	p.quit()
	return out
}

// body returns what follows the trace fields postoffice added on top.
func splitTrace(t *testing.T, m string) (trace, rest string) {
	t.Helper()
	i := strings.Index(m, "\r\nFrom: ")
	if i < 0 {
		i = strings.Index(m, "\r\nMIME-Version: ")
	}
	if i < 0 {
		t.Fatalf("no original header found in %q", m[:min(len(m), 500)])
	}
	return m[:i+2], m[i+2:]
}

const plainMsg = "From: sender@example.net\r\nTo: alice@example.org\r\nSubject: smtp test\r\n\r\nHello over SMTP.\r\n.dot line\r\n"

func TestSMTPInbound(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.start()
	mx := in.addr("smtp")

	if r := sendmail(t, smtpSend{addr: mx, from: "sender@example.net", to: []string{"alice@example.org"}, msg: plainMsg}); r.code() != 250 || len(r.Refused) != 0 {
		t.Fatalf("send: %+v", r)
	}
	// The null sender is accepted (bounces use it).
	if r := sendmail(t, smtpSend{addr: mx, from: "", to: []string{"Alice@Example.org"}, msg: plainMsg}); r.code() != 250 {
		t.Fatalf("null sender: %+v", r)
	}
	// Unknown local user: 550 5.1.1 at RCPT time.
	r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"nobody@example.org"}, msg: plainMsg})
	if rc := r.Refused["nobody@example.org"]; len(rc) != 2 || int(rc[0].(float64)) != 550 || !strings.HasPrefix(rc[1].(string), "5.1.1") {
		t.Errorf("unknown user: %+v", r)
	}
	// No open relay: a remote domain from an unauthenticated client.
	r = sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"victim@example.com"}, msg: plainMsg})
	if rc := r.Refused["victim@example.com"]; len(rc) != 2 || int(rc[0].(float64)) != 554 || !strings.HasPrefix(rc[1].(string), "5.7.1") {
		t.Errorf("relay: %+v", r)
	}

	msgs := retrieveAll(t, in, "alice@example.org", "pw-a")
	if len(msgs) != 2 {
		t.Fatalf("%d messages in the mailbox, want 2", len(msgs))
	}
	trace, rest := splitTrace(t, msgs[0])
	if rest != plainMsg {
		t.Errorf("message changed in transit:\n got %q\nwant %q", rest, plainMsg)
	}
	for _, want := range []string{"Return-Path: <sender@example.net>\r\n", "Delivered-To: alice@example.org\r\n", "Received: from client.test ([127.0.0.1])", "with ESMTP id", "for <alice@example.org>"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace fields lack %q:\n%s", want, trace)
		}
	}
	if trace, _ := splitTrace(t, msgs[1]); !strings.HasPrefix(trace, "Return-Path: <>\r\n") {
		t.Errorf("null sender trace: %q", trace)
	}
}

func TestSMTPSubmission(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.addUser("bob@example.org", "pw-b")
	in.start()
	sub := in.addr("submission")

	// Authentication is required before MAIL.
	if r := sendmail(t, smtpSend{addr: sub, starttls: true, from: "alice@example.org", to: []string{"bob@example.org"}, msg: plainMsg}); r.code() != 530 {
		t.Errorf("unauthenticated submission: %+v", r)
	}
	// Wrong password.
	if r := sendmail(t, smtpSend{addr: sub, starttls: true, user: "alice@example.org", password: "bad", from: "alice@example.org", to: []string{"bob@example.org"}, msg: plainMsg}); r.code() != 535 {
		t.Errorf("bad password: %+v", r)
	}
	// A sender address that is not the user's.
	if r := sendmail(t, smtpSend{addr: sub, starttls: true, user: "alice@example.org", password: "pw-a", from: "bob@example.org", to: []string{"bob@example.org"}, msg: plainMsg}); r.code() != 553 {
		t.Errorf("forged sender: %+v", r)
	}
	// STARTTLS + AUTH: a local and a remote recipient.
	r := sendmail(t, smtpSend{addr: sub, starttls: true, user: "alice@example.org", password: "pw-a",
		from: "alice@example.org", to: []string{"bob@example.org", "friend@example.com"}, msg: plainMsg})
	if r.code() != 250 || len(r.Refused) != 0 {
		t.Fatalf("submission: %+v", r)
	}
	// Implicit TLS on the submissions port (RFC 8314).
	r = sendmail(t, smtpSend{addr: in.addr("submissions"), ssl: true, user: "alice@example.org", password: "pw-a",
		from: "alice@example.org", to: []string{"bob@example.org"}, msg: plainMsg})
	if r.code() != 250 {
		t.Fatalf("submissions: %+v", r)
	}

	msgs := retrieveAll(t, in, "bob@example.org", "pw-b")
	if len(msgs) != 2 {
		t.Fatalf("bob has %d messages, want 2", len(msgs))
	}
	trace, rest := splitTrace(t, msgs[0])
	if rest != plainMsg {
		t.Errorf("submitted message changed: %q", rest)
	}
	for _, want := range []string{"with ESMTPSA", "(authenticated as alice@example.org)", "(using TLS"} {
		if !strings.Contains(trace, want) {
			t.Errorf("trace lacks %q:\n%s", want, trace)
		}
	}
	// The remote recipient waits in the queue.
	q := in.must("", "queue", "list")
	if !strings.Contains(q, "friend@example.com (pending)") || !strings.Contains(q, "1 message(s) queued") {
		t.Errorf("queue list:\n%s", q)
	}
}

func TestSMTPAliases(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.addUser("bob@example.org", "pw-b")
	in.must("", "user", "addr", "add", "bob@example.org", "robert@example.org")
	in.must("", "alias", "add", "team@example.org", "alice@example.org", "bob@example.org", "partner@example.com")
	in.must("", "alias", "add", "all@example.org", "team@example.org", "robert@example.org", "all@example.org")
	in.start()
	blobsBefore := countBodies(t, in)

	// all -> team (nested) -> alice, bob, partner; robert is bob again;
	// all -> all is a loop. Each mailbox gets one copy, one remote copy is
	// queued.
	r := sendmail(t, smtpSend{addr: in.addr("smtp"), from: "s@example.net", to: []string{"all@example.org"}, msg: plainMsg})
	if r.code() != 250 {
		t.Fatalf("send to alias: %+v", r)
	}
	for _, u := range []string{"alice", "bob"} {
		msgs := retrieveAll(t, in, u+"@example.org", "pw-"+u[:1])
		if len(msgs) != 1 {
			t.Fatalf("%s has %d messages, want 1", u, len(msgs))
		}
		if trace, rest := splitTrace(t, msgs[0]); rest != plainMsg || !strings.Contains(trace, "Delivered-To: "+u+"@example.org\r\n") {
			t.Errorf("%s got %q", u, msgs[0])
		}
	}
	q := in.must("", "queue", "list")
	if strings.Count(q, "partner@example.com") != 1 || !strings.Contains(q, "1 message(s) queued") {
		t.Errorf("queue list:\n%s", q)
	}
	// The two local copies share one stored body; the queued copy is the
	// second.
	if n := countBodies(t, in) - blobsBefore; n != 2 {
		t.Errorf("%d bodies stored, want 2 (one shared by both mailboxes, one queued)", n)
	}

	// A catch-all takes unknown addresses of its domain.
	in.must("", "alias", "add", "@example.org", "alice@example.org")
	if r := sendmail(t, smtpSend{addr: in.addr("smtp"), from: "s@example.net", to: []string{"whoever@example.org"}, msg: plainMsg}); r.code() != 250 || len(r.Refused) != 0 {
		t.Fatalf("catch-all: %+v", r)
	}
	if n := len(retrieveAll(t, in, "alice@example.org", "pw-a")); n != 2 {
		t.Errorf("alice has %d messages after the catch-all, want 2", n)
	}
}

// countBodies counts the bodies in the instance's store (inline or in
// files: each has one row of the blobs table), read while it runs as WAL
// allows.
func countBodies(t *testing.T, in *instance) int {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(in.dir, "data", "postoffice.db")+"?_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM blobs`).Scan(&n); err != nil {
		t.Fatalf("counting stored bodies: %v", err)
	}
	return n
}

// TestSMTPBigMIME: a multipart message with a 5 MB binary attachment
// round-trips byte for byte.
func TestSMTPBigMIME(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.start()
	bin := make([]byte, 5<<20)
	rand.Read(bin)
	enc := base64.StdEncoding.EncodeToString(bin)
	var b strings.Builder
	b.WriteString("From: sender@example.net\r\nTo: alice@example.org\r\nSubject: attachment\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
		"Voil\xc3\xa0 la vid\xc3\xa9o.\r\n--b1\r\nContent-Type: video/mp4\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"clip.mp4\"\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b1--\r\n")
	msg := b.String()
	if r := sendmail(t, smtpSend{addr: in.addr("smtp"), from: "sender@example.net", to: []string{"alice@example.org"}, msg: msg}); r.code() != 250 {
		t.Fatalf("send: %+v", r)
	}
	msgs := retrieveAll(t, in, "alice@example.org", "pw-a")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	if _, rest := splitTrace(t, msgs[0]); rest != msg {
		t.Fatalf("5 MB MIME message not byte-exact (got %d bytes, want %d)", len(rest), len(msg))
	}
}

// TestSMTPSmuggling: a bare-LF "." inside DATA must not end the message
// and must not start a second one.
func TestSMTPSmuggling(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.start()
	for _, sep := range []string{"\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r"} {
		c, err := net.Dial("tcp", in.addr("smtp"))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		r := bufio.NewReader(c)
		fmt.Fprintf(c, "EHLO x\r\nMAIL FROM:<a@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
		fmt.Fprintf(c, "Subject: first\r\n\r\nbody%sMAIL FROM:<evil@example.net>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\nQUIT\r\n", sep)
		var all bytes.Buffer
		for {
			l, err := r.ReadString('\n')
			all.WriteString(l)
			if err != nil {
				break
			}
		}
		c.Close()
		// The whole message is refused (RFC 5321 section 2.3.8), and the
		// smuggled commands were data, never commands: one 354 only.
		replies := all.String()
		if !strings.Contains(replies, "554 5.6.0") || strings.Count(replies, "354 ") != 1 || strings.Contains(replies, "evil") {
			t.Errorf("separator %q: replies %q", sep, replies)
		}
	}
	if msgs := retrieveAll(t, in, "alice@example.org", "pw-a"); len(msgs) != 0 {
		t.Fatalf("%d messages delivered from smuggling attempts: %q", len(msgs), msgs)
	}
}

// TestSMTPKillAfter250: a message acknowledged with 250 survives a SIGKILL
// right after the acknowledgement.
func TestSMTPKillAfter250(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.start()
	for i := range 3 {
		msg := fmt.Sprintf("From: s@example.net\r\nSubject: durable %d\r\n\r\nbody\r\n", i)
		if r := sendmail(t, smtpSend{addr: in.addr("smtp"), from: "s@example.net", to: []string{"alice@example.org"}, msg: msg}); r.code() != 250 {
			t.Fatalf("send: %+v", r)
		}
		in.signal(syscall.SIGKILL)
		in.start()
	}
	msgs := retrieveAll(t, in, "alice@example.org", "pw-a")
	if len(msgs) != 3 {
		t.Fatalf("%d messages after kills, want 3", len(msgs))
	}
	for i, m := range msgs {
		if !strings.Contains(m, fmt.Sprintf("Subject: durable %d\r\n", i)) {
			t.Errorf("message %d: %q", i, m)
		}
	}
}

// TestSMTPLimits: hop count, quota and size.
func TestSMTPLimits(t *testing.T) {
	in := newInstanceWith(t, map[string]string{"smtp": "max_message_size = 100000"})
	in.addUser("alice@example.org", "pw-a")
	in.must("pw\n", "user", "add", "small@example.org", "--password-stdin", "--quota", "3000")
	in.start()
	mx := in.addr("smtp")

	looped := strings.Repeat("Received: from a by b; Wed, 25 Nov 2026 10:00:00 +0000\r\n", 31) + plainMsg
	if r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"alice@example.org"}, msg: looped}); r.code() != 554 || !strings.HasPrefix(r.Error[1].(string), "5.4.6") {
		t.Errorf("31 Received fields: %+v", r)
	}
	okHops := strings.Repeat("Received: from a by b; Wed, 25 Nov 2026 10:00:00 +0000\r\n", 30) + plainMsg
	if r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"alice@example.org"}, msg: okHops}); r.code() != 250 {
		t.Errorf("30 Received fields: %+v", r)
	}
	// 3000-octet quota: the first message (1.2 KB, with its trace fields
	// and Authentication-Results) fits, the second does not and is
	// refused (552 5.2.2) rather than accepted and bounced.
	fits := plainMsg + strings.Repeat("x", 1100) + "\r\n"
	if r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"small@example.org"}, msg: fits}); r.code() != 250 {
		t.Errorf("first message to small mailbox: %+v", r)
	}
	r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"small@example.org"}, msg: fits})
	if r.code() != 552 || !strings.HasPrefix(r.Error[1].(string), "5.2.2") {
		t.Errorf("over quota: %+v", r)
	}
	if q := in.must("", "queue", "list"); !strings.Contains(q, "0 message(s) queued") {
		t.Errorf("a refused message produced a bounce:\n%s", q)
	}
	huge := plainMsg + strings.Repeat(strings.Repeat("y", 998)+"\r\n", 150)
	if r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"alice@example.org"}, msg: huge}); r.code() != 552 {
		t.Errorf("over max_message_size: %+v", r)
	}
}

// TestSwaks sends with swaks over MX and over submission with STARTTLS and
// AUTH, with an attachment.
func TestSwaks(t *testing.T) {
	need(t, "swaks")
	needSwaksTLS(t)
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.addUser("bob@example.org", "pw-b")
	in.start()
	host, port, _ := strings.Cut(in.addr("smtp"), ":")
	out, err := runTool(t, "swaks", "--server", host, "--port", port, "--from", "s@example.net", "--to", "alice@example.org",
		"--header", "Subject: via swaks", "--body", "swaks body")
	if err != nil {
		t.Fatalf("swaks MX: %v\n%s", err, out)
	}
	att := filepath.Join(in.dir, "photo.jpg")
	img := make([]byte, 200_000)
	rand.Read(img)
	os.WriteFile(att, img, 0o600)
	host, port, _ = strings.Cut(in.addr("submission"), ":")
	out, err = runTool(t, "swaks", "--server", host, "--port", port, "--tls", "--auth", "PLAIN",
		"--auth-user", "alice@example.org", "--auth-password", "pw-a",
		"--from", "alice@example.org", "--to", "bob@example.org", "--header", "Subject: photo",
		"--attach-type", "image/jpeg", "--attach", "@"+att)
	if err != nil {
		t.Fatalf("swaks submission: %v\n%s", err, out)
	}
	if m := retrieveAll(t, in, "alice@example.org", "pw-a"); len(m) != 1 || !strings.Contains(m[0], "Subject: via swaks") {
		t.Errorf("alice: %q", m)
	}
	m := retrieveAll(t, in, "bob@example.org", "pw-b")
	if len(m) != 1 || !strings.Contains(m[0], "(authenticated as alice@example.org)") {
		t.Fatalf("bob: %q", m)
	}
	if !strings.Contains(m[0], base64.StdEncoding.EncodeToString(img[:57])) {
		t.Error("the attachment did not arrive intact")
	}
}

// TestSwaksDSN sends DSN parameters (RFC 3461) with swaks, pipelined, over
// STARTTLS with AUTH on submission. Debian's swaks (20201014) has no DSN
// options of its own (--dsn-* came in 20240103), but writes its --from and
// --to into MAIL FROM:<...> and RCPT TO:<...> as they are: the parameters
// follow the address there, and "AUTH=<" becomes the valid AUTH=<> (RFC
// 4954 section 5) once swaks closes the path.
func TestSwaksDSN(t *testing.T) {
	need(t, "swaks")
	needSwaksTLS(t)
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.addUser("bob@example.org", "pw-b")
	in.start()
	host, port, _ := strings.Cut(in.addr("submission"), ":")
	swaks := func(from, to string) (string, error) {
		return runTool(t, "swaks", "--server", host, "--port", port, "--tls", "--auth", "LOGIN",
			"--auth-user", "alice@example.org", "--auth-password", "pw-a", "--pipeline",
			"--from", from, "--to", to, "--header", "Subject: dsn", "--body", "with DSN parameters")
	}
	out, err := swaks("alice@example.org> RET=HDRS ENVID=swaks+2B1 AUTH=<", "bob@example.org> NOTIFY=SUCCESS ORCPT=rfc822;<bob+40example.org")
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	for _, want := range []string{"MAIL FROM:<alice@example.org> RET=HDRS ENVID=swaks+2B1 AUTH=<>", "<~  250 2.1.0 Ok",
		"RCPT TO:<bob@example.org> NOTIFY=SUCCESS ORCPT=rfc822;<bob+40example.org>", "<~  250 2.1.5 Ok", "<~  250 2.0.0 Ok: queued as "} {
		if !strings.Contains(out, want) {
			t.Errorf("swaks transcript lacks %q:\n%s", want, out)
		}
	}
	if logs := in.logText(); !strings.Contains(logs, "ret=HDRS envid=swaks+1") || !strings.Contains(logs, "Notify:[SUCCESS] ORcptType:rfc822 ORcpt:<bob@example.org>") {
		t.Errorf("DSN parameters not taken:\n%s", logs)
	}
	if m := retrieveAll(t, in, "bob@example.org", "pw-b"); len(m) != 1 || !strings.Contains(m[0], "with DSN parameters") {
		t.Errorf("bob: %q", m)
	}
	// A bad value is a syntax error in the parameters (RFC 3461 section 4.3).
	out, err = swaks("alice@example.org> RET=ALL AUTH=<", "bob@example.org")
	if err == nil || !strings.Contains(out, "<~* 501 5.5.4 Syntax: RET=FULL or RET=HDRS") {
		t.Errorf("RET=ALL: %v\n%s", err, out)
	}
}
