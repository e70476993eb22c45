package testlib

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Dovecot is a private Dovecot (Debian's packages dovecot-core and
// dovecot-pop3d) started by a test in the foreground with its own
// configuration, runtime directory, log and maildirs in a temporary
// directory, serving POP3 on loopback only: the old server of the import
// tests.
type Dovecot struct {
	Dir string
	// MailRoot holds the maildirs, mail_location maildir:MailRoot/%d/%n.
	MailRoot string
	// Passwd is the passwd-file of the users.
	Passwd string
	Conf   string
	Port   int
	uid    int
	cmd    *exec.Cmd
	exited chan struct{}
}

// DovecotConfig is what a test chooses.
type DovecotConfig struct {
	// Passwd is the passwd-file's content: user@domain:{SCHEME}hash lines.
	Passwd string
	// UIDLFormat is pop3_uidl_format ("" for Dovecot's default).
	UIDLFormat string
}

const (
	dovecotBin = "/usr/sbin/dovecot"
	dovecotLDA = "/usr/lib/dovecot/dovecot-lda"
)

// DovecotAvailable skips the test unless a private Dovecot can run here:
// the packages are installed and the test runs as root (Dovecot starts
// as root and runs its processes as its own users).
func DovecotAvailable(t testing.TB) {
	t.Helper()
	for _, p := range []struct{ file, pkg string }{{dovecotBin, "dovecot-core"}, {"/usr/lib/dovecot/pop3", "dovecot-pop3d"},
		{dovecotLDA, "dovecot-core"}, {"/usr/bin/doveadm", "dovecot-core"}} {
		if _, err := os.Stat(p.file); err != nil {
			t.Skipf("%s not installed (Debian package %s)", p.file, p.pkg)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("dovecot (Debian package dovecot-pop3d) needs root to start")
	}
	for _, u := range []string{"dovecot", "dovenull", "nobody"} {
		if _, err := user.Lookup(u); err != nil {
			t.Skipf("no %s user (Debian package dovecot-core): %v", u, err)
		}
	}
}

// DovecotPassword hashes a password with doveadm pw -s scheme.
func DovecotPassword(t testing.TB, scheme, password string) string {
	t.Helper()
	out, err := exec.Command("/usr/bin/doveadm", "pw", "-s", scheme, "-p", password).CombinedOutput()
	if err != nil {
		t.Fatalf("doveadm pw -s %s: %v\n%s", scheme, err, out)
	}
	return strings.TrimSpace(string(out))
}

// StartDovecot starts a private Dovecot; it is stopped at the end of the
// test, its log shown if the test failed. Mail is owned by nobody.
func StartDovecot(t testing.TB, cfg DovecotConfig) *Dovecot {
	t.Helper()
	dir := t.TempDir()
	// Dovecot's processes (the delivery agent and POP3 as nobody) walk
	// down to the maildirs.
	for d := dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	nobody, _ := user.Lookup("nobody")
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	d := &Dovecot{Dir: dir, MailRoot: filepath.Join(dir, "mail"), Passwd: filepath.Join(dir, "passwd"),
		Conf: filepath.Join(dir, "dovecot.conf"), uid: uid}
	for _, sub := range []string{"run", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(d.MailRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chown(d.MailRoot, uid, gid)
	if err := os.WriteFile(d.Passwd, []byte(cfg.Passwd), 0o644); err != nil {
		t.Fatal(err)
	}
	uidl := ""
	if cfg.UIDLFormat != "" {
		uidl = "pop3_uidl_format = " + cfg.UIDLFormat
	}
	// The port is picked free and bound later (greeting.go).
	startOnFreePorts(t, "dovecot", func() error {
		d.Port = freePortInt(t)
		conf := fmt.Sprintf(`base_dir = %[1]s/run
state_dir = %[1]s/state
log_path = %[1]s/dovecot.log
listen = 127.0.0.1
protocols = pop3
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:%[2]s/%%d/%%n
first_valid_uid = 1
passdb {
  driver = passwd-file
  args = scheme=CRYPT %[3]s
}
userdb {
  driver = static
  args = uid=%[4]d gid=%[5]d home=%[2]s/%%d/%%n
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[6]d
  }
  inet_listener pop3s {
    port = 0
  }
}
service stats {
  unix_listener stats-writer {
    mode = 0666
  }
}
protocol lda {
  postmaster_address = postmaster@example.org
}
%[7]s
`, dir, d.MailRoot, d.Passwd, uid, gid, d.Port, uidl)
		return d.start(t, conf)
	})
	t.Cleanup(func() {
		d.Stop()
		if t.Failed() {
			t.Logf("dovecot log:\n%s", d.Log())
		}
	})
	return d
}

// start writes conf and starts Dovecot with it, then waits for its POP3
// greeting on d.Port. An error comes with Dovecot stopped.
func (d *Dovecot) start(t testing.TB, conf string) error {
	t.Helper()
	if err := os.WriteFile(d.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	// A log of its own: an earlier attempt's must not be read as this one's.
	os.Remove(filepath.Join(d.Dir, "dovecot.log"))
	d.cmd = exec.Command(dovecotBin, "-F", "-c", d.Conf)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := os.Create(filepath.Join(d.Dir, "dovecot.out"))
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting dovecot: %v", err)
	}
	d.exited = make(chan struct{})
	cmd, exited := d.cmd, d.exited
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	// Dovecot's default greeting: "+OK Dovecot (Debian) ready.".
	err = awaitGreeting(fmt.Sprintf("127.0.0.1:%d", d.Port), "+OK", "Dovecot", 30*time.Second, d.exited, d.Log)
	if err != nil {
		d.Stop()
	}
	return err
}

// Deliver delivers msg to user with dovecot-lda, Dovecot's own delivery
// agent.
func (d *Dovecot) Deliver(t testing.TB, user, msg string) {
	t.Helper()
	cmd := exec.Command(dovecotLDA, "-c", d.Conf, "-d", user, "-f", "sender@example.net")
	cmd.Stdin = strings.NewReader(msg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dovecot-lda -d %s: %v\n%s\n%s", user, err, out, d.Log())
	}
}

// Maildir is the maildir of local@domain.
func (d *Dovecot) Maildir(address string) string {
	local, domain, _ := strings.Cut(address, "@")
	return filepath.Join(d.MailRoot, domain, local)
}

// Stop stops Dovecot (SIGTERM to its process group) and waits for it.
func (d *Dovecot) Stop() {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}

// Log is Dovecot's log so far.
func (d *Dovecot) Log() string {
	b, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.log"))
	o, _ := os.ReadFile(filepath.Join(d.Dir, "dovecot.out"))
	return string(b) + string(o)
}
