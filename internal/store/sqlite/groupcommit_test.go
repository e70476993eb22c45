package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Concurrent deliveries share commits; one over quota fails alone.
func TestGroupCommitDeliveries(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	a := addUser(t, s, "a@example.org", 0)
	b := addUser(t, s, "b@example.org", 10) // every message is over quota
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	uids := make([][]uint64, n)
	for i := range n {
		wg.Go(func() {
			to := a
			if i%4 == 3 {
				to = b
			}
			body := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)
			uids[i], errs[i] = s.Deliver(ctx, strings.NewReader(body), []store.Delivery{{UserID: to}})
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for i := range n {
		if i%4 == 3 {
			if !errors.Is(errs[i], store.ErrQuota) {
				t.Errorf("delivery %d over quota: %v, want ErrQuota", i, errs[i])
			}
			continue
		}
		if errs[i] != nil {
			t.Fatalf("delivery %d: %v", i, errs[i])
		}
		if seen[uids[i][0]] {
			t.Errorf("UID %d given twice", uids[i][0])
		}
		seen[uids[i][0]] = true
	}
	infos, err := s.List(ctx, a, 0)
	if err != nil || len(infos) != n-n/4 {
		t.Fatalf("List(a) = %d messages, %v; want %d", len(infos), err, n-n/4)
	}
	for _, m := range infos {
		if !seen[m.UID] {
			t.Errorf("listed UID %d was not returned by Deliver", m.UID)
		}
	}
	if count, bytes, err := s.Usage(ctx, b); err != nil || count != 0 || bytes != 0 {
		t.Errorf("Usage(b) = %d, %d, %v; want nothing", count, bytes, err)
	}
	// Only the delivered bodies have rows: the refused ones went with
	// their transactions.
	if inline, inFile := blobRows(t, s); inline != n-n/4 || inFile != 0 {
		t.Errorf("%d inline and %d file blobs rows, want %d and 0", inline, inFile, n-n/4)
	}
}

// A failing member of a batch is undone alone; a caller whose context is
// done does not run.
func TestGroupCommitIsolation(t *testing.T) {
	s := open(t, t.TempDir())
	ctx := context.Background()
	id := addUser(t, s, "a@example.org", 0)
	var wg sync.WaitGroup
	boom := errors.New("boom")
	const n = 30
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.writeGrouped(ctx, func(ctx context.Context, tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, `UPDATE users SET msg_count = msg_count + 1 WHERE id = ?`, id); err != nil {
					return err
				}
				if i%3 == 0 {
					return boom // after writing: the write must be undone
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if want := error(nil); i%3 == 0 {
			if !errors.Is(err, boom) {
				t.Errorf("member %d: %v, want boom", i, err)
			}
		} else if err != want {
			t.Errorf("member %d: %v", i, err)
		}
	}
	count, _, err := s.Usage(ctx, id)
	if err != nil || count != n-n/3 {
		t.Errorf("msg_count = %d, %v; want %d (failed members undone)", count, err, n-n/3)
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	err = s.writeGrouped(cancelled, func(context.Context, *sql.Tx) error { ran = true; return nil })
	if !errors.Is(err, context.Canceled) || ran {
		t.Errorf("cancelled caller: err %v, ran %v", err, ran)
	}
	// RecordLogin goes through the group, and still reports an unknown user.
	if err := s.RecordLogin(ctx, id+100, unixTime(1)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordLogin of an unknown user: %v", err)
	}
}
