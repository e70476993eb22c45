package smtpd

import (
	"crypto/tls"
	"net"
	"net/textproto"
	"strings"
	"testing"
)

func submission(c *Config) { c.Submission = true }

func TestSubmissionRequiresAuth(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: submission})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<alice@example.org>", 530, "5.7.0") // RFC 6409 section 4.3
	// Loopback: AUTH allowed without TLS.
	c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 235, "2.7.0")
	c.transaction("alice@example.org", "bob@example.net", "Subject: s\r\n\r\nbody\r\n", 250, "2.0.0")
	d := h.be.deliveries()
	if len(d) != 1 || !d[0].env.Submission || d[0].env.AuthUser != "alice@example.org" {
		t.Fatalf("deliveries %+v", d)
	}
}

// Over STARTTLS from a non-loopback client: no AUTH before TLS, PLAIN and
// LOGIN after it.
func TestAuthOverSTARTTLS(t *testing.T) {
	for _, mech := range []string{"PLAIN", "PLAIN-IR", "LOGIN", "LOGIN-IR"} {
		t.Run(mech, func(t *testing.T) {
			h := newHarness(t, harnessOpt{cfg: submission, wrap: nonLoopback})
			c := h.dial()
			caps := strings.Split(c.ehlo(), "\n")
			if !contains(caps, "STARTTLS") || strings.Contains(strings.Join(caps, " "), "AUTH") {
				t.Fatalf("plaintext EHLO from 192.0.2.1: %q", caps)
			}
			c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 538, "5.7.11")
			c.cmd("MAIL FROM:<alice@example.org>", 530, "5.7.0")

			c = c.startTLS()
			caps = strings.Split(c.ehlo(), "\n")
			if !contains(caps, "AUTH PLAIN LOGIN") || contains(caps, "STARTTLS") {
				t.Fatalf("EHLO under TLS: %q", caps)
			}
			switch mech {
			case "PLAIN":
				c.cmd("AUTH PLAIN", 334, "")
				c.cmd(plainIR("alice", "secret-pw-1"), 235, "2.7.0")
			case "PLAIN-IR":
				c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 235, "2.7.0")
			case "LOGIN":
				if got := c.cmd("AUTH LOGIN", 334, ""); got != b64("Username:") {
					t.Fatalf("LOGIN challenge %q", got)
				}
				if got := c.cmd(b64("alice"), 334, ""); got != b64("Password:") {
					t.Fatalf("LOGIN challenge %q", got)
				}
				c.cmd(b64("secret-pw-1"), 235, "2.7.0")
			case "LOGIN-IR":
				c.cmd("AUTH LOGIN "+b64("alice"), 334, b64("Password:"))
				c.cmd(b64("secret-pw-1"), 235, "2.7.0")
			}
			c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 503, "5.5.1")
			c.transaction("alice@example.org", "bob@example.net", "x\r\n", 250, "2.0.0")
			d := h.be.deliveries()
			if len(d) != 1 || d[0].env.AuthUser != "alice@example.org" || !strings.HasPrefix(d[0].env.TLS, "TLS1.3 TLS_") ||
				d[0].env.RemoteAddr != "192.0.2.1:40000" {
				t.Fatalf("deliveries %+v", d)
			}
			if strings.Contains(h.logs.String(), "secret-pw-1") {
				t.Error("password in the log")
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: submission})
	c := h.dial()
	c.ehlo()
	c.cmd("AUTH PLAIN "+plainIR("alice", "wrong-pw-2"), 535, "5.7.8")
	c.cmd("AUTH LOGIN", 334, "")
	c.cmd(b64("alice"), 334, "")
	c.cmd(b64("wrong-pw-3"), 535, "5.7.8")
	c.cmd("AUTH PLAIN "+b64("only-one-part"), 501, "5.5.2")
	c.cmd("AUTH CRAM-MD5", 504, "5.5.4")
	c.cmd("AUTH LOGIN", 334, "")
	c.cmd("*", 501, "") // RFC 4954 section 4: cancelled
	// Another identity than the user's own (RFC 4616 authzid).
	c.cmd("AUTH PLAIN "+b64("bob\x00alice\x00secret-pw-1"), 535, "5.7.8")
	c.cmd("MAIL FROM:<alice@example.org>", 530, "5.7.0")
	logs := h.logs.String()
	if strings.Contains(logs, "wrong-pw") {
		t.Error("password in the log")
	}
	if !strings.Contains(logs, "authentication failed") || !strings.Contains(logs, "login=alice") {
		t.Errorf("failures not logged:\n%s", logs)
	}
}

