package bufpool

import (
	"io"
	"strings"
	"testing"
)

// A reader lent again reads its new source from the start: nothing of
// the previous one is left in its buffer.
func TestReaderReused(t *testing.T) {
	first := Reader(strings.NewReader("first message, partly read\r\n"))
	if _, err := first.Peek(5); err != nil {
		t.Fatal(err)
	}
	Put(first)
	for i, want := range []string{"second\r\n", strings.Repeat("x", 3*Size+7)} {
		br := Reader(strings.NewReader(want))
		if br.Size() != Size {
			t.Fatalf("buffer of %d octets, want %d", br.Size(), Size)
		}
		got, err := io.ReadAll(br)
		if err != nil || string(got) != want {
			t.Fatalf("reader %d read %d octets (%v), want %d", i, len(got), err, len(want))
		}
		Put(br)
	}
}
