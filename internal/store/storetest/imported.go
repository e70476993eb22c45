package storetest

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// testImportedUIDL: a message imported from another server keeps the
// unique-id and LIST size clients saw there (issue 20), across a restart
// and through an export; an import run again skips what it stored, by
// UIDL even under another UID; bad UIDLs are refused.
func testImportedUIDL(t *testing.T, e *env) {
	imp, ok := e.s.(store.Importer)
	if !ok {
		t.Fatalf("%T does not implement store.Importer", e.s)
	}
	u := e.addUser("moved@example.org", 0)
	other := e.addUser("other@example.org", 0)
	body := "Subject: moved\r\n\r\nhello\r\n"
	opened := 0
	open := func() (io.ReadCloser, error) {
		opened++
		return io.NopCloser(strings.NewReader(body)), nil
	}
	at := time.Unix(1700000000, 0)
	n, err := imp.ImportMessage(e.ctx, open, []store.MessageCopy{
		{UserID: u.ID, UID: 1, DeliveredAt: at, UIDL: "000000015f3a2b1c", ListSize: 30},
		{UserID: other.ID, UID: 1, DeliveredAt: at, UIDL: "000000015f3a2b1c"}, // same UIDL, another mailbox
	})
	if err != nil || n != 2 {
		t.Fatalf("ImportMessage = %d, %v; want 2 copies", n, err)
	}
	n, err = imp.ImportMessage(e.ctx, open, []store.MessageCopy{{UserID: u.ID, UID: 2, DeliveredAt: at}})
	if err != nil || n != 1 {
		t.Fatalf("ImportMessage without UIDL = %d, %v; want 1", n, err)
	}
	// Run again, with the UIDs the resumed import would give (the next
	// ones): the UIDL is there already, nothing is stored or read.
	opened = 0
	n, err = imp.ImportMessage(e.ctx, open, []store.MessageCopy{{UserID: u.ID, UID: 3, DeliveredAt: at, UIDL: "000000015f3a2b1c"}})
	if err != nil || n != 0 || opened != 0 {
		t.Errorf("ImportMessage of a UIDL the mailbox has = %d, %v (body opened %d times); want 0, nil, 0", n, err, opened)
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 71), "caf\xc3\xa9", "tab\there"} {
		_, err := imp.ImportMessage(e.ctx, open, []store.MessageCopy{{UserID: u.ID, UID: 9, DeliveredAt: at, UIDL: bad}})
		wantErr(t, err, store.ErrInvalid, "ImportMessage with UIDL "+bad)
	}
	_, err = imp.ImportMessage(e.ctx, open, []store.MessageCopy{{UserID: u.ID, UID: 9, DeliveredAt: at, ListSize: -1}})
	wantErr(t, err, store.ErrInvalid, "ImportMessage with a negative LIST size")

	check := func(when string) {
		t.Helper()
		l := e.list(u.ID)
		want := []store.MessageInfo{
			{UID: 1, Size: int64(len(body)), UIDL: "000000015f3a2b1c", ListSize: 30},
			{UID: 2, Size: int64(len(body))},
		}
		if len(l) != len(want) {
			t.Fatalf("%s: List = %+v, want %+v", when, l, want)
		}
		for i := range want {
			if l[i] != want[i] {
				t.Errorf("%s: List[%d] = %+v, want %+v", when, i, l[i], want[i])
			}
		}
		e.wantUsage(u.ID, 2, 2*int64(len(body)))
		// The summary a POP3 login answers with counts the LIST size:
		// STAT's total is the sum of LIST's (RFC 1939 section 5).
		sum, err := e.s.Summary(e.ctx, u.ID)
		if err != nil || sum.Count != 2 || sum.Bytes != 30+int64(len(body)) {
			t.Errorf("%s: Summary = %+v, %v; want 2 messages of %d octets", when, sum, err, 30+len(body))
		}
	}
	check("after the import")
	e.reopen()
	check("after a restart")

	// A delivery after the import gets the next UID and the store's own
	// unique-id.
	if uids := e.deliver("Subject: new\r\n\r\nx\r\n", u.ID); uids[0] != 3 {
		t.Errorf("delivery after the import got UID %d, want 3", uids[0])
	}
	if l := e.list(u.ID); len(l) != 3 || l[2].UIDL != "" || l[2].ListSize != 0 {
		t.Errorf("List after a delivery = %+v; want a third message with the store's own UIDL", l)
	}

	// An export carries the UIDL and the LIST size along (migrate).
	exp, ok := e.s.(store.Exporter)
	if !ok {
		t.Fatalf("%T does not implement store.Exporter", e.s)
	}
	bodies, err := exp.ExportBodies(e.ctx, "", 100)
	if err != nil {
		t.Fatalf("ExportBodies: %v", err)
	}
	found := 0
	for _, b := range bodies {
		for _, c := range b.Copies {
			if c.UserID == u.ID && c.UID == 1 {
				found++
				if c.UIDL != "000000015f3a2b1c" || c.ListSize != 30 {
					t.Errorf("exported copy = UIDL %q LIST size %d; want 000000015f3a2b1c, 30", c.UIDL, c.ListSize)
				}
			}
		}
	}
	if found != 1 {
		t.Errorf("ExportBodies has %d copies of UID 1, want 1", found)
	}
}
