package server

import (
	"io"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/milter"
)

// The milters' spam verdict is read from the changes they made only: a
// sender's own X-Spam-Score is no score.
func TestSpamOf(t *testing.T) {
	for _, tc := range []struct {
		name    string
		res     milter.Result
		marked  bool
		header  bool
		score   float64
		noScore bool
	}{
		{name: "nothing", res: milter.Result{}, noScore: true},
		{name: "rspamd add header", res: milter.Result{Changes: []milter.Change{
			{Kind: milter.InsertHeader, Name: "X-Spam", Value: "Yes"},
			{Kind: milter.AddHeader, Name: "X-Spamd-Result", Value: "default: True [7.40 / 15.00];\n\tGTUBE(0.00)[]"},
		}}, marked: true, header: true, score: 7.4},
		{name: "rspamd clean", res: milter.Result{Changes: []milter.Change{
			{Kind: milter.AddHeader, Name: "X-Spam-Status", Value: "No, score=-0.10"},
			{Kind: milter.AddHeader, Name: "X-Spamd-Result", Value: "default: False [-0.10 / 15.00];"},
		}}, score: -0.1},
		{name: "spamassassin", res: milter.Result{Changes: []milter.Change{
			{Kind: milter.ChangeHeader, Name: "X-Spam-Flag", Value: "YES"},
			{Kind: milter.AddHeader, Name: "X-Spam-Score", Value: "12.5"},
		}}, marked: true, score: 12.5},
		{name: "quarantine", res: milter.Result{Quarantine: "held"}, marked: true, noScore: true},
		{name: "deleted fields say nothing", res: milter.Result{Changes: []milter.Change{
			{Kind: milter.DeleteHeader, Name: "X-Spam", Value: "yes"},
		}}, noScore: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := spamOf(&tc.res)
			if v.marked != tc.marked || v.hasHeader != tc.header || (v.score == nil) != tc.noScore || v.score != nil && *v.score != tc.score {
				t.Errorf("got marked %v header %v score %v, want %v %v %v", v.marked, v.hasHeader, v.score, tc.marked, tc.header, tc.score)
			}
		})
	}
}

func TestMarkSpam(t *testing.T) {
	read := func(r io.Reader, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(r)
		return string(b)
	}
	msg := "From: a@example.net\r\nSubject: cheap\r\n watches\r\nTo: b@example.org\r\n\r\nBody\r\nSubject: not this\r\n"
	if got := read(markSpam(strings.NewReader(msg), true, "")); got != "X-Spam: yes\r\n"+msg {
		t.Errorf("no tag:\n%q", got)
	}
	want := "X-Spam: yes\r\nFrom: a@example.net\r\nSubject: [SPAM] cheap\r\n watches\r\nTo: b@example.org\r\n\r\nBody\r\nSubject: not this\r\n"
	if got := read(markSpam(strings.NewReader(msg), true, "[SPAM]")); got != want {
		t.Errorf("tagged:\n%q, want\n%q", got, want)
	}
	// Tagged once; a milter's own X-Spam is not doubled.
	again := "From: a@example.net\r\nsubject: [SPAM] cheap\r\n\r\nBody\r\n"
	if got := read(markSpam(strings.NewReader(again), false, "[SPAM]")); got != again {
		t.Errorf("tagged twice:\n%q", got)
	}
	// No Subject: the tag is the subject.
	if got := read(markSpam(strings.NewReader("From: a@example.net\r\n\r\nBody\r\n"), false, "[SPAM]")); got != "From: a@example.net\r\nSubject: [SPAM]\r\n\r\nBody\r\n" {
		t.Errorf("no subject:\n%q", got)
	}
	// An empty subject.
	if got := read(markSpam(strings.NewReader("Subject:\r\n\r\nB\r\n"), false, "[SPAM]")); got != "Subject: [SPAM]\r\n\r\nB\r\n" {
		t.Errorf("empty subject:\n%q", got)
	}
	// A header over 1 MiB is refused, not read whole.
	huge := "X-Big: " + strings.Repeat("a", 2<<20) + "\r\n\r\nB\r\n"
	if _, err := markSpam(strings.NewReader(huge), true, "[SPAM]"); err == nil {
		t.Errorf("a 2 MiB header was taken")
	}
}
