// Package postfix reads a Postfix configuration, main.cf and the lookup
// tables it names, and turns its virtual mailbox domains, mailboxes and
// aliases into postoffice's domains, users and aliases (postoffice import
// postfix). What postoffice cannot express is reported, never dropped in
// silence. The source is only read.
package postfix

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// MainCF is a parsed main.cf.
type MainCF struct {
	Path   string
	params map[string]string
	// Unknown lists the parameters that expansions referred to without
	// a value in the file or a default here (they expand to nothing, as
	// postconf -x does).
	Unknown map[string]bool
}

// defaults are Postfix's defaults (postconf -d) for the parameters that
// the virtual tables' parameters refer to; others expand to nothing.
var defaults = map[string]string{
	"virtual_mailbox_domains": "$virtual_mailbox_maps",
	"virtual_mailbox_maps":    "",
	"virtual_alias_domains":   "$virtual_alias_maps",
	"virtual_alias_maps":      "$virtual_maps",
	"virtual_maps":            "",
	"virtual_mailbox_base":    "",
	"mydestination":           "$myhostname, localhost.$mydomain, localhost",
	"myorigin":                "$myhostname",
	"inet_interfaces":         "all",
	"proxy_interfaces":        "",
}

// ReadMainCF parses a main.cf file as postconf(5) describes it: a logical
// line starts with a non-whitespace character and continues on the lines
// that start with whitespace; empty lines, whitespace-only lines and lines
// whose first non-whitespace character is '#' are ignored; each logical
// line is "name = value", whitespace around the '=' and at the end of the
// value ignored. A later line for a name replaces an earlier one.
// config_directory defaults to the file's directory.
func ReadMainCF(path string) (*MainCF, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m := &MainCF{Path: path, params: map[string]string{}, Unknown: map[string]bool{}}
	if abs, err := filepath.Abs(filepath.Dir(path)); err == nil {
		m.params["config_directory"] = abs
	}
	var logical string
	var start, n int
	flush := func() error {
		if logical == "" {
			return nil
		}
		name, value, ok := strings.Cut(logical, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return fmt.Errorf("%s line %d: not \"name = value\": %q", path, start, logical)
		}
		m.params[name] = strings.TrimSpace(value)
		logical = ""
		return nil
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
		if trimmed != line { // continues the logical line
			if logical == "" {
				return nil, fmt.Errorf("%s line %d: a continuation line without a line to continue", path, n)
			}
			logical += " " + trimmed
			continue
		}
		if err := flush(); err != nil {
			return nil, err
		}
		logical, start = line, n
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return m, flush()
}

// Raw returns a parameter's value as written (or its default), and
// whether it has one.
func (m *MainCF) Raw(name string) (string, bool) {
	if v, ok := m.params[name]; ok {
		return v, true
	}
	v, ok := defaults[name]
	return v, ok
}

// Expand returns a parameter's value with every $name, ${name} and $(name)
// replaced by that parameter's expanded value, and the conditional forms
// ${name?value} (value if name is not empty) and ${name:value} (value if
// it is), as postconf(5) describes them and postconf -x shows them.
func (m *MainCF) Expand(name string) string {
	v, _ := m.Raw(name)
	return m.expand(v, map[string]bool{name: true})
}

func (m *MainCF) expand(s string, active map[string]bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		var name, op, arg string
		switch s[i] {
		case '{', '(':
			closer := byte('}')
			if s[i] == '(' {
				closer = ')'
			}
			end := matching(s, i, s[i], closer)
			if end < 0 {
				b.WriteString(s[i-1:])
				return b.String()
			}
			inner := s[i+1 : end]
			i = end
			j := 0
			for j < len(inner) && isNameChar(inner[j]) {
				j++
			}
			name = inner[:j]
			if j < len(inner) && (inner[j] == '?' || inner[j] == ':') {
				op, arg = inner[j:j+1], inner[j+1:]
				if len(arg) >= 2 && arg[0] == '{' && arg[len(arg)-1] == '}' {
					arg = arg[1 : len(arg)-1]
				}
			}
		default:
			j := i
			for j < len(s) && isNameChar(s[j]) {
				j++
			}
			if j == i {
				b.WriteByte('$')
				i--
				continue
			}
			name = s[i:j]
			i = j - 1
		}
		value := m.lookup(name, active)
		switch op {
		case "?":
			if value != "" {
				b.WriteString(m.expand(arg, active))
			}
		case ":":
			if value == "" {
				b.WriteString(m.expand(arg, active))
			}
		default:
			b.WriteString(value)
		}
	}
	return b.String()
}

// lookup expands one parameter, refusing a loop (it expands to nothing).
func (m *MainCF) lookup(name string, active map[string]bool) string {
	if active[name] {
		return ""
	}
	raw, ok := m.Raw(name)
	if !ok {
		m.Unknown[name] = true
		return ""
	}
	active[name] = true
	defer delete(active, name)
	return m.expand(raw, active)
}

func isNameChar(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// matching returns the index of the closer matching s[open], counting
// nested pairs, or -1.
func matching(s string, open int, o, c byte) int {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case o:
			depth++
		case c:
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// List splits an expanded list parameter as Postfix does: on commas and
// whitespace.
func List(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\r' || r == '\n' })
}
