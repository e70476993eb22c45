package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestStoreDefaults(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if s := c.Store; s.Backend != "sqlite" || s.PostgresDSN != "" || s.Lease != Duration(30*time.Second) || (host != "" && s.NodeName != host) {
		t.Errorf("store defaults: %+v (host %q)", s, host)
	}
}

func TestStoreFile(t *testing.T) {
	c, err := Load(write(t, `
[store]
backend = "postgres"
postgres_dsn = "postgres://po@db.example.com/postoffice"
postgres_password = "secret"
node_name = "node-a"
lease = 10
`))
	if err != nil {
		t.Fatal(err)
	}
	want := Store{Backend: "postgres", PostgresDSN: "postgres://po@db.example.com/postoffice", PostgresPassword: "secret", NodeName: "node-a", Lease: Duration(10 * time.Second)}
	if c.Store != want {
		t.Errorf("store = %+v, want %+v", c.Store, want)
	}
}

func TestStoreErrorsNameTheKey(t *testing.T) {
	for _, c := range []struct{ toml, key string }{
		{"[store]\nbackend = \"mysql\"", "store.backend"},
		{"[store]\nbackend = \"postgres\"", "store.postgres_dsn"},
		{"[store]\nnode_name = \"two words\"", "store.node_name"},
		{"[store]\nnode_name = \"\"", "store.node_name"},
		{"[store]\nlease = 1", "store.lease"},
		{"[store]\nbackend = \"postgres\"\npostgres_dsn = \"host=x\\ndbname=y\"", "store.postgres_dsn"},
	} {
		_, err := Load(write(t, c.toml))
		if err == nil || !strings.Contains(err.Error(), `"`+c.key+`"`) {
			t.Errorf("%q: error %v, want one naming %s", c.toml, err, c.key)
		}
	}
}
