package importer_test

import (
	"fmt"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/importer"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// popListing is what a POP3 server shows of a maildrop: UIDL and LIST.
type popListing struct {
	uidls []string
	sizes []int64
}

// popList logs in to a POP3 server and reads UIDL and LIST.
func popList(t *testing.T, addr, user, pass string) popListing {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	line := func() string {
		l, err := tp.ReadLine()
		if err != nil {
			t.Fatalf("POP3 %s: %v", addr, err)
		}
		return l
	}
	cmd := func(s string) string {
		if err := tp.PrintfLine("%s", s); err != nil {
			t.Fatal(err)
		}
		l := line()
		if !strings.HasPrefix(l, "+OK") {
			t.Fatalf("POP3 %s: %s: %s", addr, strings.Fields(s)[0], l)
		}
		return l
	}
	multi := func() []string {
		var out []string
		for {
			l := line()
			if l == "." {
				return out
			}
			out = append(out, l)
		}
	}
	line()
	cmd("USER " + user)
	cmd("PASS " + pass)
	var l popListing
	cmd("UIDL")
	for _, s := range multi() {
		var n int
		var u string
		fmt.Sscanf(s, "%d %s", &n, &u)
		l.uidls = append(l.uidls, u)
	}
	cmd("LIST")
	for _, s := range multi() {
		var n int
		var size int64
		fmt.Sscanf(s, "%d %d", &n, &size)
		l.sizes = append(l.sizes, size)
	}
	cmd("QUIT")
	return l
}

// storeListing is what postoffice's POP3 shows of an imported mailbox.
func storeListing(t *testing.T, st store.Store, addr string) popListing {
	t.Helper()
	u, err := st.UserByAddress(t.Context(), addr)
	if err != nil {
		t.Fatal(err)
	}
	list, err := st.List(t.Context(), u.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var l popListing
	for _, m := range list {
		l.uidls = append(l.uidls, m.UIDL)
		size := m.Size
		if m.ListSize > 0 {
			size = m.ListSize
		}
		l.sizes = append(l.sizes, size)
	}
	return l
}

func sameListing(t *testing.T, what string, got, want popListing) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got  %v\n want %v (Dovecot's)", what, got, want)
	}
}

// TestDovecotUIDLFormats: for each pop3_uidl_format, a real Dovecot
// serves mail delivered with dovecot-lda; the import gives every message
// the unique-id and LIST size Dovecot's POP3 showed.
func TestDovecotUIDLFormats(t *testing.T) {
	testlib.DovecotAvailable(t)
	for _, format := range []string{"", "%v.%u", "%08Xv%08Xu", "%g", "%f", "%u-%Xv"} {
		t.Run(strings.NewReplacer("%", "", ".", "_").Replace("fmt"+format), func(t *testing.T) {
			pw := testlib.DovecotPassword(t, "SHA512-CRYPT", "pw")
			dc := testlib.StartDovecot(t, testlib.DovecotConfig{UIDLFormat: format,
				Passwd: "alice@example.org:" + pw + "\n"})
			for i := range 3 {
				// The last one has a bare LF body and no final newline.
				msg := fmt.Sprintf("From: x@example.net\nSubject: m%d\nMessage-ID: <%d@x>\n\nline\n.dot\n", i, i)
				if i == 2 {
					msg = strings.TrimSuffix(msg, "\n")
				}
				dc.Deliver(t, "alice@example.org", msg)
			}
			want := popList(t, fmt.Sprintf("127.0.0.1:%d", dc.Port), "alice@example.org", "pw")
			if len(want.uidls) != 3 {
				t.Fatalf("Dovecot lists %v", want)
			}
			dc.Stop()
			st, err := sqlite.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			boxes, err := importer.Dovecot{MailRoot: dc.MailRoot, PasswdFile: dc.Passwd, UIDLFormat: format}.Mailboxes()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := importer.Import(t.Context(), st, boxes, importer.Options{}); err != nil {
				t.Fatal(err)
			}
			sameListing(t, "pop3_uidl_format "+format, storeListing(t, st, "alice@example.org"), want)
		})
	}
}

// TestDovecotPExtension: a maildir whose dovecot-uidlist carries POP3
// unique-ids (the P extension, as Dovecot's migration tools write) for
// some messages; Dovecot shows them, and so does the import.
func TestDovecotPExtension(t *testing.T) {
	testlib.DovecotAvailable(t)
	pw := testlib.DovecotPassword(t, "BLF-CRYPT", "pw")
	dc := testlib.StartDovecot(t, testlib.DovecotConfig{Passwd: "bob@example.org:" + pw + "\n"})
	dir := dc.Maildir("bob@example.org")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(dir, sub), 0o700)
	}
	var names []string
	for i := range 3 {
		body := fmt.Appendf(nil, "Subject: old %d\n\nfrom the old server\n", i)
		n := fmt.Sprintf("170000000%d.M%dP%d.old,S=%d", i+1, i+1, i+1, len(body))
		names = append(names, n)
		os.WriteFile(filepath.Join(dir, "cur", n+":2,S"), body, 0o600)
	}
	os.WriteFile(filepath.Join(dir, "dovecot-uidlist"), []byte("3 V1700000000 N4 G0123456789abcdef0123456789abcdef\n"+
		"1 P0815-OLD-ONE :"+names[0]+"\n"+
		"2 :"+names[1]+"\n"+
		"3 Pold.uidl.three :"+names[2]+"\n"), 0o600)
	if err := filepath.Walk(dc.MailRoot, func(p string, _ os.FileInfo, _ error) error { return os.Chown(p, 65534, 65534) }); err != nil {
		t.Fatal(err)
	}
	want := popList(t, fmt.Sprintf("127.0.0.1:%d", dc.Port), "bob@example.org", "pw")
	if len(want.uidls) != 3 || want.uidls[0] != "0815-OLD-ONE" {
		t.Fatalf("Dovecot lists %v; want the P extension's unique-ids", want)
	}
	dc.Stop()
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	boxes, err := importer.Dovecot{MailRoot: dc.MailRoot, PasswdFile: dc.Passwd}.Mailboxes()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := importer.Import(t.Context(), st, boxes, importer.Options{}); err != nil {
		t.Fatal(err)
	}
	sameListing(t, "P extension", storeListing(t, st, "bob@example.org"), want)
}
