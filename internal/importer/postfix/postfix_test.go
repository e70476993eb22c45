package postfix

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// needPostfix skips a test without Postfix's postconf and postmap.
func needPostfix(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"postconf", "postmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				t.Skipf("%s is not installed (install it, e.g. apt-get install postfix, or run .ci/run)", tool)
			}
		}
	}
	if _, err := os.Stat("/usr/share/postfix/main.cf.dist"); err != nil {
		t.Skip("Debian's main.cf.dist is missing (apt-get install postfix)")
	}
}

func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		path = "/usr/sbin/" + name
	}
	out, err := exec.Command(path, args...).Output()
	if ee, ok := err.(*exec.ExitError); ok && name == "postmap" && ee.ExitCode() == 1 {
		return "" // postmap -q: not found
	}
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return strings.TrimRight(string(out), "\n")
}

// The maps of the test, in postmap's input format, with what the
// importer must make of them.
const (
	vdomains = `# Virtual mailbox domains listed in a table: the value is ignored.
example.org	anything
Example.Info  x
`
	vmailbox = `# mailboxes, virtual(8): the value is the maildir below virtual_mailbox_base
ann@example.com    example.com/ann/
Bob@Example.com    example.com/bob/
carol@example.net
    example.net/carol/
dave@example.org   example.org/dave/
ann@example.com    example.com/duplicate/
@example.info      example.info/catchall/
erin@nowhere.example  nowhere/erin/
`
	vmailbox2 = `# a second table: its ann is shadowed by the first table's
ann@example.com  elsewhere/
frank@example.info  example.info/frank/
`
	virtual = `# aliases, virtual(5)
aliases.example         whatever
postmaster@example.com  ann@example.com
team@example.com        ann@example.com, bob@example.com,
    carol@example.net   dave@example.org
@aliases.example        frank@example.info
info@example.org        dave
sales@example.org       ann@example.com remote@partner.example
root                    ann@example.com
@example.net            @example.com
bob@example.com         bob@example.com, bob@remote.example
stray@unlisted.example  ann@example.com
`
	virtual2 = `postmaster@example.com  dave@example.org
list@example.info  frank@example.info,ann@example.com
`
)

// writeConfig writes Debian's main.cf.dist with the virtual settings set
// by postconf -e (with $parameter expansions of three kinds) and the maps,
// indexed by postmap.
func writeConfig(t *testing.T) (dir, mainCF string) {
	t.Helper()
	needPostfix(t)
	dir = t.TempDir()
	mainCF = filepath.Join(dir, "main.cf")
	dist, err := os.ReadFile("/usr/share/postfix/main.cf.dist")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mainCF, dist, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"vdomains": vdomains, "vmailbox": vmailbox, "vmailbox2": vmailbox2, "virtual": virtual, "virtual2": virtual2} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	master, err := os.ReadFile("/usr/share/postfix/master.cf.dist")
	if err == nil {
		os.WriteFile(filepath.Join(dir, "master.cf"), master, 0o644)
	}
	tool(t, "postconf", "-c", dir, "-e",
		// What Debian's postinst fills in (main.cf.dist leaves them
		// empty, and postmap refuses to start so).
		"setgid_group = postdrop", "sendmail_path = /usr/sbin/sendmail", "newaliases_path = /usr/bin/newaliases",
		"mailq_path = /usr/bin/mailq", "html_directory = no", "manpage_directory = /usr/share/man",
		"sample_directory = /usr/share/doc/postfix/examples", "readme_directory = no",
		"myorigin = example.com",
		"extra_domain = example.net",
		"virtual_mailbox_domains = example.com, $extra_domain ${extra_domain:unused}, hash:${config_directory}/vdomains",
		"virtual_mailbox_maps = hash:$config_directory/vmailbox, texthash:$(config_directory)/vmailbox2",
		"virtual_alias_maps = hash:$config_directory/virtual hash:$config_directory/virtual2",
	)
	for _, m := range []string{"vdomains", "vmailbox", "virtual", "virtual2"} {
		tool(t, "postmap", "-c", dir, "hash:"+filepath.Join(dir, m))
	}
	return dir, mainCF
}

