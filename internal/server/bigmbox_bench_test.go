package server

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkPOP3BigMailboxLogin measures the first login to a
// 100,000-message mailbox (the bench's bigmbox workload): the time from
// PASS to its +OK, with the password's verification cached so that the
// snapshot, not argon2id, is what it measures. login-ms is that time and
// login-cpu-ms the process's CPU time meanwhile (server and client both
// run in this process; on a shared machine CPU time is the steadier
// figure); session-ms and session-cpu-ms are the same for the whole
// session, with UIDL, LIST and QUIT.
func BenchmarkPOP3BigMailboxLogin(b *testing.B) {
	const n = 100000
	dir := b.TempDir()
	_, userID, addr := benchPOP3In(b, dir, 5*time.Minute)
	fillDirect(b, dir, userID, n)
	if _, err := bigSession(b, addr, n); err != nil { // verifies the password once
		b.Fatal(err)
	}
	var sum bigTimes
	for b.Loop() {
		t, err := bigSession(b, addr, n)
		if err != nil {
			b.Fatal(err)
		}
		sum.login += t.login
		sum.loginCPU += t.loginCPU
		sum.whole += t.whole
		sum.wholeCPU += t.wholeCPU
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(sum.login), "login-ms")
	b.ReportMetric(ms(sum.loginCPU), "login-cpu-ms")
	b.ReportMetric(ms(sum.whole), "session-ms")
	b.ReportMetric(ms(sum.wholeCPU), "session-cpu-ms")
}

// fillDirect gives the user n messages of 4 KB, each with its inline
// body, written in one transaction straight into the store's tables (Deliver
// commits once per message: minutes for 100,000).
func fillDirect(b *testing.B, dataDir string, userID int64, n int) {
	b.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dataDir, "postoffice.db")+"?_pragma=busy_timeout(30000)&_txlock=immediate")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback()
	body := benchMessage(4000, "some text to fill the line up to seventy-eight characters or so, and more\r\n")
	now := time.Now().Unix()
	ins, err := tx.PrepareContext(ctx, `INSERT INTO messages (user_id, uid, blob_id, size, delivered_at, header) VALUES (?, ?, ?, ?, ?, x'')`)
	if err != nil {
		b.Fatal(err)
	}
	insBlob, err := tx.PrepareContext(ctx, `INSERT INTO blobs (id, size, created_at, data) VALUES (?, ?, ?, ?)`)
	if err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= n; i++ {
		// A body of its own for each (as delivery makes), so that the
		// index is read from a database of the real size.
		id := fmt.Sprintf("%032x", i)
		if _, err := insBlob.ExecContext(ctx, id, len(body), now, body); err != nil {
			b.Fatal(err)
		}
		if _, err := ins.ExecContext(ctx, userID, i, id, len(body), now); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE users SET next_uid = ?1, msg_count = ?2, msg_bytes = (SELECT sum(size) FROM messages WHERE user_id = ?3) WHERE id = ?3`, n+1, n, userID); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}

type bigTimes struct{ login, loginCPU, whole, wholeCPU time.Duration }

// bigSession logs in, lists the mailbox with UIDL and LIST and quits,
// checking that n messages are listed; it returns the time and CPU time
// PASS took and the whole session's.
func bigSession(b *testing.B, addr string, n int) (t bigTimes, err error) {
	start, startCPU := time.Now(), processCPU(b)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return t, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	r := bufio.NewReaderSize(c, 64*1024)
	line := func() (string, error) {
		l, err := r.ReadString('\n')
		if err == nil && !strings.HasPrefix(l, "+OK") {
			err = fmt.Errorf("server: %s", l)
		}
		return l, err
	}
	cmd := func(s string) (string, error) {
		if _, err := c.Write([]byte(s + "\r\n")); err != nil {
			return "", err
		}
		return line()
	}
	multi := func() (int, error) {
		k := 0
		for {
			l, err := r.ReadSlice('\n')
			if err != nil {
				return k, err
			}
			if len(l) == 3 && l[0] == '.' {
				return k, nil
			}
			k++
		}
	}
	if _, err := line(); err != nil {
		return t, err
	}
	if _, err := cmd("USER bench@example.org"); err != nil {
		return t, err
	}
	pass, passCPU := time.Now(), processCPU(b)
	if _, err := cmd("PASS pw"); err != nil {
		return t, err
	}
	t.login, t.loginCPU = time.Since(pass), processCPU(b)-passCPU
	for _, s := range []string{"UIDL", "LIST"} {
		if _, err := cmd(s); err != nil {
			return t, err
		}
		if k, err := multi(); err != nil || k != n {
			return t, fmt.Errorf("%s: %d lines, %v", s, k, err)
		}
	}
	if _, err := cmd("QUIT"); err != nil {
		return t, err
	}
	t.whole, t.wholeCPU = time.Since(start), processCPU(b)-startCPU
	return t, nil
}
