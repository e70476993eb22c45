// Package rfccheck finds the RFC section citations in postoffice's source
// ("RFC 5321 section 4.1.2", "RFC 2449 sections 6.5 and 6.7", "section 3.3
// of RFC 6531") so that a test can hold each against the list of the
// RFCs' sections checked in beside it (testdata/sections.txt). The project
// cites the RFC section it implements in every comment that follows one;
// a citation of a section that does not exist is a comment that drifted.
package rfccheck

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Citation is one section named in the source.
type Citation struct {
	RFC     string // "5321"
	Section string // "4.1.2"
	Line    int    // where the citation begins, 1-based
}

// A section number: a top-level number below 100 and its subsections.
// Appendices ("A.1") are not taken: in this code a letter and dots is an
// enhanced status code ("X.3.1", RFC 3463), and a three-digit number
// after a citation is a reply code ("section 4.1.2, 501").
const section = `[1-9]\d?(?:\.\d+)*`

var (
	// "RFC 5321 section 4.1.2", "RFC 5321, section 4.1.2",
	// "RFC 5321 sections 4.1.1 and 4.1.4", "RFC 6376 sections 3.4.2, 3.4.4".
	rfcThenSection = regexp.MustCompile(`\bRFC[ -]?(\d{3,5}),?\s+(?:[Ss]ections?|§§?)\s*(` + section + `(?:(?:\s*,\s*|,?\s+and\s+|,?\s+or\s+)` + section + `\b)*)`)
	// "section 3.3 of RFC 6531", "sections 3.2 and 3.5 of RFC 6531".
	sectionThenRFC = regexp.MustCompile(`\b[Ss]ections?\s+(` + section + `(?:(?:\s*,\s*|,?\s+and\s+|,?\s+or\s+)` + section + `)*)\s+of\s+RFC[ -]?(\d{3,5})\b`)
	sectionNumber  = regexp.MustCompile(section)
	// A comment's continuation: the end of a line and the "//" that
	// carries the sentence on.
	continuation = regexp.MustCompile(`\n[ \t]*//[ \t]?`)
)

// Find returns the citations in Go source text: in comments (a sentence
// may run over several "//" lines) and in string literals alike.
func Find(src string) []Citation {
	joined := continuation.ReplaceAllString(src, " ")
	toSrc := offsetMap(src)
	lineOf := func(off int) int { return strings.Count(src[:toSrc(off)], "\n") + 1 }

	var out []Citation
	for _, m := range rfcThenSection.FindAllStringSubmatchIndex(joined, -1) {
		rfc := joined[m[2]:m[3]]
		for _, s := range sectionNumber.FindAllString(joined[m[4]:m[5]], -1) {
			out = append(out, Citation{RFC: rfc, Section: s, Line: lineOf(m[0])})
		}
	}
	for _, m := range sectionThenRFC.FindAllStringSubmatchIndex(joined, -1) {
		rfc := joined[m[4]:m[5]]
		for _, s := range sectionNumber.FindAllString(joined[m[2]:m[3]], -1) {
			out = append(out, Citation{RFC: rfc, Section: s, Line: lineOf(m[0])})
		}
	}
	return out
}

// offsetMap returns a function from an offset in src with its comment
// continuations joined (as Find joins them) to the offset in src.
func offsetMap(src string) func(int) int {
	type span struct{ joined, src int }
	var spans []span // where each run of unchanged text begins
	spans = append(spans, span{0, 0})
	j := 0
	last := 0
	for _, m := range continuation.FindAllStringIndex(src, -1) {
		j += m[0] - last
		j++ // the space
		spans = append(spans, span{j, m[1]})
		last = m[1]
	}
	return func(off int) int {
		k := 0
		for i, s := range spans {
			if s.joined <= off {
				k = i
			}
		}
		return spans[k].src + off - spans[k].joined
	}
}

// Sections is the list of the sections each RFC has, read by ReadSections.
type Sections map[string]map[string]string // RFC -> section -> title

// ReadSections reads lines of "RFC SECTION TITLE" (fields separated by
// white space; the title is the rest of the line); empty lines and lines
// starting with "#" are skipped.
func ReadSections(r io.Reader) (Sections, error) {
	out := Sections{}
	sc := bufio.NewScanner(r)
	n := 0
	for sc.Scan() {
		n++
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 3 {
			return nil, fmt.Errorf("line %d: want RFC, section and title: %q", n, l)
		}
		if out[f[0]] == nil {
			out[f[0]] = map[string]string{}
		}
		if _, dup := out[f[0]][f[1]]; dup {
			return nil, fmt.Errorf("line %d: RFC %s section %s listed twice", n, f[0], f[1])
		}
		out[f[0]][f[1]] = strings.Join(f[2:], " ")
	}
	return out, sc.Err()
}

// Check returns what is wrong with a citation: "" when the RFC is listed
// and has the section.
func (s Sections) Check(c Citation) string {
	secs, ok := s[c.RFC]
	if !ok {
		return fmt.Sprintf("RFC %s is not in the list of sections", c.RFC)
	}
	if _, ok := secs[c.Section]; !ok {
		return fmt.Sprintf("RFC %s has no section %s", c.RFC, c.Section)
	}
	return ""
}
