package config

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Setting is one key of a configuration, with its value as TOML text.
type Setting struct {
	Key   string // dotted: "pop3.listen"
	Value string // TOML: ["127.0.0.1:110"], 600, "never", true
	Kind  string // "string", "list", "integer", "boolean", "expire" or "table"
	Doc   string // one line, "" when unknown
}

// docs describes the keys operators change most; the console shows them.
var docs = map[string]string{
	"data_dir":                        "directory of the database, message files and the control socket (restart serve to change)",
	"hostname":                        "name announced in greetings and trace fields",
	"min_free_space":                  "space that must stay free in data_dir's file system (a size: bytes, or K, M, G); below, deliveries are refused for now (452 4.3.1) so that users can still delete (0: no check)",
	"pop3.listen":                     "POP3 listeners, host:port (STLS offered)",
	"pop3.tls_listen":                 "POP3 over implicit TLS listeners (RFC 8314), host:port",
	"pop3.inactivity_timeout":         "seconds before an idle session is closed (RFC 1939: at least 600)",
	"pop3.allow_plaintext_auth":       "allow USER/PASS and AUTH without TLS off loopback",
	"pop3.login_delay":                "minimum seconds between two logins of one user (RFC 2449 LOGIN-DELAY)",
	"pop3.expire":                     "days a retrieved message is kept (RFC 2449 EXPIRE): a number, a duration or \"never\"",
	"pop3.autostart":                  "start the service with serve",
	"pop3.hostname":                   "name in the POP3 greeting (empty: the global hostname)",
	"pop3.max_sessions":               "most open sessions (0: no limit)",
	"pop3.max_sessions_per_ip":        "most open sessions from one client address (0: no limit)",
	"smtp.listen":                     "SMTP (MX) listeners, host:port",
	"smtp.max_message_size":           "largest message accepted, in octets (SIZE, RFC 1870)",
	"smtp.max_recipients":             "most recipients per message",
	"smtp.timeout":                    "seconds to wait for a command or a piece of data",
	"smtp.allow_auth":                 "offer AUTH on the MX listener too (users normally submit on [submission])",
	"smtp.allow_plaintext_auth":       "allow AUTH without TLS off loopback",
	"smtp.autostart":                  "start the service with serve",
	"smtp.hostname":                   "name in the SMTP greeting (empty: the global hostname)",
	"smtp.max_sessions":               "most open sessions (0: no limit)",
	"smtp.max_sessions_per_ip":        "most open sessions from one client address (0: no limit)",
	"submission.listen":               "submission listeners with STARTTLS (RFC 6409), host:port",
	"submission.tls_listen":           "submission over implicit TLS listeners (RFC 8314), host:port",
	"submission.require_sender_match": "the envelope sender of an authenticated session (submission, or smtp with allow_auth) must be one of the user's addresses",
	"submission.max_message_size":     "largest message accepted, in octets (0: that of [smtp])",
	"submission.timeout":              "seconds to wait for a command (0: that of [smtp])",
	"submission.autostart":            "start the service with serve",
	"submission.hostname":             "name in the greeting (empty: the global hostname)",
	"submission.max_sessions":         "most open sessions (0: no limit)",
	"submission.max_sessions_per_ip":  "most open sessions from one client address (0: no limit)",
	"tls.cert_file":                   "certificate chain, PEM (empty with key_file: self-signed in data_dir/tls)",
	"tls.key_file":                    "private key, PEM",
	"admin.listen":                    "web console and /metrics, host:port (empty: off)",
	"admin.tls":                       "serve the console over HTTPS with the server certificate",
	"admin.hosts":                     "further host names the console answers to (besides hostname, the listen host and, on loopback, localhost); others get 421",
	"admin.metrics_token":             "bearer token /metrics requires (Authorization: Bearer ...); empty: /metrics is open",
	"journal.retention_days":          "days mail journal entries are kept (0: forever)",
	"log.format":                      "log format: text or json (restart serve to change)",
	"log.level":                       "log level: debug, info, warn or error (restart serve to change)",
	"queue.autostart":                 "start delivering with serve",
	"auth.cache_ttl":                  "seconds a verified password is remembered, so polling clients skip the slow hash (0: off)",
	"auth.penalty":                    "slow down and then ban repeated failed logins (POP3 and SMTP AUTH)",
	"auth.ip_ban_after":               "failed logins from one address (IPv6: /64) before it is banned",
	"auth.name_ban_after":             "failed logins for one login name, from anywhere, before the name is banned",
	"auth.ban_time":                   "seconds a ban lasts",
	"store.backend":                   "sqlite (everything in data_dir) or postgres (shared by several nodes); restart serve to change",
	"store.postgres_dsn":              "PostgreSQL connection string (keep the password in postgres_password or ~/.pgpass)",
	"store.postgres_password":         "PostgreSQL password, added to postgres_dsn",
	"store.node_name":                 "this node's name in locks, queue claims, the journal and status; unique per node",
	"store.lease":                     "seconds a dead node keeps its mailbox locks and queue claims (postgres)",
	"pop3.proxy_protocol":             "connections start with a PROXY protocol header (v1 or v2) from a load balancer",
	"pop3.proxy_trusted":              "addresses or prefixes of the load balancers allowed to send PROXY headers",
	"smtp.proxy_protocol":             "connections start with a PROXY protocol header (v1 or v2) from a load balancer",
	"smtp.proxy_trusted":              "addresses or prefixes of the load balancers allowed to send PROXY headers",
	"submission.proxy_protocol":       "connections start with a PROXY protocol header (v1 or v2) from a load balancer",
	"submission.proxy_trusted":        "addresses or prefixes of the load balancers allowed to send PROXY headers",
}

