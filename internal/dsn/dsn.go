// Package dsn builds delivery status notifications (RFC 3464): the
// bounces postoffice sends when a message it accepted cannot be delivered,
// and the optional delayed-delivery warnings.
package dsn

import (
	"bytes"
	"fmt"
	"mime/multipart"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
)

// Action values of RFC 3464 section 2.3.3.
const (
	Failed  = "failed"
	Delayed = "delayed"
)

// Recipient is one per-recipient block (RFC 3464 section 2.3).
type Recipient struct {
	Original   string // Original-Recipient, "" to omit
	Final      string // Final-Recipient
	Action     string // Failed or Delayed
	Status     string // RFC 3463 code, e.g. "5.1.1"
	RemoteMTA  string // host that gave the answer, "" if none
	Diagnostic string // the SMTP reply or reason, e.g. "550 5.1.1 No such user"
	// DiagnosticType is the diagnostic-type of Diagnostic (RFC 3464
	// section 2.3.6): "smtp" (when empty) for an SMTP reply, an
	// "X-" name for other text.
	DiagnosticType string
	LastTry        time.Time
	RetryUntil     time.Time // for Delayed
}

// Report is one notification.
type Report struct {
	ReportingMTA   string // our host name
	To             string // the original envelope sender
	ID             string // our id of the original message
	Arrival        time.Time
	Recipients     []Recipient
	OriginalHeader []byte // the original message's header section
	Date           time.Time
}

// Build returns the notification message in canonical CRLF form.
func Build(r Report) []byte {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)

	delayed := len(r.Recipients) > 0
	for _, rc := range r.Recipients {
		if rc.Action != Delayed {
			delayed = false
		}
	}
	subject := "Undelivered Mail Returned to Sender"
	intro := "This is the mail system at host " + r.ReportingMTA + ".\r\n\r\n" +
		"I'm sorry to have to inform you that your message could not\r\n" +
		"be delivered to one or more recipients. The details follow.\r\n\r\n"
	if delayed {
		subject = "Delayed Mail (still being retried)"
		intro = "This is the mail system at host " + r.ReportingMTA + ".\r\n\r\n" +
			"Your message could not be delivered yet. It will be retried\r\n" +
			"until the time given below; no action is needed from you.\r\n\r\n"
	}
	text := intro
	for _, rc := range r.Recipients {
		text += fmt.Sprintf("%s: %s\r\n", path(rc.Final), OneLine(rc.Diagnostic))
	}

	// Part 1: human-readable explanation (RFC 3464 section 2, first part).
	w, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"text/plain; charset=utf-8"},
		"Content-Description": {"Notification"},
	})
	w.Write([]byte(text))

	// Part 2: the machine-readable status.
	var st bytes.Buffer
	fmt.Fprintf(&st, "Reporting-MTA: dns; %s\r\n", r.ReportingMTA)
	if r.ID != "" {
		fmt.Fprintf(&st, "X-Postoffice-Queue-ID: %s\r\n", r.ID)
	}
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&st, "Arrival-Date: %s\r\n", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		st.WriteString("\r\n")
		if rc.Original != "" {
			fmt.Fprintf(&st, "Original-Recipient: rfc822; %s\r\n", mailbox(rc.Original))
		}
		fmt.Fprintf(&st, "Final-Recipient: rfc822; %s\r\n", mailbox(rc.Final))
		fmt.Fprintf(&st, "Action: %s\r\n", rc.Action)
		fmt.Fprintf(&st, "Status: %s\r\n", rc.Status)
		if rc.RemoteMTA != "" {
			fmt.Fprintf(&st, "Remote-MTA: dns; %s\r\n", rc.RemoteMTA)
		}
		if rc.Diagnostic != "" {
			typ := rc.DiagnosticType
			if typ == "" {
				typ = "smtp"
			}
			fmt.Fprintf(&st, "Diagnostic-Code: %s; %s\r\n", typ, OneLine(rc.Diagnostic))
		}
		if !rc.LastTry.IsZero() {
			fmt.Fprintf(&st, "Last-Attempt-Date: %s\r\n", rc.LastTry.Format(time.RFC1123Z))
		}
		if !rc.RetryUntil.IsZero() {
			fmt.Fprintf(&st, "Will-Retry-Until: %s\r\n", rc.RetryUntil.Format(time.RFC1123Z))
		}
	}
	w, _ = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"message/delivery-status"},
		"Content-Description": {"Delivery report"},
	})
	w.Write(st.Bytes())

	// Part 3: the original header section (RFC 6522 text/rfc822-headers).
	w, _ = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"text/rfc822-headers"},
		"Content-Description": {"Undelivered Message Headers"},
	})
	w.Write(r.OriginalHeader)
	mw.Close()

	var msg bytes.Buffer
	date := r.Date
	if date.IsZero() {
		date = time.Now()
	}
	fmt.Fprintf(&msg, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n", r.ReportingMTA)
	fmt.Fprintf(&msg, "To: %s\r\n", path(r.To))
	fmt.Fprintf(&msg, "Subject: %s\r\n", subject)
	fmt.Fprintf(&msg, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&msg, "Message-ID: <%d.%s@%s>\r\n", date.UnixNano(), strings.ToLower(r.ID), r.ReportingMTA)
	// RFC 3834 section 5: automatic responses are marked so that other
	// automata do not answer them.
	msg.WriteString("Auto-Submitted: auto-replied\r\n")
	msg.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&msg, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", mw.Boundary())
	msg.Write(body.Bytes())
	return msg.Bytes()
}

// mailbox writes an address through address.Quote, the one writer of an
// address (RFC 3464 section 2.3.2: an rfc822 address-type names an
// addr-spec). What is not an address (it cannot come from the router or
// the queue, which refuse such text) is written as a Go-quoted ASCII
// string, which can never end the line.
func mailbox(s string) string {
	if q, err := address.Quote(s); err == nil && q != "" {
		return q
	}
	return strconv.QuoteToASCII(s)
}

// path is mailbox in angle brackets (RFC 5322 section 3.4, angle-addr).
func path(s string) string { return "<" + mailbox(s) + ">" }

// OneLine makes remote text (a diagnostic, a reply) one line: runs of
// white space, line breaks included, become one space.
func OneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
