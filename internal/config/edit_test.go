package config

import (
	"reflect"
	"testing"

	"github.com/pelletier/go-toml/v2"
)

// TestSetInTOML: one value replaced or one key added, every other byte
// kept, in each way TOML lets a key be written.
func TestSetInTOML(t *testing.T) {
	for _, tc := range []struct {
		name, in, key, value, want string
	}{
		{
			name: "value in its table, comment kept",
			in:   "# top\n[pop3]\nlogin_delay = 5 # five\nexpire = 3\n",
			key:  "pop3.login_delay", value: `"2m"`,
			want: "# top\n[pop3]\nlogin_delay = \"2m\" # five\nexpire = 3\n",
		},
		{
			name: "multi-line array with comments inside",
			in: "[pop3]\nlisten = [\n  \"127.0.0.1:110\", # first\n  \"[::1]:110\",\n] # the listeners\n" +
				"tls_listen = []\n",
			key: "pop3.listen", value: `[":1110"]`,
			want: "[pop3]\nlisten = [\":1110\"] # the listeners\ntls_listen = []\n",
		},
		{
			name: "a multi-line string holding brackets and key-like lines before the key",
			in:   "[smtp]\nhostname = \"\"\"\n]\nlisten = [\"x\"]\n\"\"\"\nlisten = [\":25\"]\n",
			key:  "smtp.listen", value: `[":2525"]`,
			want: "[smtp]\nhostname = \"\"\"\n]\nlisten = [\"x\"]\n\"\"\"\nlisten = [\":2525\"]\n",
		},
		{
			name: "the same name in another table is left alone",
			in:   "[smtp]\nlisten = [\":25\"]\n[pop3]\nlisten = [\":110\"]\n",
			key:  "pop3.listen", value: "[]",
			want: "[smtp]\nlisten = [\":25\"]\n[pop3]\nlisten = []\n",
		},
		{
			name: "dotted key at the top level",
			in:   "hostname = \"a\"\npop3.listen = [\":110\"] # here\n",
			key:  "pop3.listen", value: "[]",
			want: "hostname = \"a\"\npop3.listen = [] # here\n",
		},
		{
			name: "dotted and quoted key in a table",
			in:   "[ \"pop3\" ]\n\"login_delay\" = 1\n",
			key:  "pop3.login_delay", value: "2",
			want: "[ \"pop3\" ]\n\"login_delay\" = 2\n",
		},
		{
			name: "inside an inline table",
			in:   "pop3 = { listen = [\":110\"], login_delay = 5 }\n",
			key:  "pop3.login_delay", value: `"1m"`,
			want: "pop3 = { listen = [\":110\"], login_delay = \"1m\" }\n",
		},
		{
			name: "added to an inline table",
			in:   "pop3 = { listen = [\":110\"] }\n",
			key:  "pop3.login_delay", value: "5",
			want: "pop3 = { listen = [\":110\"], login_delay = 5 }\n",
		},
		{
			name: "added to an empty inline table",
			in:   "pop3 = {}\n",
			key:  "pop3.login_delay", value: "5",
			want: "pop3 = {login_delay = 5}\n",
		},
		{
			name: "added beside dotted keys that define the table",
			in:   "pop3.listen = [\":110\"]\n\n[smtp]\nlisten = []\n",
			key:  "pop3.login_delay", value: "5",
			want: "pop3.listen = [\":110\"]\npop3.login_delay = 5\n\n[smtp]\nlisten = []\n",
		},
		{
			name: "added after the last key of its table, before the blank line",
			in:   "[pop3]\nlisten = []\n# a note\n\n[smtp]\nlisten = []\n",
			key:  "pop3.login_delay", value: "5",
			want: "[pop3]\nlisten = []\nlogin_delay = 5\n# a note\n\n[smtp]\nlisten = []\n",
		},
		{
			name: "added to a table with no keys yet",
			in:   "[pop3] # empty\n[smtp]\n",
			key:  "pop3.login_delay", value: "5",
			want: "[pop3] # empty\nlogin_delay = 5\n[smtp]\n",
		},
		{
			name: "top-level key added after the top-level keys",
			in:   "# comment\ndata_dir = \"d\"\n\n[pop3]\nlisten = []\n",
			key:  "hostname", value: `"mx"`,
			want: "# comment\ndata_dir = \"d\"\nhostname = \"mx\"\n\n[pop3]\nlisten = []\n",
		},
		{
			name: "top-level key added above the first table",
			in:   "# comment\n\n[pop3]\nlisten = []\n",
			key:  "hostname", value: `"mx"`,
			want: "# comment\nhostname = \"mx\"\n\n[pop3]\nlisten = []\n",
		},
		{
			name: "new table at the end of a document without a final newline",
			in:   "[pop3]\nlisten = []",
			key:  "queue.tls", value: `"verify"`,
			want: "[pop3]\nlisten = []\n\n[queue]\ntls = \"verify\"\n",
		},
		{
			name: "empty document",
			in:   "",
			key:  "smtp.timeout", value: `"5m"`,
			want: "[smtp]\ntimeout = \"5m\"\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := setInTOML([]byte(tc.in), tc.key, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
			}
			// The result parses, with the new value under key and the
			// rest as it was.
			var before, after, want map[string]any
			if err := toml.Unmarshal([]byte(tc.in), &before); err != nil {
				t.Fatal(err)
			}
			if err := toml.Unmarshal(got, &after); err != nil {
				t.Fatalf("the result does not parse: %v", err)
			}
			if err := toml.Unmarshal([]byte("v = "+tc.value), &want); err != nil {
				t.Fatal(err)
			}
			setDoc(before, tc.key, want["v"])
			if !reflect.DeepEqual(before, after) {
				t.Errorf("document %v, want %v", after, before)
			}
		})
	}
	if _, err := setInTOML([]byte("[pop3\n"), "pop3.listen", "[]"); err == nil {
		t.Error("no error for a document that does not parse")
	}
}

// setDoc sets a dotted key in a decoded document.
func setDoc(doc map[string]any, key string, v any) {
	parts := splitDotted(key)
	for _, p := range parts[:len(parts)-1] {
		m, ok := doc[p].(map[string]any)
		if !ok {
			m = map[string]any{}
			doc[p] = m
		}
		doc = m
	}
	doc[parts[len(parts)-1]] = v
}

func splitDotted(key string) []string {
	table, name := splitKey(key)
	if table == "" {
		return []string{name}
	}
	return append(splitDotted(table), name)
}
