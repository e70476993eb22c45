package main

import (
	"os"
	"runtime"
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
