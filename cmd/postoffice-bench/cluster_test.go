package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// TestClusterSmoke runs the cluster benchmark at a tiny size against the
// postoffice binary and the test PostgreSQL database: one node on SQLite
// and one and two on PostgreSQL, each workload delivering, polling and
// downloading without errors.
func TestClusterSmoke(t *testing.T) {
	dsn := os.Getenv("POSTOFFICE_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("POSTOFFICE_TEST_POSTGRES not set (.ci/run starts PostgreSQL from Debian's postgresql package)")
	}
	if testing.Short() {
		t.Skip("builds and runs postoffice")
	}
	bin := filepath.Join(t.TempDir(), "postoffice")
	build := exec.Command("go", "build", "-o", bin, "github.com/postoffice-mail/postoffice/cmd/postoffice")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out, log bytes.Buffer
	err := cmdCluster(ctx, []string{"--postoffice", bin, "--bench-dir", "../../bench", "--pg", dsn,
		"--nodes", "1,2", "--users", "4", "--messages", "12", "--size", "2k", "--hash", "cheap", "--poll-duration", "1s", "--settle=false"}, &out, &log)
	if err != nil {
		t.Fatalf("cluster: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", out.String())
	for _, config := range []string{"sqlite", "pg 1n", "pg 2n"} {
		for _, w := range []string{`intake \(message\)\s+12\s`, `poll \(session\)\s+[1-9]\d*\s`, `download \(retr\)\s+12\s`} {
			re := regexp.MustCompile(`(?m)^` + config + `\s+` + w + `.*\s0$`)
			if !re.MatchString(out.String()) {
				t.Errorf("no %s row for %q without errors in:\n%s", w, config, out.String())
			}
		}
	}
}
