package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"syscall"

	"github.com/pelletier/go-toml/v2"
	"github.com/postoffice-mail/postoffice/internal/atomicfile"
)

// The configuration comes in three layers, each over the one before:
//
//  1. the built-in defaults (Default);
//  2. the configuration file given with --config, which the operator (or
//     the package manager) owns and the service only reads: under systemd
//     it is read-only (ProtectSystem=strict) and root's;
//  3. the settings changed at run time (config set, the console's Server
//     attributes page), kept in OverlayName in the data directory, which
//     the service owns and may write.
//
// Relative paths in the file are taken from the file's directory, those in
// the overlay from the data directory, and without a file from the
// working directory.

// OverlayName is the file in the data directory that holds the settings
// changed at run time.
const OverlayName = "settings.toml"

// Sources of a setting, for config show and the console.
const (
	FromDefault = "default"
	FromFile    = "file"
	FromOverlay = "overlay"
)

// Layers is a loaded configuration and where each of its keys comes from.
type Layers struct {
	Config  Config
	File    string // absolute path of the configuration file; "" for none
	Overlay string // absolute path of the overlay (it may not exist)
	inFile  map[string]bool
	inOver  map[string]bool
}

// Source tells which layer key's value comes from: FromOverlay, FromFile or
// FromDefault.
func (l *Layers) Source(key string) string {
	switch {
	case l.inOver[key]:
		return FromOverlay
	case l.inFile[key]:
		return FromFile
	}
	return FromDefault
}

// SourcePath is the file key's value comes from, or "" for a default.
func (l *Layers) SourcePath(key string) string {
	switch l.Source(key) {
	case FromOverlay:
		return l.Overlay
	case FromFile:
		return l.File
	}
	return ""
}

// Load reads the configuration file at path (none when "") and the
// overlay in its data directory over the defaults. Errors name the file,
// the key and the problem in one line.
func Load(path string) (Config, error) {
	l, err := LoadLayers(path)
	if err != nil {
		return Config{}, err
	}
	return l.Config, nil
}

// LoadLayers is Load, telling where each key comes from.
func LoadLayers(path string) (*Layers, error) {
	return load(path, nil)
}

// load reads path and then the overlay: overlay, when not nil, stands for
// the overlay file's content.
func load(path string, overlay []byte) (*Layers, error) {
	cfg := Default()
	l := &Layers{inFile: map[string]bool{}, inOver: map[string]bool{}}
	base, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := decode(&cfg, data, path); err != nil {
			return nil, err
		}
		if l.File, err = filepath.Abs(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		base = filepath.Dir(l.File)
		l.inFile = keysOf(data)
	}
	resolvePaths(&cfg, base, nil)
	l.Overlay = filepath.Join(cfg.DataDir, OverlayName)
	if overlay == nil {
		data, err := os.ReadFile(l.Overlay)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("config: %w", err)
		default:
			overlay = data
		}
	}
	if len(overlay) > 0 {
		before := cfg
		if err := decode(&cfg, overlay, l.Overlay); err != nil {
			return nil, err
		}
		l.inOver = keysOf(overlay)
		if key := cfg.keyOf(&cfg.DataDir); l.inOver[key] {
			return nil, fmt.Errorf(`config %s: key %q: the overlay lives in the data directory, which only the configuration file can name`, l.Overlay, key)
		}
		resolvePaths(&cfg, cfg.DataDir, &before)
	}
	if err := cfg.Validate(); err != nil {
		name := path
		if name == "" {
			name = "(defaults)"
		}
		if len(l.inOver) > 0 {
			name += " + " + l.Overlay
		}
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	l.Config = cfg
	return l, nil
}

// resolvePaths makes c's relative paths (the keys declared with a path
// tag) absolute against dir; with unchanged given, only those that differ
// from it (those a layer set).
func resolvePaths(c *Config, dir string, unchanged *Config) {
	var old reflect.Value
	if unchanged != nil {
		old = reflect.ValueOf(unchanged).Elem()
	}
	schemaOf().resolvePaths(reflect.ValueOf(c).Elem(), old, dir)
}

// resolvePaths is resolvePaths for v, of s's root type; old, when valid,
// is what v was before a layer.
func (s *schema) resolvePaths(v, old reflect.Value, dir string) {
	for _, d := range s.keys {
		f := v.FieldByIndex(d.index)
		var was reflect.Value
		if old.IsValid() {
			was = old.FieldByIndex(d.index)
		}
		if d.elem != nil {
			for i := range f.Len() {
				var wasElem reflect.Value
				if was.IsValid() && i < was.Len() {
					wasElem = was.Index(i)
				}
				d.elem.resolvePaths(f.Index(i), wasElem, dir)
			}
		}
		if !d.path || f.String() == "" || filepath.IsAbs(f.String()) || (was.IsValid() && was.String() == f.String()) {
			continue
		}
		f.SetString(filepath.Join(dir, f.String()))
	}
}

