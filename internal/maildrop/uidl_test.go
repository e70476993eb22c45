package maildrop

import (
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/pop3"
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
	// In a list, imported messages among our own keep theirs.
	msgs := messages(0x10, []store.MessageInfo{{UID: 1, Size: 5}, {UID: 2, Size: 100, UIDL: "1.1700000000", ListSize: 98}, {UID: 3, Size: 7}})
	if want := []pop3.Message{{UID: "0000001000000001", Size: 5}, {UID: "1.1700000000", Size: 98}, {UID: "0000001000000003", Size: 7}}; !slices.Equal(msgs, want) {
		t.Errorf("messages = %+v, want %+v", msgs, want)
	}
}

// TestMessagesUIDs: the unique-ids cut from one string are UIDL's, past
// 2^32 too.
func TestMessagesUIDs(t *testing.T) {
	infos := []store.MessageInfo{{UID: 1, Size: 10}, {UID: 0xABCDEF, Size: 0}, {UID: math.MaxUint32 + 1, Size: 7}, {UID: math.MaxUint64, Size: 1}, {UID: math.MaxUint64 - 1, Size: 3}}
	msgs := messages(0x5F3A2B1C, infos)
	if len(msgs) != len(infos) {
		t.Fatalf("%d messages for %d", len(msgs), len(infos))
	}
	for i, m := range infos {
		if want := UIDL(0x5F3A2B1C, m.UID); msgs[i].UID != want || msgs[i].Size != m.Size {
			t.Errorf("message %d = %+v, want %q, %d", i, msgs[i], want, m.Size)
		}
	}
}
