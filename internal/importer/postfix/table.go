package postfix

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// indexed are the table types that postmap builds from a text source
// file, which keeps its name less the suffix of the indexed file
// (postmap(1)); texthash reads the text file itself (Postfix 2.8+).
var indexed = map[string]string{
	"hash": ".db", "btree": ".db", "dbm": ".dir", "sdbm": ".dir", "lmdb": ".lmdb", "cdb": ".cdb", "texthash": "",
}

// Entry is one key of a table.
type Entry struct {
	Key   string
	Value string
	Line  int
}

// Table is a lookup table read from its text source.
type Table struct {
	Ref     string // as main.cf names it, "hash:/etc/postfix/virtual"
	Source  string // the text file read
	Entries []Entry
	byKey   map[string]int
	// Notes are what reading it found worth saying: duplicate keys (the
	// first one counts, as in postmap), lines without a value, a source
	// newer than the indexed file Postfix uses.
	Notes []string
}

// Lookup returns the value of key (matched without regard to case, as
// postmap's default is), and whether there is one.
func (t *Table) Lookup(key string) (string, bool) {
	i, ok := t.byKey[strings.ToLower(key)]
	if !ok {
		return "", false
	}
	return t.Entries[i].Value, true
}

// ErrUnsupported: a table type whose content is not in a text file.
type ErrUnsupported struct{ Ref string }

func (e ErrUnsupported) Error() string {
	return fmt.Sprintf("%s: only tables with a text source (hash:, btree:, texthash:, lmdb:, cdb:, dbm:, sdbm:) can be imported; convert it to one, or add what it holds by hand", e.Ref)
}

// ReadTable reads the table ref ("type:name") from its text source, in
// the format postmap(1) reads ("INPUT FILE FORMAT"): "key whitespace
// value"; empty lines, whitespace-only lines and lines whose first
// non-whitespace character is '#' are ignored; a line that starts with
// whitespace continues the logical line before it (joined with its
// whitespace, without the newline). Keys are folded to
// lower case, as postmap does without -f; of duplicate keys the first
// counts, as postmap keeps it.
func ReadTable(ref string) (*Table, error) {
	typ, name, ok := strings.Cut(ref, ":")
	suffix, known := indexed[typ]
	if !ok || !known || name == "" || !strings.HasPrefix(name, "/") && typ != "texthash" || strings.ContainsAny(name, "{}") {
		return nil, ErrUnsupported{ref}
	}
	t := &Table{Ref: ref, Source: name, byKey: map[string]int{}}
	src, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("%s: the text source: %w", ref, err)
	}
	if suffix != "" {
		if db, err := os.Stat(name + suffix); err != nil {
			t.Notes = append(t.Notes, fmt.Sprintf("%s: no %s%s: Postfix does not use this table as it is; imported from its source", ref, name, suffix))
		} else if src.ModTime().After(db.ModTime()) {
			t.Notes = append(t.Notes, fmt.Sprintf("%s: %s is newer than %s%s (postmap was not run since it changed): imported from the source, which may not be what Postfix uses", ref, name, name, suffix))
		}
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var logical string
	var start, n int
	add := func() {
		if logical == "" {
			return
		}
		key, value := logical, ""
		if i := strings.IndexAny(logical, " \t"); i >= 0 {
			key, value = logical[:i], strings.Trim(logical[i:], " \t")
		}
		key = strings.ToLower(key)
		switch {
		case value == "":
			t.Notes = append(t.Notes, fmt.Sprintf("%s line %d: %q has no value (postmap ignores it)", name, start, key))
		default:
			if i, dup := t.byKey[key]; dup {
				t.Notes = append(t.Notes, fmt.Sprintf("%s line %d: duplicate key %q: the one of line %d counts", name, start, key, t.Entries[i].Line))
			} else {
				t.byKey[key] = len(t.Entries)
				t.Entries = append(t.Entries, Entry{Key: key, Value: value, Line: start})
			}
		}
		logical = ""
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			continue
		}
		if trimmed != line && logical != "" {
			// Joined as postmap joins it: without the newline, the
			// leading whitespace kept.
			logical += line
			continue
		}
		add()
		logical, start = trimmed, n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	add()
	return t, nil
}
