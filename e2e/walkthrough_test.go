package e2e

import (
	"bytes"
	"context"
	"net"
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

// readmeBlock returns the first fenced block after heading in README.md.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	text = text[i:]
	text = text[strings.Index(text, "\n```")+4:]
	text = text[strings.IndexByte(text, '\n')+1:]
	return text[:strings.Index(text, "\n```")+1]
}

// TestWalkthrough runs README.md's "First mailbox in two minutes" as
// written, as an unprivileged user (nobody, when the test runs as root, in
// a network namespace of its own so that its fixed ports meet no other
// test's), in an empty directory: it must print the delivered message.
// Only its first line, go build, is replaced by a copy of the binary the
// tests built from the same package (a build as nobody would need a Go
// cache and minutes).
func TestWalkthrough(t *testing.T) {
	need(t, "curl", "bash")
	script := readmeBlock(t, "## First mailbox in two minutes")
	build, rest, _ := strings.Cut(script, "\n")
	if build != "go build -o postoffice ./cmd/postoffice" {
		t.Fatalf("the walk-through no longer starts with the build this test replaces: %q", build)
	}
	dir, err := os.MkdirTemp("", "postoffice-walkthrough")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "postoffice"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	scriptPath := filepath.Join(dir, "walkthrough.sh")
	os.WriteFile(scriptPath, []byte(rest), 0o644)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		needFrom(t, "util-linux", "runuser", "unshare")
		needFrom(t, "iproute2", "ip")
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("no user nobody to run the walk-through as")
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		for _, p := range []string{dir, filepath.Join(dir, "postoffice"), scriptPath} {
			os.Chown(p, uid, gid)
		}
		cmd = exec.CommandContext(ctx, "unshare", "--net", "--", "sh", "-c",
			`ip link set lo up && exec runuser -u nobody -- bash -e walkthrough.sh`)
	} else {
		// Already unprivileged, on the machine's own loopback: its fixed
		// ports must be free.
		for _, port := range []string{"1110", "1995", "2525", "1587"} {
			l, err := net.Listen("tcp", "127.0.0.1:"+port)
			if err != nil {
				t.Skipf("port %s, which the walk-through uses, is taken: %v", port, err)
			}
			l.Close()
		}
		cmd = exec.CommandContext(ctx, "bash", "-e", "walkthrough.sh")
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Files, not pipes: serve, left running in the background, keeps its
	// output open after the script ends.
	outF, _ := os.Create(filepath.Join(t.TempDir(), "stdout"))
	errF, _ := os.Create(filepath.Join(t.TempDir(), "stderr"))
	cmd.Stdout, cmd.Stderr = outF, errF
	err = cmd.Run()
	// The walk-through leaves serve running in the background: stop it
	// (its process group, which is the script's).
	if cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		time.Sleep(500 * time.Millisecond)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	outB, _ := os.ReadFile(outF.Name())
	errB, _ := os.ReadFile(errF.Name())
	out, errb := bytes.NewBuffer(outB), bytes.NewBuffer(errB)
	if err != nil {
		t.Fatalf("the walk-through failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "First mail!") || !strings.Contains(out.String(), "Subject: hello") {
		t.Errorf("curl did not print the message:\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
	}
	if !strings.Contains(errb.String(), "addr=127.0.0.1:1995") || strings.Contains(errb.String(), "addr=[::]") || strings.Contains(errb.String(), "addr=0.0.0.0") {
		t.Errorf("serve listened elsewhere than on loopback:\n%s", errb.String())
	}
}
