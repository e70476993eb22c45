package backup

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/migrate"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// fill delivers n messages to 10 users: 5 KiB each, every 50th 100 KiB.
func fill(b *testing.B, st migrate.Store, n int) {
	ctx := b.Context()
	var ids []int64
	for i := range 10 {
		u, err := st.AddUser(ctx, store.User{Address: fmt.Sprintf("u%d@example.com", i), Enabled: true})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, u.ID)
	}
	for i := range n {
		size := 5 << 10
		if i%50 == 0 {
			size = 100 << 10
		}
		body := fmt.Sprintf("Subject: %d\r\n\r\n", i) + strings.Repeat("x", size-100) + "\r\n"
		if _, err := st.Deliver(ctx, strings.NewReader(body), []store.Delivery{{UserID: ids[i%len(ids)]}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackupRestore takes a backup of 3,000 messages from each
// backend, verifies it and restores it into each backend, one operation
// each; msgs/s is the rate of each step.
func BenchmarkBackupRestore(b *testing.B) {
	const n = 3000
	for _, name := range []string{"sqlite", "postgres"} {
		b.Run(name, func(b *testing.B) {
			var src migrate.Store
			if name == "sqlite" {
				src = openSQLite(b, b.TempDir())
			} else {
				src = openPostgres(b)
			}
			fill(b, src, n)
			for b.Loop() {
				dir := filepath.Join(b.TempDir(), "backup")
				measure(b, "backup", n, func() error { _, err := Backup(b.Context(), src, dir, Options{}); return err })
				measure(b, "verify", n, func() error { _, _, err := Verify(b.Context(), dir); return err })
				measure(b, "restore-sqlite", n, func() error {
					_, err := Restore(b.Context(), dir, openSQLite(b, b.TempDir()), Options{})
					return err
				})
				if name == "postgres" {
					measure(b, "restore-postgres", n, func() error {
						_, err := Restore(b.Context(), dir, openPostgres(b), Options{})
						return err
					})
				}
			}
		})
	}
}

// measure runs one step and reports its rate.
func measure(b *testing.B, step string, n int, fn func() error) {
	start := time.Now()
	if err := fn(); err != nil {
		b.Fatalf("%s: %v", step, err)
	}
	d := time.Since(start)
	b.Logf("%s of %d messages: %v", step, n, d)
	b.ReportMetric(float64(n)/d.Seconds(), step+"-msgs/s")
}
