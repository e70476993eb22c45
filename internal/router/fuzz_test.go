package router

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// FuzzParseHeader: any input parses without panic, Raw is a prefix of the
// input, and a field is counted only if its name occurs in Raw.
func FuzzParseHeader(f *testing.F) {
	for _, s := range []string{
		"Subject: x\r\n\r\nbody",
		"Received: a\r\n\tb\r\nReceived: c\r\n\r\n",
		"no colon line\r\n\r\n",
		"\r\n\r\n",
		" leading continuation\r\nX: y\r\n",
		"A: b",
		"Delivered-To: <a@b>\r\nDelivered-To: c@d\n\nx",
		strings.Repeat("X: y\r\n", 1000),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeader(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("error on in-memory input: %v", err)
		}
		if !bytes.HasPrefix(data, h.Raw) {
			t.Fatalf("Raw %q is not a prefix of the input", h.Raw)
		}
		if n := h.Count("Received"); n > 0 && !bytes.Contains(bytes.ToLower(h.Raw), []byte("received")) {
			t.Fatalf("counted %d Received fields that are not there", n)
		}
		h.Get("Subject")
		h.Has("Delivered-To", "a@b")
	})
}

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
