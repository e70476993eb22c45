package testlib

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Postfix is a private Postfix (Debian's package postfix) on loopback,
// started by the test as a foreground process (postfix start-fg),
// taking mail for y.test and x.test (b, c and d@y.test, a@x.test) into
// maildirs with virtual(8): a real next hop for SMTP clients. Its smtpd
// offers STARTTLS with the given certificate and logs the whole TLS
// session (smtpd_tls_loglevel 4), so that its log shows what each read
// brought; a second smtpd (Bare) offers neither PIPELINING, 8BITMIME nor
// DSN. A test without postfix installed, or not run as root (its master
// needs root), skips naming the package.
type Postfix struct {
	Dir        string
	Port, Bare int // the full smtpd, the one without extensions
	cmd        *exec.Cmd
	exited     chan struct{}
}

// StartPostfix starts Postfix; it stops at the end of the test.
func StartPostfix(t *testing.T, cert tls.Certificate) *Postfix {
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
	x := &Postfix{Dir: dir, exited: make(chan struct{})}
	x.Port, x.Bare = freePortNumber(t), freePortNumber(t)
	for _, sub := range []string{"etc", "spool", "data", "vmail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	os.Chown(filepath.Join(dir, "vmail"), 65534, 65534)

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
`, x.Port, x.Bare), 0o644)

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
			t.Logf("postfix log:\n%s\nmaster output:\n%s", lastLines(log, 200), mo)
		}
		os.RemoveAll(dir)
	})
	for _, p := range []int{x.Port, x.Bare} {
		waitUntil(t, "postfix to listen", func() bool {
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

// Log is Postfix's log so far.
func (x *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(x.Dir, "postfix.log"))
	return string(b)
}

// Maildir returns the messages delivered to local@domain.
func (x *Postfix) Maildir(domain, local string) []string {
	d := filepath.Join(x.Dir, "vmail", domain, local, "new")
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

// TLSReads lists what each TLS read of smtpd brought, as its level-4
// TLS log says: "Read 203 chars: MAIL FROM:<a@x.test> SIZE=118 BODY=8BITM"
// (the count, then the first 40 characters, CR and LF shown as "?").
func TLSReads(log string) []string {
	re := regexp.MustCompile(`smtpd\[\d+\]: Read (\d+) chars: (.*)`)
	var reads []string
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		reads = append(reads, m[1]+" "+m[2])
	}
	return reads
}

// ReadLogged is how TLSReads shows a read of s.
func ReadLogged(s string) string {
	shown := s
	if len(shown) > 40 {
		shown = shown[:40]
	}
	return strconv.Itoa(len(s)) + " " + strings.NewReplacer("\r", "?", "\n", "?").Replace(shown)
}

// SessionEnd is smtpd's last line for a session that said EHLO.
var SessionEnd = regexp.MustCompile(`disconnect from \S+ ehlo=`)

// waitUntil polls cond for up to 30 seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePortNumber(t testing.TB) int {
	_, p, _ := net.SplitHostPort(freePort(t))
	n, _ := strconv.Atoi(p)
	return n
}

// lastLines is the last n lines of b.
func lastLines(b []byte, n int) []byte {
	l := bytes.Split(b, []byte("\n"))
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return bytes.Join(l, []byte("\n"))
}
