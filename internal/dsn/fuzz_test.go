package dsn

import (
	"bufio"
	"bytes"
	"io"
	"net/textproto"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// FuzzBuild: a notification carries text that others chose (the remote
// host's reply and name, the sender's ENVID and ORCPT, the addresses),
// and none of it may add a field or a line to what postoffice writes: the
// message parses, with exactly its own header fields, three parts, a
// delivery-status part of one block per recipient holding only RFC 3464's
// fields, and a human-readable part of as many lines as the same report
// with harmless text.
func FuzzBuild(f *testing.F) {
	f.Add("sender@example.org", "ABC", "env-1", "a@example.net", "list@example.org", "rfc822", "mx.example.net",
		"expired", "no such\r\nX-Injected: yes", 550, uint8(2), uint8(0))
	f.Add("\"a b\"@example.org", "id\r\nBcc: x", "e\x00\n", "b@[192.0.2.1]", "", "", "", "", "", 0, uint8(1), uint8(1))
	f.Add("<>", "", "", "c@example.net", "x@y", "utf-8", "h\r\n\r\n--", "d\r\n.\r\n", "t\n\nBody", 421, uint8(3), uint8(2))
	f.Fuzz(func(t *testing.T, to, id, envID, final, original, origType, remoteMTA, detail, replyText string, code int, n, action uint8) {
		rcpts := int(n%3) + 1
		at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
		report := func(to, id, envID, final, original, origType, remoteMTA, detail, replyText string) Report {
			r := Report{ReportingMTA: "mx.test", To: to, ID: id, EnvID: envID, Arrival: at, Date: at,
				OriginalHeader: []byte("From: sender@example.org\r\nSubject: s\r\n\r\n")}
			actions := []string{Failed, Delayed, Delivered, Relayed}
			for i := range rcpts {
				rc := Recipient{Original: original, OriginalType: origType, Final: final,
					Action: actions[(int(action)+i)%len(actions)], Status: "5.0.0", RemoteMTA: remoteMTA,
					Detail: detail, LastTry: at}
				if code != 0 {
					rc.Reply = smtpreply.New(200+(code%400+400)%400, "", strings.Split(replyText, "\n")...)
				}
				r.Recipients = append(r.Recipients, rc)
			}
			return r
		}
		raw := Build(report(to, id, envID, final, original, origType, remoteMTA, detail, replyText))
		bodies := parseReport(t, raw, rcpts)
		clean := parseReport(t, Build(report("s@example.org", "ID", "env", "f@example.net", nonEmpty(original, "o@example.org"),
			nonEmpty(origType, "rfc822"), nonEmpty(remoteMTA, "mx.example.net"), nonEmpty(detail, "d"), "text")), rcpts)
		if got, want := strings.Count(bodies[0], "\n"), strings.Count(clean[0], "\n"); got != want {
			t.Fatalf("human-readable part of %d lines, %d with harmless text:\n%s", got, want, bodies[0])
		}
	})
}

// nonEmpty is instead where s is not empty: the harmless stand-in leaves
// an optional field present or absent as the fuzzed report has it.
func nonEmpty(s, instead string) string {
	if s == "" {
		return ""
	}
	return instead
}

// msgID is the Message-ID of a notification from mx.test: a msg-id whose
// left side is dot-atom-text (RFC 5322 section 3.6.4).
var msgID = regexp.MustCompile(`^<[0-9]+(\.[a-z0-9_-]+)?@mx\.test>$`)

// parseReport checks the notification's structure and returns its parts.
func parseReport(t *testing.T, raw []byte, rcpts int) []string {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatalf("bare LF in\n%q", raw)
	}
	header, _, bodies := parts(t, raw)
	var names []string
	for k := range header {
		names = append(names, k)
	}
	slices.Sort(names)
	if want := []string{"Auto-Submitted", "Content-Type", "Date", "From", "Message-Id", "Mime-Version", "Subject", "To"}; !slices.Equal(names, want) {
		t.Fatalf("header fields %v, want %v:\n%q", names, want, raw)
	}
	if id := header.Get("Message-Id"); !msgID.MatchString(id) {
		t.Fatalf("Message-ID %q", id)
	}
	if len(bodies) != 3 {
		t.Fatalf("%d parts:\n%q", len(bodies), raw)
	}
	perMessage := []string{"Original-Envelope-Id", "Reporting-Mta", "Arrival-Date", "X-Postoffice-Queue-Id"}
	perRecipient := []string{"Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-Mta",
		"Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until"}
	tr := textproto.NewReader(bufio.NewReader(strings.NewReader(bodies[1])))
	for block := 0; ; block++ {
		h, err := tr.ReadMIMEHeader()
		if len(h) == 0 && err == io.EOF {
			if block != rcpts+1 {
				t.Fatalf("%d blocks in the delivery status, want %d:\n%s", block, rcpts+1, bodies[1])
			}
			break
		}
		if err != nil && err != io.EOF {
			t.Fatalf("delivery status: %v:\n%s", err, bodies[1])
		}
		allowed := perRecipient
		if block == 0 {
			allowed = perMessage
		}
		for k, v := range h {
			if !slices.Contains(allowed, k) || len(v) != 1 {
				t.Fatalf("block %d: field %s (%d times):\n%s", block, k, len(v), bodies[1])
			}
		}
	}
	return bodies
}