func TestAuthNotDuringTransaction(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 503, "5.5.1") // RFC 4954 section 4
}

func TestPlaintextAuthAllowedByConfig(t *testing.T) {
	h := newHarness(t, harnessOpt{noTLS: true, wrap: nonLoopback, cfg: func(c *Config) { c.AllowPlaintextAuth = true }})
	c := h.dial()
	if caps := strings.Split(c.ehlo(), "\n"); !contains(caps, "AUTH PLAIN LOGIN") {
		t.Fatalf("EHLO: %q", caps)
	}
	c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 235, "2.7.0")
}

// Implicit TLS (RFC 8314 section 3.3): the caller passes tls.NewListener;
// the server sees TLS although the listener hides the *tls.Conn type from
// go-smtp, and allows AUTH to a non-loopback client.
func TestImplicitTLS(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: submission, noTLS: true, wrap: func(l net.Listener) net.Listener {
		return tls.NewListener(nonLoopback(l), serverTLS())
	}})
	tc, err := tls.Dial("tcp", h.addr, clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, tc)
	caps := strings.Split(c.ehlo(), "\n")
	if !contains(caps, "AUTH PLAIN LOGIN") || contains(caps, "STARTTLS") {
		t.Fatalf("EHLO: %q", caps)
	}
	c.cmd("STARTTLS", 502, "5.5.1")
	c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 235, "2.7.0")
	c.transaction("alice@example.org", "bob@example.net", "x\r\n", 250, "2.0.0")
	d := h.be.deliveries()
	if len(d) != 1 || !strings.HasPrefix(d[0].env.TLS, "TLS1.3 ") || d[0].env.AuthUser != "alice@example.org" {
		t.Fatalf("deliveries %+v", d)
	}
}

// A command pipelined behind STARTTLS in cleartext must not be executed
// inside the TLS session (CVE-2011-0411 class).
func TestSTARTTLSInjection(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	c.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
	c.expect(220, "2.0.0")
	tc := tls.Client(c.conn, clientTLS())
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	c = &client{t: t, conn: tc, tp: textproto.NewConn(tc)}
	c.ehlo() // the first reply under TLS is the one to EHLO
	c.cmd("RCPT TO:<b@example.org>", 503, "5.5.1")
	if h.be.sawSender("injected@evil.test") {
		t.Error("injected command executed")
	}
}

// NoAuth (the MX service by default): AUTH is neither advertised nor
// accepted, over TLS or from loopback alike.
func TestNoAuth(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.NoAuth = true }})
	c := h.dial()
	if caps := c.ehlo(); strings.Contains(caps, "AUTH") {
		t.Fatalf("EHLO offers AUTH: %q", caps)
	}
	c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 503, "5.5.1")
	c = c.startTLS()
	if caps := c.ehlo(); strings.Contains(caps, "AUTH") {
		t.Fatalf("EHLO after STARTTLS offers AUTH: %q", caps)
	}
	c.cmd("AUTH PLAIN "+plainIR("alice", "secret-pw-1"), 503, "5.5.1")
	c.cmd("MAIL FROM:<alice@example.org>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send("Subject: x\r\n\r\nx\r\n.\r\n")
	c.expect(250, "2.0.0")
	if d := h.be.deliveries(); len(d) != 1 || d[0].env.AuthUser != "" {
		t.Fatalf("deliveries %+v", d)
	}
}
