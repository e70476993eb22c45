package message

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzReadHeader: any input parses without panic, Raw is a prefix of the
// input, and a field is counted only if its name occurs in Raw.
func FuzzReadHeader(f *testing.F) {
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
		h, err := ReadHeader(bytes.NewReader(data))
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
