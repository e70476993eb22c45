package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The holes of issue 13, each shown closed over real sockets with the
// real binary: SECURITY.md names these tests.

// smtpConn is a raw SMTP client: the test writes exact bytes and reads
// every reply.
type smtpConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialSMTP(t *testing.T, addr string) *smtpConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	t.Cleanup(func() { c.Close() })
	s := &smtpConn{t: t, c: c, r: bufio.NewReader(c)}
	s.expect(220, "")
	return s
}

// reply reads one reply (all its lines) and returns its code and the
// text of its last line.
func (s *smtpConn) reply() (int, string) {
	s.t.Helper()
	for {
		l, err := s.r.ReadString('\n')
		if err != nil {
			s.t.Fatalf("reading a reply: %v (got %q)", err, l)
		}
		l = strings.TrimRight(l, "\r\n")
		var code int
		if len(l) < 4 || func() bool { _, err := fmt.Sscanf(l[:3], "%d", &code); return err != nil }() {
			s.t.Fatalf("malformed reply %q", l)
		}
		if l[3] == ' ' {
			return code, l[4:]
		}
	}
}

func (s *smtpConn) expect(code int, prefix string) string {
	s.t.Helper()
	got, text := s.reply()
	if got != code || !strings.HasPrefix(text, prefix) {
		s.t.Fatalf("got %d %q, want %d %q...", got, text, code, prefix)
	}
	return text
}

func (s *smtpConn) cmd(line string, code int, prefix string) string {
	s.t.Helper()
	fmt.Fprintf(s.c, "%s\r\n", line)
	return s.expect(code, prefix)
}

// startWireSink starts a sink that keeps the commands as they arrived.
func startWireSink(t *testing.T) (*mailSink, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startSink(t, l, nil), l.Addr().String()
}

// TestQuotedSenderInjection (issue 13, point 1): on port 25, without a
// login, a quoted local part carrying "> PARAM=..." is refused at MAIL
// (501 5.1.7); a quoted local part that can be written safely is
// accepted, forwarded (an alias to a remote address) as a well-formed
// quoted MAIL FROM, with no parameter smuggled in, and written quoted in
// the local copy's Return-Path.
func TestQuotedSenderInjection(t *testing.T) {
	sink, sinkAddr := startWireSink(t)
	in := newInstanceWith(t, map[string]string{
		"queue": fmt.Sprintf("poll_interval = 1\n[queue.routes]\n\"remote.test\" = %q\n", sinkAddr),
	})
	in.addUser("alice@example.org", "pw-a")
	in.must("", "alias", "add", "fwd@example.org", "ext@remote.test", "alice@example.org")
	in.start()

	c := dialSMTP(t, in.addr("smtp"))
	c.cmd("EHLO client.test", 250, "")
	for _, from := range []string{
		`"ceo@bank.com> ENVID=x"@evil.test`,
		`"a> SMTPUTF8 NOTIFY=NEVER x"@evil.test`,
	} {
		c.cmd("MAIL FROM:<"+from+">", 501, "5.1.7")
	}
	c.cmd(`MAIL FROM:<"a SMTPUTF8 NOTIFY=NEVER x"@evil.test>`, 250, "2.1.0")
	c.cmd(`RCPT TO:<"x> NOTIFY=NEVER"@example.org>`, 501, "5.1.3")
	c.cmd("RCPT TO:<fwd@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	fmt.Fprintf(c.c, "From: a@evil.test\r\nSubject: quoted\r\n\r\nhello\r\n.\r\n")
	c.expect(250, "2.0.0")
	c.cmd("QUIT", 221, "")

	waitFor(t, "the forwarded copy at the sink", func() bool { return len(sink.got()) > 0 })
	var mail []string
	for _, tx := range sink.Txns() {
		mail = append(mail, tx.Mail)
	}
	if len(mail) != 1 || !strings.HasPrefix(mail[0], `MAIL FROM:<"a SMTPUTF8 NOTIFY=NEVER x"@evil.test>`) {
		t.Fatalf("the next hop got %q, want one MAIL FROM:<\"a SMTPUTF8 NOTIFY=NEVER x\"@evil.test>", mail)
	}
	for _, param := range strings.Fields(strings.SplitN(mail[0], "@evil.test>", 2)[1]) {
		if param != "BODY=8BITMIME" && !strings.HasPrefix(param, "SIZE=") {
			t.Errorf("parameter %q in %q", param, mail[0])
		}
	}
	got := sink.got()
	if got[0].from != `"a SMTPUTF8 NOTIFY=NEVER x"@evil.test` || len(got[0].rcpts) != 1 || got[0].rcpts[0] != "ext@remote.test" {
		t.Errorf("the next hop understood from %q to %q", got[0].from, got[0].rcpts)
	}
	msgs := retrieveAll(t, in, "alice@example.org", "pw-a")
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0], "Return-Path: <\"a SMTPUTF8 NOTIFY=NEVER x\"@evil.test>\r\n") {
		t.Errorf("local copies %q", msgs)
	}
	// The journal holds the address as written, quotes and all.
	if j := in.must("", "journal", "--event", "received"); !strings.Contains(j, `"a SMTPUTF8 NOTIFY=NEVER x"@evil.test`) {
		t.Errorf("journal:\n%s", j)
	}
}

