package e2e

import (
	"slices"
	"strings"
	"testing"
)

// TestSMTPUTF8 is internationalized mail end to end (RFC 6531, RFC 6532,
// RFC 6856): a user with a UTF-8 local part in a domain given in U-labels
// and an alias with a UTF-8 local part, made with the CLI; a message
// with UTF-8 addresses and header fields sent by Python's smtplib with
// SMTPUTF8; retrieved unchanged by poplib after UTF8, logging in with the
// UTF-8 name.
func TestSMTPUTF8(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("Jürgen@Bücher.example", "pässwörd")
	in.addUser("zoë@example.org", "pw-z")
	in.must("", "alias", "add", "josé@example.org", "zoë@example.org")
	if out := in.must("", "user", "list"); !strings.Contains(out, "jürgen@xn--bcher-kva.example") || !strings.Contains(out, "zoë@example.org") {
		t.Fatalf("user list:\n%s", out)
	}
	in.start()

	msg := "From: Señor Núñez <señor@ejemplo.test>\r\nTo: jürgen@bücher.example, josé@example.org\r\n" +
		"Subject: Grüße aus Köln\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\nÄrger über Öl.\r\n"
	r := sendmail(t, smtpSend{addr: in.addr("smtp"), from: "señor@ejemplo.test",
		to: []string{"jürgen@bücher.example", "josé@example.org"}, msg: msg, options: []string{"SMTPUTF8"}})
	if r.code() != 250 || len(r.Refused) != 0 {
		t.Fatalf("SMTPUTF8 send: %+v", r)
	}

	for _, box := range []struct{ login, password, deliveredTo string }{
		{"jürgen@bücher.example", "pässwörd", "jürgen@xn--bcher-kva.example"},
		{"zoë@example.org", "pw-z", "zoë@example.org"},
	} {
		res := pop(t, in.addr("pop3"), "plain", []any{"capa"}, []any{"utf8"}, []any{"user", box.login},
			[]any{"pass_", box.password}, []any{"retr", 1}, []any{"quit"})
		if caps, ok := res[1].(map[string]any); !ok || caps["UTF8"] == nil || !slices.Contains(caps["UTF8"].([]any), any("USER")) {
			t.Errorf("CAPA: %v, want UTF8 USER", res[1])
		}
		if got := unb64(t, res[2]); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("UTF8: %q", got)
		}
		if e := errorOf(t, res[4]); e != "" {
			t.Fatalf("login as %s: %s", box.login, e)
		}
		body, _ := retrBytes(t, res[5])
		trace, rest := splitTrace(t, body)
		if rest != msg {
			t.Errorf("%s: message changed:\n got %q\nwant %q", box.login, rest, msg)
		}
		for _, want := range []string{"Return-Path: <señor@ejemplo.test>\r\n", "Delivered-To: " + box.deliveredTo + "\r\n", "with UTF8SMTP id"} {
			if !strings.Contains(trace, want) {
				t.Errorf("%s: trace lacks %q:\n%s", box.login, want, trace)
			}
		}
	}
}
