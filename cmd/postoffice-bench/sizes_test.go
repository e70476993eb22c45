package main

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"2048": 2048, "20k": 20 * 1024, "1M": 1 << 20, " 4K ": 4096, "1.5k": 1536, "1g": 1 << 30} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "k", "-1", "0", "2x", "4T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}

func TestParseSizeDist(t *testing.T) {
	d, err := parseSizeDist("mix")
	if err != nil {
		t.Fatal(err)
	}
	if d.min != 2048 || d.max != 1<<20 || d.median != 20480 || d.sigma <= 0 {
		t.Errorf("mix = %+v", d)
	}
	if d.String() != "2048-1048576/20480" {
		t.Errorf("String() = %q", d.String())
	}
	f, err := parseSizeDist("20k")
	if err != nil || f.sigma != 0 || f.draw(rand.New(rand.NewPCG(1, 1))) != 20480 {
		t.Errorf("fixed: %+v %v", f, err)
	}
	for _, bad := range []string{"100", "2k-1m", "20k-1m/2k", "2k-1k/1k", "x-1m/20k", "2k-1m/x"} {
		if _, err := parseSizeDist(bad); err == nil {
			t.Errorf("parseSizeDist(%q): no error", bad)
		}
	}
}

func TestDrawMix(t *testing.T) {
	d, _ := parseSizeDist("mix")
	r := rand.New(rand.NewPCG(7, 7))
	sizes := make([]int, 20000)
	for i := range sizes {
		sizes[i] = d.draw(r)
		if sizes[i] < d.min || sizes[i] > d.max {
			t.Fatalf("size %d outside %v", sizes[i], d)
		}
	}
	slices.Sort(sizes)
	if med := sizes[len(sizes)/2]; med < 18000 || med > 23000 {
		t.Errorf("median of the mix = %d, want about 20480", med)
	}
}

func TestGenerateMessage(t *testing.T) {
	for _, size := range []int{minMessageSize, 600, 1000, 4096, 20480, 75, 100001} {
		m := generateMessage("user1@bench.test", 3, size)
		want := max(size, minMessageSize)
		if len(m) != want {
			t.Errorf("size %d: got %d octets", size, len(m))
		}
		if !bytes.HasSuffix(m, []byte("\r\n")) {
			t.Errorf("size %d: no final CRLF", size)
		}
		if bytes.Count(m, []byte("\n")) != bytes.Count(m, []byte("\r\n")) || bytes.Count(m, []byte("\r")) != bytes.Count(m, []byte("\r\n")) {
			t.Errorf("size %d: bare CR or LF", size)
		}
		if !bytes.Contains(m, []byte("\r\n\r\n")) || !strings.HasPrefix(string(m), "From: ") {
			t.Errorf("size %d: not a header and a body", size)
		}
		if size >= 4096 && !bytes.Contains(m, []byte("\r\n.")) {
			t.Errorf("size %d: no line starting with a dot", size)
		}
		if !bytes.Equal(m, generateMessage("user1@bench.test", 3, size)) {
			t.Errorf("size %d: not deterministic", size)
		}
		lf := toLF(m)
		if len(lf) != len(m)-bytes.Count(m, []byte("\r\n")) || bytes.Contains(lf, []byte("\r")) {
			t.Errorf("size %d: toLF", size)
		}
	}
	if bytes.Equal(generateMessage("a@b", 1, 4096), generateMessage("a@b", 2, 4096)) {
		t.Error("different sequence numbers give the same message")
	}
}

func TestWriteDotStuffed(t *testing.T) {
	var b bytes.Buffer
	w := bufioWriter(&b)
	writeDotStuffed(w, []byte(".a\r\nb\r\n..c\r\n.\r\n"))
	w.Flush()
	if got, want := b.String(), "..a\r\nb\r\n...c\r\n..\r\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
