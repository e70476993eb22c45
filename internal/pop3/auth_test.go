package pop3

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const loggedIn = "+OK Maildrop has 3 messages (134 octets)"

func TestAuth(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		// loggedIn: the session ends in TRANSACTION.
		loggedIn bool
	}{
		{"list mechanisms", []step{{"AUTH", "+OK", "PLAIN\r\nLOGIN\r\n.\r\n"}}, false},
		{"plain initial response", []step{{"AUTH PLAIN " + b64("\x00alice\x00secret"), loggedIn, ""}}, true},
		{"plain lower case", []step{{"auth plain " + b64("\x00alice\x00secret"), loggedIn, ""}}, true},
		{"plain continuation", []step{
			{"AUTH PLAIN", "+ ", ""},
			{b64("\x00alice\x00secret"), loggedIn, ""},
		}, true},
		{"plain authzid equal", []step{{"AUTH PLAIN " + b64("alice\x00alice\x00secret"), loggedIn, ""}}, true},
		{"plain authzid differs", []step{{"AUTH PLAIN " + b64("bob\x00alice\x00secret"), authFailed, ""}}, false},
		{"plain wrong password then retry", []step{
			{"AUTH PLAIN " + b64("\x00alice\x00wrong"), authFailed, ""},
			{"AUTH PLAIN " + b64("\x00alice\x00secret"), loggedIn, ""},
		}, true},
		{"plain unknown user", []step{{"AUTH PLAIN " + b64("\x00nobody\x00secret"), authFailed, ""}}, false},
		{"plain cancel", []step{
			{"AUTH PLAIN", "+ ", ""},
			{"*", "-ERR Authentication cancelled", ""},
			{"STAT", notInState, ""},
		}, false},
		{"plain bad base64 initial", []step{{"AUTH PLAIN !!!notbase64", "-ERR Invalid base64 data in initial response", ""}}, false},
		{"plain bad base64 continuation", []step{
			{"AUTH PLAIN", "+ ", ""},
			{"%%%", "-ERR Invalid base64 data in response", ""},
		}, false},
		{"plain empty initial response", []step{{"AUTH PLAIN =", "-ERR Malformed authentication exchange", ""}}, false},
		{"plain empty continuation", []step{
			{"AUTH PLAIN", "+ ", ""},
			{"", "-ERR Malformed authentication exchange", ""},
		}, false},
		{"plain \"=\" continuation", []step{
			{"AUTH PLAIN", "+ ", ""},
			{"=", "-ERR Malformed authentication exchange", ""},
		}, false},
		{"login empty password", []step{
			{"AUTH LOGIN " + b64("alice"), "+ UGFzc3dvcmQ6", ""},
			{"", authFailed, ""},
		}, false},
		{"plain no NULs", []step{{"AUTH PLAIN " + b64("alice secret"), "-ERR Malformed authentication exchange", ""}}, false},
		{"plain continuation too long", []step{
			{"AUTH PLAIN", "+ ", ""},
			{strings.Repeat("QUFB", 3000), "-ERR Authentication response too long", ""},
			{"NOOP", notInState, ""},
		}, false},
		{"login initial response", []step{
			{"AUTH LOGIN " + b64("alice"), "+ UGFzc3dvcmQ6", ""},
			{b64("secret"), loggedIn, ""},
		}, true},
		{"login prompts", []step{
			{"AUTH LOGIN", "+ VXNlcm5hbWU6", ""},
			{b64("alice"), "+ UGFzc3dvcmQ6", ""},
			{b64("secret"), loggedIn, ""},
		}, true},
		{"login wrong password", []step{
			{"AUTH LOGIN", "+ VXNlcm5hbWU6", ""},
			{b64("alice"), "+ UGFzc3dvcmQ6", ""},
			{b64("nope"), authFailed, ""},
		}, false},
		{"login cancel at password", []step{
			{"AUTH LOGIN " + b64("alice"), "+ UGFzc3dvcmQ6", ""},
			{"*", "-ERR Authentication cancelled", ""},
		}, false},
		{"login bad base64", []step{
			{"AUTH LOGIN", "+ VXNlcm5hbWU6", ""},
			{"a", "-ERR Invalid base64 data in response", ""},
		}, false},
		{"login password with space", []step{
			{"AUTH LOGIN " + b64("bob"), "+ UGFzc3dvcmQ6", ""},
			{b64("hunter 2"), "+OK Maildrop has 0 messages (0 octets)", ""},
		}, true},
		{"unsupported mechanism", []step{{"AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism", ""}}, false},
		{"too many arguments", []step{{"AUTH PLAIN a b", "-ERR Syntax error: AUTH mechanism [initial-response]", ""}}, false},
		{"AUTH forgets USER", []step{
			{"USER alice", "+OK", ""},
			{"AUTH PLAIN", "+ ", ""},
			{"*", "-ERR Authentication cancelled", ""},
			{"PASS secret", "-ERR No user name given, send USER first", ""},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := e.dial()
			run(t, c, tt.steps)
			if tt.loggedIn {
				c.expect("NOOP", "+OK")
				c.expect("AUTH PLAIN", notInState)
			} else {
				c.expect("NOOP", notInState)
			}
			if got := c.cmd("QUIT"); !strings.HasPrefix(got, "+OK pop.test POP3 server signing off") {
				t.Fatalf("QUIT: %q", got)
			}
			c.expectEOF()
		})
	}
}