// TestMainCFExpansion: the values of the virtual parameters expand as
// postconf -x expands them.
func TestMainCFExpansion(t *testing.T) {
	dir, mainCF := writeConfig(t)
	m, err := ReadMainCF(mainCF)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"virtual_mailbox_domains", "virtual_mailbox_maps", "virtual_alias_maps", "virtual_alias_domains", "myorigin"} {
		want := tool(t, "postconf", "-c", dir, "-xh", p)
		if got := m.Expand(p); strings.Join(List(got), " ") != strings.Join(List(want), " ") {
			t.Errorf("%s: %q, postconf -x says %q", p, got, want)
		}
	}
}

// TestTablesAgreeWithPostmap: every key of every table, and the same
// keys in other cases, look up to what postmap -q finds.
func TestTablesAgreeWithPostmap(t *testing.T) {
	dir, _ := writeConfig(t)
	for _, name := range []string{"vdomains", "vmailbox", "vmailbox2", "virtual", "virtual2"} {
		typ := "hash"
		if name == "vmailbox2" {
			typ = "texthash"
		}
		ref := typ + ":" + filepath.Join(dir, name)
		tb, err := ReadTable(ref)
		if err != nil {
			t.Fatal(err)
		}
		if len(tb.Entries) == 0 {
			t.Fatalf("%s: no entries", ref)
		}
		for _, e := range tb.Entries {
			for _, k := range []string{e.Key, strings.ToUpper(e.Key)} {
				want := tool(t, "postmap", "-c", dir, "-q", k, ref)
				got, _ := tb.Lookup(k)
				if got != want {
					t.Errorf("%s %q: %q, postmap -q says %q", ref, k, got, want)
				}
			}
		}
		if typ == "hash" {
			// postmap -s lists every entry: the same set.
			var want []string
			for _, l := range strings.Split(tool(t, "postmap", "-c", dir, "-s", ref), "\n") {
				k, v, _ := strings.Cut(l, "\t")
				want = append(want, k+"\t"+v)
			}
			var got []string
			for _, e := range tb.Entries {
				got = append(got, e.Key+"\t"+e.Value)
			}
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("%s: entries\n%q\npostmap -s:\n%q", ref, got, want)
			}
		}
	}
	if tb, _ := ReadTable("hash:" + filepath.Join(dir, "vmailbox")); !slices.ContainsFunc(tb.Notes, func(n string) bool { return strings.Contains(n, "duplicate key") }) {
		t.Errorf("the duplicate key of vmailbox is not noted: %q", tb.Notes)
	}
}

