package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEConfiguration: the README's block of every key with its
// default (the one after "<!-- config defaults") names every key once and
// gives its real default, except values marked "e.g.", which are examples
// for keys whose default depends on the machine.
func TestREADMEConfiguration(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	i := strings.Index(text, "<!-- config defaults")
	if i < 0 {
		t.Fatal("README.md has no <!-- config defaults --> block")
	}
	text = text[i:]
	text = text[strings.Index(text, "```toml\n")+len("```toml\n"):]
	block := text[:strings.Index(text, "```")]

	def := Default()
	seen := map[string]bool{}
	table := ""
	for n, line := range strings.Split(block, "\n") {
		code, comment, _ := strings.Cut(line, "#")
		code = strings.TrimSpace(code)
		if code == "" {
			continue
		}
		if strings.HasPrefix(code, "[") {
			table = strings.Trim(code, "[]")
			if _, ok := Lookup(def, table); ok {
				seen[table] = true // a table-valued key: [queue.routes]
			}
			continue
		}
		name, value, ok := strings.Cut(code, "=")
		if !ok {
			t.Errorf("README line %d: %q is not key = value", n+1, line)
			continue
		}
		key := strings.TrimSpace(name)
		if table != "" {
			key = table + "." + key
		}
		want, ok := Lookup(def, key)
		if !ok {
			t.Errorf("README names the unknown key %s", key)
			continue
		}
		if seen[key] {
			t.Errorf("README names %s twice", key)
		}
		seen[key] = true
		cfg := Default()
		if err := decode(&cfg, []byte(tableLine(table)+strings.TrimSpace(name)+" = "+strings.TrimSpace(value)+"\n"), "README"); err != nil {
			t.Errorf("README: %v", err)
			continue
		}
		got, _ := Lookup(cfg, key)
		if got.Value != want.Value && !strings.Contains(comment, "e.g.") {
			t.Errorf("README gives %s = %s, but its default is %s", key, got.Value, want.Value)
		}
	}
	for _, key := range Keys() {
		if !seen[key] {
			t.Errorf("README's configuration block lacks %s (default %s)", key, mustLookup(def, key).Value)
		}
	}
}
