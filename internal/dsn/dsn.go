// Package dsn is delivery status notifications: the DSN parameters a
// client gives with a message (RFC 3461 section 4, params.go), and the
// notifications (RFC 3464) postoffice sends: bounces of messages it
// accepted and cannot deliver, delay warnings, and the success reports
// NOTIFY=SUCCESS asks for.
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
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Action values of RFC 3464 section 2.3.3.
const (
	Failed    = "failed"
	Delayed   = "delayed"
	Delivered = "delivered"
	// Relayed: handed to a next hop that does not offer DSN, so that no
	// further notification may come (RFC 3461 section 5.2.2).
	Relayed = "relayed"
)

// Recipient is one per-recipient block (RFC 3464 section 2.3).
type Recipient struct {
	// Original is the original recipient (ORCPT, RFC 3461 section 4.2;
	// RFC 3464 section 2.3.1) of address type OriginalType ("" is
	// "rfc822"); "" to omit.
	Original     string
	OriginalType string
	Final        string // Final-Recipient
	Action       string // Failed, Delayed, Delivered or Relayed
	Status       string // RFC 3463 code, e.g. "5.1.1"
	RemoteMTA    string // host that gave the answer, "" if none
	// Reply is the remote host's reply, reported as it came in
	// Diagnostic-Code of type smtp (RFC 3464 section 2.3.6); the zero
	// Reply (Code 0) when none came.
	Reply smtpreply.Reply
	// Detail is the reason in our own words: the diagnostic, of type
	// X-Postoffice, when there is no Reply, and a note beside it in the
	// human-readable part when there is one.
	Detail     string
	LastTry    time.Time
	RetryUntil time.Time // for Delayed
}

// Report is one notification.
type Report struct {
	ReportingMTA string // our host name
	To           string // the original envelope sender
	ID           string // our id of the original message
	// EnvID is the sender's ENVID (RFC 3461 section 4.4), returned as
	// Original-Envelope-Id (RFC 3464 section 2.2.1); "" for none.
	EnvID      string
	Arrival    time.Time
	Recipients []Recipient
	// OriginalHeader is the original message's header section, returned
	// as text/rfc822-headers (RFC 6522 section 4); Original, when not
	// nil, is the whole message, returned as message/rfc822 instead
	// (RET=FULL, RFC 3461 section 4.3).
	OriginalHeader []byte
	Original       []byte
	Date           time.Time
}

// Build returns the notification message in canonical CRLF form.
func Build(r Report) []byte {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	subject, intro := explain(r)
	text := intro
	for _, rc := range r.Recipients {
		text += fmt.Sprintf("%s: %s\r\n", path(rc.Final), rc.humanDiagnostic())
	}
	if r.Original == nil && len(r.OriginalHeader) > 0 && anyAction(r, Failed) {
		text += "\r\nThe header section of your message is attached; its body is not.\r\n"
	}

	// Part 1: human-readable explanation (RFC 3464 section 2, first part).
	w, _ := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"text/plain; charset=utf-8"},
		"Content-Description": {"Notification"},
	})
	w.Write([]byte(text))

	// Part 2: the machine-readable status.
	w, _ = mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":        {"message/delivery-status"},
		"Content-Description": {"Delivery report"},
	})
	w.Write(status(r))

	// Part 3: the original message or its header section (RFC 6522
	// section 3).
	if r.Original != nil {
		w, _ = mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":        {"message/rfc822"},
			"Content-Description": {"Original message"},
		})
		w.Write(r.Original)
	} else {
		w, _ = mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":        {"text/rfc822-headers"},
			"Content-Description": {"Original message headers"},
		})
		w.Write(r.OriginalHeader)
	}
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
	left := strconv.FormatInt(date.UnixNano(), 10)
	if r.ID != "" {
		left += "." + idLeft(r.ID)
	}
	fmt.Fprintf(&msg, "Message-ID: <%s@%s>\r\n", left, r.ReportingMTA)
	// RFC 3834 section 5: automatic responses are marked so that other
	// automata do not answer them.
	msg.WriteString("Auto-Submitted: auto-replied\r\n")
	msg.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&msg, "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"%s\"\r\n\r\n", mw.Boundary())
	msg.Write(body.Bytes())
	return msg.Bytes()
}

func anyAction(r Report, action string) bool {
	for _, rc := range r.Recipients {
		if rc.Action == action {
			return true
		}
	}
	return false
}