// TestMXAuthSenderRule (issue 13, point 2): the MX listener does not
// offer AUTH by default; switched on ([smtp] allow_auth), a user logged
// in there cannot send in someone else's name, as on submission (553
// 5.7.1), and can in their own.
func TestMXAuthSenderRule(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "pw-a")
	in.start()
	c := dialSMTP(t, in.addr("smtp"))
	if caps := c.cmd("EHLO client.test", 250, ""); strings.Contains(caps, "AUTH") {
		t.Errorf("EHLO on port 25 offers AUTH by default")
	}
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "pw-a"), 503, "5.5.1")
	c.cmd("MAIL FROM:<ceo@bank.com>", 250, "2.1.0") // an ordinary inbound sender
	c.cmd("RCPT TO:<victim@elsewhere.test>", 554, "5.7.1")
	c.cmd("QUIT", 221, "")
	in.stop()

	in = newInstanceWith(t, map[string]string{"smtp": "allow_auth = true"})
	in.addUser("alice@example.org", "pw-a")
	in.start()
	c = dialSMTP(t, in.addr("smtp"))
	c.cmd("EHLO client.test", 250, "")
	c.cmd("AUTH PLAIN "+plainAuth("alice@example.org", "pw-a"), 235, "")
	c.cmd("MAIL FROM:<ceo@bank.com>", 553, "5.7.1")
	c.cmd("MAIL FROM:<>", 553, "5.7.1")
	c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0")
	c.cmd("RCPT TO:<friend@elsewhere.test>", 250, "2.1.5")
	c.cmd("RSET", 250, "")
	c.cmd("QUIT", 221, "")
}

func plainAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

// popAttempt opens a POP3 session and tries one login; it returns the
// reply to PASS.
func popAttempt(t *testing.T, addr, user, pass string) string {
	t.Helper()
	p := dialPOP(t, addr)
	defer p.c.Close()
	if r := p.cmd("USER %s", user); !strings.HasPrefix(r, "+OK") {
		return r
	}
	return p.cmd("PASS %s", pass)
}

// parallelAttempts makes n logins at once and returns their replies.
func parallelAttempts(t *testing.T, addr string, n int, user, pass string) []string {
	t.Helper()
	replies := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = popAttempt(t, addr, user, pass)
		}()
	}
	close(start)
	wg.Wait()
	return replies
}

// TestParallelLoginsCounted (issue 13, point 3a): 40 wrong POP3 logins
// at once from one address have at most ip_ban_after (10) passwords
// verified, counted by postoffice_logins_total{result="failed"}; the
// others find the address banned (-ERR [SYS/TEMP]).
func TestParallelLoginsCounted(t *testing.T) {
	t.Parallel()
	in := newInstance(t, "")
	in.addUser("victim@example.org", "right")
	in.start()
	replies := parallelAttempts(t, in.addr("pop3"), 40, "victim@example.org", "wrong")
	auth, temp := 0, 0
	for _, r := range replies {
		switch {
		case strings.HasPrefix(r, "-ERR [AUTH]"):
			auth++
		case strings.HasPrefix(r, "-ERR [SYS/TEMP]"):
			temp++
		default:
			t.Errorf("reply %q", r)
		}
	}
	verified := in.metrics()[`postoffice_logins_total{protocol="pop3",result="failed"}`]
	t.Logf("40 parallel wrong logins: %d answered [AUTH], %d [SYS/TEMP], %v passwords verified", auth, temp, verified)
	if verified > 10 || auth > 10 || auth+temp != 40 {
		t.Fatalf("%v passwords verified (%d [AUTH], %d [SYS/TEMP]); at most 10 may be", verified, auth, temp)
	}
	if r := popAttempt(t, in.addr("pop3"), "victim@example.org", "right"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Errorf("the right password from the banned address: %q", r)
	}
}

