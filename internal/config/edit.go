package config

import (
	"bytes"
	"slices"
	"strings"

	"github.com/pelletier/go-toml/v2/unstable"
)

// The overlay (DATA_DIR/settings.toml) is written by the program, but
// operators read it, comment it and delete lines from it to return to the
// file's values (README, "Settings changed at run time"). So a change
// edits it in place: setInTOML replaces one value, or adds one key, and
// keeps every other byte (comments, layout, order). go-toml's parser finds
// where each key and value is; only the new value is written.

// setInTOML sets key (dotted, "pop3.login_delay") to value (TOML text) in
// the document data, which must parse. An assignment of key is replaced
// wherever it is written: under its [table], as a dotted key, or in an
// inline table. A missing key is added after the last key of its table
// ([table], an inline table, or dotted keys that define it), or in a new
// [table] at the end.
func setInTOML(data []byte, key, value string) ([]byte, error) {
	want := strings.Split(key, ".")
	table, name := want[:len(want)-1], want[len(want)-1]

	var p unstable.Parser
	p.Reset(data)
	var current []string // the [table] the expressions belong to
	var (
		afterKey     = -1 // end of the last line assigning a key of the table
		afterHeader  = -1 // end of the table's [header] line
		firstHeader  = -1 // start of the document's first [header] line
		dotted       = -1 // end of the last line with a dotted key into the table
		dottedPrefix []string
		inline       = -1 // where to add to the table written inline
		inlineSep    string
	)
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			current = keyParts(e.Key())
			start, end := keyRange(e.Key())
			if firstHeader < 0 {
				firstHeader = lineStart(data, start)
			}
			if e.Kind == unstable.Table && slices.Equal(current, table) {
				afterHeader = lineEnd(data, end)
			}
		case unstable.KeyValue:
			full := append(slices.Clip(current), keyParts(e.Key())...)
			if r, ok := findValue(data, e, full, want); ok {
				return splice(data, r.start, r.end, value), nil
			}
			kvEnd := int(e.Raw.Offset + e.Raw.Length)
			switch {
			case slices.Equal(current, table):
				afterKey = lineEnd(data, kvEnd)
			case slices.Equal(full, table) && e.Value().Kind == unstable.InlineTable:
				inline, inlineSep = inlineEnd(e.Value())
			case len(full) > len(table) && slices.Equal(full[:len(table)], table) && len(current) < len(table):
				dotted, dottedPrefix = lineEnd(data, kvEnd), table[len(current):]
			}
		}
	}
	if err := p.Error(); err != nil {
		return nil, err
	}
	kv := name + " = " + value
	switch {
	case afterKey >= 0:
		return splice(data, afterKey, afterKey, kv+"\n"), nil
	case afterHeader >= 0:
		return splice(data, afterHeader, afterHeader, kv+"\n"), nil
	case inline >= 0:
		return splice(data, inline, inline, inlineSep+kv), nil
	case dotted >= 0:
		return splice(data, dotted, dotted, strings.Join(append(dottedPrefix, kv), ".")+"\n"), nil
	case len(table) == 0 && firstHeader >= 0:
		at := firstHeader
		for at >= 2 && data[at-1] == '\n' && data[at-2] == '\n' {
			at-- // above the blank lines before the first table
		}
		return splice(data, at, at, kv+"\n"), nil
	case len(table) == 0:
		return append(withNewline(data), kv+"\n"...), nil
	}
	out := withNewline(data)
	if len(out) > 0 {
		out = append(out, '\n')
	}
	return append(out, "["+strings.Join(quoteKeyParts(table), ".")+"]\n"+kv+"\n"...), nil
}

type span struct{ start, end int }

// findValue finds the value of want in the key-value e whose full key is
// full: e's own value, or one inside inline tables.
func findValue(data []byte, e *unstable.Node, full, want []string) (span, bool) {
	if slices.Equal(full, want) {
		_, i := keyRange(e.Key())
		end := int(e.Raw.Offset + e.Raw.Length)
		i += bytes.IndexByte(data[i:end], '=') + 1
		for i < end && (data[i] == ' ' || data[i] == '\t') {
			i++
		}
		return span{i, end}, true
	}
	val := e.Value()
	if val.Kind != unstable.InlineTable || len(full) >= len(want) || !slices.Equal(full, want[:len(full)]) {
		return span{}, false
	}
	for it := val.Children(); it.Next(); {
		c := it.Node()
		if c.Kind != unstable.KeyValue {
			continue
		}
		if r, ok := findValue(data, c, append(slices.Clip(full), keyParts(c.Key())...), want); ok {
			return r, true
		}
	}
	return span{}, false
}

// inlineEnd is where a key is added to the inline table v: after its last
// key-value, or inside "{}".
func inlineEnd(v *unstable.Node) (at int, sep string) {
	last := -1
	for it := v.Children(); it.Next(); {
		if c := it.Node(); c.Kind == unstable.KeyValue {
			last = int(c.Raw.Offset + c.Raw.Length)
		}
	}
	if last < 0 {
		return int(v.Raw.Offset) + 1, ""
	}
	return last, ", "
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

// keyRange is where a (possibly dotted) key is written.
func keyRange(it unstable.Iterator) (start, end int) {
	start = -1
	for it.Next() {
		r := it.Node().Raw
		if start < 0 {
			start = int(r.Offset)
		}
		end = int(r.Offset + r.Length)
	}
	return start, end
}

// quoteKeyParts quotes the parts of a key that are not bare keys.
func quoteKeyParts(parts []string) []string {
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = p
		if p == "" || strings.ContainsFunc(p, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
		}) {
			out[i] = quote(p)
		}
	}
	return out
}

func lineStart(data []byte, at int) int {
	return bytes.LastIndexByte(data[:at], '\n') + 1
}

// lineEnd is the offset after the end of the line at (its newline
// included).
func lineEnd(data []byte, at int) int {
	if i := bytes.IndexByte(data[at:], '\n'); i >= 0 {
		return at + i + 1
	}
	return len(data)
}

func splice(data []byte, start, end int, text string) []byte {
	out := make([]byte, 0, len(data)+len(text))
	out = append(out, data[:start]...)
	if start == len(data) && start > 0 && data[start-1] != '\n' && strings.HasSuffix(text, "\n") {
		out = append(out, '\n')
	}
	out = append(out, text...)
	return append(out, data[end:]...)
}

func withNewline(data []byte) []byte {
	out := slices.Clone(data)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return out
}
