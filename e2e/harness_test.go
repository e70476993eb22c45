// Package e2e starts the real postoffice binary and drives it over real
// sockets with real clients (Python's poplib, curl, mpop, fetchmail).
// Tests needing a tool that is missing skip with a message naming it.
package e2e

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var binary string // the postoffice binary built once for all tests

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "postoffice-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "postoffice")
	build := exec.Command("go", "build", "-o", binary, "github.com/postoffice-mail/postoffice/cmd/postoffice")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building postoffice: %v\n%s", err, out)
		os.Exit(1)
	}
	// The tests marked parallel spend their time waiting (a certificate's
	// lifetime, a cluster lease, the delays after failed logins), not on
	// the CPU: run them all at once, unless -parallel says otherwise. The
	// e2e package is the longest of go test ./..., which gives each
	// package ten minutes.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", "8")
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// need skips the test when a client program is missing.
func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (install it, e.g. apt-get install %s, or run .ci/run)", tool, tool)
		}
	}
}

// needFrom skips the test when a program that Debian's package pkg
// brings is missing.
func needFrom(t *testing.T, pkg string, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (install it, e.g. apt-get install %s, or run .ci/run)", tool, pkg)
		}
	}
}

// needSwaksTLS skips the test when swaks cannot speak TLS: Debian's swaks
// has Net::SSLeay and IO::Socket::SSL only as recommended packages, so an
// install with --no-install-recommends leaves them out.
func needSwaksTLS(t *testing.T) {
	t.Helper()
	out, _ := exec.Command("swaks", "--support").CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "TLS not available") {
			t.Skipf("swaks cannot use TLS (install libnet-ssleay-perl and libio-socket-ssl-perl): %s",
				strings.TrimSpace(line))
		}
	}
}

// instance is one data directory and config, and the serve process on it.
type instance struct {
	t       *testing.T
	dir     string
	cfgPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	logs   bytes.Buffer
	addrs  map[string]string // service -> host:port, from the "listening" log lines
	exited chan struct{}
	// serveArgs are added to serve's command line (e.g. its profiles).
	serveArgs []string
}

// newInstance writes a config with loopback listeners on ephemeral ports.
// pop3Extra is appended to the [pop3] section.
func newInstance(t *testing.T, pop3Extra string) *instance {
	return newInstanceWith(t, map[string]string{"pop3": pop3Extra})
}

// newInstanceWith is newInstance with extra lines for any section
// ("pop3", "smtp", "submission", "admin", "queue", "auth"), "top" for
// top-level keys, "tables" for whole tables after the others ([acme],
// [http]...) and "hostname" to replace mail.test. The web console
// ([admin]) listens on a loopback port too.
func newInstanceWith(t *testing.T, extra map[string]string) *instance {
	t.Helper()
	dir := t.TempDir()
	hostname := extra["hostname"]
	if hostname == "" {
		hostname = "mail.test"
	}
	queue := extra["queue"]
	if !strings.Contains(queue, "dns_server") {
		// Never look up or contact real mail hosts from a test: with no
		// DNS server on this closed loopback port every lookup fails
		// (temporarily) and remote mail stays queued.
		queue = "dns_server = \"127.0.0.1:9\"\n" + queue
	}
	cfg := fmt.Sprintf(`data_dir = %q
hostname = %q
%s
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
%s
[smtp]
listen = ["127.0.0.1:0"]
%s
[submission]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
%s
[admin]
listen = "127.0.0.1:0"
%s
[queue]
%s
[auth]
%s
%s
`, filepath.Join(dir, "data"), hostname, extra["top"], extra["pop3"], extra["smtp"], extra["submission"], extra["admin"], queue, extra["auth"], extra["tables"])
	p := filepath.Join(dir, "postoffice.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	in := &instance{t: t, dir: dir, cfgPath: p}
	t.Cleanup(in.stop)
	return in
}

var listenRE = regexp.MustCompile(`msg=listening service=(\S+) addr=(\S+)`)

// start runs serve and waits until it is ready.
func (in *instance) start() {
	in.t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--config", in.cfgPath}, in.serveArgs...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		in.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		in.t.Fatal(err)
	}
	ready := make(chan struct{})
	exited := make(chan struct{})
	in.mu.Lock()
	in.cmd, in.addrs, in.exited = cmd, map[string]string{}, exited
	in.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			in.mu.Lock()
			in.logs.WriteString(line + "\n")
			if m := listenRE.FindStringSubmatch(line); m != nil {
				in.addrs[m[1]] = m[2]
			}
			in.mu.Unlock()
			if strings.Contains(line, "postoffice ready") {
				once.Do(func() { close(ready) })
			}
		}
		io.Copy(io.Discard, stderr)
		cmd.Wait()
		close(exited)
	}()
	select {
	case <-ready:
	case <-exited:
		in.t.Fatalf("postoffice serve exited before it was ready:\n%s", in.logText())
	case <-time.After(30 * time.Second):
		in.t.Fatalf("postoffice serve not ready after 30s:\n%s", in.logText())
	}
}

func (in *instance) logText() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.logs.String()
}

// addr returns the bound address of a service ("pop3", "pop3s").
func (in *instance) addr(service string) string {
	in.mu.Lock()
	defer in.mu.Unlock()
	a := in.addrs[service]
	if a == "" {
		in.t.Fatalf("service %s is not listening; logs:\n%s", service, in.logs.String())
	}
	return a
}

func (in *instance) port(service string) string {
	a := in.addr(service)
	return a[strings.LastIndex(a, ":")+1:]
}

// signal sends sig and waits for the process to exit.
func (in *instance) signal(sig syscall.Signal) {
	in.mu.Lock()
	cmd, exited := in.cmd, in.exited
	in.cmd = nil
	in.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-exited
		in.t.Errorf("postoffice did not exit on %v", sig)
	}
}

func (in *instance) stop() { in.signal(syscall.SIGTERM) }
func (in *instance) kill() { in.signal(syscall.SIGKILL) }

// result of one CLI run.
type result struct {
	stdout, stderr string
	code           int
}

// run executes one postoffice command against this instance's config.
func (in *instance) run(stdin string, args ...string) result {
	in.t.Helper()
	cmd := exec.Command(binary, append(args, "--config", in.cfgPath)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		in.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// must runs a command that has to succeed.
func (in *instance) must(stdin string, args ...string) string {
	in.t.Helper()
	r := in.run(stdin, args...)
	if r.code != 0 {
		in.t.Fatalf("postoffice %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// journal runs `postoffice journal ARGS` until its output satisfies ok
// or 30 seconds pass, and returns the last output: serve writes the
// journal in batches in the background, after the reply to the client.
func (in *instance) journal(ok func(string) bool, args ...string) string {
	in.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := in.must("", append([]string{"journal"}, args...)...)
		if ok(out) || time.Now().After(deadline) {
			return out
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (in *instance) addUser(addr, password string) {
	in.t.Helper()
	in.must(password+"\n", "user", "add", addr, "--password-stdin")
}

func (in *instance) deliver(to, msg string) {
	in.t.Helper()
	in.must(msg, "deliver", "--to", to)
}