// TestOwnAccountSuccessDoesNotReset (issue 13, point 3b): 8 failures on
// a victim's name, then a successful login to the attacker's own
// account, from one address, repeated: the success no longer wipes the
// address's failures, and the second round ends in a ban.
func TestOwnAccountSuccessDoesNotReset(t *testing.T) {
	t.Parallel()
	in := newInstance(t, "")
	in.addUser("victim@example.org", "right")
	in.addUser("attacker@example.org", "mine")
	in.start()
	banned := false
	for round := 1; round <= 4 && !banned; round++ {
		for _, r := range parallelAttempts(t, in.addr("pop3"), 8, "victim@example.org", "guess") {
			banned = banned || strings.HasPrefix(r, "-ERR [SYS/TEMP]")
		}
		r := popAttempt(t, in.addr("pop3"), "attacker@example.org", "mine")
		if strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
			banned = true
		} else if !strings.HasPrefix(r, "+OK") {
			t.Fatalf("own login: %q", r)
		}
		if round == 2 && !banned {
			t.Fatalf("16 failures interleaved with own-account logins and no ban (ip_ban_after = 10)")
		}
	}
	if verified := in.metrics()[`postoffice_logins_total{protocol="pop3",result="failed"}`]; verified > 10 {
		t.Errorf("%v victim passwords verified, at most 10 may be", verified)
	}
}

// TestFileModes (issue 13, point 4): in a data directory that already
// exists with mode 0755, under umask 022, every file and directory
// postoffice creates is owner-only: the database and its -wal and -shm
// files, message files and their directories, the TLS key and
// certificate, the control socket; serve warns about the directory.
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	in := newInstance(t, "")
	data := filepath.Join(in.dir, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	in.addUser("alice@example.org", "pw-a")
	big := plainMsg + strings.Repeat(strings.Repeat("b", 76)+"\r\n", 2000) // a message file, not inline
	in.deliver("alice@example.org", big)
	in.start()
	if err := sendPlain(in.addr("smtp"), "s@example.net", "alice@example.org", big); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
		if err != nil || p == data {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(data, p)
		seen[rel] = true
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v, open to other users", rel, fi.Mode())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	blobs := 0
	for p := range seen {
		if strings.HasPrefix(p, "blobs"+string(filepath.Separator)) {
			blobs++
		}
	}
	for _, want := range []string{"postoffice.db", "postoffice.db-wal", "postoffice.db-shm", "tls", "tls/key.pem", "tls/cert.pem", "control.sock", "blobs"} {
		if !seen[want] {
			t.Errorf("no %s in the data directory (found %v)", want, seen)
		}
	}
	if blobs < 2 {
		t.Errorf("no message file under blobs/ (found %v)", seen)
	}
	if !strings.Contains(in.logText(), "the data directory is accessible to other users") {
		t.Errorf("no warning about the 0755 data directory in:\n%s", in.logText())
	}
}

// tlsSuites returns the TLS 1.2 cipher suites a server accepts, trying
// each suite Go knows, secure or not, on a new connection; start brings
// a connection to the point where the handshake begins.
func tlsSuites(t *testing.T, addr string, start func(c net.Conn, r *bufio.Reader) error) []string {
	t.Helper()
	var accepted []string
	suites := append(tls.CipherSuites(), tls.InsecureCipherSuites()...)
	for _, cs := range suites {
		tls12 := false
		for _, v := range cs.SupportedVersions {
			tls12 = tls12 || v == tls.VersionTLS12
		}
		if !tls12 {
			continue
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if start != nil {
			if err := start(c, bufio.NewReader(c)); err != nil {
				c.Close()
				t.Fatalf("%s: %v", addr, err)
			}
		}
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{cs.ID}})
		if err := tc.Handshake(); err == nil {
			accepted = append(accepted, cs.Name)
		}
		c.Close()
	}
	return accepted
}

// startTLSWith returns a start function that says the lines, each
// answered by a reply whose first line begins with the prefix, and reads
// the greeting first.
func startTLSWith(greeting string, steps ...[2]string) func(net.Conn, *bufio.Reader) error {
	return func(c net.Conn, r *bufio.Reader) error {
		readReply := func(prefix string) error {
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return err
				}
				if !strings.HasPrefix(l, prefix) {
					return fmt.Errorf("got %q, want %s", l, prefix)
				}
				if len(l) < 4 || l[3] != '-' {
					return nil
				}
			}
		}
		if err := readReply(greeting); err != nil {
			return err
		}
		for _, s := range steps {
			fmt.Fprintf(c, "%s\r\n", s[0])
			if err := readReply(s[1]); err != nil {
				return err
			}
		}
		return nil
	}
}

