package config

import (
	"reflect"
	"strings"
	"testing"
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
