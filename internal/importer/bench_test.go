package importer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/importer"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// BenchmarkImportMaildir imports a 10,000-message Dovecot maildir (about
// 2 KB a message) into the SQLite store and reports messages per second:
//
//	go test -run '^$' -bench ImportMaildir -benchtime 1x ./internal/importer
func BenchmarkImportMaildir(b *testing.B) {
	const n = 10000
	root := b.TempDir()
	dir := filepath.Join(root, "example.org", "alice")
	for _, s := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, s), 0o700)
	}
	var list strings.Builder
	fmt.Fprintf(&list, "3 V1700000000 N%d\n", n+1)
	body := strings.Repeat("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do.\n", 30)
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%d.M%dP1.old", 1700000000+i, i)
		msg := fmt.Sprintf("From: someone@example.net\nTo: alice@example.org\nSubject: message %d\nMessage-ID: <%d@example.net>\n\n%s", i, i, body)
		if err := os.WriteFile(filepath.Join(dir, "cur", name+":2,S"), []byte(msg), 0o600); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(&list, "%d :%s\n", i, name)
	}
	os.WriteFile(filepath.Join(dir, "dovecot-uidlist"), []byte(list.String()), 0o600)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		b.StopTimer()
		st, err := sqlite.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		boxes, err := importer.Dovecot{MailRoot: root}.Mailboxes()
		if err != nil {
			b.Fatal(err)
		}
		r, err := importer.Import(b.Context(), st, boxes, importer.Options{})
		if err != nil || r.Messages != n {
			b.Fatalf("import: %v, %+v", err, r)
		}
		total += time.Since(start)
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/total.Seconds(), "msgs/s")
}
