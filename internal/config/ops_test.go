package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExpire(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration // -1: never
		str  string
	}{
		{"never", -1, "never"},
		{"NEVER", -1, "never"},
		{"30", 30 * day, "30"},
		{"0", 0, "0"},
		{"0.5", 12 * time.Hour, "12h0m0s"},
		{"7d", 7 * day, "7"},
		{"36h", 36 * time.Hour, "36h0m0s"},
		{"2s", 2 * time.Second, "2s"},
	} {
		e, err := ParseExpire(tc.in)
		if err != nil {
			t.Errorf("ParseExpire(%q): %v", tc.in, err)
			continue
		}
		if e.Duration() != tc.want || e.String() != tc.str {
			t.Errorf("ParseExpire(%q) = %v (%s), want %v (%s)", tc.in, e.Duration(), e, tc.want, tc.str)
		}
	}
	for _, bad := range []string{"", "-1", "soon", "-5h", "1e9"} {
		if _, err := ParseExpire(bad); err == nil {
			t.Errorf("ParseExpire(%q) accepted", bad)
		}
	}
	if d := ExpireAfter(47 * time.Hour).Days(); d != 1 {
		t.Errorf("Days of 47h = %d, want 1 (truncated, as CAPA EXPIRE)", d)
	}
}

func TestParseOps(t *testing.T) {
	cfg, err := Parse([]byte(`
[pop3]
expire = 30
login_delay = 60
autostart = false
max_sessions = 10
max_sessions_per_ip = 2
hostname = "pop.example.com"
[smtp]
max_sessions = 5
[submission]
expire_is_not_here = 1
`), "test")
	if err == nil || !strings.Contains(err.Error(), `unknown key "submission.expire_is_not_here"`) {
		t.Fatalf("unknown key: %v", err)
	}
	cfg, err = Parse([]byte(`
[pop3]
expire = 30
login_delay = 60
autostart = false
max_sessions = 10
max_sessions_per_ip = 2
hostname = "pop.example.com"
[smtp]
max_sessions = 5
[admin]
listen = "127.0.0.1:8080"
`), "test")
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.POP3
	if p.Expire.Duration() != 30*day || p.LoginDelay != Duration(time.Minute) || p.Autostart || p.MaxSessions != 10 || p.MaxSessionsPerIP != 2 || cfg.ServiceHostname(p.Service) != "pop.example.com" {
		t.Errorf("pop3 = %+v", p)
	}
	if !cfg.SMTP.Autostart || cfg.SMTP.MaxSessions != 5 || cfg.ServiceHostname(cfg.SMTP.Service) != cfg.Hostname {
		t.Errorf("smtp = %+v: autostart must default to true", cfg.SMTP)
	}
	if cfg.Admin.Listen != "127.0.0.1:8080" {
		t.Errorf("admin = %+v", cfg.Admin)
	}
	if !Default().POP3.Expire.IsNever() {
		t.Errorf("default expire is not never")
	}
	if cfg, err := Parse([]byte("[pop3]\nexpire = \"never\"\n"), "t"); err != nil || !cfg.POP3.Expire.IsNever() {
		t.Errorf("expire = \"never\": %v %v", cfg.POP3.Expire, err)
	}

	for _, tc := range []struct{ in, key string }{
		{"[pop3]\nlogin_delay = -1\n", "pop3.login_delay"},
		{"[pop3]\nexpire = -3\n", "pop3.expire"},
		{"[smtp]\nmax_sessions = -1\n", "smtp.max_sessions"},
		{"[submission]\nmax_sessions_per_ip = -2\n", "submission.max_sessions_per_ip"},
		{"[admin]\nlisten = \"nope\"\n", "admin.listen"},
		{"[admin]\nhosts = [\"mail.example.org:8080\"]\n", "admin.hosts"},
		{"[admin]\nhosts = [\"\"]\n", "admin.hosts"},
		{"[admin]\nmetrics_token = \"short\"\n", "admin.metrics_token"},
		{"[admin]\nmetrics_token = \"has a space in it, long enough\"\n", "admin.metrics_token"},
		{"min_free_space = -1\n", "min_free_space"},
		{"[log]\nformat = \"xml\"\n", "log.format"},
		{"[journal]\nretention_days = -1\n", "journal.retention_days"},
	} {
		_, err := Parse([]byte(tc.in), "t")
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("%q: error %v, want one naming %s", tc.in, err, tc.key)
		}
	}
}

func TestShowRoundTrip(t *testing.T) {
	cfg := Default()
	cfg.POP3.Expire = ExpireAfter(36 * time.Hour)
	cfg.Hostname = `odd"name\x`
	out := Show(cfg)
	back, err := Parse([]byte(out), "show")
	if err != nil {
		t.Fatalf("Show output does not parse: %v\n%s", err, out)
	}
	if Show(back) != out {
		t.Errorf("Show is not stable:\n%s\n---\n%s", out, Show(back))
	}
	for _, want := range []string{"[pop3]\n", `expire = "36h0m0s"`, "autostart = true", "[admin]\n", `listen = ""`} {
		if !strings.Contains(out, want) {
			t.Errorf("Show lacks %q:\n%s", want, out)
		}
	}
}