// TestTLSCipherSuites (issue 13, point 7): with TLS 1.2, port 995, port
// 465, POP3 after STLS, SMTP after STARTTLS (25 and 587) and the console
// over HTTPS offer only AEAD suites with ECDHE (forward secrecy): no CBC,
// no RSA key exchange, no 3DES or RC4.
//
// Both kinds of certificate: the self-signed ECDSA one postoffice makes,
// and an RSA one (with which RSA key exchange would be possible).
func TestTLSCipherSuites(t *testing.T) {
	for _, kind := range []string{"ECDSA", "RSA"} {
		t.Run(kind, func(t *testing.T) { testTLSCipherSuites(t, kind) })
	}
}

func testTLSCipherSuites(t *testing.T, kind string) {
	extra := map[string]string{"admin": "tls = true"}
	if kind == "RSA" {
		c, err := testlib.SelfSigned(testlib.CertOptions{Names: []string{"localhost"}, RSA: true})
		if err != nil {
			t.Fatal(err)
		}
		cert, key := testlib.WriteCert(t, t.TempDir(), c)
		extra["top"] = fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", cert, key)
	}
	in := newInstanceWith(t, extra)
	in.start()
	pop3 := startTLSWith("+OK", [2]string{"STLS", "+OK"})
	smtp := startTLSWith("220", [2]string{"EHLO client.test", "250"}, [2]string{"STARTTLS", "220"})
	for _, ep := range []struct {
		name  string
		addr  string
		start func(net.Conn, *bufio.Reader) error
	}{
		{"pop3s (995)", in.addr("pop3s"), nil},
		{"submissions (465)", in.addr("submissions"), nil},
		{"pop3 STLS (110)", in.addr("pop3"), pop3},
		{"smtp STARTTLS (25)", in.addr("smtp"), smtp},
		{"submission STARTTLS (587)", in.addr("submission"), smtp},
		{"console HTTPS", in.addr("admin"), nil},
	} {
		got := tlsSuites(t, ep.addr, ep.start)
		t.Logf("%s offers with TLS 1.2: %s", ep.name, strings.Join(got, ", "))
		if !slices.Contains(got, "TLS_ECDHE_"+kind+"_WITH_AES_128_GCM_SHA256") {
			t.Errorf("%s: TLS_ECDHE_%s_WITH_AES_128_GCM_SHA256 not offered", ep.name, kind)
		}
		for _, name := range got {
			if !strings.HasPrefix(name, "TLS_ECDHE_") || !(strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")) {
				t.Errorf("%s offers %s: not an AEAD suite with forward secrecy", ep.name, name)
			}
		}
	}
}

// consoleGet sends a GET to the console with the given Host and
// Authorization, and returns the status.
func consoleGet(t *testing.T, in *instance, host, path, auth string) int {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+in.addr("admin")+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestConsoleHostAndMetricsToken (issue 13, point 9): the console (here
// on loopback) answers to its own names only, 421 Misdirected Request to
// any other Host (DNS rebinding); [admin] metrics_token puts /metrics
// behind a bearer token, which config show does not print.
func TestConsoleHostAndMetricsToken(t *testing.T) {
	in := newInstanceWith(t, map[string]string{"admin": "hosts = [\"console.example.org\"]\nmetrics_token = \"0123456789abcdef-token\""})
	in.start()
	port := in.port("admin")
	for host, want := range map[string]int{
		"127.0.0.1:" + port:         http.StatusSeeOther,
		"localhost:" + port:         http.StatusSeeOther,
		"mail.test:" + port:         http.StatusSeeOther, // hostname
		"console.example.org":       http.StatusSeeOther,
		"rebound.attacker.example":  http.StatusMisdirectedRequest,
		"attacker.example:" + port:  http.StatusMisdirectedRequest,
		"console.example.org.evil.": http.StatusMisdirectedRequest,
	} {
		if got := consoleGet(t, in, host, "/", ""); got != want {
			t.Errorf("Host %q: %d, want %d", host, got, want)
		}
	}
	local := "127.0.0.1:" + port
	if got := consoleGet(t, in, local, "/metrics", ""); got != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", got)
	}
	if got := consoleGet(t, in, local, "/metrics", "Bearer 0123456789abcdef-token"); got != http.StatusOK {
		t.Errorf("/metrics with the token: %d, want 200", got)
	}
	if got := consoleGet(t, in, "attacker.example", "/metrics", "Bearer 0123456789abcdef-token"); got != http.StatusMisdirectedRequest {
		t.Errorf("/metrics for another host: %d, want 421", got)
	}
	if out := in.must("", "config", "show", "admin.metrics_token"); strings.Contains(out, "0123456789abcdef") {
		t.Errorf("config show prints the token: %q", out)
	}
}
