package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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
//
// min_free_space = 0 takes away the reserve that keeps intake from
// filling the disk (TestMinFreeSpace), to show what a full disk does.
func TestDiskFullAndReadOnly(t *testing.T) {
	in := newInstanceWith(t, map[string]string{"top": "min_free_space = 0"})
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

// freeSpace returns the octets an unprivileged writer has left on dir's
// file system.
func freeSpace(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// leaveFree fills dir's file system with the file path but for about
// room octets.
func leaveFree(t *testing.T, path string, room int64) {
	t.Helper()
	fill(t, path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, max(fi.Size()-room, 0)); err != nil {
		t.Fatal(err)
	}
}

// TestMinFreeSpace (issue 13, point 5): below min_free_space intake is
// refused for the time being (SMTP 452 4.3.1 at MAIL, with a SIZE that
// would not fit too; deliver exits 75), while there is still room for
// what frees space: a POP3 user deletes messages and QUIT succeeds.
// Intake resumes by itself once space returns.
func TestMinFreeSpace(t *testing.T) {
	in := newInstanceWith(t, map[string]string{"top": "min_free_space = 4194304"})
	data := filepath.Join(in.dir, "data")
	os.MkdirAll(data, 0o700)
	mountTmpfs(t, data, "16m")
	in.addUser("u@example.org", "pw")
	for range 3 {
		in.deliver("u@example.org", msg)
	}
	in.start()
	mx := in.addr("smtp")
	filler := filepath.Join(data, "filler")

	// 6 MiB free, 4 MiB to keep: a message announced at 3 MB would not
	// fit (RFC 1870 section 6), a small one does.
	leaveFree(t, filler, 6<<20)
	t.Logf("free: %d octets", freeSpace(t, data))
	c := dialSMTP(t, mx)
	c.cmd("EHLO client.test", 250, "")
	c.cmd("MAIL FROM:<s@example.net> SIZE=3000000", 452, "4.3.1")
	c.cmd("MAIL FROM:<s@example.net> SIZE=1000", 250, "2.1.0")
	c.cmd("RSET", 250, "")

	// 2 MiB free: no intake at all.
	os.Remove(filler)
	leaveFree(t, filler, 2<<20)
	t.Logf("free: %d octets", freeSpace(t, data))
	c.cmd("MAIL FROM:<s@example.net>", 452, "4.3.1")
	c.cmd("QUIT", 221, "")
	if res := in.run(msg, "deliver", "--to", "u@example.org"); res.code != 75 || strings.Count(res.stderr, "\n") != 1 {
		t.Errorf("deliver below min_free_space: exit %d %q, want 75 and one line", res.code, res.stderr)
	}

	// Deleting still works: that is what the reserve is for.
	p := dialPOP(t, in.addr("pop3"))
	p.login("u@example.org", "pw")
	for i := 1; i <= 3; i++ {
		if r := p.cmd("DELE %d", i); !strings.HasPrefix(r, "+OK") {
			t.Fatalf("DELE %d: %q", i, r)
		}
	}
	if r := p.cmd("QUIT"); !strings.HasPrefix(r, "+OK") {
		t.Fatalf("QUIT with 3 deletions below min_free_space: %q", r)
	}
	p = dialPOP(t, in.addr("pop3"))
	p.login("u@example.org", "pw")
	if r := p.cmd("STAT"); !strings.HasPrefix(r, "+OK 0 ") {
		t.Errorf("after QUIT: %q", r)
	}
	p.quit()

	// Space returns: intake works again without a restart.
	os.Remove(filler)
	if r := sendmail(t, smtpSend{addr: mx, from: "s@example.net", to: []string{"u@example.org"}, msg: plainMsg}); r.code() != 250 {
		t.Fatalf("SMTP after space returned: %+v", r)
	}
}