// explain is the subject and the opening of the human-readable part:
// of a bounce when any recipient failed, else of a delay warning when
// any is delayed, else of a success report.
func explain(r Report) (subject, intro string) {
	head := "This is the mail system at host " + r.ReportingMTA + ".\r\n\r\n"
	switch {
	case anyAction(r, Failed) || len(r.Recipients) == 0:
		return "Undelivered Mail Returned to Sender", head +
			"I'm sorry to have to inform you that your message could not\r\n" +
			"be delivered to one or more recipients. The details follow.\r\n\r\n"
	case anyAction(r, Delayed):
		return "Delayed Mail (still being retried)", head +
			"Your message could not be delivered yet. It will be retried\r\n" +
			"until the time given below; no action is needed from you.\r\n\r\n"
	}
	return "Successful Mail Delivery Report", head +
		"Your message was delivered to the recipients below, as you asked.\r\n" +
		"Delivered: it is in the recipient's mailbox. Relayed: it went on to\r\n" +
		"a mail system that does not report delivery, so no further\r\n" +
		"notification will come.\r\n\r\n"
}

// humanDiagnostic is what the human-readable part says of a recipient.
func (rc Recipient) humanDiagnostic() string {
	var parts []string
	if rc.Action == Delivered || rc.Action == Relayed {
		parts = append(parts, rc.Action)
		if rc.RemoteMTA != "" {
			parts[0] += " to " + OneLine(rc.RemoteMTA)
		}
	}
	if rc.Detail != "" {
		parts = append(parts, OneLine(rc.Detail))
	}
	if rc.Reply.Code != 0 {
		parts = append(parts, OneLine(rc.Reply.Error()))
	}
	return strings.Join(parts, ": ")
}

// status is the message/delivery-status part (RFC 3464 section 2):
// the per-message fields, then a block per recipient.
func status(r Report) []byte {
	var st bytes.Buffer
	if r.EnvID != "" {
		// Section 2.2.1: first, as the sender gave it (printable ASCII,
		// RFC 3461 section 4.4).
		fmt.Fprintf(&st, "Original-Envelope-Id: %s\r\n", OneLine(r.EnvID))
	}
	fmt.Fprintf(&st, "Reporting-MTA: dns; %s\r\n", r.ReportingMTA)
	if !r.Arrival.IsZero() {
		fmt.Fprintf(&st, "Arrival-Date: %s\r\n", r.Arrival.Format(time.RFC1123Z))
	}
	if r.ID != "" {
		// An extension field, after the standard ones (section 2.2).
		fmt.Fprintf(&st, "X-Postoffice-Queue-ID: %s\r\n", OneLine(r.ID))
	}
	for _, rc := range r.Recipients {
		st.WriteString("\r\n")
		if rc.Original != "" {
			typ := rc.OriginalType
			if typ == "" {
				typ = "rfc822"
			}
			fmt.Fprintf(&st, "Original-Recipient: %s; %s\r\n", OneLine(typ), mailbox(rc.Original))
		}
		fmt.Fprintf(&st, "Final-Recipient: rfc822; %s\r\n", mailbox(rc.Final))
		fmt.Fprintf(&st, "Action: %s\r\n", rc.Action)
		fmt.Fprintf(&st, "Status: %s\r\n", rc.Status)
		if rc.RemoteMTA != "" {
			fmt.Fprintf(&st, "Remote-MTA: dns; %s\r\n", OneLine(rc.RemoteMTA))
		}
		switch {
		case rc.Reply.Code != 0:
			fmt.Fprintf(&st, "Diagnostic-Code: smtp; %s\r\n", OneLine(rc.Reply.Error()))
		case rc.Detail != "":
			fmt.Fprintf(&st, "Diagnostic-Code: X-Postoffice; %s\r\n", OneLine(rc.Detail))
		}
		if !rc.LastTry.IsZero() {
			fmt.Fprintf(&st, "Last-Attempt-Date: %s\r\n", rc.LastTry.Format(time.RFC1123Z))
		}
		if !rc.RetryUntil.IsZero() {
			fmt.Fprintf(&st, "Will-Retry-Until: %s\r\n", rc.RetryUntil.Format(time.RFC1123Z))
		}
	}
	return st.Bytes()
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

// idLeft is id in the form a Message-ID's left side takes, dot-atom-text
// (RFC 5322 section 3.6.4): ASCII letters in lower case, digits, '-' and
// '_' as they are, anything else (a '.' too, which may not start, end or
// double there) as '-'.
func idLeft(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, id)
}

// path is mailbox in angle brackets (RFC 5322 section 3.4, angle-addr).
func path(s string) string { return "<" + mailbox(s) + ">" }

// OneLine keeps text on one line of a header field: control characters
// become spaces, and runs of white space one space.
func OneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	return strings.Join(strings.Fields(s), " ")
}
