package config

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestDeclarations: every key is declared whole: a doc, a kind, and a
// default that reads back as the value Default gives it; the defaults
// load without a warning.
func TestDeclarations(t *testing.T) {
	def := Default()
	if err := def.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if w := def.Warnings(); len(w) > 0 {
		t.Errorf("the defaults warn: %v", w)
	}
	seen := map[string]bool{}
	for _, d := range schemaOf().keys {
		if seen[d.key] {
			t.Errorf("%s declared twice", d.key)
		}
		seen[d.key] = true
		if d.doc == "" || strings.Contains(d.doc, "\n") {
			t.Errorf("%s: doc %q is not one line", d.key, d.doc)
		}
		if !d.hasDef {
			continue
		}
		text, err := valueText(d.kind, d.key, d.def)
		if err != nil {
			t.Errorf("%s: default %q: %v", d.key, d.def, err)
			continue
		}
		if got := mustLookup(def, d.key).Value; got != redact(d.key, text) {
			t.Errorf("%s: declared default %s, Default gives %s", d.key, text, got)
		}
	}
	if len(seen) != len(Settings(def)) || len(Keys()) != len(seen) {
		t.Errorf("%d keys declared, %d settings, %d names", len(seen), len(Settings(def)), len(Keys()))
	}
	// A table's own defaults for the keys it embeds.
	if def.POP3.MaxSessions != 20000 || def.SMTP.MaxSessions != 1000 || def.Submission.MaxSessionsPerIP != 50 || !def.SMTP.Autostart {
		t.Errorf("embedded defaults: pop3 %+v smtp %+v submission %+v", def.POP3.Service, def.SMTP.Service, def.Submission.Service)
	}
}

// TestKeyNames: checks of several keys name them from the fields, also
// for a struct embedded in several tables and for a table's first field
// (which shares its address).
func TestKeyNames(t *testing.T) {
	c := Default()
	k := keyNamesOf(&c)
	for want, p := range map[string]any{
		"data_dir":                 &c.DataDir,
		"pop3.listen":              &c.POP3.Listen,
		"pop3.max_sessions":        &c.POP3.MaxSessions,
		"smtp.proxy_trusted":       &c.SMTP.ProxyTrusted,
		"submission.autostart":     &c.Submission.Service.Autostart,
		"queue.routes":             &c.Queue.Routes,
		"store.lease":              &c.Store.Lease,
		"auth.cache_ttl":           &c.Auth.CacheTTL,
		"submission.proxy_trusted": &c.Submission.ProxyTrusted,
	} {
		if got := k.of(p); got != want {
			t.Errorf("%T: %s, want %s", p, got, want)
		}
	}
	c.SMTP.ProxyProtocol = true
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), `key "smtp.proxy_trusted": must list the load balancers' addresses when smtp.proxy_protocol is true`) {
		t.Errorf("proxy check: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("a pointer to no key has a name")
		}
	}()
	k.of(&c.POP3)
}

// TestUnknownCheckPanics: a check tag naming no check is a programming
// error caught when the schema is built.
func TestUnknownCheckPanics(t *testing.T) {
	type bad struct {
		X int `toml:"x" check:"positiv"`
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `unknown check "positiv"`) {
			t.Errorf("recovered %v", r)
		}
	}()
	(&schema{}).walk(reflect.TypeFor[bad](), "", nil, nil)
}

// An array of tables as the coming [[milter]] will be declared.
type testMilter struct {
	Address  string   `toml:"address" check:"hostport" doc:"the milter, host:port"`
	Timeout  Duration `toml:"timeout" default:"30s" check:"positive" doc:"how long to wait for it"`
	KeyFile  string   `toml:"key_file" path:"" doc:"a file"`
	Password string   `toml:"password" doc:"a secret"`
}

func (m *testMilter) check(k keyNames) error {
	if m.Address == "" {
		return k.errorf(&m.Address, "must be set")
	}
	return nil
}

type testRoot struct {
	Name   string       `toml:"name" default:"x" doc:"a name"`
	Milter []testMilter `toml:"milter" doc:"the milters, in order"`
}

// TestArrayOfTables: each table of [[milter]] gets its keys' defaults,
// checks (the errors naming the key and the table's number), paths and
// secrets hidden, as the keys of a table do.
func TestArrayOfTables(t *testing.T) {
	s := &schema{}
	s.walk(reflect.TypeFor[testRoot](), "", nil, nil)
	load := func(text string) (testRoot, error) {
		var r testRoot
		ptr := reflect.ValueOf(&r)
		if err := s.decode(ptr, s.defaultsTOML()); err != nil {
			t.Fatal(err)
		}
		if err := s.decode(ptr, []byte(text)); err != nil {
			return r, err
		}
		s.resolvePaths(ptr.Elem(), reflect.Value{}, "/etc")
		return r, s.validate(ptr.Elem())
	}
	r, err := load("[[milter]]\naddress = \"127.0.0.1:11332\"\nkey_file = \"k.pem\"\npassword = \"hunter2\"\n[[milter]]\naddress = \"127.0.0.1:8891\"\ntimeout = \"5s\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "x" || len(r.Milter) != 2 || r.Milter[0].Timeout != Duration(30*time.Second) || r.Milter[1].Timeout != Duration(5*time.Second) ||
		r.Milter[0].KeyFile != "/etc/k.pem" || r.Milter[1].Address != "127.0.0.1:8891" {
		t.Errorf("decoded %+v", r)
	}
	d, _ := s.lookup("milter")
	if d.kind != "table" {
		t.Errorf("kind %q", d.kind)
	}
	if got, want := valueOf(d, reflect.ValueOf(r).FieldByIndex(d.index)),
		`[{address = "127.0.0.1:11332", timeout = "30s", key_file = "/etc/k.pem", password = "********"}, `+
			`{address = "127.0.0.1:8891", timeout = "5s", key_file = "", password = ""}]`; got != want {
		t.Errorf("value\n%s, want\n%s", got, want)
	}
	for _, tc := range []struct{ text, want string }{
		{"[[milter]]\naddress = \"h:1\"\n[[milter]]\naddress = \"nope\"\n", `[[milter]] number 2: key "milter.address": "nope" is not host:port`},
		{"[[milter]]\ntimeout = \"5s\"\n", `[[milter]] number 1: key "milter.address": must be set`},
		{"[[milter]]\naddress = \"h:1\"\ntimeout = \"soon\"\n", `key "milter.timeout": "soon" is not a duration`},
		{"[[milter]]\naddress = \"h:1\"\ntimeout = 0\n", `key "milter.timeout": must be positive`},
		{"[[milter]]\nadress = \"h:1\"\n", `unknown key "milter.adress"`},
	} {
		if _, err := load(tc.text); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.text, err, tc.want)
		}
	}
}
