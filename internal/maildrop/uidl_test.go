package maildrop

import (
	"fmt"
	"math"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

func TestUIDLFormat(t *testing.T) {
	for _, c := range []struct {
		v   uint32
		uid uint64
	}{{0, 0}, {1, 1}, {0x5F3A2B1C, 0xABCDEF}, {math.MaxUint32, math.MaxUint32}, {7, math.MaxUint32 + 1}, {7, math.MaxUint64}} {
		if got, want := UIDL(c.v, c.uid), fmt.Sprintf("%08X%08X", c.v, c.uid); got != want {
			t.Errorf("UIDL(%#x, %#x) = %q, want %q", c.v, c.uid, got, want)
		}
	}
}

// TestImportedUIDL: POP3 shows an imported message with the unique-id and
// LIST size it had on the server it came from.
func TestImportedUIDL(t *testing.T) {
	u := store.User{UIDValidity: 0x10}
	if m := Shown(u, store.MessageInfo{UID: 3, Size: 100, UIDL: "1.1700000000", ListSize: 98}); m.UID != "1.1700000000" || m.Size != 98 {
		t.Errorf("imported message = %+v, want UID 1.1700000000 size 98", m)
	}
	if m := Shown(u, store.MessageInfo{UID: 3, Size: 100}); m.UID != "0000001000000003" || m.Size != 100 {
		t.Errorf("own message = %+v, want UID 0000001000000003 size 100", m)
	}
}
