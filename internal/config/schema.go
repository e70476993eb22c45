package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/milter"
)

// The schema is read from the struct tags of Config's fields, once: each
// field is one key and says everything about it (see the package doc).

// decl is one key, as its field declares it.
type decl struct {
	key    string // dotted: "pop3.listen"
	index  []int  // the field, from Config (reflect.Value.FieldByIndex)
	typ    reflect.Type
	kind   string // as in Setting.Kind
	def    string // the default as typed at config set; only when hasDef
	hasDef bool
	doc    string
	path   bool // a file or directory: relative, it is taken from the file's directory
	checks []check
	// elem is the schema of each table of an array of tables ([[milter]]):
	// its keys are named "milter.address", their index from the element.
	elem *schema
}

// check is one entry of a check tag: "positive", "oneof=text|json".
type check struct{ name, arg string }

// sectionChecker is a table (or an embedded struct) whose keys are checked
// together, after each key's own checks: "set both or neither". Its errors
// name the keys with k.
type sectionChecker interface {
	check(k keyNames) error
}

type schema struct {
	prefix   string // "" for Config, "milter." for the tables of [[milter]]
	keys     []decl
	sections [][]int // the tables that implement sectionChecker, from the root

	defaultsOnce sync.Once
	defaults     []byte
}

var (
	unmarshalerType = reflect.TypeFor[unstable.Unmarshaler]()
	checkerType     = reflect.TypeFor[sectionChecker]()
)

// schemaOf is Config's schema; a malformed tag panics (the package's tests
// build it).
var schemaOf = sync.OnceValue(func() *schema {
	s := &schema{}
	s.walk(reflect.TypeFor[Config](), "", nil, nil)
	return s
})

// isTable reports whether a field of type t is a table of keys rather than
// one key: a struct that does not read itself from TOML (Expire does).
func isTable(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && !reflect.PointerTo(t).Implements(unmarshalerType)
}

// walk adds the keys of struct type t: its plain keys first, then its
// tables, as TOML wants them written. An embedded struct's keys belong to
// the table that embeds it; overrides are the defaults that table gives
// them (the default tag on the embedding field: "max_sessions=1000;...").
func (s *schema) walk(t reflect.Type, prefix string, index []int, overrides map[string]string) {
	if reflect.PointerTo(t).Implements(checkerType) {
		s.sections = append(s.sections, index)
	}
	var tables []int
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		idx := append(slices.Clip(index), i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			s.walk(f.Type, prefix, idx, parseOverrides(f))
			continue
		}
		name := tomlName(f)
		if isTable(f.Type) {
			tables = append(tables, i)
			continue
		}
		d := decl{key: prefix + name, index: idx, typ: f.Type, doc: f.Tag.Get("doc")}
		if f.Type.Kind() == reflect.Slice && isTable(f.Type.Elem()) {
			d.kind = "table"
			d.elem = &schema{prefix: d.key + "."}
			d.elem.walk(f.Type.Elem(), d.elem.prefix, nil, nil)
		} else {
			d.kind = kindOf(f.Type)
		}
		d.def, d.hasDef = f.Tag.Lookup("default")
		if _, d.path = f.Tag.Lookup("path"); d.path && f.Type.Kind() != reflect.String {
			panic("config: key " + d.key + ": a path must be a string")
		}
		if v, ok := overrides[name]; ok {
			d.def, d.hasDef = v, true
		}
		if c := f.Tag.Get("check"); c != "" {
			for _, one := range strings.Split(c, ",") {
				name, arg, _ := strings.Cut(one, "=")
				if checks[name] == nil {
					panic(fmt.Sprintf("config: key %s: unknown check %q", d.key, name))
				}
				d.checks = append(d.checks, check{name, arg})
			}
		}
		s.keys = append(s.keys, d)
	}
	for _, i := range tables {
		f := t.Field(i)
		s.walk(f.Type, prefix+tomlName(f)+".", append(slices.Clip(index), i), nil)
	}
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "" {
		panic("config: field " + f.Name + " has no toml name")
	}
	return name
}

