package router

import (
	"bytes"
	"io"
	"testing"
)

// FuzzSpool: spooling gives the canonical form of the input, whatever it is.
func FuzzSpool(f *testing.F) {
	f.Add([]byte("a\nb\r\nc\rd"))
	f.Add([]byte(""))
	f.Add([]byte("\r\r\n\n."))
	dir := f.TempDir() // one for all inputs: a directory per input is slow
	f.Fuzz(func(t *testing.T, data []byte) {
		sp, err := spool(bytes.NewReader(data), dir)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		got, _ := io.ReadAll(sp.Open())
		if int64(len(got)) != sp.Size() {
			t.Fatalf("size %d, read %d", sp.Size(), len(got))
		}
		// Canonical: every CR is followed by LF and every LF preceded by CR.
		for i, c := range got {
			if c == '\r' && (i+1 >= len(got) || got[i+1] != '\n') {
				t.Fatalf("bare CR at %d in %q", i, got)
			}
			if c == '\n' && (i == 0 || got[i-1] != '\r') {
				t.Fatalf("bare LF at %d in %q", i, got)
			}
		}
		if len(data) > 0 && !bytes.HasSuffix(got, []byte("\r\n")) {
			t.Fatalf("no final CRLF: %q", got)
		}
	})
}
