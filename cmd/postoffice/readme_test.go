package main

import (
	"bytes"
	"os"
	"regexp"
	"strings"
	"testing"
)

// readmeBlock returns the first fenced block after the heading line.
func readmeBlock(t *testing.T, heading string) string {
	t.Helper()
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "\n"+heading+"\n")
	if i < 0 {
		t.Fatalf("README.md has no heading %q", heading)
	}
	text = text[i:]
	start := strings.Index(text, "\n```")
	if start < 0 {
		t.Fatalf("no code block after %q", heading)
	}
	text = text[start+4:]
	text = text[strings.IndexByte(text, '\n')+1:]
	end := strings.Index(text, "\n```")
	return text[:end+1]
}

// TestREADMECommands: README.md's list of commands is the command table's
// synopsis, line for line.
func TestREADMECommands(t *testing.T) {
	got := readmeBlock(t, "## Commands")
	if want := synopsis(); got != want {
		t.Errorf("README.md's command list differs from the commands; it should read:\n%s\nnot:\n%s", want, got)
	}
}

var flagLine = regexp.MustCompile(`(?m)^  -(\S+)`)

// TestUsageNamesEveryOption: each command's usage line (and so the
// README's list) names every option its --help lists, and --help works
// for every command, also as "help COMMAND --help".
func TestUsageNamesEveryOption(t *testing.T) {
	var walk func(path []string, cs []*command)
	walk = func(path []string, cs []*command) {
		for _, c := range cs {
			p := append(append([]string{}, path...), c.name)
			if len(c.sub) > 0 {
				walk(p, c.sub)
				continue
			}
			for _, args := range [][]string{append(append([]string{}, p...), "--help"), append([]string{"help"}, p...), append(append([]string{"help"}, p...), "--help")} {
				var out, errb bytes.Buffer
				code := run(&env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb}, args)
				if code != 0 || !strings.Contains(out.String(), "Usage: postoffice") {
					t.Errorf("%v: exit %d, %q %q", args, code, out.String(), errb.String())
					continue
				}
				if c.name == "help" {
					continue // its help is the overall usage
				}
				for _, m := range flagLine.FindAllStringSubmatch(out.String(), -1) {
					if !strings.Contains(c.usage, "--"+m[1]) {
						t.Errorf("%s: the usage %q does not name --%s", strings.Join(p, " "), c.usage, m[1])
					}
				}
			}
		}
	}
	walk(nil, commands)
}