func parseOverrides(f reflect.StructField) map[string]string {
	tag, ok := f.Tag.Lookup("default")
	if !ok {
		return nil
	}
	m := map[string]string{}
	for _, kv := range strings.Split(tag, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			panic(fmt.Sprintf("config: embedded %s: default %q is not key=value", f.Name, kv))
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m
}

func (s *schema) lookup(key string) (decl, bool) {
	for _, d := range s.keys {
		if d.key == key {
			return d, true
		}
	}
	return decl{}, false
}

// defaultsTOML is the declared defaults as a TOML document (of one table,
// for the tables of an array).
func (s *schema) defaultsTOML() []byte {
	s.defaultsOnce.Do(func() {
		var b strings.Builder
		table := ""
		for _, d := range s.keys {
			if !d.hasDef {
				continue
			}
			t, name := splitKey(strings.TrimPrefix(d.key, s.prefix))
			if t != table {
				fmt.Fprintf(&b, "[%s]\n", t)
				table = t
			}
			text, err := valueText(d.kind, d.key, d.def)
			if err != nil {
				panic(fmt.Sprintf("config: default of %s: %v", d.key, err))
			}
			fmt.Fprintf(&b, "%s = %s\n", name, text)
		}
		s.defaults = []byte(b.String())
	})
	return s.defaults
}

// Validate checks what the TOML types cannot: each key's checks, then the
// tables' checks of keys together. The error names the key.
func (c Config) Validate() error {
	return schemaOf().validate(reflect.ValueOf(&c).Elem())
}

// validate checks v, the root of s: a Config, or one table of an array.
func (s *schema) validate(v reflect.Value) error {
	for _, d := range s.keys {
		fv := v.FieldByIndex(d.index)
		for _, ch := range d.checks {
			if err := checks[ch.name](fv, ch.arg); err != nil {
				var sub *subKeyError
				if errors.As(err, &sub) {
					return fmt.Errorf("key %q: %w", d.key+"."+sub.key, sub.err)
				}
				return fmt.Errorf("key %q: %w", d.key, err)
			}
		}
		if d.elem != nil {
			for i := range fv.Len() {
				if err := d.elem.validate(fv.Index(i)); err != nil {
					return fmt.Errorf("[[%s]] number %d: %w", d.key, i+1, err)
				}
			}
		}
	}
	k := keyNames{v, s}
	for _, idx := range s.sections {
		sv := v
		if len(idx) > 0 {
			sv = v.FieldByIndex(idx)
		}
		if err := sv.Addr().Interface().(sectionChecker).check(k); err != nil {
			return err
		}
	}
	return nil
}

// keyNames names the keys of one Config value (or of one table of an
// array) from pointers to its fields, so that an error about several keys
// spells none of them out.
type keyNames struct {
	root   reflect.Value
	schema *schema
}

func keyNamesOf(c *Config) keyNames { return keyNames{reflect.ValueOf(c).Elem(), schemaOf()} }

// keyOf is the key of the field of c that p points to.
func (c *Config) keyOf(p any) string { return keyNamesOf(c).of(p) }

// of is the key of the field p points to.
func (k keyNames) of(p any) string {
	pv := reflect.ValueOf(p)
	for _, d := range k.schema.keys {
		f := k.root.FieldByIndex(d.index)
		if f.Addr().Pointer() == pv.Pointer() && f.Type() == pv.Type().Elem() {
			return d.key
		}
	}
	panic(fmt.Sprintf("config: %T is no key of this configuration", p))
}

// errorf is an error about the key p points to.
func (k keyNames) errorf(p any, format string, a ...any) error {
	return fmt.Errorf("key %q: %s", k.of(p), fmt.Sprintf(format, a...))
}

// subKeyError is a check's error about one entry of a table-valued key
// (queue.routes."example.org").
type subKeyError struct {
	key string
	err error
}

func (e *subKeyError) Error() string { return e.key + ": " + e.err.Error() }

// checks are what a check tag may name. Each gets the field's value and
// the argument after "=", and says what is wrong in words that follow
// `key "...": `.
var checks = map[string]func(v reflect.Value, arg string) error{
	"positive": func(v reflect.Value, _ string) error {
		if v.Int() <= 0 {
			return fmt.Errorf("must be positive, got %v", v.Interface())
		}
		return nil
	},
	"nonneg": func(v reflect.Value, _ string) error {
		if v.Int() < 0 {
			return fmt.Errorf("must not be negative, got %v", v.Interface())
		}
		return nil
	},
	// min=3s, max=1h: bounds, in the key's own syntax.
	"min": func(v reflect.Value, arg string) error {
		if v.Int() < boundOf(v, arg) {
			return fmt.Errorf("must be at least %s, got %v", arg, v.Interface())
		}
		return nil
	},
	"max": func(v reflect.Value, arg string) error {
		if v.Int() > boundOf(v, arg) {
			return fmt.Errorf("must be at most %s, got %v", arg, v.Interface())
		}
		return nil
	},
	"notblank": func(v reflect.Value, _ string) error {
		if strings.TrimSpace(v.String()) == "" {
			return errors.New("must not be empty")
		}
		return nil
	},
	"oneline": func(v reflect.Value, _ string) error {
		if strings.ContainsAny(v.String(), "\r\n") {
			return errors.New("must be one line")
		}
		return nil
	},
	"oneof": func(v reflect.Value, arg string) error {
		if !slices.Contains(strings.Split(arg, "|"), v.String()) {
			return fmt.Errorf("%q is not one of %s", v.String(), strings.ReplaceAll(arg, "|", ", "))
		}
		return nil
	},
	// hostname: a name without spaces, not empty; name: the same or
	// empty.
	"hostname": func(v reflect.Value, _ string) error {
		if h := v.String(); strings.TrimSpace(h) == "" || strings.ContainsAny(h, " \t\r\n") {
			return fmt.Errorf("%q is not a host name", h)
		}
		return nil
	},
	"name": func(v reflect.Value, _ string) error {
		if h := v.String(); strings.ContainsAny(h, " \t\r\n") {
			return fmt.Errorf("%q is not a host name", h)
		}
		return nil
	},
	// milteraddr: a milter's address, tcp:host:port or unix:/path.
	"milteraddr": func(v reflect.Value, _ string) error {
		_, _, err := milter.ParseAddress(v.String())
		return err
	},
	// milterservices: the services a milter applies to.
	"milterservices": func(v reflect.Value, _ string) error {
		for _, s := range listOf(v) {
			if s != milter.ServiceSMTP && s != milter.ServiceSubmission {
				return fmt.Errorf("%q is not a service (%s or %s)", s, milter.ServiceSMTP, milter.ServiceSubmission)
			}
		}
		return nil
	},
	// listen: addresses to listen on, host:port (host may be empty);
	// a string may be empty (off).
	"listen": func(v reflect.Value, _ string) error {
		for _, a := range listOf(v) {
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				return fmt.Errorf("%q is not host:port (%v)", a, err)
			}
			if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
				return fmt.Errorf("%q has a bad host", a)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
				return fmt.Errorf("%q has a bad port", a)
			}
		}
		return nil
	},
	// hostport: a next hop, host:port with a port, or empty.
	"hostport": func(v reflect.Value, _ string) error {
		if v.String() == "" {
			return nil
		}
		return checkHostPort(v.String())
	},
	// ipport: a DNS server, ip:port, or empty.
	"ipport": func(v reflect.Value, _ string) error {
		if a := v.String(); a != "" {
			host, port, err := net.SplitHostPort(a)
			if err != nil || net.ParseIP(host) == nil || !validPort(port) {
				return fmt.Errorf("%q is not ip:port", a)
			}
		}
		return nil
	},
	"port": func(v reflect.Value, _ string) error {
		if n := v.Int(); n <= 0 || n > 65535 {
			return fmt.Errorf("%d is not a port", n)
		}
		return nil
	},
	// prefixes: addresses or prefixes (load balancers).
	"prefixes": func(v reflect.Value, _ string) error {
		for _, t := range listOf(v) {
			if _, err := netip.ParsePrefix(t); err == nil {
				continue
			}
			if _, err := netip.ParseAddr(t); err != nil {
				return fmt.Errorf("%q is neither an address nor a prefix like 10.0.0.0/8", t)
			}
		}
		return nil
	},
	// hosts: host names or addresses, without a port.
	"hosts": func(v reflect.Value, _ string) error {
		for _, h := range listOf(v) {
			if h == "" || strings.ContainsAny(h, " \t\r\n/@:") && net.ParseIP(strings.Trim(h, "[]")) == nil {
				return fmt.Errorf("%q is not a host name or an address (no port)", h)
			}
		}
		return nil
	},
	// token68: a bearer token (RFC 6750 section 2.1 b64token) of at
	// least 16 characters, or empty.
	"token68": func(v reflect.Value, _ string) error {
		if t := v.String(); t != "" && (len(t) < 16 || !isToken68(t)) {
			return errors.New("must be at least 16 characters of letters, digits and -._~+/ (RFC 6750 b64token)")
		}
		return nil
	},
	"nodename": func(v reflect.Value, _ string) error {
		if n := v.String(); n == "" || len(n) > 64 || strings.ContainsFunc(n, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return fmt.Errorf("%q must be 1 to 64 characters without spaces or control characters", n)
		}
		return nil
	},
	// nametemplates: per-domain name templates of [acme] names.
	"nametemplates": func(v reflect.Value, _ string) error {
		for _, t := range listOf(v) {
			if err := acmecert.CheckTemplate(t); err != nil {
				return err
			}
		}
		return nil
	},
	// email: an address (local@domain, no spaces or angle brackets), or
	// empty.
	"email": func(v reflect.Value, _ string) error {
		a := v.String()
		if a == "" {
			return nil
		}
		at := strings.LastIndexByte(a, '@')
		if at <= 0 || at == len(a)-1 || strings.ContainsFunc(a, func(r rune) bool { return r <= ' ' || r == 0x7f || strings.ContainsRune("<>,;\"()[]", r) }) {
			return fmt.Errorf("%q is not an address (local@domain)", a)
		}
		return nil
	},
	// https: an https:// URL with a host.
	"https": func(v reflect.Value, _ string) error {
		u, err := url.Parse(v.String())
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("%q is not an https:// URL", v.String())
		}
		return nil
	},
	// routes: domain = "host:port".
	"routes": func(v reflect.Value, _ string) error {
		keys := v.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			domain := k.String()
			if d := strings.TrimSuffix(domain, "."); d == "" || strings.ContainsAny(d, "@ \t/") {
				return &subKeyError{domain, fmt.Errorf("%q is not a domain", domain)}
			}
			if err := checkHostPort(v.MapIndex(k).String()); err != nil {
				return &subKeyError{domain, err}
			}
		}
		return nil
	},
}

