package main

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// skipMulti counts what reading line by line (multi with a callback)
// counts, and stops right after the terminating line, whatever the
// content and however it arrives in the buffer.
func TestSkipMulti(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []byte("..\r\nab")
	for range 3000 {
		content := make([]byte, rng.IntN(200))
		for i := range content {
			content[i] = alphabet[rng.IntN(len(alphabet))]
		}
		// Canonical lines, dot-stuffed as a server sends them.
		lines := strings.SplitAfter(strings.ReplaceAll(string(content), "\r", ""), "\n")
		var wire bytes.Buffer
		want := int64(0)
		for _, l := range lines {
			if l == "" {
				continue
			}
			l = strings.TrimSuffix(l, "\n") + "\r\n"
			want += int64(len(l))
			if l[0] == '.' {
				wire.WriteByte('.')
			}
			wire.WriteString(l)
		}
		wire.WriteString(".\r\n+OK next\r\n")
		for _, skip := range []bool{true, false} {
			// A tiny buffer for skipMulti, to cut the wire everywhere;
			// readContent keeps only the start of a line longer than its
			// buffer.
			size := 16
			if !skip {
				size = 4096
			}
			p := &pop3Client{r: bufio.NewReaderSize(fiveAtATime(wire.Bytes()), size)}
			var n int64
			var err error
			if skip {
				n, err = p.skipMulti()
			} else {
				n, err = p.readContent(func([]byte) {})
			}
			if err != nil || n != want {
				t.Fatalf("skip %v: %q: %d octets, %v; want %d", skip, wire.Bytes(), n, err, want)
			}
			if next, err := p.readLine(); err != nil || string(next) != "+OK next" {
				t.Fatalf("skip %v: %q: then %q, %v", skip, wire.Bytes(), next, err)
			}
		}
	}
}

// fiveAtATime returns a reader of b that gives at most 5 octets a read.
func fiveAtATime(b []byte) *smallReader { return &smallReader{b: b} }

type smallReader struct{ b []byte }

func (r *smallReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 5)], r.b)
	r.b = r.b[n:]
	return n, nil
}

// BenchmarkSkipMulti: a 45 KiB message of 78-octet lines, some stuffed.
func BenchmarkSkipMulti(b *testing.B) {
	var wire bytes.Buffer
	for i := 0; wire.Len() < 45<<10; i++ {
		if i%50 == 0 {
			wire.WriteString("..a stuffed line\r\n")
		}
		wire.WriteString("some text to fill the line up to seventy-eight characters or so, and more\r\n")
	}
	wire.WriteString(".\r\n")
	b.SetBytes(int64(wire.Len()))
	r := bytes.NewReader(wire.Bytes())
	p := &pop3Client{r: bufio.NewReaderSize(r, 256<<10)}
	for b.Loop() {
		r.Reset(wire.Bytes())
		p.r.Reset(r)
		if _, err := p.skipMulti(); err != nil {
			b.Fatal(err)
		}
	}
}
