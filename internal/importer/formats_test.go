package importer

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestExpandUIDL(t *testing.T) {
	v := uidlVars{uid: 26, validity: 1700000000, guid: "0123abcd", file: "1700000001.M1P2.host"}
	for format, want := range map[string]string{
		"%08Xu%08Xv":  "0000001a6553f100", // Dovecot's default
		"%v.%u":       "1700000000.26",
		"%g":          "0123abcd",
		"%f":          "1700000001.M1P2.host",
		"%m":          "", // mbox only in Dovecot
		"%u-%Xv":      "26-6553f100",
		"%4f":         "1700",
		"%Uf%%":       "1700000001.M1P2.HOST%",
		"x%05uy":      "x00026y",
		"%08Xv%08Xu":  "6553f1000000001a",
		"UID%u-%v":    "UID26-1700000000",
		"%Lg":         "0123abcd",
		"%X%u":        "", // not a variable: refused below
		"%q":          "",
		"%08X":        "",
		"%08Xg":       "",
		"trailing %":  "",
		"%08Xu%08Xv ": "0000001a6553f100 ",
	} {
		got, err := expandUIDL(format, v)
		if want == "" {
			if err == nil {
				t.Errorf("expandUIDL(%q) = %q, want an error", format, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("expandUIDL(%q) = %q, %v; want %q", format, got, err, want)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReadUIDList(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"v3": "3 V1655390361 N5 Gbe88b9389940ab62f7580b00ce89bbd1\n" +
			"1 :1655390418.M100238P743770.host,S=3734\n" +
			"3 W3800 Pold-uidl G0011 :1655390500.M2P3.host,S=12:2,S\n",
		"v1":     "1 1100000000 3\n1 1100000001.M1.host\n2 1100000002.M2.host:2,\n",
		"bad":    "3 V1 N2\nx :name\n",
		"noname": "3 V1 N2\n1 W12\n",
		"v2":     "2 V1\n",
	})
	l, err := readUIDList(filepath.Join(dir, "v3"))
	if err != nil {
		t.Fatal(err)
	}
	want := &uidlist{version: 3, validity: 1655390361, next: 5, records: []uidRecord{
		{uid: 1, base: "1655390418.M100238P743770.host,S=3734"},
		{uid: 3, base: "1655390500.M2P3.host,S=12", ext: map[byte]string{'W': "3800", 'P': "old-uidl", 'G': "0011"}},
	}}
	if !reflect.DeepEqual(l, want) {
		t.Errorf("v3 = %+v\nwant %+v", l, want)
	}
	l, err = readUIDList(filepath.Join(dir, "v1"))
	if err != nil || l.validity != 1100000000 || l.next != 3 || len(l.records) != 2 || l.records[1].base != "1100000002.M2.host" {
		t.Errorf("v1 = %+v, %v", l, err)
	}
	for _, bad := range []string{"bad", "noname", "v2", "absent"} {
		if _, err := readUIDList(filepath.Join(dir, bad)); err == nil {
			t.Errorf("readUIDList(%s) accepted it", bad)
		}
	}
}

// TestDovecotMaildir: the order of UIDs, the P extension first, W sizes
// from the list or the name, a file the list does not have yet (the next
// UID), a listed file that is gone (expunged).
func TestDovecotMaildir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"dovecot-uidlist": "3 V1000 N8\n" +
			"2 :1700000002.M2.h,S=20,W=21\n" +
			"5 Pkept-from-before :1700000005.M5.h,S=20\n" +
			"6 W30 :1700000006.M6.h,S=20\n" +
			"7 :1700000007.M7.h,S=20\n", // expunged: no file
		"cur/1700000002.M2.h,S=20,W=21:2,S": "Subject: a\n\nbody\n",
		"cur/1700000005.M5.h,S=20:2,":       "Subject: b\n\nbody\n",
		"new/1700000006.M6.h,S=20":          "Subject: c\n\nbody\n",
		"new/1700000009.M9.h":               "Subject: d\n\nbody\n",
		"tmp/1700000010.M10.h":              "being delivered",
	})
	b, err := DovecotMaildir(dir, "u@example.org", "")
	if err != nil {
		t.Fatal(err)
	}
	type m struct {
		uidl string
		size int64
	}
	var got []m
	for _, msg := range b.Messages {
		got = append(got, m{msg.UIDL, msg.ListSize})
	}
	want := []m{{"00000002000003e8", 21}, {"kept-from-before", 0}, {"00000006000003e8", 30}, {"00000008000003e8", 0}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("messages = %v, want %v", got, want)
	}
}

