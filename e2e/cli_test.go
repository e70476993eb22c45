package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeliverExitCodes(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("k@example.org", "pw")
	for _, tc := range []struct {
		name, stdin string
		args        []string
		code        int
		stderr      string
	}{
		{"ok", msg, []string{"--to", "K@Example.org"}, 0, ""},
		{"ok with sender", msg, []string{"--to", "k@example.org", "--from", "s@example.net"}, 0, ""},
		{"unknown user", msg, []string{"--to", "nobody@example.org"}, 67, "unknown recipient"},
		{"unknown domain", msg, []string{"--to", "k@nowhere.example"}, 67, "unknown recipient"},
		{"bad address", msg, []string{"--to", "not-an-address"}, 67, "unknown recipient"},
		{"empty message", "", []string{"--to", "k@example.org"}, 65, "empty message"},
		{"no recipient", msg, nil, 64, "--to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := in.run(tc.stdin, append([]string{"deliver"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d (stderr %q)", r.code, tc.code, r.stderr)
			}
			if tc.code != 0 && (!strings.Contains(r.stderr, tc.stderr) || strings.Count(r.stderr, "\n") != 1) {
				t.Errorf("stderr %q: want one line mentioning %q", r.stderr, tc.stderr)
			}
		})
	}
	// The two accepted messages are there, the second with its Return-Path.
	in.start()
	p := dialPOP(t, in.addr("pop3"))
	p.login("k@example.org", "pw")
	if n := len(p.uidls()); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
	if top := p.multi("TOP 2 0"); len(top) == 0 || top[0] != "Return-Path: <s@example.net>" {
		t.Errorf("TOP 2 0 = %q, want a Return-Path first", top)
	}

	// A data directory that cannot be opened is a temporary failure (75).
	bad := filepath.Join(t.TempDir(), "bad.toml")
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o600)
	os.WriteFile(bad, []byte("data_dir = \""+notDir+"\"\n"), 0o600)
	cmd := exec.Command(binary, "--config", bad, "deliver", "--to", "k@example.org")
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 75 {
		t.Errorf("deliver with a broken data dir: %v %s, want exit 75", err, out)
	}
}

func TestUserAndDomainCommands(t *testing.T) {
	in := newInstance(t, "")
	// Adding a user for an unknown domain adds the domain.
	in.addUser("l@Example.COM", "pw1")
	if out := in.must("", "domain", "list"); out != "example.com\n" {
		t.Errorf("domain list = %q", out)
	}
	if r := in.run("pw\n", "user", "add", "l@example.com", "--password-stdin"); r.code == 0 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("duplicate user: %+v", r)
	}
	in.must("", "domain", "add", "example.net")
	if r := in.run("", "domain", "add", "example.net"); r.code == 0 {
		t.Errorf("duplicate domain accepted")
	}
	if r := in.run("", "domain", "del", "example.com"); r.code == 0 {
		t.Errorf("domain with users deleted: %+v", r)
	}
	in.must("", "domain", "del", "example.net")
	// --config before the subcommand works too.
	cmd := exec.Command(binary, "--config", in.cfgPath, "user", "list")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), "l@example.com") {
		t.Errorf("user list: %v %q", err, out)
	}

	// A password change takes effect at once on the running server.
	in.start()
	p := dialPOP(t, in.addr("pop3"))
	p.login("l@example.com", "pw1")
	p.quit()
	in.must("pw2\n", "user", "passwd", "l@example.com", "--password-stdin")
	p = dialPOP(t, in.addr("pop3"))
	p.cmd("USER l@example.com")
	if r := p.cmd("PASS pw1"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("old password after passwd: %q", r)
	}
	p.login("l@example.com", "pw2")
	p.quit()

	// So does deleting the user.
	in.must("", "user", "del", "l@example.com")
	p = dialPOP(t, in.addr("pop3"))
	p.cmd("USER l@example.com")
	if r := p.cmd("PASS pw2"); !strings.HasPrefix(r, "-ERR [AUTH]") {
		t.Errorf("deleted user logged in: %q", r)
	}
	if r := in.run("", "user", "del", "l@example.com"); r.code == 0 {
		t.Error("deleting a missing user succeeded")
	}
	// Without --password-stdin and without a terminal: a clear error.
	if r := in.run("", "user", "add", "m@example.com"); r.code == 0 || !strings.Contains(r.stderr, "--password-stdin") {
		t.Errorf("user add without a terminal: %+v", r)
	}
}

func TestHelpAndErrors(t *testing.T) {
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(binary, args...)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return o.String(), e.String(), code
	}
	out, _, code := run("help")
	for _, c := range []string{"serve", "domain add", "user add", "user passwd", "user del", "user list", "deliver"} {
		if !strings.Contains(out, c) || code != 0 {
			t.Errorf("help lacks %q (exit %d)", c, code)
		}
	}
	for _, args := range [][]string{{"deliver", "--help"}, {"help", "deliver"}, {"user", "add", "--help"}, {"help", "user"}} {
		out, _, code := run(args...)
		if code != 0 || !strings.Contains(out, "Usage: postoffice") {
			t.Errorf("%v: exit %d, output %q", args, code, out)
		}
	}
	if _, e, code := run("frobnicate"); code == 0 || !strings.Contains(e, "unknown command") {
		t.Errorf("unknown command: exit %d %q", code, e)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("[pop3]\ninactivity_timeout = -5\n"), 0o600)
	if _, e, code := run("serve", "--config", bad); code == 0 || !strings.Contains(e, "pop3.inactivity_timeout") || strings.Count(e, "\n") != 1 {
		t.Errorf("bad config: exit %d, stderr %q", code, e)
	}

	// A port that is taken: the error names it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := filepath.Join(dir, "busy.toml")
	os.WriteFile(cfg, []byte("data_dir = \""+filepath.Join(dir, "data")+"\"\n[pop3]\nlisten = [\""+l.Addr().String()+"\"]\ntls_listen = []\n"), 0o600)
	if _, e, code := run("serve", "--config", cfg); code == 0 || !strings.Contains(e, l.Addr().String()) || !strings.Contains(e, "address already in use") {
		t.Errorf("busy port: exit %d, stderr %q", code, e)
	}
}
