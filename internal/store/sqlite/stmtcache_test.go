package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
)

// onConn runs fn on one connection of db and returns the statements
// cached on that connection.
func onConn(t *testing.T, db *sql.DB, fn func(c *sql.Conn)) map[string]*cachedStmt {
	t.Helper()
	c, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fn(c)
	stmts := map[string]*cachedStmt{}
	if err := c.Raw(func(dc any) error {
		for q, st := range dc.(*cachingConn).stmts {
			stmts[q] = st
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return stmts
}

// A statement is prepared once per connection and reused, also inside a
// transaction; the same query nested in its own open rows runs unprepared;
// bad SQL reports its error; past maxCachedStmts queries still run.
func TestStmtCache(t *testing.T) {
	ctx := context.Background()
	db := openDB(filepath.Join(t.TempDir(), "t.db") + "?_txlock=immediate")
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.Exec(`CREATE TABLE t (a INTEGER)`); err != nil {
		t.Fatal(err)
	}
	const ins = `INSERT INTO t (a) VALUES (?)`
	const sel = `SELECT a FROM t ORDER BY a`
	stmts := onConn(t, db, func(c *sql.Conn) {
		for i := range 3 {
			if _, err := c.ExecContext(ctx, ins, i); err != nil {
				t.Fatal(err)
			}
		}
	})
	first := stmts[ins]
	if first == nil {
		t.Fatalf("INSERT not cached: %v", stmts)
	}

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, ins, 3); err != nil {
		t.Fatal(err)
	}
	// The outer rows stay open while the same query runs again for each.
	rows, err := tx.QueryContext(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	var outer, inner int
	for rows.Next() {
		var a int
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		if a != outer {
			t.Fatalf("outer row %d is %d", outer, a)
		}
		outer++
		in, err := tx.QueryContext(ctx, sel)
		if err != nil {
			t.Fatal(err)
		}
		for in.Next() {
			inner++
		}
		if err := in.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if outer != 4 || inner != 16 {
		t.Errorf("nested queries saw %d outer and %d inner rows, want 4 and 16", outer, inner)
	}

	stmts = onConn(t, db, func(c *sql.Conn) {
		if err := c.QueryRowContext(ctx, `SELECT nonsense FROM nowhere`).Scan(new(int)); err == nil {
			t.Error("a bad query gave no error")
		}
		for i := range maxCachedStmts + 10 {
			var got int
			if err := c.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) + %d FROM t`, i)).Scan(&got); err != nil || got != 4+i {
				t.Fatalf("query %d past the cache: %d, %v", i, got, err)
			}
		}
	})
	if stmts[ins] != first {
		t.Error("the INSERT was prepared again")
	}
	if stmts[sel] == nil || stmts[sel].busy {
		t.Errorf("SELECT cached %v", stmts[sel])
	}
	if len(stmts) != maxCachedStmts {
		t.Errorf("%d statements cached, want the bound, %d", len(stmts), maxCachedStmts)
	}
}

// Concurrent readers of the store each use their own connection's cache.
func TestStmtCacheConcurrent(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	id := addUser(t, s, "a@example.org", 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if u, err := s.UserByID(ctx, id); err != nil || u.Address != "a@example.org" {
					t.Errorf("UserByID: %v %v", u, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