var (
	expireType = reflect.TypeFor[Expire]()
	sizeType   = reflect.TypeFor[Size]()
)

// Settings lists every key of c in file order.
func Settings(c Config) []Setting {
	var out []Setting
	walk(reflect.ValueOf(c), "", func(key string, v reflect.Value) {
		out = append(out, Setting{Key: key, Value: redact(key, tomlValue(v)), Kind: kindOf(v.Type()), Doc: docs[key]})
	})
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
	for _, s := range Settings(c) {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
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

// walk calls f for every leaf of a config struct: embedded structs are
// flattened, nested structs become dotted tables, maps are leaves.
func walk(v reflect.Value, prefix string, f func(string, reflect.Value)) {
	t := v.Type()
	var nested []int
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		fv := v.Field(i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			walk(fv, prefix, f)
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		if sf.Type.Kind() == reflect.Struct && sf.Type != expireType {
			nested = append(nested, i)
			continue
		}
		f(prefix+name, fv)
	}
	// Tables after the plain keys, as TOML requires.
	for _, i := range nested {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
		if name == "" {
			name = sf.Name
		}
		walk(v.Field(i), prefix+name+".", f)
	}
}

func kindOf(t reflect.Type) string {
	switch {
	case t == expireType:
		return "expire"
	case t == sizeType:
		return "size"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Map:
		return "table"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "number"
	}
	return t.Kind().String()
}

// tomlValue formats a value as TOML text.
func tomlValue(v reflect.Value) string {
	if v.Type() == expireType {
		e := v.Interface().(Expire)
		if e.never || e.d%day != 0 {
			return quote(e.String())
		}
		return e.String()
	}
	if v.Type() == sizeType {
		s := v.Interface().(Size)
		if str := s.String(); str != strconv.FormatInt(int64(s), 10) {
			return quote(str)
		}
		return strconv.FormatInt(int64(s), 10)
	}
	switch v.Kind() {
	case reflect.String:
		return quote(v.String())
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, 64)
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = quote(fmt.Sprint(k.Interface())) + " = " + tomlValue(v.MapIndex(k))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return `""`
		}
		return tomlValue(v.Elem())
	case reflect.Struct:
		var parts []string
		walk(v, "", func(k string, fv reflect.Value) { parts = append(parts, k+" = "+tomlValue(fv)) })
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return quote(fmt.Sprint(v.Interface()))
}

// quote makes a TOML basic string.
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
// string needs no quotes, expire takes "never", days or a duration.
func ValueText(s Setting, input string) (string, error) {
	in := strings.TrimSpace(input)
	switch s.Kind {
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
			return "", fmt.Errorf("key %q: %q is not true or false", s.Key, input)
		}
		return strconv.FormatBool(b), nil
	case "integer":
		n, err := strconv.ParseInt(strings.ReplaceAll(in, "_", ""), 10, 64)
		if err != nil {
			return "", fmt.Errorf("key %q: %q is not a whole number", s.Key, input)
		}
		return strconv.FormatInt(n, 10), nil
	case "size":
		n, err := ParseSize(in)
		if err != nil {
			return "", fmt.Errorf("key %q: %v", s.Key, err)
		}
		return tomlValue(reflect.ValueOf(n)), nil
	case "expire":
		e, err := ParseExpire(in)
		if err != nil {
			return "", fmt.Errorf("key %q: %v", s.Key, err)
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
	return "", fmt.Errorf("key %q is a %s: edit the file to change it", s.Key, s.Kind)
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

// setInTOML replaces the value of name in table, or adds the key (and the
// table) when missing. It understands the usual layout: [table] headers,
// one "key = value" per line, values possibly spanning lines (arrays,
// multi-line strings) and comments after them.
func setInTOML(data []byte, table, name, value string) []byte {
	lines := splitLinesKeep(data)
	current := ""
	tableSeen := table == ""
	insertAt := -1 // after the last key line of the table
	firstHeader := -1
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if h, ok := header(line); ok {
			if firstHeader < 0 {
				firstHeader = i
			}
			current = h
			if h == table {
				tableSeen = true
				insertAt = i + 1
			}
			continue
		}
		if current != table || line == "" || line[0] == '#' {
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		// The value runs over this line and maybe the next ones.
		start := offset(lines, i) + strings.Index(lines[i], "=") + 1
		end := valueEnd(data, start)
		next := lineAfter(lines, end)
		if k == name {
			out := append([]byte{}, data[:start]...)
			out = append(out, ' ')
			out = append(out, value...)
			return append(out, data[end:]...)
		}
		insertAt = next
		i = next - 1
	}
	kv := name + " = " + value + "\n"
	switch {
	case tableSeen && table == "":
		at := len(lines)
		if firstHeader >= 0 {
			at = firstHeader
		}
		return insertLine(lines, at, kv)
	case tableSeen:
		return insertLine(lines, insertAt, kv)
	}
	out := append([]byte{}, data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	if len(out) > 0 {
		out = append(out, '\n')
	}
	return append(out, "["+table+"]\n"+kv...)
}

func header(line string) (string, bool) {
	if !strings.HasPrefix(line, "[") || strings.HasPrefix(line, "[[") {
		return "", false
	}
	end := strings.IndexByte(line, ']')
	if end < 0 {
		return "", false
	}
	if rest := strings.TrimSpace(line[end+1:]); rest != "" && rest[0] != '#' {
		return "", false
	}
	parts := strings.Split(line[1:end], ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, "."), true
}

func splitLinesKeep(data []byte) []string {
	var lines []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			lines = append(lines, string(data))
			break
		}
		lines = append(lines, string(data[:i+1]))
		data = data[i+1:]
	}
	return lines
}

func offset(lines []string, i int) int {
	n := 0
	for _, l := range lines[:i] {
		n += len(l)
	}
	return n
}

// lineAfter returns the index of the line that starts at or after byte
// offset off.
func lineAfter(lines []string, off int) int {
	n := 0
	for i, l := range lines {
		if n >= off {
			return i
		}
		n += len(l)
	}
	return len(lines)
}

// valueEnd returns the offset just past a TOML value starting at start
// (leading spaces allowed), before any comment or line end.
func valueEnd(data []byte, start int) int {
	depth := 0
	last := start
	for i := start; i < len(data); i++ {
		c := data[i]
		switch {
		case c == '#':
			for i < len(data) && data[i] != '\n' {
				i++
			}
			if depth == 0 {
				return last
			}
		case c == '\n':
			if depth == 0 {
				return last
			}
		case c == '[' || c == '{':
			depth++
			last = i + 1
		case c == ']' || c == '}':
			depth--
			last = i + 1
		case c == '"' || c == '\'':
			i = stringEnd(data, i)
			last = i + 1
		case c != ' ' && c != '\t' && c != '\r':
			last = i + 1
		}
	}
	return last
}

// stringEnd returns the offset of the closing quote of the string
// starting at i (basic, literal, or multi-line).
func stringEnd(data []byte, i int) int {
	q := data[i]
	if bytes.HasPrefix(data[i:], []byte{q, q, q}) {
		closing := []byte{q, q, q}
		j := i + 3
		for j < len(data) {
			if q == '"' && data[j] == '\\' {
				j += 2
				continue
			}
			if bytes.HasPrefix(data[j:], closing) {
				for j+3 < len(data) && data[j+3] == q { // up to two quotes before the closing ones
					j++
				}
				return j + 2
			}
			j++
		}
		return len(data) - 1
	}
	for j := i + 1; j < len(data); j++ {
		switch {
		case q == '"' && data[j] == '\\':
			j++
		case data[j] == q, data[j] == '\n':
			return j
		}
	}
	return len(data) - 1
}

func insertLine(lines []string, at int, line string) []byte {
	// Keep blank lines that end a table after the new key.
	for at > 0 && at <= len(lines) && strings.TrimSpace(lines[at-1]) == "" {
		at--
	}
	var b bytes.Buffer
	for i, l := range lines {
		if i == at {
			b.WriteString(line)
		}
		b.WriteString(l)
		if i == len(lines)-1 && !strings.HasSuffix(l, "\n") && at > i {
			b.WriteByte('\n')
		}
	}
	if at >= len(lines) {
		b.WriteString(line)
	}
	return b.Bytes()
}

// writeAtomic replaces path with data: temporary file, fsync, rename.
// uid and gid, when not -1, become the file's owner.
func writeAtomic(path string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if uid != -1 || gid != -1 {
		if err := tmp.Chown(uid, gid); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Keys lists every key name, for completion and help.
func Keys() []string {
	var ks []string
	for _, s := range Settings(Default()) {
		ks = append(ks, s.Key)
	}
	return slices.Clip(ks)
}
