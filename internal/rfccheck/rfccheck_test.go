package rfccheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestFind(t *testing.T) {
	src := `package x

// Greets as RFC 5321 section 4.1.1.1 says, and (RFC 2449 sections 6.5
// and 6.7) announces; see section 3.3 of RFC 6531 and RFC 6376,
// section 3.6.2.2. RFC 3463 X.0.0 is a status, not a section.
var s = "RFC 5321 section 4.5.3.1.1: at most 64"

// RFC 1939
// section 7, over two lines; RFC 2046 sections 5.1, 5.1.1 or 5.2.1.
`
	var got []string
	for _, c := range Find(src) {
		got = append(got, c.RFC+" "+c.Section+" @"+strconv.Itoa(c.Line))
	}
	want := []string{
		"5321 4.1.1.1 @3", "2449 6.5 @3", "2449 6.7 @3", "6376 3.6.2.2 @4",
		"5321 4.5.3.1.1 @6", "1939 7 @8", "2046 5.1 @9", "2046 5.1.1 @9", "2046 5.2.1 @9",
		"6531 3.3 @4",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Find:\n got %q\nwant %q", got, want)
	}
}

func readList(t *testing.T) Sections {
	f, err := os.Open("testdata/sections.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := ReadSections(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCheck(t *testing.T) {
	s, err := ReadSections(strings.NewReader("# comment\n\n2449 6.8 UIDL capability\n2449 6.9 IMPLEMENTATION capability\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		c    Citation
		want bool
	}{
		{Citation{RFC: "2449", Section: "6.8"}, true},
		{Citation{RFC: "2449", Section: "6.10"}, false},
		{Citation{RFC: "1939", Section: "7"}, false},
	} {
		if ok := s.Check(tc.c) == ""; ok != tc.want {
			t.Errorf("Check(%+v) = %q", tc.c, s.Check(tc.c))
		}
	}
	if _, err := ReadSections(strings.NewReader("2449 6.8\n")); err == nil {
		t.Error("a line without a title was accepted")
	}
	if _, err := ReadSections(strings.NewReader("2449 6.8 a\n2449 6.8 b\n")); err == nil {
		t.Error("a section listed twice was accepted")
	}
}

// TestCitationsExist: every "RFC NNNN section X" in the module's Go files
// (tests and every package included) names a section that the RFC has.
func TestCitationsExist(t *testing.T) {
	list := readList(t)
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, c := range Find(string(src)) {
			n++
			if msg := list.Check(c); msg != "" {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d: %s", rel, c.Line, msg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 100 {
		t.Errorf("only %d citations found: the walk or the patterns are broken", n)
	}
}