// TestSet: a change at run time goes to the overlay in the data directory
// (kept owner-only, keeping its other lines); the configuration file is
// never written; every value says where it comes from.
func TestSet(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "postoffice.toml")
	orig := `# my mail server
data_dir = "data" # where it all goes
[pop3]
# the listeners
listen = [
  "127.0.0.1:1110", # first
  "127.0.0.1:1111",
]
inactivity_timeout = 600

[smtp]
listen = ["127.0.0.1:25"]
`
	if err := os.WriteFile(path, []byte(orig), 0o440); err != nil {
		t.Fatal(err)
	}
	overlay := filepath.Join(dir, "data", OverlayName)
	set := func(key, value string) Config {
		t.Helper()
		before, after, err := Set(path, key, value)
		if err != nil {
			t.Fatalf("Set(%s, %s): %v", key, value, err)
		}
		if before.Overlay != overlay || after.Source(key) != FromOverlay || after.SourcePath(key) != overlay {
			t.Fatalf("Set(%s): overlay %s, source %s %s", key, before.Overlay, after.Source(key), after.SourcePath(key))
		}
		again, err := Load(path)
		if err != nil {
			t.Fatalf("Load after Set(%s): %v", key, err)
		}
		if Show(again) != Show(after.Config) {
			t.Fatalf("Set returned a config other than the files'")
		}
		return again
	}
	cfg := set("pop3.listen", "127.0.0.1:2110, 127.0.0.1:2111")
	if strings.Join(cfg.POP3.Listen, " ") != "127.0.0.1:2110 127.0.0.1:2111" {
		t.Errorf("pop3.listen = %v", cfg.POP3.Listen)
	}
	// An operator's comment in the overlay survives later changes.
	data, _ := os.ReadFile(overlay)
	os.WriteFile(overlay, append(data, []byte("# moved for the load balancer\n")...), 0o600)
	cfg = set("pop3.expire", "never")
	cfg = set("pop3.expire", "14")
	if cfg.POP3.Expire.Duration() != 14*day {
		t.Errorf("pop3.expire = %v", cfg.POP3.Expire)
	}
	cfg = set("pop3.login_delay", "300")
	cfg = set("hostname", "mx.example.com")
	cfg = set("admin.listen", "127.0.0.1:8080")
	cfg = set("smtp.autostart", "false")
	cfg = set("smtp.listen", `["127.0.0.1:2525"]`)
	cfg = set("submission.listen", "")
	// One certificate key alone does not load; both at once do.
	if _, _, err := Set(path, "tls.cert_file", "tls/real.pem"); err == nil || !strings.Contains(err.Error(), "set both or neither") {
		t.Errorf("cert_file alone: %v", err)
	}
	if _, _, err := SetMany(path, []Change{{"tls.cert_file", "tls/real.pem"}, {"tls.key_file", "/etc/ssl/real.key"}}); err != nil {
		t.Fatalf("SetMany of both certificate keys: %v", err)
	}
	cfg, _ = Load(path)
	if cfg.POP3.LoginDelay != Duration(300*time.Second) || cfg.DataDir != filepath.Join(dir, "data") || cfg.Hostname != "mx.example.com" ||
		cfg.Admin.Listen != "127.0.0.1:8080" || cfg.SMTP.Autostart || cfg.SMTP.Listen[0] != "127.0.0.1:2525" || len(cfg.Submission.Listen) != 0 {
		t.Errorf("after sets: %s", Show(cfg))
	}
	// A relative path in the overlay is taken from the data directory.
	if cfg.TLS.CertFile != filepath.Join(dir, "data", "tls", "real.pem") || cfg.TLS.KeyFile != "/etc/ssl/real.key" {
		t.Errorf("tls files %q %q", cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	if now, _ := os.ReadFile(path); string(now) != orig {
		t.Errorf("the configuration file was written:\n%s", now)
	}
	data, _ = os.ReadFile(overlay)
	text := string(data)
	for _, keep := range []string{"# moved for the load balancer", `login_delay = "5m"`, "[smtp]"} {
		if !strings.Contains(text, keep) {
			t.Errorf("the overlay lacks %q:\n%s", keep, text)
		}
	}
	if strings.Count(text, "[pop3]") != 1 || strings.Count(text, "listen =") != 4 {
		t.Errorf("keys or tables duplicated:\n%s", text)
	}
	if fi, _ := os.Stat(overlay); fi.Mode().Perm() != 0o600 {
		t.Errorf("overlay mode %v, want 0600", fi.Mode().Perm())
	}
	l, err := LoadLayers(path)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{"pop3.login_delay": FromOverlay, "pop3.inactivity_timeout": FromFile, "data_dir": FromFile, "smtp.timeout": FromDefault} {
		if got := l.Source(key); got != want {
			t.Errorf("source of %s: %s, want %s", key, got, want)
		}
	}

	for _, tc := range []struct{ key, value, want string }{
		{"pop3.nope", "1", "unknown key"},
		{"pop3.login_delay", "soon", "not a duration"},
		{"pop3.login_delay", "-4", "pop3.login_delay"},
		{"smtp.autostart", "maybe", "true or false"},
		{"pop3.listen", "nohostport", "pop3.listen"},
		{"data_dir", "/var/lib/elsewhere", "edit " + path},
	} {
		if _, _, err := Set(path, tc.key, tc.value); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Set(%s, %s): %v, want an error with %q", tc.key, tc.value, err, tc.want)
		}
	}
	if after, _ := os.ReadFile(overlay); string(after) != text {
		t.Errorf("a refused Set changed the overlay")
	}
	// The overlay cannot move the data directory it lives in.
	os.WriteFile(overlay, []byte("data_dir = \"/elsewhere\"\n"), 0o600)
	if _, err := Load(path); err == nil || !strings.Contains(err.Error(), "data_dir") {
		t.Errorf("data_dir in the overlay: %v", err)
	}
}