// keysOf lists the keys a TOML document sets, dotted; a table-valued key
// (queue.routes) counts as one.
func keysOf(data []byte) map[string]bool {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		return nil
	}
	tables := map[string]bool{}
	for _, d := range schemaOf().keys {
		if d.kind == "table" {
			tables[d.key] = true
		}
	}
	out := map[string]bool{}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			full := prefix + k
			if sub, ok := v.(map[string]any); ok && !tables[full] {
				walk(full+".", sub)
				continue
			}
			out[full] = true
		}
	}
	walk("", doc)
	return out
}

// Change is one key to set at run time, with the value as typed.
type Change struct{ Key, Value string }

// Set changes one key at run time: it is written to the overlay in the
// data directory (created if absent, keeping its other lines), once the
// configuration with the change loads. The configuration file itself is
// never written: it belongs to the operator, or to the package manager.
// It returns the configuration before and after.
func Set(path, key, input string) (before, after *Layers, err error) {
	return SetMany(path, []Change{{key, input}})
}

// SetMany is Set for several keys at once, checked together (so that
// tls.cert_file and tls.key_file can change together): all are written, or
// none.
func SetMany(path string, changes []Change) (before, after *Layers, err error) {
	if before, err = LoadLayers(path); err != nil {
		return nil, nil, err
	}
	data, err := os.ReadFile(before.Overlay)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if len(data) == 0 {
		data = []byte("# Settings changed at run time (postoffice config set, the web console).\n" +
			"# They override the configuration file; 'postoffice config show' tells where each value comes from.\n")
	}
	wants := make([]Config, len(changes))
	for i, c := range changes {
		s, ok := Lookup(before.Config, c.Key)
		if !ok {
			return nil, nil, fmt.Errorf("unknown key %q (see: postoffice config show)", c.Key)
		}
		if c.Key == before.Config.keyOf(&before.Config.DataDir) {
			where := "the configuration file"
			if before.File != "" {
				where = before.File
			}
			return nil, nil, fmt.Errorf("%s holds the settings changed at run time, so only the configuration file sets it: edit %s (and restart serve)", c.Key, where)
		}
		text, err := ValueText(s, c.Value)
		if err != nil {
			return nil, nil, err
		}
		if data, err = setInTOML(data, c.Key, text); err != nil {
			return nil, nil, fmt.Errorf("config %s: %v", before.Overlay, describe(err))
		}
		table, name := splitKey(c.Key)
		wants[i] = Default()
		if err := decode(&wants[i], []byte(tableLine(table)+name+" = "+text+"\n"), before.Overlay); err != nil {
			return nil, nil, err
		}
		resolvePaths(&wants[i], filepath.Dir(before.Overlay), nil)
	}
	if after, err = load(path, data); err != nil {
		return nil, nil, err
	}
	for i, c := range changes {
		if got, _ := Lookup(after.Config, c.Key); got.Value != mustLookup(wants[i], c.Key).Value {
			return nil, nil, fmt.Errorf("could not change %q in %s automatically (is it written as a dotted key or an inline table?): edit the file", c.Key, before.Overlay)
		}
	}
	dir := filepath.Dir(before.Overlay)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	if err := writeOwned(before.Overlay, data, dir); err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	return before, after, nil
}

// writeOwned replaces path atomically with data, owner-only (it may hold a
// password). When root writes it (an operator's config set), the file goes
// to the owner of dir, the data directory, so that the service reads it.
func writeOwned(path string, data []byte, dir string) error {
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(dir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(st.Uid), int(st.Gid)
			}
		}
	}
	return atomicfile.WriteOwned(path, data, 0o600, uid, gid)
}

// OverlayKeys lists the keys the overlay sets, sorted.
func (l *Layers) OverlayKeys() []string {
	var ks []string
	for k := range l.inOver {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Describe is where a key's value comes from, for people: "default", or
// the file's path.
func (l *Layers) Describe(key string) string {
	if p := l.SourcePath(key); p != "" {
		return p
	}
	return FromDefault
}

// DescribeChange is the one line config set and the console print about
// a change: `pop3.login_delay: "0s" -> "5m" (written to /var/lib/postoffice/settings.toml)`.
func DescribeChange(before, after *Layers, key string) string {
	b, _ := Lookup(before.Config, key)
	a, _ := Lookup(after.Config, key)
	return fmt.Sprintf("%s: %s -> %s (written to %s)", key, b.Value, a.Value, after.Overlay)
}
