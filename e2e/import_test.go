package e2e

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// treeDigest is every name, mode and content under dir, to check that
// a source was left as it was.
func treeDigest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s %v %d\n", p, info.Mode(), info.ModTime().UnixNano())
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// mpopRun fetches with mpop, leaving mail on the server, and returns the
// number of messages in the maildir's new/.
func mpopRun(t *testing.T, dir, name, server string) int {
	t.Helper()
	md := filepath.Join(dir, "Maildir")
	for _, d := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	conf := filepath.Join(dir, "mpoprc-"+name)
	os.WriteFile(conf, []byte(`defaults
tls_certcheck off
account alice
host 127.0.0.1
user alice@example.org
password alice old pw
auth user
delivery maildir `+md+`
keep on
uidls_file `+filepath.Join(dir, "uidls")+`
`+server), 0o600)
	out, err := runTool(t, "mpop", "--file="+conf, "-a")
	if err != nil {
		t.Fatalf("mpop (%s): %v\n%s", name, err, out)
	}
	return len(readDir(t, filepath.Join(md, "new")))
}

// fetchmailRun fetches with fetchmail (keep, uidl) and returns what the
// MDA got so far.
func fetchmailRun(t *testing.T, dir, name, server, opts string) string {
	t.Helper()
	out := filepath.Join(dir, "fetched")
	rc := filepath.Join(dir, "fetchmailrc-"+name)
	os.WriteFile(rc, []byte(`set no syslog
poll 127.0.0.1 with proto POP3 `+server+` uidl
  user "bob@example.org" there with password "bob old pw" is root here
  options keep `+opts+`
  mda "/bin/sh -c 'cat >> `+out+`; echo ==== >> `+out+`'"
`), 0o600)
	cmd := exec.Command("fetchmail", "-f", rc, "-i", filepath.Join(dir, "fetchids"), "--nodetach", "-v")
	cmd.Env = append(os.Environ(), "FETCHMAILHOME="+dir, "HOME="+dir)
	log, err := cmd.CombinedOutput()
	// fetchmail exits 1 when there was no new mail.
	if ee, ok := err.(*exec.ExitError); err != nil && !(ok && ee.ExitCode() == 1) {
		t.Fatalf("fetchmail (%s): %v\n%s", name, err, log)
	}
	data, _ := os.ReadFile(out)
	return string(data)
}

// TestImportFromDovecot moves a Dovecot server (Debian's dovecot-pop3d,
// mail delivered by dovecot-lda, users in a passwd-file with BLF-CRYPT and
// SHA512-CRYPT hashes) into postoffice while mpop and fetchmail leave mail
// on the server: pointed at postoffice afterwards with the unique-ids
// they recorded, they download nothing, then only the one new message;
// users log in with their old passwords, which are then rehashed. The
// dry run changes nothing, the import run again adds nothing, and the
// source is left byte for byte as it was.
func TestImportFromDovecot(t *testing.T) {
	testlib.DovecotAvailable(t)
	need(t, "mpop", "fetchmail")
	passwd := "alice@example.org:" + testlib.DovecotPassword(t, "BLF-CRYPT", "alice old pw") + "::::::\n" +
		"bob@example.org:" + testlib.DovecotPassword(t, "SHA512-CRYPT", "bob old pw") + "::::::\n"
	dc := testlib.StartDovecot(t, testlib.DovecotConfig{Passwd: passwd})
	for i := range 3 {
		dc.Deliver(t, "alice@example.org", fmt.Sprintf("From: x@example.net\nSubject: to alice %d\n\nhello %d\n", i, i))
	}
	for i := range 2 {
		dc.Deliver(t, "bob@example.org", fmt.Sprintf("From: x@example.net\nSubject: to bob %d\n\nhello %d\n", i, i))
	}
	clients := t.TempDir()
	dovecotPort := fmt.Sprintf("port %d\ntls off\n", dc.Port)
	if n := mpopRun(t, clients, "dovecot", dovecotPort); n != 3 {
		t.Fatalf("mpop got %d messages from Dovecot, want 3", n)
	}
	if got := fetchmailRun(t, clients, "dovecot", fmt.Sprintf("port %d", dc.Port), "sslproto ''"); strings.Count(got, "====") != 2 {
		t.Fatalf("fetchmail got from Dovecot:\n%s\nwant 2 messages", got)
	}
	dc.Stop()
	before := treeDigest(t, dc.Dir)

	in := newInstance(t, "")
	args := []string{"import", "dovecot", "--mail-root", dc.MailRoot, "--passwd-file", dc.Passwd}
	// The dry run reports and changes nothing.
	dry := in.must("", append(args, "--dry-run")...)
	for _, want := range []string{"dry run", "users: 2 in the source, 2 new", "would import 5", "passwords BLF-CRYPT: 1 users", "passwords SHA512-CRYPT: 1 users",
		"unique-ids from dovecot-uidlist with pop3_uidl_format %08Xu%08Xv: 5 messages"} {
		if !strings.Contains(dry, want) {
			t.Errorf("dry run report lacks %q:\n%s", want, dry)
		}
	}
	if list := in.must("", "user", "list"); strings.Contains(list, "example.org") {
		t.Errorf("the dry run created users:\n%s", list)
	}
	out := in.must("", args...)
	if !strings.Contains(out, "imported 5") {
		t.Errorf("import report:\n%s", out)
	}
	// Run again (an interrupted import resumed): nothing more.
	again := in.must("", args...)
	if !strings.Contains(again, "imported 0") || !strings.Contains(again, "5 already there") {
		t.Errorf("second import report:\n%s", again)
	}
	if after := treeDigest(t, dc.Dir); after != before {
		t.Errorf("the import changed Dovecot's directory")
	}

	in.start()
	postoffice := "port " + in.port("pop3") + "\ntls on\ntls_starttls on\n"
	if n := mpopRun(t, clients, "postoffice", postoffice); n != 3 {
		t.Errorf("mpop has %d messages after fetching from postoffice, want the same 3", n)
	}
	if got := fetchmailRun(t, clients, "postoffice", "port "+in.port("pop3s"), "ssl no sslcertck"); strings.Count(got, "====") != 2 {
		t.Errorf("fetchmail has after fetching from postoffice:\n%s\nwant the same 2 messages", got)
	}
	in.deliver("alice@example.org", "From: y@example.net\r\nSubject: new for alice\r\n\r\nnew\r\n")
	in.deliver("bob@example.org", "From: y@example.net\r\nSubject: new for bob\r\n\r\nnew\r\n")
	if n := mpopRun(t, clients, "postoffice", postoffice); n != 4 {
		t.Errorf("mpop has %d messages after a new delivery, want 4", n)
	}
	md := strings.Join(readDir(t, filepath.Join(clients, "Maildir", "new")), "\n")
	if strings.Count(md, "Subject: new for alice") != 1 {
		t.Errorf("mpop's maildir does not have the new message once")
	}
	got := fetchmailRun(t, clients, "postoffice", "port "+in.port("pop3s"), "ssl no sslcertck")
	if strings.Count(got, "====") != 3 || strings.Count(got, "Subject: new for bob") != 1 {
		t.Errorf("fetchmail has:\n%s\nwant the 2 old messages and the new one", got)
	}
	// Both logged in with their Dovecot passwords, which are now ours.
	logs := in.logText()
	for _, u := range []string{"alice@example.org", "bob@example.org"} {
		if !strings.Contains(grepLines(logs, `msg="imported password hash replaced"`), "user="+u) {
			t.Errorf("%s's imported hash was not replaced:\n%s", u, logs)
		}
	}
}

