package testlib

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rspamdConf is a top-level configuration: Debian's common parts, one
// proxy worker in milter mode that scans by itself (self_scan: no
// upstream, no normal worker, no controller; no Redis either: the
// modules that need it switch themselves off), DNS from the test's
// server only.
const rspamdConf = `
.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging {
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}
worker "rspamd_proxy" {
    bind_socket = "%s";
    milter = yes;
    upstream "local" {
        default = yes;
        self_scan = yes;
    }
    count = 1;
    timeout = 60s;
}
`

const rspamdOptions = `
dns {
    nameserver = ["%s"];
    timeout = 1s;
    retransmits = 1;
}
`

// Headers on every message, as operators who want them set it up; the
// test client is no local network to skip.
const rspamdHeaders = `
extended_spam_headers = true;
skip_local = false;
skip_authenticated = false;
use = ["x-spamd-result", "x-rspamd-server", "x-rspamd-queue-id", "x-spam-level", "x-spam-status", "authentication-results"];
`

// Rspamd is an rspamd started by StartRspamd.
type Rspamd struct {
	Milter string // the milter address, "tcp:127.0.0.1:port"
	log    string
}

// Log returns the end of rspamd's log, for a failing test to show.
func (r *Rspamd) Log() string {
	b, _ := os.ReadFile(r.log)
	return tail(b, 8000)
}

// StartRspamd starts rspamd (Debian's package) on loopback with its
// proxy worker in milter mode, asking dnsAddr (e.g. a DNS from StartDNS)
// for every DNS lookup, and returns once it answers the milter
// negotiation. It runs in the foreground
// (-f), as root only with -i (rspamd refuses root workers otherwise),
// and is stopped at the end of the test. The test skips, naming the
// package, when rspamd is absent. options are lines added to rspamd's
// options (local.d/options.inc), e.g. `gtube_patterns = "all";` for
// the GTUBE-like patterns of its other actions. The first start of a
// machine compiles
// rspamd's regular expressions, which takes a while; the compiled ones
// are kept for later runs in the user's cache directory.
func StartRspamd(t testing.TB, dnsAddr string, options ...string) *Rspamd {
	t.Helper()
	return startRspamdPicking(t, freePort, dnsAddr, options...)
}

// startRspamdPicking is StartRspamd with the milter's address picked by
// pick.
func startRspamdPicking(t testing.TB, pick func(testing.TB) string, dnsAddr string, options ...string) *Rspamd {
	t.Helper()
	bin, err := exec.LookPath("rspamd")
	if err != nil {
		t.Skip("rspamd not installed (Debian package rspamd)")
	}
	var r *Rspamd
	startOnFreePorts(t, "rspamd", func() (err error) {
		r, err = startRspamd(t, bin, pick(t), dnsAddr, options)
		return err
	})
	return r
}

// startRspamd is one attempt of StartRspamd, its milter on addr.
func startRspamd(t testing.TB, bin, addr, dnsAddr string, options []string) (*Rspamd, error) {
	t.Helper()
	dir := t.TempDir()
	for _, sub := range []string{"local.d", "db", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"rspamd.conf":                 fmt.Sprintf(rspamdConf, addr),
		"local.d/options.inc":         fmt.Sprintf(rspamdOptions, dnsAddr) + hsCache() + strings.Join(options, "\n") + "\n",
		"local.d/milter_headers.conf": rspamdHeaders,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-f", "-c", filepath.Join(dir, "rspamd.conf"),
		"--var", "LOCAL_CONFDIR=" + dir, "--var", "DBDIR=" + filepath.Join(dir, "db"),
		"--var", "RUNDIR=" + filepath.Join(dir, "run"), "--var", "LOGDIR=" + filepath.Join(dir, "log")}
	if os.Geteuid() == 0 {
		args = append(args, "-i")
	}
	cmd := exec.Command(bin, args...)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its own process group: the workers it forks go with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
	}
	logFile := filepath.Join(dir, "log", "rspamd.log")
	log := func() string {
		b, _ := os.ReadFile(logFile)
		return out.String() + "\n" + tail(b, 3000)
	}
	// Ready when it answers the milter negotiation.
	if err := awaitReady(func() bool { return milterAnswers(addr) }, "rspamd", 3*time.Minute, exited, log); err != nil {
		stop()
		return nil, err
	}
	t.Cleanup(stop)
	return &Rspamd{Milter: "tcp:" + addr, log: logFile}, nil
}

// hsCache keeps rspamd's compiled regular expressions between runs.
func hsCache() string {
	base, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	dir := filepath.Join(base, "postoffice-test-rspamd-hs")
	if os.MkdirAll(dir, 0o700) != nil {
		return ""
	}
	return fmt.Sprintf("hs_cache_dir = %q;\n", dir+"/")
}

// milterAnswers reports whether a milter at addr answers the option
// negotiation (SMFIC_OPTNEG, protocol version 6).
func milterAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	// Length 13, 'O', version 6, all actions, all protocol steps.
	neg := []byte{0, 0, 0, 13, 'O', 0, 0, 0, 6, 0, 0, 0x01, 0xff, 0, 0x1f, 0xff, 0xff}
	if _, err := c.Write(neg); err != nil {
		return false
	}
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return false
	}
	return hdr[4] == 'O'
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}
