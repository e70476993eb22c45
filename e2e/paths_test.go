package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the binary in the working directory dir.
func runIn(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// TestRelativePathsFromAnotherDirectory: a relative data_dir (and
// certificate) in the file is taken from the file's directory, so the
// commands find the same store and the same running server from any
// working directory; and only the commands that set a server up create a
// store: the others, pointed where there is none, say so and fail.
func TestRelativePathsFromAnotherDirectory(t *testing.T) {
	home := t.TempDir()
	etc := filepath.Join(home, "etc")
	os.MkdirAll(etc, 0o755)
	cfg := filepath.Join(etc, "postoffice.toml")
	os.WriteFile(cfg, []byte(`data_dir = "../var"
hostname = "mail.test"
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = []
[smtp]
listen = []
[submission]
listen = []
tls_listen = []
`), 0o600)
	elsewhere := t.TempDir()
	third := t.TempDir()
	store := filepath.Join(home, "var", "postoffice.db")

	if r := runIn(t, elsewhere, "pw\n", "--config", cfg, "user", "add", "ann@example.org", "--password-stdin"); r.code != 0 {
		t.Fatalf("user add: %+v", r)
	}
	if _, err := os.Stat(store); err != nil {
		t.Fatalf("the store is not beside the file: %v", err)
	}
	for _, dir := range []string{elsewhere, third} {
		if _, err := os.Stat(filepath.Join(dir, "var")); err == nil {
			t.Errorf("a store was made in the working directory %s", dir)
		}
	}
	if r := runIn(t, elsewhere, "Subject: hi\n\nhello\n", "--config", cfg, "deliver", "--to", "ann@example.org"); r.code != 0 {
		t.Fatalf("deliver: %+v", r)
	}

	// serve from one directory, status and user list from another.
	in := &instance{t: t, dir: home, cfgPath: cfg}
	t.Cleanup(in.stop)
	wd, _ := os.Getwd()
	os.Chdir(elsewhere)
	in.start()
	os.Chdir(wd)
	r := runIn(t, third, "", "--config", cfg, "status")
	if r.code != 0 || !strings.Contains(r.stdout, "pop3") || !strings.Contains(r.stdout, "data "+filepath.Join(home, "var")) {
		t.Errorf("status from another directory: %+v", r)
	}
	r = runIn(t, third, "", "user", "list", "--config", cfg)
	if r.code != 0 || !strings.Contains(r.stdout, "ann@example.org") || !strings.Contains(r.stdout, "\t1\t") && !strings.Contains(r.stdout, " 1 ") {
		t.Errorf("user list from another directory: %+v", r)
	}
	p := dialPOP(t, in.addr("pop3"))
	p.login("ann@example.org", "pw")
	if n := len(p.uidls()); n != 1 {
		t.Errorf("%d messages, want the one delivered from another directory", n)
	}
	p.quit()

	// Pointed at an empty data directory: no store is made, and the
	// commands say why they fail.
	empty := filepath.Join(t.TempDir(), "empty.toml")
	os.WriteFile(empty, []byte("data_dir = \"nothing-here\"\n"), 0o600)
	absent := filepath.Join(filepath.Dir(empty), "nothing-here")
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"user", "list"}, 66},
		{[]string{"domain", "list"}, 66},
		{[]string{"alias", "list"}, 66},
		{[]string{"queue", "list"}, 66},
		{[]string{"journal"}, 66},
		{[]string{"user", "del", "ann@example.org"}, 66},
		{[]string{"deliver", "--to", "ann@example.org"}, 75},
	} {
		r := runIn(t, third, "Subject: x\n\nx\n", append([]string{"--config", empty}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, "no store in "+absent) {
			t.Errorf("%v on no store: exit %d (want %d), %q", tc.args, r.code, tc.code, r.stderr)
		}
	}
	if _, err := os.Stat(absent); err == nil {
		t.Errorf("a command that must not create a store made %s", absent)
	}
	// status names the running server's data directory, not the cwd's.
	if r := runIn(t, third, "", "--config", empty, "status"); r.code != 75 || !strings.Contains(r.stderr, absent) {
		t.Errorf("status with no server: %+v", r)
	}
	// The commands that set a server up do create it.
	if r := runIn(t, third, "", "--config", empty, "domain", "add", "example.net"); r.code != 0 {
		t.Errorf("domain add on no store: %+v", r)
	}
	if r := runIn(t, third, "", "--config", empty, "domain", "list"); r.code != 0 || r.stdout != "example.net\n" {
		t.Errorf("domain list after domain add: %+v", r)
	}
}
