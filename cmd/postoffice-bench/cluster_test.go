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

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
)

// TestClusterSmoke runs the cluster benchmark at a tiny size against the
// postoffice binary and the test PostgreSQL database: one node on SQLite
// and one and two on PostgreSQL, each workload delivering, polling and
// downloading without errors. It runs in a schema of its own, which the
// benchmark empties before each configuration; the rest of the test
// database is left alone.
func TestClusterSmoke(t *testing.T) {
	pgtest.BaseDSN(t) // skips without POSTOFFICE_TEST_POSTGRES
	if testing.Short() {
		t.Skip("builds and runs postoffice")
	}
	schema, dsn := pgtest.Schema(t)
	// A table outside the benchmark's schema, which must outlive it.
	keep, keepDSN := pgtest.Schema(t)
	pool, err := pgxpool.New(context.Background(), keepDSN)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), "CREATE TABLE kept (x int)"); err != nil {
		t.Fatal(err)
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
	err = cmdCluster(ctx, []string{"--postoffice", bin, "--bench-dir", "../../bench", "--pg", dsn,
		"--nodes", "1,2", "--users", "4", "--messages", "12", "--size", "2k", "--hash", "cheap", "--poll-duration", "1s", "--settle=false"}, &out, &log)
	if err != nil {
		t.Fatalf("cluster: %v\n%s", err, log.String())
	}
	t.Logf("\n%s", out.String())
	var tables int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = $1", keep).Scan(&tables); err != nil || tables != 1 {
		t.Errorf("schema %s has %d tables after the run (%v), want its 1", keep, tables, err)
	}
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema).Scan(&tables); err != nil || tables == 0 {
		t.Errorf("the benchmark's schema %s has %d tables (%v): the store was not in it", schema, tables, err)
	}
	for _, config := range []string{"sqlite", "pg 1n", "pg 2n"} {
		for _, w := range []string{`intake \(message\)\s+12\s`, `poll \(session\)\s+[1-9]\d*\s`, `download \(retr\)\s+12\s`} {
			re := regexp.MustCompile(`(?m)^` + config + `\s+` + w + `.*\s0$`)
			if !re.MatchString(out.String()) {
				t.Errorf("no %s row for %q without errors in:\n%s", w, config, out.String())
			}
		}
	}
}
