package main

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPeakMemory: the peak is the largest sample, kept after the memory
// is given back.
func TestPeakMemory(t *testing.T) {
	base, err := treeMemory(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	stop := make(chan struct{})
	peak := make(chan memStats, 1)
	go func() { peak <- peakMemory(os.Getpid(), stop) }()
	const big = 64 << 20
	buf := make([]byte, big)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1 // resident
	}
	time.Sleep(3 * memSample)
	runtime.KeepAlive(buf)
	buf = nil
	runtime.GC()
	close(stop)
	top := <-peak
	if top.RSS < base.RSS+big/2 || top.PSS < base.PSS+big/2 {
		t.Errorf("peak RSS %d, PSS %d; want at least %d more than the %d, %d before", top.RSS, top.PSS, big/2, base.RSS, base.PSS)
	}
}

// TestDescendants: a child and a grandchild are found, from the children
// files and from the scan of every process alike, and the resident size
// read from statm is that of smaps_rollup, near enough.
func TestDescendants(t *testing.T) {
	if _, err := os.Stat("/proc/self/statm"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(grandchild, syscall.SIGKILL) })
	want := []int{os.Getpid(), cmd.Process.Pid, grandchild}
	scanned, err := scanDescendants(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	got, err := descendants(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, pid := range want {
		if !slices.Contains(got, pid) || !slices.Contains(scanned, pid) {
			t.Errorf("pid %d: descendants %v, scan %v", pid, got, scanned)
		}
	}
	switch kids, err := childrenOf(cmd.Process.Pid); {
	case errors.Is(err, errNoChildrenFile):
		t.Log("no children files: descendants scans every process")
	case err != nil || !slices.Equal(kids, []int{grandchild}):
		t.Errorf("children of the shell: %v, %v; want [%d]", kids, err, grandchild)
	}
	if _, err := descendants(1 << 30); err == nil {
		t.Error("descendants of a process that does not exist: no error")
	}

	rss, err := residentSize(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	smapsRSS, _, err := processMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if rss < smapsRSS/2 || rss > smapsRSS*2 {
		t.Errorf("statm's resident size %d, smaps_rollup's %d", rss, smapsRSS)
	}
}

// TestTreeUsageFaults: touching 8 MiB new to the process, page by page
// (no huge pages), counts at least a minor fault a page.
func TestTreeUsageFaults(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skipf("no /proc: %v", err)
	}
	const size, page = 8 << 20, 4096
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Madvise(mem, syscall.MADV_NOHUGEPAGE); err != nil {
		t.Fatal(err)
	}
	before, err := treeUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < size; i += page {
		mem[i] = 1
	}
	after, err := treeUsage(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n := after.minflt - before.minflt; n < size/page {
		t.Errorf("%d minor faults for %d new pages", n, size/page)
	}
	if after.cpu < before.cpu {
		t.Errorf("CPU time went back: %v, then %v", before.cpu, after.cpu)
	}
}
