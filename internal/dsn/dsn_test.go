package dsn

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// TestBuildParses checks the structure RFC 3464 section 2 requires: a
// multipart/report with report-type delivery-status, a human part, a
// message/delivery-status part with per-message and per-recipient fields,
// and the original header section.
func TestBuildParses(t *testing.T) {
	at := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	raw := Build(Report{
		ReportingMTA: "mx.test", To: "sender@example.org", ID: "ABC", Arrival: at, Date: at,
		OriginalHeader: []byte("From: sender@example.org\r\nSubject: lost\r\n\r\n"),
		Recipients: []Recipient{
			{Final: "a@example.net", Original: "list@example.org", Action: Failed, Status: "5.1.1", RemoteMTA: "mx.example.net", Diagnostic: "550 5.1.1 no\r\n such user", LastTry: at},
			{Final: "b@example.net", Action: Failed, Status: "4.4.7", Diagnostic: "expired"},
		},
	})
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Fatal("bare LF in the notification")
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("To") != "<sender@example.org>" || m.Header.Get("Auto-Submitted") != "auto-replied" ||
		!strings.HasPrefix(m.Header.Get("From"), "Mail Delivery System <MAILER-DAEMON@mx.test>") {
		t.Errorf("header: %v", m.Header)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Fatalf("content type %q %v %v", mt, params, err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var types []string
	var parts [][]byte
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		types = append(types, p.Header.Get("Content-Type"))
		parts = append(parts, b)
	}
	if len(types) != 3 || !strings.HasPrefix(types[0], "text/plain") || types[1] != "message/delivery-status" || types[2] != "text/rfc822-headers" {
		t.Fatalf("parts: %v", types)
	}
	// The status part is a series of header-like blocks: one per message,
	// then one per recipient.
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(parts[1])))
	perMsg, err := tr.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if perMsg.Get("Reporting-MTA") != "dns; mx.test" || perMsg.Get("Arrival-Date") == "" {
		t.Errorf("per-message fields: %v", perMsg)
	}
	r1, err := tr.ReadMIMEHeader()
	if err != nil {
		t.Fatal(err)
	}
	if r1.Get("Final-Recipient") != "rfc822; a@example.net" || r1.Get("Original-Recipient") != "rfc822; list@example.org" ||
		r1.Get("Action") != "failed" || r1.Get("Status") != "5.1.1" || r1.Get("Remote-MTA") != "dns; mx.example.net" ||
		r1.Get("Diagnostic-Code") != "smtp; 550 5.1.1 no such user" {
		t.Errorf("first recipient: %v", r1)
	}
	r2, _ := tr.ReadMIMEHeader()
	if r2.Get("Final-Recipient") != "rfc822; b@example.net" || r2.Get("Status") != "4.4.7" || r2.Get("Original-Recipient") != "" {
		t.Errorf("second recipient: %v", r2)
	}
	if !bytes.Contains(parts[2], []byte("Subject: lost")) {
		t.Errorf("original headers missing: %q", parts[2])
	}
	if !strings.Contains(m.Header.Get("Subject"), "Undelivered") {
		t.Errorf("subject %q", m.Header.Get("Subject"))
	}
}

func TestDelayedSubject(t *testing.T) {
	raw := Build(Report{ReportingMTA: "mx.test", To: "s@example.org", Recipients: []Recipient{{Final: "a@example.net", Action: Delayed, Status: "4.4.1", RetryUntil: time.Now()}}})
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(m.Header.Get("Subject"), "Delayed Mail") || !bytes.Contains(raw, []byte("Will-Retry-Until: ")) {
		t.Errorf("delayed notice: %q", raw)
	}
}

// Addresses are written by the one writer of package address: a local
// part that needs quotes gets them, and text that is no address cannot
// add a line or a field.
func TestAddressesWritten(t *testing.T) {
	raw := string(Build(Report{
		ReportingMTA: "mx.test", To: `"john smith"@example.org`,
		Recipients: []Recipient{
			{Final: `"a b"@example.net`, Original: `"list@x"@example.org`, Action: Failed, Status: "5.1.1"},
			{Final: "x@y> NOTIFY=NEVER\r\nBcc: evil@example.com", Action: Failed, Status: "5.1.3"},
		},
	}))
	for _, want := range []string{
		"To: <\"john smith\"@example.org>\r\n",
		"Final-Recipient: rfc822; \"a b\"@example.net\r\n",
		"Original-Recipient: rfc822; \"list@x\"@example.org\r\n",
		"<\"a b\"@example.net>: \r\n",
		`Final-Recipient: rfc822; "x@y> NOTIFY=NEVER\r\nBcc: evil@example.com"` + "\r\n",
	} {
		if !strings.Contains(raw, want) {
			t.Errorf("no %q in\n%s", want, raw)
		}
	}
	if strings.Contains(raw, "\nBcc:") {
		t.Error("an address added a header line")
	}
}
