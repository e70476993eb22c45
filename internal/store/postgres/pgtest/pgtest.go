// Package pgtest gives tests a PostgreSQL schema of their own in the
// database named by the environment variable POSTOFFICE_TEST_POSTGRES (a
// connection string), and skips them with a message when it is not set.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// EnvVar names the connection string of the test database.
const EnvVar = "POSTOFFICE_TEST_POSTGRES"

// BaseDSN returns the connection string of the test database, skipping
// the test when there is none.
func BaseDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(EnvVar)
	if dsn == "" {
		t.Skipf("PostgreSQL tests skipped: set %s to a connection string (e.g. postgres://postgres@127.0.0.1:5432/postoffice_test); .ci/run starts a throwaway cluster and sets it", EnvVar)
	}
	return dsn
}

// Schema creates an empty schema, dropped with everything in it when the
// test ends, and returns its name and a connection string whose
// search_path selects it (and whose pool stays small, since tests run in
// parallel).
func Schema(t testing.TB) (name, dsn string) {
	t.Helper()
	base := BaseDSN(t)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name = "pt_" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A pool, which takes pool_* parameters a plain connection refuses.
	conn, err := pgxpool.New(ctx, base)
	if err != nil {
		t.Fatalf("connecting to %s: %v", EnvVar, err)
	}
	defer conn.Close()
	if _, err := conn.Exec(ctx, `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("creating schema %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgxpool.New(ctx, base)
		if err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
			return
		}
		defer conn.Close()
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
		}
	})
	return name, WithParams(base, map[string]string{"search_path": name, "pool_max_conns": "4"})
}

// WithParams adds parameters to a connection string, URL or key=value.
func WithParams(dsn string, params map[string]string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			for k, v := range params {
				q.Set(k, v)
			}
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	for k, v := range params {
		dsn += " " + k + "=" + v
	}
	return dsn
}
