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

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
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
			{Final: "a@example.net", Original: "list@example.org", Action: Failed, Status: "5.1.1", RemoteMTA: "mx.example.net",
				Reply: smtpreply.New(550, "5.1.1", "no", "such\x01user"), LastTry: at},
			{Final: "b@example.net", Action: Failed, Status: "4.4.7", Detail: "expired\r\nX-Injected: no"},
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
	if r2.Get("Final-Recipient") != "rfc822; b@example.net" || r2.Get("Status") != "4.4.7" || r2.Get("Original-Recipient") != "" ||
		r2.Get("Diagnostic-Code") != "X-Postoffice; expired X-Injected: no" {
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

// parts returns the Content-Type and content of each part of a
// notification, and its header.
func parts(t *testing.T, raw []byte) (header mail.Header, types []string, bodies []string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
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
		bodies = append(bodies, string(b))
	}
	return m.Header, types, bodies
}

// RFC 3464 sections 2.2.1 and 2.3.1: ENVID comes back first among the
// per-message fields as Original-Envelope-Id, ORCPT as
// Original-Recipient with its address type; RET=FULL's message comes
// back whole as message/rfc822 (RFC 6522 section 3).
func TestEnvIDOriginalRecipientFullMessage(t *testing.T) {
	original := "From: s@example.org\r\nSubject: whole\r\n\r\nThe body.\r\n"
	raw := Build(Report{ReportingMTA: "mx.test", To: "s@example.org", ID: "Q1", EnvID: "QQ314159",
		Arrival: time.Now(), Original: []byte(original),
		Recipients: []Recipient{
			{Final: "a@example.net", Original: "a-orig@example.net", Action: Failed, Status: "5.1.1"},
			{Final: "b@example.net", Original: "b\u00f6@example.net", OriginalType: "utf-8", Action: Failed, Status: "5.1.1"},
		}})
	_, types, bodies := parts(t, raw)
	if len(types) != 3 || types[2] != "message/rfc822" || bodies[2] != original {
		t.Fatalf("parts %q: %q", types, bodies)
	}
	if !strings.HasPrefix(bodies[1], "Original-Envelope-Id: QQ314159\r\nReporting-MTA: dns; mx.test\r\n") {
		t.Errorf("per-message fields:\n%s", bodies[1])
	}
	for _, want := range []string{"Original-Recipient: rfc822; a-orig@example.net\r\n", "Original-Recipient: utf-8; b\u00f6@example.net\r\n"} {
		if !strings.Contains(bodies[1], want) {
			t.Errorf("no %q in\n%s", want, bodies[1])
		}
	}
	if strings.Contains(bodies[0], "its body is not") {
		t.Errorf("the human part says the body is missing:\n%s", bodies[0])
	}
}

// A success report (RFC 3461 section 4.1, NOTIFY=SUCCESS): its subject,
// the delivered and relayed actions, the remote reply as the diagnostic.
func TestSuccessReport(t *testing.T) {
	raw := Build(Report{ReportingMTA: "mx.test", To: "s@example.org", OriginalHeader: []byte("Subject: hi\r\n\r\n"),
		Recipients: []Recipient{
			{Final: "a@example.net", Action: Relayed, Status: "2.0.0", RemoteMTA: "mx.example.net", Reply: smtpreply.New(250, "2.0.0", "Ok: queued as X1")},
			{Final: "b@local.test", Action: Delivered, Status: "2.0.0"},
		}})
	header, types, bodies := parts(t, raw)
	if subject := header.Get("Subject"); subject != "Successful Mail Delivery Report" || types[2] != "text/rfc822-headers" {
		t.Errorf("subject %q, parts %q", subject, types)
	}
	for _, want := range []string{"Action: relayed\r\n", "Action: delivered\r\n", "Diagnostic-Code: smtp; 250 2.0.0 Ok: queued as X1\r\n", "Remote-MTA: dns; mx.example.net\r\n"} {
		if !strings.Contains(bodies[1], want) {
			t.Errorf("no %q in\n%s", want, bodies[1])
		}
	}
	if !strings.Contains(bodies[0], "<a@example.net>: relayed to mx.example.net: 250 2.0.0 Ok: queued as X1\r\n") {
		t.Errorf("human part:\n%s", bodies[0])
	}
}

func TestParams(t *testing.T) {
	for _, c := range []struct {
		p                       RcptParams
		success, failure, delay bool
	}{
		{RcptParams{}, false, true, true},
		{RcptParams{Notify: []string{NotifyNever}}, false, false, false},
		{RcptParams{Notify: []string{NotifySuccess}}, true, false, false},
		{RcptParams{Notify: []string{NotifyFailure, NotifyDelay}}, false, true, true},
	} {
		if c.p.Wants(NotifySuccess) != c.success || c.p.Wants(NotifyFailure) != c.failure || c.p.Wants(NotifyDelay) != c.delay {
			t.Errorf("%v: success %v, failure %v, delay %v", c.p.Notify, c.p.Wants(NotifySuccess), c.p.Wants(NotifyFailure), c.p.Wants(NotifyDelay))
		}
		if got := ParseNotify(c.p.NotifyString()); !slicesEqual(got, c.p.Notify) {
			t.Errorf("ParseNotify(NotifyString(%v)) = %v", c.p.Notify, got)
		}
	}
}

func slicesEqual(a, b []string) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