// TestImportPostfix: the plan, then the import into a real store, then a
// second import that adds nothing; a dry run changes nothing. Every alias
// imported has the targets postmap -q finds for its address in the first
// table that has it.
func TestImportPostfix(t *testing.T) {
	dir, mainCF := writeConfig(t)
	p, err := Read(mainCF)
	if err != nil {
		t.Fatal(err)
	}
	wantDomains := []string{"aliases.example", "example.com", "example.info", "example.net", "example.org"}
	if !slices.Equal(p.Domains, wantDomains) {
		t.Errorf("domains %v, want %v", p.Domains, wantDomains)
	}
	var users []string
	for _, u := range p.Users {
		users = append(users, u.Address)
	}
	wantUsers := []string{"ann@example.com", "bob@example.com", "carol@example.net", "dave@example.org", "frank@example.info"}
	if !slices.Equal(users, wantUsers) {
		t.Errorf("users %v, want %v", users, wantUsers)
	}
	wantAliases := map[string][]string{
		"postmaster@example.com": {"ann@example.com"},
		"team@example.com":       {"ann@example.com", "bob@example.com", "carol@example.net", "dave@example.org"},
		"@aliases.example":       {"frank@example.info"},
		"info@example.org":       {"dave@example.com"},
		"sales@example.org":      {"ann@example.com", "remote@partner.example"},
		"list@example.info":      {"ann@example.com", "frank@example.info"},
	}
	got := map[string][]string{}
	for _, a := range p.Aliases {
		got[a.Address] = a.Targets
	}
	for k, v := range wantAliases {
		if !slices.Equal(got[k], v) {
			t.Errorf("alias %s: %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(wantAliases) {
		t.Errorf("aliases %v", got)
	}
	// What cannot be expressed is reported, each naming its line.
	problems := ""
	for _, pr := range p.Problems {
		problems += pr.String() + "\n"
	}
	for _, want := range []string{
		"vmailbox line 8: \"@example.info\" is a catch-all mailbox",
		"vmailbox line 9: erin@nowhere.example: its domain is not in virtual_mailbox_domains",
		"virtual line 9: \"root\" has no domain",
		"virtual line 10: @example.net -> @example.com: rewriting a whole domain",
		"virtual line 11: bob@example.com is a mailbox and an alias",
		"virtual line 12: stray@unlisted.example: its domain is not",
	} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems lack %q:\n%s", want, problems)
		}
	}
	if len(p.Problems) != 6 {
		t.Errorf("%d problems:\n%s", len(p.Problems), problems)
	}

	// The aliases agree with Postfix's lookups, first table first.
	for _, a := range p.Aliases {
		var value string
		for _, m := range []string{"virtual", "virtual2"} {
			if value = tool(t, "postmap", "-c", dir, "-q", a.Address, "hash:"+filepath.Join(dir, m)); value != "" {
				break
			}
		}
		var want []string
		for _, x := range List(value) {
			if !strings.Contains(x, "@") {
				x += "@example.com" // $myorigin
			}
			want = append(want, strings.ToLower(x))
		}
		slices.Sort(want)
		if !slices.Equal(a.Targets, want) {
			t.Errorf("%s: %v, postmap -q says %q", a.Address, a.Targets, value)
		}
	}

	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	dry, err := Apply(ctx, p, st, true)
	if err != nil {
		t.Fatal(err)
	}
	if us, _ := st.ListUsers(ctx); len(us) != 0 {
		t.Fatalf("the dry run added %d users", len(us))
	}
	r, err := Apply(ctx, p, st, false)
	if err != nil {
		t.Fatal(err)
	}
	if r.Domains != 5 || r.Users != 5 || r.Aliases != 6 || r.Existing != 0 || len(r.Problems) != 0 {
		t.Errorf("import: %+v", r)
	}
	if dry.Domains != r.Domains || dry.Users != r.Users || dry.Aliases != r.Aliases {
		t.Errorf("the dry run said %+v, the import did %+v", dry, r)
	}
	for _, addr := range wantUsers {
		u, err := st.UserByAddress(ctx, addr)
		if err != nil || u.PasswordHash != "" || !u.Enabled {
			t.Errorf("user %s: %+v %v", addr, u, err)
		}
	}
	for k, v := range wantAliases {
		a, err := st.Alias(ctx, k)
		if err != nil || !slices.Equal(a.Targets, v) {
			t.Errorf("stored alias %s: %v %v", k, a, err)
		}
	}
	again, err := Apply(ctx, p, st, false)
	if err != nil {
		t.Fatal(err)
	}
	if again.Domains+again.Users+again.Aliases != 0 || again.Existing != 16 {
		t.Errorf("second import: %+v", again)
	}
	// An alias changed here meanwhile is kept, and reported.
	if err := st.SetAlias(ctx, store.Alias{Address: "team@example.com", Targets: []string{"ann@example.com"}}); err != nil {
		t.Fatal(err)
	}
	third, _ := Apply(ctx, p, st, false)
	if len(third.Problems) != 1 || !strings.Contains(third.Problems[0].What, "kept") {
		t.Errorf("third import: %+v", third)
	}
}

// TestReadMainCF: continuation lines, comments, the last of repeated
// names, loops and conditionals in expansions.
func TestReadMainCF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "main.cf")
	os.WriteFile(p, []byte(`# comment
a = one
  two
    # an indented comment
b=${a}x $(c) ${unset?yes}${unset:no} ${a?{set}}
c = $c loop
a = three
d = $$ $ e
`), 0o644)
	m, err := ReadMainCF(p)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"a": "three", "b": "threex  loop no set", "c": " loop"} {
		if got := m.Expand(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if !m.Unknown["unset"] {
		t.Error("$unset not reported")
	}
	os.WriteFile(p, []byte("  starts indented\n"), 0o644)
	if _, err := ReadMainCF(p); err == nil {
		t.Error("a continuation line without a line before it was accepted")
	}
}