// listOf is a string key's value as a list of one (none when empty), or a
// list key's.
func listOf(v reflect.Value) []string {
	if v.Kind() == reflect.String {
		if v.String() == "" {
			return nil
		}
		return []string{v.String()}
	}
	return v.Interface().([]string)
}

// boundOf reads a min or max argument in the syntax of v's type.
func boundOf(v reflect.Value, arg string) int64 {
	if v.Type() == durationType {
		d, err := ParseDuration(arg)
		if err != nil {
			panic("config: bad bound " + arg)
		}
		return int64(d)
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil {
		panic("config: bad bound " + arg)
	}
	return n
}

// checkHostPort checks a next hop: a host name or IP and a port.
func checkHostPort(hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("%q is not host:port (%v)", hp, err)
	}
	if host == "" || strings.ContainsAny(host, " /@") {
		return fmt.Errorf("%q has a bad host", hp)
	}
	if !validPort(port) {
		return fmt.Errorf("%q has a bad port", hp)
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}

// isToken68 reports whether s is a b64token of RFC 6750 section 2.1:
// letters, digits, "-._~+/", then optional "=" padding.
func isToken68(s string) bool {
	t := strings.TrimRight(s, "=")
	if t == "" {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~+/", c)) {
			return false
		}
	}
	return true
}
