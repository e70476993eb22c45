package config

import (
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Setting is one key of a configuration, with its value as TOML text.
type Setting struct {
	Key   string // dotted: "pop3.listen"
	Value string // TOML: ["127.0.0.1:110"], 600, "10m", "never", true
	// Kind is "string", "list", "integer", "boolean", "duration", "size",
	// "expire" or "table".
	Kind string
	Doc  string // one line, from the key's declaration
}

var (
	expireType   = reflect.TypeFor[Expire]()
	sizeType     = reflect.TypeFor[Size]()
	durationType = reflect.TypeFor[Duration]()
)

// Settings lists every key of c in file order.
func Settings(c Config) []Setting {
	v := reflect.ValueOf(c)
	keys := schemaOf().keys
	out := make([]Setting, len(keys))
	for i, d := range keys {
		out[i] = Setting{Key: d.key, Value: valueOf(d, v.FieldByIndex(d.index)), Kind: d.kind, Doc: d.doc}
	}
	return out
}

// Keys lists every key name, for completion and help.
func Keys() []string {
	keys := schemaOf().keys
	out := make([]string, len(keys))
	for i, d := range keys {
		out[i] = d.key
	}
	return out
}

// redacted stands for a secret in everything that shows settings (config
// show, the console, the change report of config set).
const redacted = `"********"`

var dsnPassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)

// redact hides secrets: keys named *password and *_token, and the
// password inside a connection string (URL user info or a password=
// field).
func redact(key, value string) string {
	if value == `""` {
		return value
	}
	if strings.HasSuffix(key, "password") || strings.HasSuffix(key, "_token") {
		return redacted
	}
	if strings.HasSuffix(key, "_dsn") {
		raw, err := strconv.Unquote(value)
		if err != nil {
			return redacted
		}
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "********")
				raw = u.String()
			}
		}
		return strconv.Quote(dsnPassword.ReplaceAllString(raw, "${1}********"))
	}
	return value
}

// Lookup returns the setting key of c.
func Lookup(c Config, key string) (Setting, bool) {
	d, ok := schemaOf().lookup(key)
	if !ok {
		return Setting{}, false
	}
	return Setting{Key: key, Value: valueOf(d, reflect.ValueOf(c).FieldByIndex(d.index)), Kind: d.kind, Doc: d.doc}, true
}

// valueOf is the value v of key d as TOML text, secrets hidden; an array
// of tables is written as an array of inline tables.
func valueOf(d decl, v reflect.Value) string {
	if d.elem == nil {
		return redact(d.key, tomlValue(v))
	}
	parts := make([]string, v.Len())
	for i := range parts {
		kv := make([]string, len(d.elem.keys))
		for j, e := range d.elem.keys {
			kv[j] = strings.TrimPrefix(e.key, d.elem.prefix) + " = " + valueOf(e, v.Index(i).FieldByIndex(e.index))
		}
		parts[i] = "{" + strings.Join(kv, ", ") + "}"
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Show formats c as a TOML document: top-level keys, then one table per
// section.
func Show(c Config) string {
	var b strings.Builder
	section := ""
	for _, s := range Settings(c) {
		table, key := splitKey(s.Key)
		if table != section {
			fmt.Fprintf(&b, "\n[%s]\n", table)
			section = table
		}
		fmt.Fprintf(&b, "%s = %s\n", key, s.Value)
	}
	return strings.TrimPrefix(b.String(), "\n")
}

func splitKey(key string) (table, name string) {
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i], key[i+1:]
	}
	return "", key
}

func kindOf(t reflect.Type) string {
	switch {
	case t == expireType:
		return "expire"
	case t == sizeType:
		return "size"
	case t == durationType:
		return "duration"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Map:
		return "table"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "integer"
	}
	panic("config: no kind of key has the type " + t.String())
}

// tomlValue formats a key's value as TOML text, in the forms config set
// reads back: basic strings (as in the README and most files), sizes and
// durations with their units.
func tomlValue(v reflect.Value) string {
	switch v.Type() {
	case expireType:
		e := v.Interface().(Expire)
		if e.never || e.d%day != 0 {
			return quote(e.String())
		}
		return e.String()
	case sizeType:
		s := v.Interface().(Size)
		if str := s.String(); str != strconv.FormatInt(int64(s), 10) {
			return quote(str)
		}
		return strconv.FormatInt(int64(s), 10)
	case durationType:
		return quote(v.Interface().(Duration).String())
	}
	switch v.Kind() {
	case reflect.String:
		return quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keys[i].String() < keys[j].String() })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = quote(k.String()) + " = " + tomlValue(v.MapIndex(k))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	panic("config: cannot write a " + v.Type().String())
}

// quote makes a TOML basic string (TOML 1.0 section "String": the escapes
// \" \\ \n \t and \uXXXX for other control characters).
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ValueText turns what an operator typed for key into TOML text: a list
// may be a TOML array or comma-separated items ("" is the empty list), a
// string needs no quotes, a duration takes seconds or a unit (10m), a size
// bytes or a unit (50M), expire "never", days or a duration.
func ValueText(s Setting, input string) (string, error) {
	return valueText(s.Kind, s.Key, input)
}

func valueText(kind, key, input string) (string, error) {
	in := strings.TrimSpace(input)
	switch kind {
	case "string":
		if len(in) >= 2 && in[0] == '"' && in[len(in)-1] == '"' {
			if u, err := strconv.Unquote(in); err == nil {
				in = u
			}
		}
		return quote(in), nil
	case "boolean":
		b, err := strconv.ParseBool(in)
		if err != nil {
			return "", fmt.Errorf("key %q: %q is not true or false", key, input)
		}
		return strconv.FormatBool(b), nil
	case "integer":
		n, err := strconv.ParseInt(strings.ReplaceAll(in, "_", ""), 10, 64)
		if err != nil {
			return "", fmt.Errorf("key %q: %q is not a whole number", key, input)
		}
		return strconv.FormatInt(n, 10), nil
	case "duration":
		d, err := ParseDuration(in)
		if err != nil {
			return "", fmt.Errorf("key %q: %v", key, err)
		}
		return tomlValue(reflect.ValueOf(d)), nil
	case "size":
		n, err := ParseSize(in)
		if err != nil {
			return "", fmt.Errorf("key %q: %v", key, err)
		}
		return tomlValue(reflect.ValueOf(n)), nil
	case "expire":
		e, err := ParseExpire(in)
		if err != nil {
			return "", fmt.Errorf("key %q: %v", key, err)
		}
		return tomlValue(reflect.ValueOf(e)), nil
	case "list":
		if strings.HasPrefix(in, "[") {
			return in, nil // checked by parsing the result
		}
		var items []string
		for _, it := range strings.Split(in, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, quote(strings.Trim(it, `"`)))
			}
		}
		return "[" + strings.Join(items, ", ") + "]", nil
	}
	return "", fmt.Errorf("key %q is a %s: edit the file to change it", key, kind)
}

func mustLookup(c Config, key string) Setting {
	s, _ := Lookup(c, key)
	return s
}

func tableLine(table string) string {
	if table == "" {
		return ""
	}
	return "[" + table + "]\n"
}
