package importer_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/importer"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// digest is every name, mode, time and content under dir.
func digest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		info, _ := d.Info()
		fmt.Fprintf(h, "%s %v %d\n", p, info.Mode(), info.ModTime().UnixNano())
		if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			h.Write(b)
		}
		return nil
	})
	return fmt.Sprintf("%x", h.Sum(nil))
}

// dovecotRoot writes a Dovecot mail root with n messages for
// alice@example.org and one for bob@example.org, and its passwd-file.
func dovecotRoot(t *testing.T, n int) (root, passwd string) {
	t.Helper()
	root = t.TempDir()
	alice := filepath.Join(root, "example.org", "alice")
	bob := filepath.Join(root, "example.org", "bob")
	for _, d := range []string{alice, bob} {
		for _, s := range []string{"cur", "new", "tmp"} {
			os.MkdirAll(filepath.Join(d, s), 0o700)
		}
	}
	list := "3 V1700000000 N" + fmt.Sprint(n+1) + "\n"
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("%d.M%dP1.old", 1700000000+i, i)
		os.WriteFile(filepath.Join(alice, "cur", name+":2,S"), fmt.Appendf(nil, "Subject: %d\n\nbody %d\n", i, i), 0o600)
		list += fmt.Sprintf("%d :%s\n", i, name)
	}
	os.WriteFile(filepath.Join(alice, "dovecot-uidlist"), []byte(list), 0o600)
	os.WriteFile(filepath.Join(bob, "new", "1700000001.M1P1.old"), []byte("Subject: bob\n\nx\n"), 0o600)
	passwd = filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte("alice@example.org:{SHA512-CRYPT}$6$9FWLEy7DRcmiu7Q9$g7ctmjZPomTFp.F2sRENscNaVzV890/m/Pvw.rT9rVsm5e8BPdV8GOei8908dtRBO.R9atxhBDHImufviR2Hz/\n"+
		"bob:{CRAM-MD5}9ab261ed67e66782d405a9bb4869d248dfc035a70d94046f1c131c0ae7ddf243\n"), 0o600)
	return root, passwd
}

// failingStore stops importing after a number of messages, as an import
// that is interrupted.
type failingStore struct {
	*sqlite.Store
	left int
}

var errInterrupted = errors.New("interrupted")

func (f *failingStore) ImportMessage(ctx context.Context, open func() (io.ReadCloser, error), copies []store.MessageCopy) (int, error) {
	if f.left == 0 {
		return 0, errInterrupted
	}
	f.left--
	return f.Store.ImportMessage(ctx, open, copies)
}

// TestImportResumes: an import interrupted in the middle, run again,
// stores every message once, with its unique-id, in order; the source is
// left as it was.
func TestImportResumes(t *testing.T) {
	root, passwd := dovecotRoot(t, 10)
	before := digest(t, root)
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	src := importer.Dovecot{MailRoot: root, PasswdFile: passwd, Domain: "example.org"}
	boxes, err := src.Mailboxes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importer.Import(t.Context(), &failingStore{Store: st, left: 4}, boxes, importer.Options{}); !errors.Is(err, errInterrupted) {
		t.Fatalf("interrupted import: %v", err)
	}
	r, err := importer.Import(t.Context(), st, boxes, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages != 7 || r.Skipped != 4 {
		t.Errorf("resumed import: %d imported, %d skipped; want 7 and 4", r.Messages, r.Skipped)
	}
	u, _ := st.UserByAddress(t.Context(), "alice@example.org")
	list, _ := st.List(t.Context(), u.ID, 0)
	if len(list) != 10 {
		t.Fatalf("alice has %d messages, want 10", len(list))
	}
	for i, m := range list {
		if want := fmt.Sprintf("%08x%08x", i+1, 1700000000); m.UIDL != want {
			t.Errorf("message %d: UIDL %s, want %s", i+1, m.UIDL, want)
		}
		rc, _ := st.Open(t.Context(), u.ID, m.UID)
		body, _ := io.ReadAll(rc)
		rc.Close()
		if want := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i+1, i+1); string(body) != want {
			t.Errorf("message %d = %q, want %q", i+1, body, want)
		}
	}
	if digest(t, root) != before {
		t.Errorf("the import changed the source")
	}
}