// TestImportMaildirAndMboxCommands: import maildir (Courier) and import
// mbox (qpopper) through the command line, into one user read back over
// POP3; usage errors and absent sources have their exit codes.
func TestImportMaildirAndMboxCommands(t *testing.T) {
	in := newInstance(t, "")
	src := t.TempDir()
	md := filepath.Join(src, "Maildir")
	os.MkdirAll(filepath.Join(md, "cur"), 0o700)
	os.WriteFile(filepath.Join(md, "cur", "1600000000.M1.h:2,S"), []byte("Subject: courier\n\nx\n"), 0o600)
	os.WriteFile(filepath.Join(md, "courierpop3dsizelist"), []byte("/3 2 1600000000\n1600000000.M1.h:2,S 21 1:1600000000:0\n"), 0o600)
	mbox := filepath.Join(src, "mbox")
	os.WriteFile(mbox, []byte("From a@b Tue Feb  6 10:00:00 2024\nX-UIDL: qp0001\nSubject: qpopper\n\n>From here\n"), 0o600)
	before := treeDigest(t, src)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"import", "maildir", md}, 64, "--user ADDRESS is required"},
		{[]string{"import", "mbox", mbox}, 64, "--user ADDRESS is required"},
		{[]string{"import", "dovecot"}, 64, "--mail-root DIR is required"},
		{[]string{"import", "maildir", filepath.Join(src, "absent"), "--user", "u@example.org"}, 66, "absent"},
		{[]string{"import", "maildir", md, "--user", "u@example.org", "--uidl-from", "nonsense"}, 65, "nonsense"},
		{[]string{"import", "dovecot", "--mail-root", src, "--uidl-format", "%q"}, 65, "unknown variable"},
	} {
		if r := in.run("", c.args...); r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("postoffice %s: exit %d, %q; want %d, %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.want)
		}
	}
	in.must("pw-u\n", "user", "add", "u@example.org", "--password-stdin")
	in.must("", "import", "maildir", md, "--user", "u@example.org", "--uidl-from", "courier")
	in.must("", "import", "mbox", mbox, "--user", "u@example.org")
	if again := in.must("", "import", "mbox", mbox, "--user", "u@example.org"); !strings.Contains(again, "imported 0") {
		t.Errorf("mbox imported twice:\n%s", again)
	}
	in.start()
	res := pop(t, in.addr("pop3"), "plain", []any{"user", "u@example.org"}, []any{"pass_", "pw-u"}, []any{"uidl"}, []any{"list"}, []any{"retr", 2})
	lines := func(v any) string {
		var out []string
		for _, l := range v.([]any)[1].([]any) {
			out = append(out, unb64(t, l))
		}
		return strings.Join(out, "\n")
	}
	if got := lines(res[3]); !strings.Contains(got, "1 UID1-1600000000") || !strings.Contains(got, "2 qp0001") {
		t.Errorf("UIDL = %s", got)
	}
	if got := lines(res[4]); !strings.Contains(got, "1 21") {
		t.Errorf("LIST = %s, want Courier's size 21 for the first", got)
	}
	if got := lines(res[5]); !strings.Contains(got, "From here") || strings.Contains(got, ">From here") {
		t.Errorf("RETR 2 = %s, want the >From line unquoted", got)
	}
	if treeDigest(t, src) != before {
		t.Errorf("the import changed its source")
	}
}
