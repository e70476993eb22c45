package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// TestCommandLineSlips: what a newcomer trips on says what it means.
func TestCommandLineSlips(t *testing.T) {
	in := newInstance(t, "inactivity_timeout = 5")

	// A password as an argument is refused, saying how to give it.
	r := in.run("", "user", "add", "ann@example.org", "secret")
	if r.code != 64 || !strings.Contains(r.stderr, "--password-stdin") || !strings.Contains(r.stderr, "prompt") {
		t.Errorf("user add ADDRESS PASSWORD: %+v", r)
	}
	// Sizes: --quota takes 500M like the console.
	in.must("pw\n", "user", "add", "ann@example.org", "--password-stdin", "--quota", "500M")
	if out := in.must("", "user", "list"); !strings.Contains(out, "500M") {
		t.Errorf("user list after --quota 500M:\n%s", out)
	}
	if out := in.must("", "user", "set", "ann@example.org", "--quota", "2G"); !strings.Contains(out, "quota 2G") {
		t.Errorf("user set --quota 2G: %q", out)
	}
	if r := in.run("", "user", "set", "ann@example.org", "--quota", "lots"); r.code != 64 || !strings.Contains(r.stderr, "500M or 2G") {
		t.Errorf("--quota lots: %+v", r)
	}
	// A domain in use: what is left, in words.
	in.must("", "alias", "add", "team@example.org", "ann@example.org")
	r = in.run("", "domain", "del", "example.org")
	if r.code == 0 || !strings.Contains(r.stderr, "example.org is still in use by 1 user and 1 alias") || strings.Contains(r.stderr, "already exists") {
		t.Errorf("domain del in use: %+v", r)
	}
	// An operator password of one character is refused.
	if r := in.run("x\n", "admin", "add", "ops", "--password-stdin"); r.code != 64 || !strings.Contains(r.stderr, "at least 8") {
		t.Errorf("admin add with a 1-character password: %+v", r)
	}
	// help user --help is help user.
	if out := in.must("", "help", "user", "--help"); !strings.Contains(out, "Usage: postoffice [--config FILE] user") {
		t.Errorf("help user --help: %q", out)
	}

	// The short inactivity timeout loads, with a warning naming RFC 1939.
	in.start()
	if !strings.Contains(in.logText(), "RFC 1939 section 3 asks for at least 600 seconds") {
		t.Errorf("no warning about inactivity_timeout = 5 in the log:\n%s", in.logText())
	}
	out := in.must("", "config", "set", "pop3.login_delay", "0")
	if !strings.Contains(out, "RFC 1939") {
		t.Errorf("config set does not repeat the warning: %q", out)
	}
	// Nothing about certificates when they did not change.
	if strings.Contains(out, "certificate") {
		t.Errorf("config set of an unrelated key talks of certificates: %q", out)
	}
	// One message is 1 message.
	submitQueued(t, in.addr("submission"), "ann@example.org", "pw", "friend@remote.test")
	if out := in.must("", "status"); !strings.Contains(out, "queue: 1 message\n") {
		t.Errorf("status with one queued message:\n%s", out)
	}
	// The journal lists newest first, as the console does. It is written
	// in batches, after the answer to the submission: wait for both
	// entries, then look at their order.
	var lines []string
	waitFor(t, "the submission's entries in the journal", func() bool {
		lines = strings.Split(strings.TrimSpace(in.must("", "journal")), "\n")
		out := strings.Join(lines, "\n")
		return strings.Contains(out, "queued") && strings.Contains(out, "received")
	})
	if len(lines) < 3 || !strings.Contains(lines[len(lines)-2], "queued") || !strings.Contains(lines[len(lines)-1], "received") {
		t.Errorf("journal not newest first:\n%s", strings.Join(lines, "\n"))
	}
}

// TestPermissionErrorsExit77: a user who may not read the store or the
// control socket gets 77 (EX_NOPERM), not 75 (try again later).
func TestPermissionErrorsExit77(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the commands as another user (nobody)")
	}
	needFrom(t, "util-linux", "runuser")
	if _, err := user.Lookup("nobody"); err != nil {
		t.Skip("no user nobody")
	}
	in := newInstance(t, "")
	in.addUser("ann@example.org", "pw")
	in.start()
	// nobody may read the config (and reach the binary), not the data.
	os.Chmod(filepath.Dir(in.dir), 0o755)
	os.Chmod(in.dir, 0o755)
	os.Chmod(in.cfgPath, 0o644)
	os.Chmod(filepath.Join(in.dir, "data"), 0o711) // the socket and database stay owner-only
	os.Chmod(filepath.Dir(binary), 0o755)
	for _, args := range [][]string{{"status"}, {"user", "list"}, {"reload"}} {
		cmd := exec.Command("runuser", append([]string{"-u", "nobody", "--", binary, "--config", in.cfgPath}, args...)...)
		out, err := cmd.CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 77 || !strings.Contains(string(out), "permission denied") || strings.Contains(string(out), "config") {
			t.Errorf("%v as nobody: %v, %s; want exit 77", args, err, out)
		}
	}
}
