package smtpd

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestSizeDeclaredTooBig(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxMessageBytes = 500 }})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test> SIZE=501", 552, "5.3.4") // RFC 1870
	c.cmd("MAIL FROM:<a@sender.test> SIZE=500", 250, "2.1.0")
}

// The body is counted while it streams: past the limit Deliver sees
// ErrMessageTooBig, stores nothing, and the client gets 552 5.3.4 after
// its end of data, on a connection still in step.
func TestSizeOverrunWhileStreaming(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxMessageBytes = 1000 }})
	c := h.dial()
	c.ehlo()
	big := strings.Repeat("0123456789abcdefghijklmnopqrstuvwxyz\r\n", 200) // 7600 octets
	c.transaction("a@sender.test", "b@example.org", big, 552, "5.3.4")
	c.cmd("NOOP", 250, "2.0.0")

	// BDAT: refused at the chunk that crosses the limit.
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.send("BDAT 600\r\n" + strings.Repeat("x", 598) + "\r\n")
	c.expect(250, "2.0.0")
	c.send("BDAT 600 LAST\r\n" + strings.Repeat("y", 598) + "\r\n")
	c.expect(552, "5.3.4")
	c.cmd("NOOP", 250, "2.0.0")

	if d := h.be.deliveries(); len(d) != 0 {
		t.Fatalf("%d messages stored", len(d))
	}
	h.be.mu.Lock()
	defer h.be.mu.Unlock()
	if len(h.be.readErrs) == 0 || !errors.Is(h.be.readErrs[0], ErrMessageTooBig) {
		t.Fatalf("Deliver saw %v, want ErrMessageTooBig", h.be.readErrs)
	}
}

// Every octet but CR and LF, in 8-bit, arrives as sent, and dot-stuffing
// is undone (RFC 5321 section 4.5.2).
func TestEightBitBodyExact(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	var want bytes.Buffer
	want.WriteString("Subject: 8bit\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	for b := 0; b < 256; b++ {
		if b != '\r' && b != '\n' {
			want.WriteByte(byte(b))
		}
		if b%64 == 63 {
			want.WriteString("\r\n")
		}
	}
	want.WriteString("\r\n.leading dot\r\n..two dots\r\n.\tdot tab\r\n")
	stuffed := strings.ReplaceAll(want.String(), "\r\n.", "\r\n..")

	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test> BODY=8BITMIME", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send(stuffed + ".\r\n")
	c.expect(250, "2.0.0")
	d := h.be.deliveries()
	if len(d) != 1 || !d[0].env.Body8Bit {
		t.Fatalf("deliveries %+v", d)
	}
	if !bytes.Equal(d[0].body, want.Bytes()) {
		t.Fatalf("body differs:\n got %q\nwant %q", d[0].body, want.Bytes())
	}
}

func TestBDAT(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test> BODY=8BITMIME", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	part1 := "Subject: chunks\r\n\r\n.no stuffing in BDAT\r\n"
	part2 := "caf\xc3\xa9\r\n.\r\nstill the same message\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	c.expect(250, "2.0.0")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	c.expect(250, "2.0.0")

	// A bare LF is refused in BDAT too: stored bodies are CRLF text.
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.send("BDAT 12 LAST\r\nbare\nLF\r\n...")
	c.expect(554, "5.6.0")
	c.cmd("NOOP", 250, "2.0.0")

	// RSET in the middle of a BDAT transaction stores nothing.
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.send("BDAT 3\r\nabc")
	c.expect(250, "2.0.0")
	c.cmd("RSET", 250, "2.0.0")
	c.cmd("QUIT", 221, "2.0.0")
	c.expectClosed()

	d := h.be.deliveries()
	if len(d) != 1 || string(d[0].body) != part1+part2 {
		t.Fatalf("deliveries %+v", d)
	}
}

