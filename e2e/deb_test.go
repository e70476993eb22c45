package e2e

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDebianPackage builds the .deb (go run ./cmd/postoffice-pkg), installs
// it with dpkg, checks the user, the paths, their owners and modes, runs
// the installed binary as the service user with the installed
// configuration (listeners moved to free loopback ports with config set,
// which writes the run-time settings, the packaged file staying as it is)
// and retrieves a delivered message over POP3; then purges the package.
// It needs root and dpkg, and leaves the machine as it found it.
func TestDebianPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing a package needs root")
	}
	needFrom(t, "dpkg", "dpkg", "dpkg-deb", "dpkg-statoverride", "dpkg-query")
	needFrom(t, "passwd", "useradd", "userdel", "groupdel")
	if exec.Command("dpkg-query", "-W", "postoffice").Run() == nil {
		t.Skip("a postoffice package is installed already: not touching it")
	}
	if _, err := user.Lookup("postoffice"); err == nil {
		t.Skip("a user postoffice exists already: not touching it")
	}
	if _, err := os.Stat("/var/lib/postoffice"); err == nil {
		t.Skip("/var/lib/postoffice exists already: not touching it")
	}

	out := t.TempDir()
	build := exec.Command("go", "run", "./cmd/postoffice-pkg", "-o", out, "-version", "1.0.0~test", "-binary", binary)
	build.Dir = ".."
	pkg, err := build.Output()
	if err != nil {
		t.Fatalf("postoffice-pkg: %v %s", err, stderrOf(err))
	}
	debFile := strings.TrimSpace(string(pkg))
	if filepath.Base(debFile) != "postoffice_1.0.0~test_amd64.deb" && !strings.HasPrefix(filepath.Base(debFile), "postoffice_1.0.0~test_") {
		t.Fatalf("package %q", debFile)
	}

	t.Cleanup(func() {
		// Whatever happened: purge, and what purge keeps on purpose (the
		// mail and the user) goes too, so that the next run starts clean.
		exec.Command("dpkg", "--purge", "postoffice").Run()
		os.RemoveAll("/var/lib/postoffice")
		exec.Command("userdel", "postoffice").Run()
		exec.Command("groupdel", "postoffice").Run()
	})
	if out, err := exec.Command("dpkg", "-i", debFile).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i: %v\n%s", err, out)
	}

	// The user and group.
	u, err := user.Lookup("postoffice")
	if err != nil {
		t.Fatalf("no user postoffice after install: %v", err)
	}
	if u.HomeDir != "/var/lib/postoffice" {
		t.Errorf("postoffice's home %q", u.HomeDir)
	}
	if pw, _ := exec.Command("getent", "passwd", "postoffice").Output(); !strings.HasSuffix(strings.TrimSpace(string(pw)), ":/usr/sbin/nologin") {
		t.Errorf("postoffice's passwd entry %q: want the shell /usr/sbin/nologin", pw)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if uid >= 1000 {
		t.Errorf("postoffice has uid %d: not a system user", uid)
	}

	// Paths, owners, modes.
	for _, c := range []struct {
		path        string
		mode        os.FileMode
		uid, gid    int
		dir         bool
		mustContain string
	}{
		{"/usr/bin/postoffice", 0o755, 0, 0, false, ""},
		{"/usr/lib/systemd/system/postoffice.service", 0o644, 0, 0, false, "ExecStart=/usr/bin/postoffice --config /etc/postoffice/postoffice.toml serve"},
		{"/usr/share/doc/postoffice/README.md", 0o644, 0, 0, false, "# postoffice"},
		{"/etc/postoffice", 0o750, 0, gid, true, ""},
		{"/etc/postoffice/postoffice.toml", 0o640, 0, gid, false, `data_dir = "/var/lib/postoffice"`},
		{"/var/lib/postoffice", 0o700, uid, gid, true, ""},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("%s: %v", c.path, err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().Perm() != c.mode || fi.IsDir() != c.dir || int(st.Uid) != c.uid || int(st.Gid) != c.gid {
			t.Errorf("%s: %v uid %d gid %d, want %v uid %d gid %d", c.path, fi.Mode(), st.Uid, st.Gid, c.mode, c.uid, c.gid)
		}
		if c.mustContain != "" {
			if data, _ := os.ReadFile(c.path); !strings.Contains(string(data), c.mustContain) {
				t.Errorf("%s lacks %q", c.path, c.mustContain)
			}
		}
	}
	unit, _ := os.ReadFile("/usr/lib/systemd/system/postoffice.service")
	for _, want := range []string{"Documentation=file:///usr/share/doc/postoffice/README.md", "ProtectSystem=strict", "StateDirectory=postoffice", "User=postoffice"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	if cf, _ := exec.Command("dpkg-query", "-W", "-f=${Conffiles}", "postoffice").Output(); !strings.Contains(string(cf), "/etc/postoffice/postoffice.toml") {
		t.Errorf("the configuration is not a conffile: %q", cf)
	}
	packaged, _ := os.ReadFile("/etc/postoffice/postoffice.toml")

	// As the service user, with the installed configuration.
	as := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("/usr/bin/postoffice", append([]string{"--config", "/etc/postoffice/postoffice.toml"}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		cmd.Dir = "/"
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return string(out), fmt.Errorf("postoffice %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	// The packaged configuration serves HTTP on 80 and 443 (ACME,
	// autoconfig, MTA-STS).
	if shown, err := as("", "config", "show"); err != nil || !strings.Contains(shown, "[http]\nlisten = [\":80\"]") || !strings.Contains(shown, "tls_listen = [\":443\"]  # from the file") {
		t.Errorf("the packaged configuration's [http]: %v\n%s", err, shown)
	}
	for _, kv := range [][2]string{{"pop3.listen", "127.0.0.1:0"}, {"pop3.tls_listen", "127.0.0.1:0"}, {"smtp.listen", "127.0.0.1:0"},
		{"submission.listen", "127.0.0.1:0"}, {"submission.tls_listen", ""}, {"http.listen", "127.0.0.1:0"}, {"http.tls_listen", ""},
		{"hostname", "mail.test"}} {
		if _, err := as("", "config", "set", kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if data, _ := os.ReadFile("/etc/postoffice/postoffice.toml"); string(data) != string(packaged) {
		t.Error("config set changed the packaged configuration file")
	}
	if fi, err := os.Stat("/var/lib/postoffice/settings.toml"); err != nil || fi.Mode().Perm() != 0o600 || int(fi.Sys().(*syscall.Stat_t).Uid) != uid {
		t.Errorf("the run-time settings: %v %v", fi, err)
	}
	if _, err := as("correct horse\n", "user", "add", "you@example.com", "--password-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := as("Subject: from the package\n\nInstalled and running.\n", "deliver", "--to", "you@example.com"); err != nil {
		t.Fatal(err)
	}
	addrs := startAs(t, uid, gid)
	if addrs["http"] == "" {
		t.Errorf("the installed server does not serve [http]: %v", addrs)
	}
	p := dialPOP(t, addrs["pop3"])
	p.login("you@example.com", "correct horse")
	if msg := strings.Join(p.multi("RETR 1"), "\n"); !strings.Contains(msg, "Installed and running.") {
		t.Errorf("RETR 1 from the installed server:\n%s", msg)
	}
	p.quit()
	if out, err := as("", "status"); err != nil || !strings.Contains(out, "config /etc/postoffice/postoffice.toml") {
		t.Errorf("status as the service user: %v %s", err, out)
	}
	// Root, forgetting sudo -u postoffice, is told, and writes nothing
	// the service could not write after it.
	root := exec.Command("/usr/bin/postoffice", "--config", "/etc/postoffice/postoffice.toml", "user", "add", "x@example.com", "--password-stdin")
	root.Stdin = strings.NewReader("pw\n")
	if out, err := root.CombinedOutput(); exitCode(err) != 77 || !strings.Contains(string(out), "sudo -u postoffice") {
		t.Errorf("user add as root on the service's data: %v %s, want exit 77 naming sudo -u postoffice", err, out)
	}
	stopAs(t)

	// Purge: the package's files and the configuration go; the mail and
	// the user stay (postrm says so).
	if out, err := exec.Command("dpkg", "--purge", "postoffice").CombinedOutput(); err != nil {
		t.Fatalf("dpkg --purge: %v\n%s", err, out)
	}
	for _, gone := range []string{"/usr/bin/postoffice", "/usr/lib/systemd/system/postoffice.service", "/etc/postoffice"} {
		if _, err := os.Stat(gone); err == nil {
			t.Errorf("%s is still there after purge", gone)
		}
	}
	if so, _ := exec.Command("dpkg-statoverride", "--list").Output(); strings.Contains(string(so), "/etc/postoffice") {
		t.Errorf("statoverrides left after purge:\n%s", so)
	}
	if _, err := os.Stat("/var/lib/postoffice/postoffice.db"); err != nil {
		t.Errorf("purge removed the mail: %v", err)
	}
}

var (
	debServeMu sync.Mutex
	debServe   *exec.Cmd
)

// startAs runs the installed binary's serve as uid:gid and returns the
// addresses it listens on, by service.
func startAs(t *testing.T, uid, gid int) map[string]string {
	t.Helper()
	cmd := exec.Command("/usr/bin/postoffice", "--config", "/etc/postoffice/postoffice.toml", "serve")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	cmd.Dir = "/"
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	debServeMu.Lock()
	debServe = cmd
	debServeMu.Unlock()
	t.Cleanup(func() { stopAs(t) })
	addrs := map[string]string{}
	ready := make(chan struct{})
	var logs strings.Builder
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		closed := false
		for sc.Scan() {
			mu.Lock()
			logs.WriteString(sc.Text() + "\n")
			if m := listenRE.FindStringSubmatch(sc.Text()); m != nil {
				addrs[m[1]] = m[2]
			}
			if strings.Contains(sc.Text(), "postoffice ready") && !closed {
				closed = true
				close(ready)
			}
			mu.Unlock()
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("the installed postoffice is not ready:\n%s", logs.String())
	}
	mu.Lock()
	defer mu.Unlock()
	out := map[string]string{}
	for k, v := range addrs {
		out[k] = v
	}
	return out
}

func stopAs(t *testing.T) {
	debServeMu.Lock()
	cmd := debServe
	debServe = nil
	debServeMu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Error("the installed postoffice did not stop on SIGTERM")
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
