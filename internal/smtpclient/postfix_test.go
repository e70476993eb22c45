package smtpclient

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// postfixNextHop is a private Postfix on loopback, started by the test
// as a foreground process (postfix start-fg), taking mail for y.test
// and x.test into maildirs with virtual(8). Its smtpd offers STARTTLS
// with the test certificate and logs the whole TLS session
// (smtpd_tls_loglevel 4), so that its log shows what each read brought;
// a second smtpd offers neither PIPELINING, 8BITMIME nor DSN.
type postfixNextHop struct {
	dir        string
	port, bare int // the full smtpd, the one without extensions
	cmd        *exec.Cmd
	exited     chan struct{}
}

func startPostfix(t *testing.T) *postfixNextHop {
	t.Helper()
	if _, err := exec.LookPath("postfix"); err != nil {
		if _, err := os.Stat("/usr/sbin/postfix"); err != nil {
			t.Skip("postfix not installed (Debian package postfix)")
		}
		os.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin")
	}
	if os.Geteuid() != 0 {
		t.Skip("postfix (Debian package postfix) needs root to start its master")
	}
	owner, err := user.Lookup("postfix")
	if err != nil {
		t.Skipf("no postfix user (Debian package postfix): %v", err)
	}
	dir, err := os.MkdirTemp("", "smtpclient-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	// Postfix's processes run as the postfix user: the directory must
	// be theirs to enter, and root's (postfix check refuses others).
	os.Chmod(dir, 0o755)
	x := &postfixNextHop{dir: dir, exited: make(chan struct{})}
	x.port, x.bare = freePort(t), freePort(t)
	for _, sub := range []string{"etc", "spool", "data", "vmail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	os.Chown(filepath.Join(dir, "vmail"), 65534, 65534)

	cert := testCert(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	write := func(name, content string, mode os.FileMode) {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", string(pemData), 0o600)
	write("vmailbox", "b@y.test y.test/b/\nc@y.test y.test/c/\nd@y.test y.test/d/\na@x.test x.test/a/\n", 0o644)
	write("main.cf", fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
myhostname = next.test
mydomain = next.test
myorigin = next.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
biff = no
in_flow_delay = 0
virtual_mailbox_domains = y.test x.test
virtual_mailbox_base = %[1]s/vmail
virtual_mailbox_maps = texthash:%[1]s/etc/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_security_level = may
smtpd_tls_chain_files = %[1]s/etc/cert.pem
smtpd_tls_loglevel = 4
# Pipelining where RFC 2920 forbids it (after DATA, or without
# PIPELINING offered) is logged and the client disconnected.
smtpd_forbid_unauth_pipelining = yes
smtp_tls_security_level = none
`, dir), 0o644)
	write("master.cf", fmt.Sprintf(`127.0.0.1:%d inet n - n - - smtpd
127.0.0.1:%d inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=pipelining,8bitmime,dsn,silent-discard -o smtpd_tls_security_level=none
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp      unix - - n - - smtp
relay     unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
virtual   unix - n n - - virtual
lmtp      unix - - n - - lmtp
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
`, x.port, x.bare), 0o644)

	etc := filepath.Join(dir, "etc")
	if out, err := exec.Command("postfix", "-c", etc, "check").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("postfix check: %v: %s", err, out)
	}
	out, err := os.Create(filepath.Join(dir, "master.out"))
	if err != nil {
		t.Fatal(err)
	}
	x.cmd = exec.Command("postfix", "-c", etc, "start-fg")
	x.cmd.Stdout, x.cmd.Stderr = out, out
	x.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := x.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { x.cmd.Wait(); out.Close(); close(x.exited) }()
	t.Cleanup(func() {
		exec.Command("postfix", "-c", etc, "stop").Run()
		select {
		case <-x.exited:
		case <-time.After(30 * time.Second):
			x.cmd.Process.Kill()
			<-x.exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "postfix.log"))
			mo, _ := os.ReadFile(filepath.Join(dir, "master.out"))
			t.Logf("postfix log:\n%s\nmaster output:\n%s", tail(log, 200), mo)
		}
		os.RemoveAll(dir)
	})
	for _, p := range []int{x.port, x.bare} {
		waitFor(t, "postfix to listen", func() bool {
			select {
			case <-x.exited:
				mo, _ := os.ReadFile(filepath.Join(dir, "master.out"))
				t.Fatalf("postfix exited: %s", mo)
			default:
			}
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				return false
			}
			c.Close()
			return true
		})
	}
	return x
}

func tail(b []byte, lines int) []byte {
	l := bytes.Split(b, []byte("\n"))
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return bytes.Join(l, []byte("\n"))
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (x *postfixNextHop) log() string {
	b, _ := os.ReadFile(filepath.Join(x.dir, "postfix.log"))
	return string(b)
}

// maildir returns the messages in a maildir's new/ directory.
func (x *postfixNextHop) maildir(domain, local string) []string {
	d := filepath.Join(x.dir, "vmail", domain, local, "new")
	ents, _ := os.ReadDir(d)
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(d, e.Name()))
		if err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// tlsReads lists what each TLS read of smtpd brought, as its level-4
// TLS log says: "Read 203 chars: MAIL FROM:<a@x.test> SIZE=118 BODY=8BITM"
// (the count, then the first 40 characters, CR and LF shown as "?").
func tlsReads(log string) []string {
	re := regexp.MustCompile(`smtpd\[\d+\]: Read (\d+) chars: (.*)`)
	var reads []string
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		reads = append(reads, m[1]+" "+m[2])
	}
	return reads
}

// readLogged is how tlsReads shows a read of s.
func readLogged(s string) string {
	shown := s
	if len(shown) > 40 {
		shown = shown[:40]
	}
	return strconv.Itoa(len(s)) + " " + strings.NewReplacer("\r", "?", "\n", "?").Replace(shown)
}

// sessionEnd is smtpd's last line for a session that said EHLO.
var sessionEnd = regexp.MustCompile(`disconnect from \S+ ehlo=`)

// Postfix as the next hop: three messages over one connection, inside
// verified TLS, each transaction pipelined in one read, with DSN
// parameters that Postfix takes and acts on (its success notifications
// carry our ENVID and ORCPT back).
func TestPostfixNextHop(t *testing.T) {
	x := startPostfix(t)
	cfg := testConfig()
	testCert(t)
	cfg.RootCAs = certPool
	p := NewPool(cfg, PoolConfig{})
	target := Target{Host: "mx.test", IP: net.IPv4(127, 0, 0, 1), Port: x.port}
	start := len(x.log()) // after the probes that saw it listen
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
		log = x.log()[start:]
		return sessionEnd.MatchString(log)
	})
	// One connection, three messages, one EHLO before and one inside TLS.
	// (The probes that saw it listen connected too, without a command.)
	if n := len(sessionEnd.FindAllString(log, -1)); n != 1 {
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
	reads := tlsReads(log)
	for i, g := range groups {
		if !slices.Contains(reads, readLogged(g)) {
			t.Errorf("transaction %d: no read of %q in postfix's log; reads: %q", i+1, readLogged(g), reads)
		}
	}
	if n := len(regexp.MustCompile(`Write \d+ chars: (250 2\.0\.0 Ok\?\?)?250 2\.1\.0 Ok\?\?250 2\.1\.5 Ok`).FindAllString(log, -1)); n != 3 {
		t.Errorf("%d writes of the replies to a pipelined group, want 3", n)
	}

	// Delivered, and Postfix's success notifications (NOTIFY=SUCCESS)
	// carry ENVID and ORCPT back to the sender; c@y.test asked NEVER.
	var dsns []string
	waitFor(t, "3 deliveries to b, 3 to c and 3 notifications to a", func() bool {
		dsns = x.maildir("x.test", "a")
		return len(x.maildir("y.test", "b")) == 3 && len(x.maildir("y.test", "c")) == 3 && len(dsns) >= 3
	})
	for _, m := range x.maildir("y.test", "b") {
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
	x := startPostfix(t)
	p := NewPool(testConfig(), PoolConfig{})
	defer p.Close()
	target := Target{Host: "mx.test", IP: net.IPv4(127, 0, 0, 1), Port: x.bare}
	body := "From: a@x.test\r\nTo: d@y.test\r\nSubject: 8 bit\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln\r\n"
	m := &Message{From: "a@x.test", Body: strings.NewReader(body), Size: int64(len(body)), EightBit: true, EnvID: "e1",
		Rcpts: []Recipient{{Addr: "d@y.test", Notify: []string{NotifySuccess}}}}
	res, err := p.Send(context.Background(), target, Options{TLS: TLSMay}, m)
	if err != nil || res.Delivered() != 1 || !res.Converted || res.DSN {
		t.Fatalf("Send: %+v, %v", res, err)
	}
	var got []string
	waitFor(t, "the delivery to d", func() bool {
		got = x.maildir("y.test", "d")
		return len(got) == 1
	})
	if !strings.Contains(got[0], "Content-Transfer-Encoding: quoted-printable\n") || !strings.Contains(got[0], "\n\nGr=C3=BC=C3=9Fe aus K=C3=B6ln\n") {
		t.Errorf("delivered:\n%s", got[0])
	}
	if log := x.log(); strings.Contains(log, "improper command pipelining") {
		t.Errorf("postfix saw improper pipelining")
	}
}
