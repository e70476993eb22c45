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