// TestDryRun reports users, messages, bytes, unique-id sources, password
// schemes, conflicts and problems, and changes nothing.
func TestDryRun(t *testing.T) {
	root, passwd := dovecotRoot(t, 3)
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	boxes, err := importer.Dovecot{MailRoot: root, PasswdFile: passwd, Domain: "example.org"}.Mailboxes()
	if err != nil {
		t.Fatal(err)
	}
	var bobUIDL string
	for _, b := range boxes {
		if b.Address == "bob@example.org" && len(b.Messages) == 1 {
			bobUIDL = b.Messages[0].UIDL
		}
	}
	// An existing bob with a message of the unique-id the import would
	// give: the user is a conflict, and the message is there already.
	if _, err := st.AddUser(t.Context(), store.User{Address: "carol@example.org", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	bob, err := st.AddUser(t.Context(), store.User{Address: "bob@example.org", Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportMessage(t.Context(), func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("x\r\n")), nil },
		[]store.MessageCopy{{UserID: bob.ID, UID: 1, UIDL: bobUIDL}}); err != nil {
		t.Fatal(err)
	}
	r, err := importer.Import(t.Context(), st, boxes, importer.Options{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	r.Print(&out)
	for _, want := range []string{"dry run: nothing was changed", "users: 2 in the source, 1 new, 1 existing", "would import 3 (",
		"passwords SHA512-CRYPT: 1 users", "existing user: bob@example.org", "no dovecot-uidlist"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if r.Bytes != int64(len("Subject: 1\n\nbody 1\n")*3) {
		t.Errorf("bytes = %d", r.Bytes)
	}
	if strings.Contains(out.String(), "bob@example.org: a CRAM-MD5") {
		t.Errorf("the report speaks of the password of bob, who exists and keeps his own:\n%s", out.String())
	}
	users, _ := st.ListUsers(t.Context())
	if len(users) != 2 {
		t.Errorf("the dry run changed the users: %+v", users)
	}
	if l, _ := st.List(t.Context(), bob.ID, 0); len(l) != 1 {
		t.Errorf("the dry run changed bob's mailbox: %+v", l)
	}

	// The real import: bob's message with that unique-id is there
	// already; bob's CRAM-MD5 hash is not used (bob existed anyway).
	r, err = importer.Import(t.Context(), st, boxes, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Messages != 3 || r.Skipped != 1 {
		t.Errorf("import: %d imported, %d skipped; want 3, 1", r.Messages, r.Skipped)
	}
	alice, err := st.UserByAddress(t.Context(), "alice@example.org")
	if err != nil || !strings.HasPrefix(alice.PasswordHash, "{SHA512-CRYPT}$6$") {
		t.Errorf("alice = %+v, %v; want her Dovecot hash", alice, err)
	}
}

// TestCRAMMD5Refused: a new user whose only hash is CRAM-MD5 is created
// without a password, and the report says what to do.
func TestCRAMMD5Refused(t *testing.T) {
	root, passwd := dovecotRoot(t, 1)
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	boxes, err := importer.Dovecot{MailRoot: root, PasswdFile: passwd, Domain: "example.org", User: "bob"}.Mailboxes()
	if err != nil {
		t.Fatal(err)
	}
	r, err := importer.Import(t.Context(), st, boxes, importer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := st.UserByAddress(t.Context(), "bob@example.org")
	if err != nil || bob.PasswordHash != "" {
		t.Errorf("bob = %+v, %v; want no password", bob, err)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), "bob@example.org: a CRAM-MD5 hash cannot verify") || r.Schemes["CRAM-MD5"] != 1 {
		t.Errorf("problems = %q, schemes %v", r.Problems, r.Schemes)
	}
	if _, err := st.UserByAddress(t.Context(), "alice@example.org"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("--user bob imported alice too: %v", err)
	}
}

// TestImportMboxAndMaildir: the whole path for the other sources.
func TestImportMboxAndMaildir(t *testing.T) {
	dir := t.TempDir()
	mbox := filepath.Join(dir, "mbox")
	os.WriteFile(mbox, []byte("From a@b Tue Feb  6 10:00:00 2024\nX-UIDL: abc\nSubject: q\n\nx\n>From y\n"), 0o600)
	md := filepath.Join(dir, "md")
	os.MkdirAll(filepath.Join(md, "cur"), 0o700)
	os.WriteFile(filepath.Join(md, "cur", "1600000000.M1.h:2,S"), []byte("Subject: m\n\ny\n"), 0o600)
	os.WriteFile(filepath.Join(md, "courierpop3dsizelist"), []byte("/3 2 77\n1600000000.M1.h:2,S 19 1:77:0\n"), 0o600)
	before := digest(t, dir)
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := importer.Mbox(mbox, "q@example.org")
	if err != nil {
		t.Fatal(err)
	}
	b, err := importer.Maildir(md, "q@example.org", importer.UIDLFromCourier)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := importer.Import(t.Context(), st, []importer.Mailbox{a, b}, importer.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	u, _ := st.UserByAddress(t.Context(), "q@example.org")
	list, _ := st.List(t.Context(), u.ID, 0)
	if len(list) != 2 || list[0].UIDL != "abc" || list[1].UIDL != "UID1-77" || list[1].ListSize != 19 || list[1].Size != 17 {
		t.Errorf("list = %+v", list)
	}
	if digest(t, dir) != before {
		t.Errorf("the import changed the source")
	}
}
