package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeProfiles: serve --cpuprofile and --allocprofile write, at
// shutdown, a CPU profile and an allocation profile (gzipped protocol
// buffers that name their sample types, as go tool pprof reads them); a
// profile path that cannot be created stops serve at its start.
func TestServeProfiles(t *testing.T) {
	in := newInstance(t, "")
	dir := t.TempDir()
	cpu, allocs := filepath.Join(dir, "cpu.pprof"), filepath.Join(dir, "allocs.pprof")
	in.serveArgs = []string{"--cpuprofile", cpu, "--allocprofile", allocs}
	in.start()
	// Some work to profile: a POP3 session.
	c, err := net.Dial("tcp", in.addr("pop3"))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("greeting %q, %v", line, err)
	}
	io.WriteString(c, "QUIT\r\n")
	r.ReadString('\n')
	c.Close()
	in.stop()

	for file, types := range map[string][]string{
		cpu:    {"samples", "cpu", "nanoseconds"},
		allocs: {"alloc_objects", "alloc_space", "inuse_space", "bytes"},
	} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: not gzipped: %v", filepath.Base(file), err)
		}
		raw, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("%s: %v", filepath.Base(file), err)
		}
		for _, typ := range types {
			if !bytes.Contains(raw, []byte(typ)) {
				t.Errorf("%s names no sample type or unit %q", filepath.Base(file), typ)
			}
		}
	}
	if gobin, err := exec.LookPath("go"); err == nil {
		out, err := exec.Command(gobin, "tool", "pprof", "-sample_index=alloc_space", "-top", binary, allocs).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Type: alloc_space") {
			t.Errorf("go tool pprof on the allocation profile: %v\n%s", err, out)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, binary, "serve", "--config", in.cfgPath, "--allocprofile", filepath.Join(dir, "missing", "allocs.pprof"))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || ctx.Err() != nil || !strings.Contains(stderr.String(), "allocation profile") {
		t.Errorf("serve with a profile path that cannot be created: %v (timed out: %v), stderr %q", err, ctx.Err() != nil, stderr.String())
	}
}
