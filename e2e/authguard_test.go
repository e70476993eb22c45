package e2e

import (
	"strings"
	"testing"
)

// TestLoginBan: repeated failures from one address ban it for POP3 and
// SMTP AUTH alike (answered -ERR [SYS/TEMP] and 454 4.7.0), even with the
// right password; the ban is logged.
func TestLoginBan(t *testing.T) {
	in := newInstanceWith(t, map[string]string{"auth": "ip_ban_after = 3\nname_ban_after = 100\nban_time = 600"})
	in.addUser("victim@example.org", "right")
	in.addUser("other@example.org", "pw-o")
	in.start()

	// A correct login works and is not slowed into a ban.
	p := dialPOP(t, in.addr("pop3"))
	p.login("victim@example.org", "right")
	p.quit()

	p = dialPOP(t, in.addr("pop3"))
	for range 3 {
		p.cmd("USER victim@example.org")
		if r := p.cmd("PASS wrong"); !strings.HasPrefix(r, "-ERR [AUTH]") {
			t.Fatalf("wrong password: %q", r)
		}
	}
	p.cmd("USER victim@example.org")
	if r := p.cmd("PASS right"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Fatalf("banned address logged in: %q", r)
	}
	// The whole address is banned, whatever the name, and for SMTP AUTH.
	q := dialPOP(t, in.addr("pop3"))
	q.cmd("USER other@example.org")
	if r := q.cmd("PASS pw-o"); !strings.HasPrefix(r, "-ERR [SYS/TEMP]") {
		t.Fatalf("other user from the banned address: %q", r)
	}
	r := sendmail(t, smtpSend{addr: in.addr("submission"), starttls: true, user: "other@example.org", password: "pw-o",
		from: "other@example.org", to: []string{"victim@example.org"}, msg: plainMsg})
	if r.code() != 454 {
		t.Fatalf("SMTP AUTH from the banned address: %+v, want 454", r)
	}
	if !strings.Contains(in.logText(), "too many failed logins: banned") {
		t.Error("the ban was not logged")
	}
}
