package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// TestPostfixSendsIn has Postfix (Debian's) as the client of postoffice's
// MX: a private Postfix relays what it is given to postoffice on loopback
// (relayhost). The messages wait in its queue (defer_transports) until
// all are there, then go in one delivery run over one connection: STARTTLS
// once, every transaction pipelined (RFC 2920), 8BITMIME, SMTPUTF8, and
// the DSN parameters Postfix was given, which it passes on because
// postoffice offers DSN (RFC 3461 section 4).
func TestPostfixSendsIn(t *testing.T) {
	testlib.PostfixAvailable(t)
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.addUser("jürgen@example.org", "pw-j")
	in.start()
	pf, ports := testlib.StartPostfix(t, testlib.PostfixConfig{
		Main: fmt.Sprintf(`myhostname = relay.test
relayhost = [127.0.0.1]:%s
defer_transports = smtp
smtp_destination_concurrency_limit = 1
smtp_connection_cache_destinations = 127.0.0.1
smtp_tls_security_level = may
smtp_tls_connection_reuse = yes
smtp_tls_loglevel = 1
smtputf8_enable = yes
debug_peer_list = 127.0.0.1
`, in.port("smtp")),
		Listen: []string{""},
	})
	pfAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	body := func(i int) string { return fmt.Sprintf("Body %d, caf\xc3\xa9.\r\n.leading dot\r\n", i) }
	for i := 1; i <= 3; i++ {
		msg := fmt.Sprintf("From: s@example.net\r\nTo: alice@example.org\r\nSubject: via postfix %d\r\nMessage-ID: <pf%d@example.net>\r\n\r\n", i, i) + body(i)
		r := sendmail(t, smtpSend{addr: pfAddr, from: "s@example.net", to: []string{"alice@example.org"}, msg: msg,
			options:     []string{"BODY=8BITMIME", "RET=HDRS", fmt.Sprintf("ENVID=pf+2B%d", i)},
			rcptOptions: []string{"NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;orig+40example.org"}})
		if r.code() != 250 {
			t.Fatalf("postfix took message %d: %+v", i, r)
		}
	}
	utf := "From: señor@example.net\r\nTo: jürgen@example.org\r\nSubject: Grüße\r\nMessage-ID: <pf4@example.net>\r\n\r\nÄrger.\r\n"
	if r := sendmail(t, smtpSend{addr: pfAddr, from: "señor@example.net", to: []string{"jürgen@example.org"}, msg: utf,
		options: []string{"SMTPUTF8", "BODY=8BITMIME"}}); r.code() != 250 {
		t.Fatalf("postfix took the SMTPUTF8 message: %+v", r)
	}
	// The four wait in Postfix's queue; a flush sends them in one run.
	waitFor(t, "postfix to defer the four messages", func() bool { return strings.Count(pf.Log(), "status=deferred") >= 4 })
	if out, err := exec.Command("postqueue", "-c", filepath.Join(pf.Dir, "etc"), "-f").CombinedOutput(); err != nil {
		t.Fatalf("postqueue -f: %v: %s", err, out)
	}
	sent := regexp.MustCompile(`postfix/smtp\[\d+\]: \w+: to=<([^>]+)>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, (conn_use=\d+, )?.*status=sent \(250 2\.0\.0 Ok: queued as (\w+)\)`)
	var log string
	deadline := time.Now().Add(2 * time.Minute)
	for {
		log = pf.Log()
		if len(sent.FindAllString(log, -1)) == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfix did not relay the four messages")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// One connection: one TLS handshake, the three after the first reusing it.
	uses := map[string]bool{}
	for _, m := range sent.FindAllStringSubmatch(log, -1) {
		uses[m[2]] = true
		// The 250 names the transaction in postoffice's log.
		if !strings.Contains(in.logText(), "id="+m[3]) {
			t.Errorf("queued as %s: not in postoffice's log", m[3])
		}
	}
	if !uses["conn_use=2, "] || !uses["conn_use=3, "] || !uses["conn_use=4, "] {
		t.Errorf("postfix did not reuse the connection: %v", uses)
	}
	if n := strings.Count(log, "TLS connection established to 127.0.0.1"); n != 2 { // smtp and its tlsproxy log one each
		t.Errorf("%d TLS handshakes logged, want one (logged by smtp and tlsproxy)", n)
	}
	// Pipelining: each MAIL, RCPT and DATA went out before the first of
	// their replies came back.
	chat := regexp.MustCompile(`(?m)postfix/smtp\[\d+\]: ([<>]) 127\.0\.0\.1\[127\.0\.0\.1\]:\d+: (.*)$`)
	var lines []string
	for _, m := range chat.FindAllStringSubmatch(log, -1) {
		lines = append(lines, m[1]+" "+m[2])
	}
	transcript := strings.Join(lines, "\n")
	piped := regexp.MustCompile(`> MAIL FROM:<[^\n]*\n> RCPT TO:<[^\n]*\n> DATA\n< 250 2\.1\.0 Ok\n< 250 2\.1\.5 Ok\n< 354 `)
	if n := len(piped.FindAllString(transcript, -1)); n != 4 {
		t.Errorf("%d pipelined transactions, want 4:\n%s", n, transcript)
	}
	if n := strings.Count(transcript, "> STARTTLS"); n != 1 {
		t.Errorf("%d STARTTLS, want 1", n)
	}

	// What Postfix passed on arrived: the DSN parameters (xtext decoded),
	// the messages unchanged, the SMTPUTF8 one with its UTF-8 header.
	logs := in.logText()
	for i := 1; i <= 3; i++ {
		if !strings.Contains(logs, fmt.Sprintf("ret=HDRS envid=pf+%d dsn=", i)) {
			t.Errorf("DSN parameters of message %d not taken:\n%s", i, logs)
		}
	}
	if !strings.Contains(logs, "ORcptType:rfc822 ORcpt:orig@example.org") || !strings.Contains(logs, "Notify:[SUCCESS FAILURE]") {
		t.Errorf("NOTIFY and ORCPT not taken:\n%s", logs)
	}
	msgs := retrieveAll(t, in, "alice@example.org", "pw-a")
	if len(msgs) != 3 {
		t.Fatalf("alice has %d messages, want 3", len(msgs))
	}
	for i := 1; i <= 3; i++ {
		found := false
		for _, m := range msgs {
			found = found || strings.HasSuffix(m, "\r\n\r\n"+body(i)) && strings.Contains(m, fmt.Sprintf("Subject: via postfix %d\r\n", i)) &&
				strings.Contains(m, "with ESMTPS id")
		}
		if !found {
			t.Errorf("message %d not found intact among:\n%s", i, strings.Join(msgs, "\n----\n"))
		}
	}
	m := retrieveAll(t, in, "jürgen@example.org", "pw-j")
	if len(m) != 1 || !strings.HasSuffix(m[0], "\r\n\r\nÄrger.\r\n") || !strings.Contains(m[0], "Subject: Grüße\r\n") ||
		!strings.Contains(m[0], "Return-Path: <señor@example.net>\r\n") || !strings.Contains(m[0], "with UTF8SMTPS id") {
		t.Errorf("the SMTPUTF8 message: %q", m)
	}
}
