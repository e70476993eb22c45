package maildrop

import (
	"fmt"
	"math"
	"testing"
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
