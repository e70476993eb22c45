package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// mountTmpfs mounts a small tmpfs at dir, or skips the test when this
// process may not mount (not root, or no mount permission in a container).
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the disk-full test")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); skipping the fault test", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

func remount(t *testing.T, dir, opt string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opt, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s: %v: %s", opt, err, out)
	}
}

// fill writes a file that takes all free space on dir's filesystem.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64*1024)
	for {
		if _, err := f.Write(buf); err != nil {
			break // ENOSPC: full
		}
	}
	f.Sync()
}

// TestDiskFullAndReadOnly: a full or read-only data directory gives
// temporary errors (SMTP 4xx, POP3 -ERR [SYS/TEMP], deliver exit 75), no
// corruption, and the server recovers by itself once space returns.
func TestDiskFullAndReadOnly(t *testing.T) {
	in := newInstance(t, "")
	data := filepath.Join(in.dir, "data")
	os.MkdirAll(data, 0o700)
	mountTmpfs(t, data, "8m")
	in.addUser("full@example.org", "pw")
	in.deliver("full@example.org", msg)
	in.start()
	mx := in.addr("smtp")

	filler := filepath.Join(data, "filler")
	fill(t, filler)

	// SMTP: a temporary failure, never a 250 for data not on disk.
	big := plainMsg + strings.Repeat(strings.Repeat("z", 76)+"\r\n", 4000)
	r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"full@example.org"}, msg: big})
	if c := r.code(); c < 400 || c >= 500 {
		t.Errorf("SMTP on a full disk: %+v, want a 4xx", r)
	}
	// deliver: exit 75.
	if res := in.run(big, "deliver", "--to", "full@example.org"); res.code != 75 || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("deliver on a full disk: exit %d %q, want 75 and one line", res.code, res.stderr)
	}

	// Space comes back: everything works again without a restart.
	os.Remove(filler)
	if r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"full@example.org"}, msg: plainMsg}); r.code() != 250 {
		t.Fatalf("SMTP after space returned: %+v", r)
	}
	if n := len(retrieveAll(t, in, "full@example.org", "pw")); n != 2 {
		t.Fatalf("%d messages after recovery, want 2", n)
	}

	// POP3: deletions at QUIT fail with [SYS/TEMP] on a full disk and are
	// not applied.
	fill(t, filler)
	p := dialPOP(t, in.addr("pop3"))
	p.login("full@example.org", "pw")
	p.cmd("DELE 1")
	q := p.cmd("QUIT")
	os.Remove(filler)
	t.Logf("QUIT with DELE on a full disk: %q", q)
	if !strings.HasPrefix(q, "-ERR [SYS/TEMP]") && !strings.HasPrefix(q, "+OK") {
		t.Errorf("QUIT on a full disk: %q", q)
	}
	wantLeft := 2
	if strings.HasPrefix(q, "+OK") {
		wantLeft = 1 // SQLite found room for the deletion: it is applied
	}
	if n := len(retrieveAll(t, in, "full@example.org", "pw")); n != wantLeft {
		t.Fatalf("%d messages after QUIT answered %q, want %d", n, q, wantLeft)
	}

	// A read-only data directory (mounted so while the server is down):
	// deliver fails temporarily with one line on stderr, and works again
	// once the directory is writable.
	in.stop()
	remount(t, data, "ro")
	if res := in.run(msg, "deliver", "--to", "full@example.org"); res.code != 75 || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("deliver on a read-only store: exit %d %q, want 75 and one line", res.code, res.stderr)
	}
	remount(t, data, "rw")
	in.deliver("full@example.org", msg)
	in.start()
	if n := len(retrieveAll(t, in, "full@example.org", "pw")); n != wantLeft+1 {
		t.Fatalf("%d messages at the end, want %d", n, wantLeft+1)
	}
}
