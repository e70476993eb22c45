package message

import (
	"bytes"
	"io"
	"math/rand/v2"
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

// canonicalReference is the specification of Canonical, byte by byte.
func canonicalReference(in []byte) []byte {
	var out []byte
	for i := 0; i < len(in); i++ {
		switch b := in[i]; b {
		case '\r':
			out = append(out, '\r', '\n')
			if i+1 < len(in) && in[i+1] == '\n' {
				i++
			}
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, b)
		}
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}

// Random inputs rich in CR and LF, read through sources and reads of all
// sizes, give what the byte-wise specification gives.
func TestCanonicalRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab\r\n.\xff")
	for iter := range 2000 {
		in := make([]byte, r.IntN(200))
		for i := range in {
			in[i] = alphabet[r.IntN(len(alphabet))]
		}
		want := canonicalReference(in)
		var src io.Reader = bytes.NewReader(in)
		if iter%3 == 1 {
			src = iotest.OneByteReader(src)
		} else if iter%3 == 2 {
			src = iotest.HalfReader(src)
		}
		cr := Canonical(src)
		var got []byte
		buf := make([]byte, 1+r.IntN(40))
		for {
			n, err := cr.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Canonical(%q) = %q, want %q", in, got, want)
		}
	}
}

// An error after some data is returned after that data, once.
func TestCanonicalErrorAfterData(t *testing.T) {
	src := io.MultiReader(bytes.NewReader([]byte("abc\ndef")), iotest.ErrReader(io.ErrUnexpectedEOF))
	got, err := io.ReadAll(Canonical(src))
	if err != io.ErrUnexpectedEOF || string(got) != "abc\r\ndef" {
		t.Fatalf("got %q, %v", got, err)
	}
}
