package smtpd

import (
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// RFC 5321 section 4.5.3.1.4: a command line is at most 512 octets, CRLF
// included; a longer one gets 500 5.5.2 (a 5,000-octet NOOP used to get
// 250). The rest of the line is read and dropped, however long: the
// session stays in step.
func TestOverlongCommandLine(t *testing.T) {
	h := newHarness(t, harnessOpt{})
	c := h.dial()
	c.ehlo()
	c.cmd("NOOP "+strings.Repeat("x", 505), 250, "2.0.0") // 512 octets
	c.cmd("NOOP "+strings.Repeat("x", 506), 500, "5.5.2") // 513
	c.cmd("NOOP "+strings.Repeat("x", 5000), 500, "5.5.2")
	c.cmd("XYZZY "+strings.Repeat("x", 600), 500, "5.5.2")
	c.cmd("NOOP "+strings.Repeat("x", 100000), 500, "5.5.2") // past the longest line read
	c.cmd("NOOP", 250, "2.0.0")
}

// RFC 5321 section 4.5.3.1.6: an overlong line inside DATA: 500 5.5.2,
// nothing stored, connection closed.
func TestOverlongDataLine(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxLineLength = 512 }})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send("Subject: long\r\n\r\n" + strings.Repeat("y", 3000) + "\r\n.\r\n")
	c.expect(500, "5.5.2")
	c.expectClosed()
	if d := h.be.deliveries(); len(d) != 0 {
		t.Fatalf("%d messages stored", len(d))
	}
}

// MaxErrors error replies to MAIL/RCPT/AUTH: the last is followed by
// 421 4.7.0 and the connection is closed.
func TestTooManyErrors(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxErrors = 3 }})
	h.be.rcptErr = func(*Envelope, string) error {
		return smtpreply.New(550, "5.1.1", "No such user")
	}
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<harvester@spam.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<a@example.org>", 550, "5.1.1")
	c.cmd("RCPT TO:<b@example.org>", 550, "5.1.1")
	c.cmd("RCPT TO:<c@example.org>", 550, "5.1.1")
	c.expect(421, "4.7.0")
	c.expectClosed()
}

// An idle client is cut off with 421 4.4.2 (RFC 5321 section 4.5.3.2).
func TestReadTimeoutIdle(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.ReadTimeout = 150 * time.Millisecond }})
	c := h.dial()
	c.expect(421, "4.4.2")
	c.expectClosed()
}

// A client that stalls in the middle of DATA is cut off; nothing stored.
func TestReadTimeoutInData(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.ReadTimeout = 150 * time.Millisecond }})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	c.send("Subject: slow\r\n\r\nfirst line\r\n")
	c.expect(421, "4.4.2")
	c.expectClosed()
	if d := h.be.deliveries(); len(d) != 0 {
		t.Fatalf("%d messages stored", len(d))
	}
	if !strings.Contains(h.logs.String(), "reason=timeout") {
		t.Errorf("timeout in DATA not logged:\n%s", h.logs.String())
	}
}

// During DATA the read timeout is an inactivity timer (RFC 5321 section
// 4.5.3.2.5): a body that keeps arriving may take longer than it.
func TestReadTimeoutIsPerReadInData(t *testing.T) {
	// Gaps of a fifth of the timer, so that a loaded machine does not
	// stretch one past it; the whole body takes longer than the timer.
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.ReadTimeout = time.Second }})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	for i := 0; i < 8; i++ { // 1.6 s in all, 200 ms between pieces
		c.send("line\r\n")
		time.Sleep(200 * time.Millisecond)
	}
	c.send(".\r\n")
	c.expect(250, "2.0.0")
	if d := h.be.deliveries(); len(d) != 1 || len(d[0].body) != 48 {
		t.Fatalf("deliveries %+v", d)
	}
}

// A slow-loris body (a byte now and then, each well within the inactivity
// timer) is cut off by the whole-body DataTimeout; nothing is stored.
func TestSlowLorisData(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) {
		c.ReadTimeout = 5 * time.Second
		c.DataTimeout = 300 * time.Millisecond
	}})
	c := h.dial()
	c.ehlo()
	c.cmd("MAIL FROM:<a@sender.test>", 250, "2.1.0")
	c.cmd("RCPT TO:<b@example.org>", 250, "2.1.5")
	c.cmd("DATA", 354, "")
	done := make(chan int)
	go func() {
		n := 0
		for ; n < 100; n++ { // would take 5 s in all, then stall
			if _, err := c.conn.Write([]byte("x")); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		done <- n
	}()
	c.expect(421, "4.4.2")
	c.expectClosed()
	if n := <-done; n == 100 {
		t.Fatal("the server let the whole slow body in: not cut off while it trickled")
	}
	if d := h.be.deliveries(); len(d) != 0 {
		t.Fatalf("%d messages stored", len(d))
	}
}

// Commands pipelined behind the one that hit MaxErrors are already in
// go-smtp's buffer; none of them reaches the backend.
func TestTooManyErrorsStopsPipeline(t *testing.T) {
	h := newHarness(t, harnessOpt{cfg: func(c *Config) { c.MaxErrors = 2 }})
	h.be.rcptErr = func(*Envelope, string) error {
		return smtpreply.New(550, "5.1.1", "No such user")
	}
	c := h.dial()
	c.ehlo()
	c.send("MAIL FROM:<a@spam.test>\r\nRCPT TO:<x@example.org>\r\nRCPT TO:<y@example.org>\r\n" +
		"RSET\r\nMAIL FROM:<after@spam.test>\r\nRCPT TO:<z@example.org>\r\nDATA\r\nbody\r\n.\r\n")
	c.expect(250, "2.1.0")
	c.expect(550, "5.1.1")
	c.expect(550, "5.1.1")
	c.expect(421, "4.7.0")
	c.expectClosed()
	if h.be.sawSender("after@spam.test") {
		t.Fatal("a command after the error limit reached the backend")
	}
}
