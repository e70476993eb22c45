package router_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/router"
)

// Spools reuse their memory from one message to the next: a buffer goes
// back for reuse on Close, never before, so a spool still open is never
// overwritten by the next one, whatever their sizes (small, past the
// largest buffer kept for reuse, past the memory limit into a file).
func TestSpoolReuseKeepsOpenSpools(t *testing.T) {
	sizes := []int{10, 5_000, 40_000, 300_000, 1_200_000}
	type open struct {
		sp   router.Spooled
		want string
	}
	var live []open
	check := func() {
		t.Helper()
		for _, o := range live {
			got, err := io.ReadAll(o.sp.Open())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != o.want {
				t.Fatalf("a spool of %d octets was overwritten (read %d octets)", len(o.want), len(got))
			}
			tail := make([]byte, 4)
			if _, err := o.sp.ReadAt(tail, o.sp.Size()-4); err != nil || string(tail) != o.want[len(o.want)-4:] {
				t.Fatalf("ReadAt at the end: %q, %v", tail, err)
			}
		}
	}
	for i := 0; i < 40; i++ {
		n := sizes[i%len(sizes)]
		line := fmt.Sprintf("message %d\r\n", i)
		want := "Subject: " + line + "\r\n" + strings.Repeat(line, n/len(line)+1)
		sp, err := router.Spool(strings.NewReader(want), t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if sp.Size() != int64(len(want)) {
			t.Fatalf("size %d, want %d", sp.Size(), len(want))
		}
		live = append(live, open{sp, want})
		check()
		if len(live) > 3 { // the oldest goes back for reuse
			if err := live[0].sp.Close(); err != nil {
				t.Fatal(err)
			}
			live[0].sp.Close() // a second Close is harmless
			live = live[1:]
			check()
		}
	}
	for _, o := range live {
		o.sp.Close()
	}
}