func TestCourierMaildir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"courierpop3dsizelist": "/3 4 1600000000\n" +
			"1599999990.M1.h:2,S 120 1:1600000000:0\n" +
			"1599999991.M2.h 99 3:1500000000:1\n" +
			"garbage\n",
		"cur/1599999990.M1.h:2,S": "Subject: a\n\nx\n",
		"cur/1599999991.M2.h:2,":  "Subject: b\n\nx\n",
		"new/1599999999.M3.h":     "Subject: c\n\nx\n",
	})
	b, err := Maildir(dir, "u@example.org", UIDLFromCourier)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 3 || b.Messages[0].UIDL != "UID1-1600000000" || b.Messages[0].ListSize != 120 ||
		b.Messages[1].UIDL != "UID3-1500000000" || b.Messages[1].ListSize != 99 ||
		b.Messages[2].UIDL != "UID4-1600000000" || b.Messages[2].ListSize != 0 {
		t.Errorf("courier messages = %+v", b.Messages)
	}
	if len(b.Problems) != 1 {
		t.Errorf("problems = %v, want the garbage line", b.Problems)
	}
	if _, err := Maildir(t.TempDir(), "u@example.org", UIDLFromCourier); err == nil {
		t.Errorf("a directory without cur/ or new/ was taken for a maildir")
	}
}

func TestFilenameUIDLs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"cur/1599999991.M2.h:2,S":   "Subject: b\n\nx\n",
		"new/1599999990.M1.h":       "Subject: a\n\nx\n",
		"new/1599999992.odd name+1": "Subject: c\n\nx\n",
	})
	b, err := Maildir(dir, "u@example.org", UIDLFromFilename)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range b.Messages {
		got = append(got, m.UIDL)
	}
	want := []string{"1599999990.M1.h", "1599999991.M2.h", "1599999992.odd+20name+2B1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("UIDLs = %q, want %q", got, want)
	}
}

func TestMbox(t *testing.T) {
	dir := t.TempDir()
	mbox := "From MAILER-DAEMON Mon Jan  1 00:00:00 2024\nSubject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\nX-IMAP: 1 2\n\nint\n\n" +
		"From a@example.net Tue Feb  6 10:00:00 2024\nSubject: one\nX-UIDL: 8a2b6c1d00e\n\nbody\n>From the start\n>>From quoted twice\n\n" +
		"From b@example.net Tue Feb  6 11:00:00 2024\nSubject: two\n\nno uidl\n"
	writeFiles(t, dir, map[string]string{"mbox": mbox, "notmbox": "Subject: x\n\ny\n"})
	b, err := Mbox(filepath.Join(dir, "mbox"), "u@example.org")
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Messages) != 2 {
		t.Fatalf("messages = %+v, want 2 (the folder data skipped)", b.Messages)
	}
	one, _ := b.Messages[0].open()
	if b.Messages[0].UIDL != "8a2b6c1d00e" || string(one) != "Subject: one\nX-UIDL: 8a2b6c1d00e\n\nbody\nFrom the start\n>From quoted twice\n" {
		t.Errorf("first = %q %q", b.Messages[0].UIDL, one)
	}
	if b.Messages[0].Date.Format("2006-01-02 15:04") != "2024-02-06 10:00" {
		t.Errorf("first date = %v", b.Messages[0].Date)
	}
	two, _ := b.Messages[1].open()
	if len(b.Messages[1].UIDL) != 32 || string(two) != "Subject: two\n\nno uidl\n" {
		t.Errorf("second = %q %q", b.Messages[1].UIDL, two)
	}
	if _, err := Mbox(filepath.Join(dir, "notmbox"), "u@example.org"); err == nil {
		t.Errorf("a file without From lines was taken for an mbox")
	}
}

func TestLayout(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"example.org/alice/Maildir/cur/1": "x", "example.org/bob/Maildir/new/1": "x",
		"example.net/carol/Maildir/cur/1": "x", "example.net/notamaildir/Maildir/x": "x",
	})
	users, err := discover(root, "%d/%n/Maildir")
	if err != nil || !reflect.DeepEqual(users, []string{"alice@example.org", "bob@example.org", "carol@example.net"}) {
		t.Errorf("discover = %v, %v", users, err)
	}
	if got := expandLayout("%Ld/%n/Maildir", "Alice@Example.ORG"); got != "example.org/Alice/Maildir" {
		t.Errorf("expandLayout = %s", got)
	}
	flat := t.TempDir()
	writeFiles(t, flat, map[string]string{"dave/cur/1": "x", "erin@example.com/new/1": "x"})
	users, err = discover(flat, "%u")
	if err != nil || !reflect.DeepEqual(users, []string{"dave", "erin@example.com"}) {
		t.Errorf("discover %%u = %v, %v", users, err)
	}
	boxes, err := Dovecot{MailRoot: flat, Layout: "%u"}.Mailboxes()
	if err == nil {
		t.Errorf("a user without a domain and no --domain: %v", boxes)
	}
	boxes, err = Dovecot{MailRoot: flat, Layout: "%n", Domain: "example.com", User: "dave"}.Mailboxes()
	if err != nil || len(boxes) != 1 || boxes[0].Address != "dave@example.com" {
		t.Errorf("--user dave --domain example.com = %+v, %v", boxes, err)
	}
}

func TestPasswdFile(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"passwd": "# users\n\nalice@example.org:{BLF-CRYPT}$2y$05$x:1000:1000::/home/alice::\nbob:$6$salt$hash\ncarol:\n"})
	got, err := ReadPasswdFile(filepath.Join(dir, "passwd"))
	want := []PasswdEntry{{"alice@example.org", "{BLF-CRYPT}$2y$05$x"}, {"bob", "$6$salt$hash"}, {"carol", ""}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("ReadPasswdFile = %+v, %v", got, err)
	}
}
