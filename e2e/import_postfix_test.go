package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestImportPostfix: postoffice import postfix on Debian's main.cf.dist
// with virtual maps indexed by postmap: a dry run changes nothing; the
// import makes the users (who log in once given a password) and the
// aliases, and mail sent to an alias of two targets over SMTP reaches
// both mailboxes; what cannot be expressed is reported.
func TestImportPostfix(t *testing.T) {
	needFrom(t, "postfix", "postconf", "postmap")
	dist, err := os.ReadFile("/usr/share/postfix/main.cf.dist")
	if err != nil {
		t.Skip("Debian's main.cf.dist is missing (apt-get install postfix)")
	}
	dir := t.TempDir()
	mainCF := filepath.Join(dir, "main.cf")
	os.WriteFile(mainCF, dist, 0o644)
	os.WriteFile(filepath.Join(dir, "vmailbox"), []byte("ann@example.com  example.com/ann/\nbob@example.com  example.com/bob/\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "virtual"), []byte("# aliases\nteam@example.com  ann@example.com,\n  bob@example.com\nroot  ann@example.com\n"), 0o644)
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	run("postconf", "-c", dir, "-e", "setgid_group = postdrop", "sendmail_path = /usr/sbin/sendmail",
		"newaliases_path = /usr/bin/newaliases", "mailq_path = /usr/bin/mailq", "html_directory = no",
		"manpage_directory = /usr/share/man", "sample_directory = /etc/postfix", "readme_directory = no",
		"virtual_mailbox_domains = example.com", "virtual_mailbox_maps = hash:$config_directory/vmailbox",
		"virtual_alias_maps = hash:${config_directory}/virtual")
	run("postmap", "-c", dir, "hash:"+filepath.Join(dir, "vmailbox"))
	run("postmap", "-c", dir, "hash:"+filepath.Join(dir, "virtual"))

	in := newInstance(t, "")
	dry := in.must("", "import", "postfix", "--main-cf", mainCF, "--dry-run")
	if !strings.Contains(dry, "would import") || !strings.Contains(dry, "1 domains, 2 users, 1 aliases") {
		t.Errorf("dry run:\n%s", dry)
	}
	if out := in.must("", "user", "list"); strings.Contains(out, "ann@") {
		t.Fatalf("the dry run added users:\n%s", out)
	}
	out := in.must("", "import", "postfix", "--main-cf", mainCF)
	for _, want := range []string{"imported from", "1 domains, 2 users, 1 aliases", "alias team@example.com -> ann@example.com, bob@example.com",
		"postoffice user passwd ADDRESS", `not imported: ` + filepath.Join(dir, "virtual") + ` line 4: "root" has no domain`} {
		if !strings.Contains(out, want) {
			t.Errorf("import output lacks %q:\n%s", want, out)
		}
	}
	if again := in.must("", "import", "postfix", "--main-cf", mainCF); !strings.Contains(again, "0 domains, 0 users, 0 aliases (4 there already)") {
		t.Errorf("second import:\n%s", again)
	}
	in.start()
	if r := popAttempt(t, in.addr("pop3"), "ann@example.com", "pw"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("a user without a password logged in: %q", r)
	}
	for _, u := range []string{"ann@example.com", "bob@example.com"} {
		in.must("pw\n", "user", "passwd", u, "--password-stdin")
	}
	if err := sendPlain(in.addr("smtp"), "someone@example.net", "team@example.com", "Subject: to the team\r\n\r\nhello\r\n"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"ann@example.com", "bob@example.com"} {
		msgs := retrieveAll(t, in, u, "pw")
		if len(msgs) != 1 || !strings.Contains(msgs[0], "Subject: to the team") {
			t.Errorf("%s has %d messages: %q", u, len(msgs), msgs)
		}
	}
}