// RFC 2920: a whole transaction in one write, answered in order.
func TestPipelining(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.send("EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\nRCPT TO:<b@example.org>\r\n" +
		"RCPT TO:<nobody@example.org>\r\nRCPT TO:<c@example.org>\r\nDATA\r\n" +
		"Subject: piped\r\n\r\nbody\r\n.\r\nMAIL FROM:<d@sender.test>\r\nRCPT TO:<e@example.org>\r\n" +
		"DATA\r\nsecond\r\n.\r\nQUIT\r\n")
	c.expect(250, "mx.test Hello client.test")
	for _, want := range []struct {
		code   int
		prefix string
	}{{250, "2.1.0"}, {250, "2.1.5"}, {250, "2.1.5"}, {250, "2.1.5"}, {354, ""}, {250, "2.0.0"},
		{250, "2.1.0"}, {250, "2.1.5"}, {354, ""}, {250, "2.0.0"}, {221, "2.0.0"}} {
		c.expect(want.code, want.prefix)
	}
	c.expectClosed()
	d := h.be.deliveries()
	if len(d) != 2 || len(d[0].env.To) != 3 || string(d[0].body) != "Subject: piped\r\n\r\nbody\r\n" ||
		string(d[1].body) != "second\r\n" {
		t.Fatalf("deliveries %+v", d)
	}
}

// SMTP smuggling: only CRLF.CRLF ends DATA. A body with a bare CR or LF
// is refused whole (554 5.6.0) after the real end of data; what follows a
// fake end-of-data marker is never run as commands, and no message is
// split in two.
func TestSmuggling(t *testing.T) {
	smuggled := "MAIL FROM:<evil@smuggler.test>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n" +
		"From: ceo@example.org\r\nSubject: smuggled\r\n\r\nwire the money\r\n"
	for _, tc := range []struct {
		name, marker string
		refused      bool // else accepted as one message
	}{
		{"CRLF.LF", "\r\n.\n", true},
		{"LF.CRLF", "\n.\r\n", true},
		{"CR.CR", "\r.\r", true},
		{"LF.LF", "\n.\n", true},
		{"CR.CRLF", "\r.\r\n", true},
		{"LF.CR", "\n.\r", true},
		// Dot-unstuffing removes the leading dot only (RFC 5321 section
		// 4.5.2): the CR after it is a bare CR, in plaintext and in TLS
		// alike (go-smtp dropped it with the dot; see gosmtp/README.md).
		{"CRLF.CR", "\r\n.\r", true},
		{"CRLF.CR+text", "\r\n.\rX-Text: after the dot\r\n", true},
		{"CRLF.CRCRLF", "\r\n.\r\r\n", true},
		{"CRLF.CR STARTTLS", "\r\n.\r", true},
		// A NUL is data (not a line ending): one message.
		{"CRLF.NUL", "\r\n.\x00\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, harnessOpt{})
			c := h.dial()
			if strings.HasSuffix(tc.name, "STARTTLS") {
				c.ehlo()
				c = c.startTLS()
			}
			c.ehlo()
			c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
			c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
			c.cmd("DATA", 354, "")
			c.send("Subject: innocent\r\n\r\nhello" + tc.marker + smuggled + "\r\n.\r\n")
			if tc.refused {
				c.expect(554, "5.6.0")
			} else {
				c.expect(250, "2.0.0")
			}
			// The next reply answers NOOP, not a smuggled command.
			if msg := c.cmd("NOOP", 250, "2.0.0"); msg != "2.0.0 Ok" {
				t.Fatalf("reply to NOOP: %q", msg)
			}
			if h.be.sawSender("evil@smuggler.test") {
				t.Fatal("smuggled MAIL FROM was executed")
			}
			d := h.be.deliveries()
			switch {
			case tc.refused && len(d) != 0:
				t.Fatalf("refused message stored: %q", d[0].body)
			case !tc.refused && (len(d) != 1 || !bytes.HasPrefix(d[0].body, []byte("Subject: innocent\r\n")) ||
				!bytes.Contains(d[0].body, []byte("wire the money"))):
				t.Fatalf("deliveries %+v", d)
			}
		})
	}
}