// TestRelativePaths: relative paths in the file are taken from the file's
// directory, whatever the working directory.
func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "etc", "postoffice.toml")
	os.MkdirAll(filepath.Dir(path), 0o755)
	os.WriteFile(path, []byte("data_dir = \"../var\"\n[tls]\ncert_file = \"c.pem\"\nkey_file = \"/abs/k.pem\"\n"), 0o600)
	t.Chdir(t.TempDir())
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != filepath.Join(dir, "var") || cfg.TLS.CertFile != filepath.Join(dir, "etc", "c.pem") || cfg.TLS.KeyFile != "/abs/k.pem" {
		t.Errorf("paths %q %q %q", cfg.DataDir, cfg.TLS.CertFile, cfg.TLS.KeyFile)
	}
	// Relative to the file also when --config itself is relative.
	t.Chdir(dir)
	if cfg, err := Load("etc/postoffice.toml"); err != nil || cfg.DataDir != filepath.Join(dir, "var") {
		t.Errorf("relative --config: %q %v", cfg.DataDir, err)
	}
	// The default data_dir is beside the file too.
	os.WriteFile(path, []byte("hostname = \"mail.example.com\"\n"), 0o600)
	if cfg, err := Load(path); err != nil || cfg.DataDir != filepath.Join(dir, "etc", "data") {
		t.Errorf("default data_dir with a file: %q %v", cfg.DataDir, err)
	}
}

// Secrets never appear in what config show and the console print.
func TestSettingsRedactSecrets(t *testing.T) {
	c := Default()
	c.Queue.RelayPassword = "hunter2"
	c.Admin.MetricsToken = "metrics-secret-0123456789"
	c.Store.PostgresDSN = "postgres://po:s3cr3t@db:5432/po?sslmode=disable"
	out := Show(c)
	for _, secret := range []string{"hunter2", "s3cr3t", "metrics-secret"} {
		if strings.Contains(out, secret) {
			t.Errorf("config show reveals %q:\n%s", secret, out)
		}
	}
	if s, _ := Lookup(c, "store.postgres_dsn"); !strings.Contains(s.Value, "po:") || !strings.Contains(s.Value, "@db:5432") {
		t.Errorf("DSN redacted beyond the password: %s", s.Value)
	}
	c.Store.PostgresDSN = "host=db user=po password='a b' dbname=po"
	if s, _ := Lookup(c, "store.postgres_dsn"); strings.Contains(s.Value, "a b") || !strings.Contains(s.Value, "dbname=po") {
		t.Errorf("key/value DSN: %s", s.Value)
	}
}

func TestAdminHostsAndToken(t *testing.T) {
	cfg, err := Parse([]byte("min_free_space = 0\n[admin]\nlisten = \"[::1]:8080\"\nhosts = [\"console.example.org\", \"::1\", \"[2001:db8::1]\", \"192.0.2.1\"]\nmetrics_token = \"abcDEF0123456789-._~+/==\"\n"), "t")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Admin.Hosts) != 4 || cfg.Admin.MetricsToken != "abcDEF0123456789-._~+/==" || cfg.MinFreeSpace != 0 {
		t.Fatalf("admin %+v, min_free_space %d", cfg.Admin, cfg.MinFreeSpace)
	}
	if Default().MinFreeSpace != 256<<20 || Default().SMTP.AllowAuth {
		t.Fatalf("defaults: min_free_space %d, smtp.allow_auth %v", Default().MinFreeSpace, Default().SMTP.AllowAuth)
	}
}
