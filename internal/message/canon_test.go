package message

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func TestCanonical(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", ""},
		{"crlf kept", "a\r\nb\r\n", "a\r\nb\r\n"},
		{"bare lf", "a\nb\n", "a\r\nb\r\n"},
		{"bare cr", "a\rb\r", "a\r\nb\r\n"},
		{"mixed", "a\r\nb\nc\rd", "a\r\nb\r\nc\r\nd\r\n"},
		{"no final newline", "Subject: x\r\n\r\nbody", "Subject: x\r\n\r\nbody\r\n"},
		{"cr at end", "x\r", "x\r\n"},
		{"cr cr lf", "x\r\r\n", "x\r\n\r\n"},
		{"8bit passes", "caf\xc3\xa9 \xff\x00\n", "caf\xc3\xa9 \xff\x00\r\n"},
		{"lone newline", "\n", "\r\n"},
		{"dot line untouched", ".\n..\n", ".\r\n..\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := io.ReadAll(Canonical(bytes.NewReader([]byte(tc.in))))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("Canonical(%q) = %q, want %q", tc.in, got, tc.want)
			}
			// Same result when the source hands out one byte at a time and
			// the reader is drained in tiny reads.
			r := Canonical(iotest.OneByteReader(bytes.NewReader([]byte(tc.in))))
			var out []byte
			buf := make([]byte, 1)
			for {
				n, err := r.Read(buf)
				out = append(out, buf[:n]...)
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			if string(out) != tc.want {
				t.Fatalf("one-byte reads: got %q, want %q", out, tc.want)
			}
		})
	}
}

func TestCanonicalPropagatesErrors(t *testing.T) {
	r := Canonical(iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := io.ReadAll(r); err != io.ErrUnexpectedEOF {
		t.Fatalf("got %v, want ErrUnexpectedEOF", err)
	}
}

func BenchmarkCanonical(b *testing.B) {
	line := bytes.Repeat([]byte("x"), 76)
	var msg []byte
	for len(msg) < 20*1024 {
		msg = append(msg, line...)
		msg = append(msg, '\n')
	}
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		io.Copy(io.Discard, Canonical(bytes.NewReader(msg)))
	}
}
