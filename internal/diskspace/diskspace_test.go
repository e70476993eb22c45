package diskspace

import (
	"os"
	"path/filepath"
	"testing"
)

// Writing a file takes about its size from what Available reports.
func TestAvailable(t *testing.T) {
	dir := t.TempDir()
	before, err := Available(dir)
	if err == ErrUnsupported {
		t.Skip(err)
	}
	if err != nil || before <= 0 {
		t.Fatalf("Available(%s) = %d, %v", dir, before, err)
	}
	const size = 64 << 20
	f, err := os.Create(filepath.Join(dir, "big"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i) // not sparse, not zero pages
	}
	for range size / len(buf) {
		if _, err := f.Write(buf); err != nil {
			t.Skipf("no room for a %d-octet file: %v", size, err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	after, err := Available(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Other writers share the file system: allow for them, but a file of
	// 64 MiB must show.
	if d := before - after; d < size/2 {
		t.Fatalf("free space went from %d to %d after writing %d octets", before, after, size)
	}
	if _, err := Available(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("no error for a path that does not exist")
	}
}