func capa(t *testing.T, c *client) []string {
	t.Helper()
	c.expect("CAPA", "+OK Capability list follows")
	return c.lines()
}

var (
	capsPlain   = []string{"USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN LOGIN", "UTF8 USER", "IMPLEMENTATION postoffice"}
	capsPlainTL = []string{"USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN LOGIN", "STLS", "UTF8 USER", "IMPLEMENTATION postoffice"}
	capsSecure  = []string{"TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "STLS", "UTF8 USER", "IMPLEMENTATION postoffice"}
)

func checkCaps(t *testing.T, c *client, want []string) {
	t.Helper()
	if got := capa(t, c); !slices.Equal(got, want) {
		t.Fatalf("CAPA\n got %q\nwant %q", got, want)
	}
}

func TestCapaLoopback(t *testing.T) {
	t.Run("no TLS config", func(t *testing.T) {
		e := newEnv(t, nil)
		c := e.dial()
		checkCaps(t, c, capsPlain)
		c.login()
		checkCaps(t, c, capsPlain) // RFC 2449 section 5: same in both states
	})
	t.Run("TLS config", func(t *testing.T) {
		e := newEnv(t, nil, withTLS)
		c := e.dial()
		checkCaps(t, c, capsPlainTL)
		c.login()
		checkCaps(t, c, capsPlainTL)
	})
}

// On a non-TLS, non-loopback connection the password may not be sent in
// the clear: USER and SASL are not advertised and are refused (RFC 2595
// section 2.3; RFC 8314 section 5.2) until STLS.
func TestPlaintextPolicyNonLoopback(t *testing.T) {
	const disallowed = "-ERR [AUTH] Plaintext authentication disallowed on non-secure (SSL/TLS) connections."
	e := newEnv(t, nonLoopback, withTLS)
	c := e.dial()
	checkCaps(t, c, capsSecure)
	run(t, c, []step{
		{"USER alice", disallowed, ""},
		{"PASS secret", disallowed, ""},
		{"AUTH PLAIN " + b64("\x00alice\x00secret"), disallowed, ""},
		{"AUTH LOGIN", disallowed, ""},
		{"AUTH", "+OK", ".\r\n"},
		{"AUTH CRAM-MD5", "-ERR Unsupported authentication mechanism", ""},
		{"STLS", "+OK Begin TLS negotiation", ""},
	})
	c.starttls()
	checkCaps(t, c, []string{"USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL PLAIN LOGIN", "UTF8 USER", "IMPLEMENTATION postoffice"})
	c.expect("AUTH", "+OK")
	c.multi()
	c.login()
	checkCaps(t, c, capsPlain)
	if opened, _, _, _ := e.be.snapshot(); opened != 1 {
		t.Fatalf("opened %d", opened)
	}
	// No credential reached the backend while in plaintext.
	e.be.mu.Lock()
	calls := e.be.authCalls
	e.be.mu.Unlock()
	if calls != 1 {
		t.Errorf("Authenticate called %d times, want 1 (after STLS only)", calls)
	}
}

func TestPlaintextPolicyAllowed(t *testing.T) {
	e := newEnv(t, nonLoopback, func(c *Config) { c.AllowPlaintextAuth = true })
	c := e.dial()
	checkCaps(t, c, capsPlain)
	c.login()
	c.expect("STAT", "+OK 3 134")
}

// No password, nor its base64 form, ever reaches the logs, at debug level.
func TestNoPasswordsInLogs(t *testing.T) {
	const pw = "Sup3r-S3cret-Pw"
	e := newEnv(t, nil)
	e.be.set(func(b *fakeBackend) { b.users["carol"] = pw })
	for _, steps := range [][]step{
		{{"USER carol", "+OK", ""}, {"PASS " + pw + "x", authFailed, ""}},
		{{"USER carol", "+OK", ""}, {"PASS " + pw, "+OK Maildrop has 0 messages (0 octets)", ""}},
		{{"AUTH PLAIN " + b64("\x00carol\x00"+pw), "+OK Maildrop has 0 messages (0 octets)", ""}},
		{{"AUTH PLAIN " + b64("\x00carol\x00"+pw+"x"), authFailed, ""}},
		{{"AUTH LOGIN " + b64("carol"), "+ UGFzc3dvcmQ6", ""}, {b64(pw), "+OK Maildrop has 0 messages (0 octets)", ""}},
		{{"AUTH LOGIN " + b64("carol"), "+ UGFzc3dvcmQ6", ""}, {b64(pw + "y"), authFailed, ""}},
	} {
		c := e.dial()
		run(t, c, steps)
		c.cmd("QUIT")
		c.expectEOF()
	}
	e.be.waitClosed(t, 3)
	logs := e.logs.String()
	for _, secret := range []string{pw, b64(pw), b64("\x00carol\x00" + pw), "S3cret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "msg=login ") || !strings.Contains(logs, `msg="authentication failed"`) {
		t.Errorf("expected login and failure logs, got:\n%s", logs)
	}
}
