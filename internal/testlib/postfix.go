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

// Postfix is a private Postfix (Debian's package postfix) started by a
// test as a foreground process (postfix start-fg) with its own
// configuration, queue and log in a temporary directory, listening on
// loopback only.
type Postfix struct {
	Dir    string // etc/, spool/, data/, postfix.log
	cmd    *exec.Cmd
	exited chan struct{}
}

// PostfixConfig is what a test adds to the base configuration (its own
// directories, loopback, mynetworks 127.0.0.0/8, a log file of its own).
type PostfixConfig struct {
	// Main is appended to main.cf.
	Main string
	// Listen are the smtpd(8) services of master.cf, one line each
	// without the address: "-o name=value" options or nothing. Their
	// ports are picked free and returned by StartPostfix in this order.
	Listen []string
	// Files are written into etc/ before the start (lookup tables...).
	Files map[string]string
	// Dirs are made in the Postfix directory before the start, owned by
	// the given uid (and the same gid): maildirs of virtual(8)...
	Dirs map[string]int
}

// PostfixAvailable skips the test unless a private Postfix can run here:
// the package is installed and the test runs as root (master(8) starts
// as root and runs its processes as the postfix user).
func PostfixAvailable(t testing.TB) {
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
	if _, err := user.Lookup("postfix"); err != nil {
		t.Skipf("no postfix user (Debian package postfix): %v", err)
	}
}

// StartPostfix starts a private Postfix; it is stopped at the end of the
// test, its log shown if the test failed. It returns the ports of the
// Listen services once Postfix greets on each (greeting.go: a port taken
// before master bound it is replaced).
func StartPostfix(t testing.TB, cfg PostfixConfig) (*Postfix, []int) {
	t.Helper()
	return startPostfixPicking(t, cfg, freePortInt)
}

// startPostfixPicking is StartPostfix with the ports picked by pick.
func startPostfixPicking(t testing.TB, cfg PostfixConfig, pick func(testing.TB) int) (*Postfix, []int) {
	t.Helper()
	PostfixAvailable(t)
	var p *Postfix
	var ports []int
	startOnFreePorts(t, "postfix", func() (err error) {
		p, ports, err = startPostfix(t, cfg, pick)
		return err
	})
	return p, ports
}

// startPostfix is one attempt of StartPostfix. An error after Postfix was
// started comes with Postfix stopped and its directory removed.
func startPostfix(t testing.TB, cfg PostfixConfig, pick func(testing.TB) int) (*Postfix, []int, error) {
	t.Helper()
	owner, _ := user.Lookup("postfix")
	dir, err := os.MkdirTemp("", "postoffice-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	// Postfix's processes run as the postfix user: the directory must be
	// theirs to enter, and root's (postfix check refuses others).
	os.Chmod(dir, 0o755)
	for _, sub := range []string{"etc", "spool", "data"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	os.Chown(filepath.Join(dir, "data"), uid, gid)
	for sub, owner := range cfg.Dirs {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(filepath.Join(dir, sub), owner, owner)
	}
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range cfg.Files {
		write(name, content)
	}
	write("main.cf", fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[1]s/postfix.log
maillog_file_prefixes = %[1]s
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
alias_maps =
alias_database =
biff = no
in_flow_delay = 0
`, dir)+cfg.Main)
	var ports []int
	var master strings.Builder
	for _, opts := range cfg.Listen {
		p := pick(t)
		ports = append(ports, p)
		fmt.Fprintf(&master, "127.0.0.1:%d inet n - n - - smtpd %s\n", p, opts)
	}
	master.WriteString(postfixServices)
	write("master.cf", master.String())

	etc := filepath.Join(dir, "etc")
	if out, err := exec.Command("postfix", "-c", etc, "check").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		t.Fatalf("postfix check: %v: %s", err, out)
	}
	out, err := os.Create(filepath.Join(dir, "master.out"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Postfix{Dir: dir, exited: make(chan struct{})}
	p.cmd = exec.Command("postfix", "-c", etc, "start-fg")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); out.Close(); close(p.exited) }()
	stop := func() {
		exec.Command("postfix", "-c", etc, "stop").Run()
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.exited
		}
	}
	logs := func() string {
		mo, _ := os.ReadFile(filepath.Join(dir, "master.out"))
		return string(mo) + p.Log()
	}
	for _, port := range ports {
		// smtpd's default banner: "220 host ESMTP Postfix".
		if err := awaitGreeting(fmt.Sprintf("127.0.0.1:%d", port), "220 ", "Postfix", 60*time.Second, p.exited, logs); err != nil {
			stop()
			os.RemoveAll(dir)
			return nil, nil, err
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			mo, _ := os.ReadFile(filepath.Join(dir, "master.out"))
			t.Logf("postfix log:\n%s\nmaster output:\n%s", tail([]byte(p.Log()), 300), mo)
		}
		os.RemoveAll(dir)
	})
	return p, ports, nil
}

// Log is Postfix's log so far.
func (p *Postfix) Log() string {
	b, _ := os.ReadFile(filepath.Join(p.Dir, "postfix.log"))
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

func freePortInt(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// postfixServices are master.cf's other services, as Debian ships them,
// none chrooted.
const postfixServices = `pickup    unix n - n 60 1 pickup
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
tlsproxy  unix - - n - 0 tlsproxy
`

// NextHop is a private Postfix on loopback taking mail for y.test and
// x.test (b, c and d@y.test, a@x.test) into maildirs with virtual(8): a
// real next hop for SMTP clients. Its smtpd (Port) offers STARTTLS with
// the given certificate and logs the whole TLS session
// (smtpd_tls_loglevel 4), so that its log shows what each read brought;
// a second smtpd (Bare) offers neither PIPELINING, 8BITMIME nor DSN.
type NextHop struct {
	*Postfix
	Port, Bare int // the full smtpd, the one without extensions
}

// StartNextHop starts such a Postfix; it stops at the end of the test.
func StartNextHop(t testing.TB, cert tls.Certificate) *NextHop {
	t.Helper()
	PostfixAvailable(t)
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	pemData := append(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})...)
	// The base configuration's directory is not known before the start:
	// main.cf names files relative to its etc/ through $config_directory
	// and the maildirs through $queue_directory's parent.
	p, ports := StartPostfix(t, PostfixConfig{
		Main: `myhostname = next.test
mydomain = next.test
myorigin = next.test
relayhost =
virtual_mailbox_domains = y.test x.test
virtual_mailbox_base = ${queue_directory}/../vmail
virtual_mailbox_maps = texthash:${config_directory}/vmailbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_tls_security_level = may
smtpd_tls_chain_files = ${config_directory}/cert.pem
smtpd_tls_loglevel = 4
# Pipelining where RFC 2920 forbids it (after DATA, or without
# PIPELINING offered) is logged and the client disconnected.
smtpd_forbid_unauth_pipelining = yes
smtp_tls_security_level = none
`,
		Listen: []string{"", "-o smtpd_discard_ehlo_keywords=pipelining,8bitmime,dsn,silent-discard -o smtpd_tls_security_level=none"},
		Files: map[string]string{
			"cert.pem": string(pemData),
			"vmailbox": "b@y.test y.test/b/\nc@y.test y.test/c/\nd@y.test y.test/d/\na@x.test x.test/a/\n",
		},
		Dirs: map[string]int{"vmail": 65534},
	})
	return &NextHop{Postfix: p, Port: ports[0], Bare: ports[1]}
}

// Maildir returns the messages delivered to local@domain.
func (x *NextHop) Maildir(domain, local string) []string {
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
