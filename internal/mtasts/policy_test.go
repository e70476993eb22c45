package mtasts

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Policy
	}{
		{"RFC 8461 example, CRLF", "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n",
			Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com"}, MaxAge: 604800 * time.Second}},
		{"LF, no final terminator, any order", "mx: MX1.Example.com\nmax_age: 86400\nmode: testing\nversion: STSv1",
			Policy{Mode: Testing, MX: []string{"mx1.example.com"}, MaxAge: 86400 * time.Second}},
		{"spaces and tabs around values", "version:STSv1 \nmode:\t enforce\t\nmx:  a.example \nmax_age: 1\n",
			Policy{Mode: Enforce, MX: []string{"a.example"}, MaxAge: time.Second}},
		{"mode none needs no mx", "version: STSv1\nmode: none\nmax_age: 0\n",
			Policy{Mode: None}},
		{"first of a repeated field counts", "version: STSv1\nmode: testing\nmode: enforce\nmx: a.example\nmax_age: 100\nmax_age: 200\n",
			Policy{Mode: Testing, MX: []string{"a.example"}, MaxAge: 100 * time.Second}},
		{"max_age above a year is a year", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n",
			Policy{Mode: Enforce, MX: []string{"a.example"}, MaxAge: MaxMaxAge}},
		{"extensions kept, UTF-8 and inner spaces", "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 60\nx-note: héllo wörld\nfoo.bar_1: x\n",
			Policy{Mode: Enforce, MX: []string{"a.example"}, MaxAge: time.Minute, Extensions: []Extension{{"x-note", "héllo wörld"}, {"foo.bar_1", "x"}}}},
	} {
		p, err := Parse(tc.body)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if p.Mode != tc.want.Mode || !slices.Equal(p.MX, tc.want.MX) || p.MaxAge != tc.want.MaxAge || !slices.Equal(p.Extensions, tc.want.Extensions) {
			t.Errorf("%s: got %+v\nwant %+v", tc.name, *p, tc.want)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	ok := "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 86400\n"
	if _, err := Parse(ok); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"empty":                   "",
		"no version":              "mode: enforce\nmx: a.example\nmax_age: 86400\n",
		"no mode":                 "version: STSv1\nmx: a.example\nmax_age: 86400\n",
		"no max_age":              "version: STSv1\nmode: enforce\nmx: a.example\n",
		"enforce without mx":      "version: STSv1\nmode: enforce\nmax_age: 86400\n",
		"testing without mx":      "version: STSv1\nmode: testing\nmax_age: 86400\n",
		"version STSv2":           strings.Replace(ok, "STSv1", "STSv2", 1),
		"version lower case":      strings.Replace(ok, "STSv1", "stsv1", 1),
		"key upper case":          strings.Replace(ok, "mode:", "Mode:", 1),
		"mode report (draft)":     strings.Replace(ok, "enforce", "report", 1),
		"mode upper case":         strings.Replace(ok, "enforce", "ENFORCE", 1),
		"space before colon":      strings.Replace(ok, "mode:", "mode :", 1),
		"no colon":                strings.Replace(ok, "mode:", "mode", 1),
		"empty line inside":       strings.Replace(ok, "\nmx", "\n\nmx", 1),
		"two final terminators":   ok + "\n",
		"bare CR":                 strings.ReplaceAll(ok, "\n", "\r"),
		"max_age 11 digits":       strings.Replace(ok, "86400", "12345678901", 1),
		"max_age negative":        strings.Replace(ok, "86400", "-1", 1),
		"max_age with unit":       strings.Replace(ok, "86400", "86400s", 1),
		"mx wildcard inside":      strings.Replace(ok, "a.example", "mx*.example", 1),
		"mx bare wildcard":        strings.Replace(ok, "a.example", "*", 1),
		"mx double wildcard":      strings.Replace(ok, "a.example", "*.*.example", 1),
		"mx trailing dot":         strings.Replace(ok, "a.example", "a.example.", 1),
		"mx U-label":              strings.Replace(ok, "a.example", "bücher.example", 1),
		"mx underscore":           strings.Replace(ok, "a.example", "a_b.example", 1),
		"mx hyphen at end":        strings.Replace(ok, "a.example", "a-.example", 1),
		"mx two names":            strings.Replace(ok, "a.example", "a.example b.example", 1),
		"mx empty":                strings.Replace(ok, "a.example", "", 1),
		"bad duplicate mode":      ok + "mode: garbage\n",
		"extension name _first":   ok + "_x: y\n",
		"extension name too long": ok + strings.Repeat("k", 33) + ": y\n",
		"extension control char":  ok + "x: a\x01b\n",
		"extension tab inside":    ok + "x: a\tb\n",
		"extension bad UTF-8":     ok + "x: a\xffb\n",
		"HTML":                    "<html><body>not found</body></html>",
	} {
		if p, err := Parse(body); err == nil {
			t.Errorf("%s: accepted: %+v", name, *p)
		}
	}
}

func TestStringRoundTripAndID(t *testing.T) {
	p := &Policy{Mode: Testing, MX: []string{"mail.example.com", "*.example.net"}, MaxAge: 7 * 24 * time.Hour}
	want := "version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n"
	if p.String() != want {
		t.Fatalf("String:\n%q\nwant\n%q", p.String(), want)
	}
	q, err := Parse(p.String())
	if err != nil || q.String() != want {
		t.Fatalf("round trip: %v %q", err, q)
	}
	if err := p.Check(); err != nil {
		t.Fatal(err)
	}
	id := p.ID()
	if len(id) != 32 || !alnum(id) || q.ID() != id {
		t.Fatalf("ID %q (parsed copy %q)", id, q.ID())
	}
	q.Mode = Enforce
	if q.ID() == id {
		t.Fatal("the id did not change with the policy")
	}
	for _, bad := range []*Policy{
		{Mode: "enforcing", MX: []string{"a.example"}, MaxAge: time.Hour},
		{Mode: Enforce, MaxAge: time.Hour},
		{Mode: Enforce, MX: []string{"a..example"}, MaxAge: time.Hour},
		{Mode: Enforce, MX: []string{"a.example"}, MaxAge: 0},
		{Mode: Enforce, MX: []string{"a.example"}, MaxAge: MaxMaxAge + time.Second},
	} {
		if bad.Check() == nil {
			t.Errorf("Check accepted %+v", *bad)
		}
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: Enforce, MX: []string{"mail.example.com", "*.example.net", "*.A.example.org"}}
	for host, want := range map[string]bool{
		"mail.example.com":    true,
		"MAIL.Example.COM.":   true,
		"mail2.example.com":   false,
		"x.mail.example.com":  false,
		"mx1.example.net":     true,
		"example.net":         false, // a wildcard needs one more label
		"a.b.example.net":     false, // and only one
		".example.net":        false,
		"b.a.example.org":     true,
		"example.com":         false,
		"mail.example.com.au": false,
	} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestRecord(t *testing.T) {
	for txt, wantID := range map[string]string{
		"v=STSv1; id=20160831085700Z":     "20160831085700Z",
		"v=STSv1;id=abc;":                 "abc",
		"v=STSv1 ;\tid=abc ; ext=va:lue ": "abc",
		"v=STSv1; id=first; id=second":    "first",
	} {
		r, err := ParseRecord(txt)
		if err != nil || r.ID != wantID {
			t.Errorf("ParseRecord(%q) = %+v, %v; want id %q", txt, r, err, wantID)
		}
	}
	for _, txt := range []string{
		"", "v=STSv2; id=a", "V=STSv1; id=a", "v=STSv1", "v=STSv1;", "v=STSv1; id=", "v=STSv1; id=a-b",
		"v=STSv1; id=" + strings.Repeat("a", 33), "v=STSv1; ID=a", "v=STSv1x; id=a", "v=STSv1; id=a;; x=y",
		"v=STSv1; id=a; ext=a=b", "v=STSv1; id=a; ext=", "id=a; v=STSv1",
	} {
		if r, err := ParseRecord(txt); err == nil {
			t.Errorf("ParseRecord(%q) accepted: %+v", txt, r)
		}
	}
	r := Record{ID: (&Policy{Mode: Enforce, MX: []string{"a.example"}, MaxAge: time.Hour}).ID()}
	if back, err := ParseRecord(r.String()); err != nil || back.ID != r.ID {
		t.Fatalf("%q: %v", r.String(), err)
	}
	if RecordName("example.com.") != "_mta-sts.example.com" || PolicyURL("example.com") != "https://mta-sts.example.com/.well-known/mta-sts.txt" {
		t.Fatal(RecordName("example.com."), PolicyURL("example.com"))
	}

	// RFC 8461 section 3.1: other TXT records are ignored; exactly one
	// v=STSv1 record must remain.
	if r, err := SelectRecord([]string{"v=spf1 -all", "v=STSv1; id=x1"}); err != nil || r.ID != "x1" {
		t.Errorf("SelectRecord: %+v %v", r, err)
	}
	if _, err := SelectRecord([]string{"v=spf1 -all"}); err != ErrNoRecord {
		t.Errorf("no record: %v", err)
	}
	if _, err := SelectRecord([]string{"v=STSv1; id=a", "v=STSv1; id=b"}); err == nil {
		t.Error("two records accepted")
	}
	if _, err := SelectRecord([]string{"v=STSv1; id=a!"}); err == nil {
		t.Error("an invalid record accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmax_age: 604800\r\n")
	f.Add("version: STSv1\nmode: none\nmax_age: 0")
	f.Add("version: STSv1\nmode: testing\nmx: a.example\nmax_age: 9999999999")
	f.Fuzz(func(t *testing.T, body string) {
		p, err := Parse(body)
		if err != nil {
			return
		}
		if p.MaxAge < 0 || p.MaxAge > MaxMaxAge || (p.Mode != None && len(p.MX) == 0) {
			t.Fatalf("%q parsed to %+v", body, *p)
		}
		// What parses writes back to something that parses the same.
		q, err := Parse(p.String())
		if err != nil {
			t.Fatalf("%q parsed, its String %q does not: %v", body, p.String(), err)
		}
		if q.String() != p.String() {
			t.Fatalf("round trip changed %q to %q", p.String(), q.String())
		}
	})
}
