package smtpd

import (
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// The engine's own replies. RFC 5321 section 4.2 gives the codes, RFC
// 3463 the enhanced status codes, which every 2xx, 4xx and 5xx reply
// carries except the greeting and the replies to HELO and EHLO (RFC 2034
// section 4). Texts are short and plain.
var (
	replyOK      = smtpreply.New(250, "2.0.0", "Ok")
	replySender  = smtpreply.New(250, "2.1.0", "Ok") // RFC 3463 X.1.0: other address status
	replyRcpt    = smtpreply.New(250, "2.1.5", "Ok") // X.1.5: destination address valid
	replyBye     = smtpreply.New(221, "2.0.0", "Bye")
	replyData    = smtpreply.New(354, "", "End data with <CR><LF>.<CR><LF>")
	replyVRFY    = smtpreply.New(252, "2.5.0", "Cannot VRFY user; try RCPT") // RFC 5321 section 3.5.3
	replyHelp    = smtpreply.New(214, "2.0.0", "See RFC 5321")
	replyNotImpl = smtpreply.New(502, "5.5.1", "Command not implemented")

	// RFC 5321 section 4.2.4: an unknown command is 500; RFC 3463 X.5.1
	// invalid command, X.5.2 syntax error.
	replyUnknown   = smtpreply.New(500, "5.5.1", "Unknown command")
	replyEmptyLine = smtpreply.New(500, "5.5.2", "Empty command")
	// RFC 5321 section 4.5.3.1.4: a command line of more than 512
	// octets (more where an extension says so).
	replyLineTooLong = smtpreply.New(500, "5.5.2", "Line too long")
	// RFC 5321 section 2.3.8: lines end in CRLF, in commands too.
	replyBareLFCommand = smtpreply.New(500, "5.5.2", "Line must end with CRLF")

	// RFC 5321 section 4.1.4 and 4.3.2: a command out of sequence is 503
	// (X.5.1).
	replyNeedHelo     = smtpreply.New(503, "5.5.1", "Send HELO or EHLO first")
	replyNeedMail     = smtpreply.New(503, "5.5.1", "Need MAIL command first")
	replyNeedRcpt     = smtpreply.New(503, "5.5.1", "Need RCPT command first")
	replyNestedMail   = smtpreply.New(503, "5.5.1", "Nested MAIL command")
	replyNoValidRcpts = smtpreply.New(554, "5.5.1", "No valid recipients") // RFC 5321 section 4.1.1.4

	replyTooManyRcpts = smtpreply.New(452, "4.5.3", "Too many recipients") // RFC 5321 section 4.5.3.1.10
	replyTooBig       = smtpreply.New(552, "5.3.4", "Message size exceeds fixed maximum message size")
	// RFC 6531 section 3.5: non-ASCII addresses without SMTPUTF8.
	replyNeedSMTPUTF8 = smtpreply.New(553, "5.6.7", "Non-ASCII address requires SMTPUTF8")
	replyBadSender    = smtpreply.New(501, "5.1.7", "Bad sender address syntax")    // X.1.7
	replyBadRcpt      = smtpreply.New(501, "5.1.3", "Bad recipient address syntax") // X.1.3
	replyTempLocal    = smtpreply.New(451, "4.3.0", "Temporary local problem, try again later")

	// STARTTLS, RFC 3207 section 4.
	replyStartTLS   = smtpreply.New(220, "2.0.0", "Ready to start TLS")
	replyNoStartTLS = smtpreply.New(502, "5.5.1", "STARTTLS not available")

	// AUTH, RFC 4954 sections 4 and 6.
	replyAuthOK         = smtpreply.New(235, "2.7.0", "Authentication successful")
	replyAuthFailed     = smtpreply.New(535, "5.7.8", "Authentication credentials invalid")
	replyAuthTemp       = smtpreply.New(454, "4.7.0", "Temporary authentication failure")
	replyAuthRequired   = smtpreply.New(530, "5.7.0", "Authentication required")
	replyAuthEncryption = smtpreply.New(538, "5.7.11", "Encryption required for requested authentication mechanism")
	replyAuthMech       = smtpreply.New(504, "5.5.4", "Unrecognized authentication type")
	replyAuthCancelled  = smtpreply.New(501, "5.7.0", "Authentication cancelled")
	replyAuthBase64     = smtpreply.New(501, "5.5.2", "Cannot decode response")
	replyAuthMalformed  = smtpreply.New(501, "5.5.2", "Malformed authentication exchange")
	replyAuthLong       = smtpreply.New(500, "5.5.6", "Authentication exchange line is too long")
	replyAuthNone       = smtpreply.New(503, "5.5.1", "AUTH not available")
	replyAuthTwice      = smtpreply.New(503, "5.5.1", "Already authenticated")
	replyAuthInTx       = smtpreply.New(503, "5.5.1", "AUTH not permitted during a mail transaction")

	// Message data (RFC 5321 section 4.1.1.4, RFC 3030).
	replyLongDataLine = smtpreply.New(500, "5.5.2", "Line too long")
	replyBadChunk     = smtpreply.New(501, "5.5.4", "Syntax: BDAT size [LAST]")
)

// syntaxReply is 501 5.5.4, a syntax error in the arguments (RFC 5321
// section 4.2.4, RFC 3463 X.5.4), with text saying what is expected.
func syntaxReply(text string) smtpreply.Reply { return smtpreply.New(501, "5.5.4", text) }

// Replies that end the session, which RFC 5321 section 3.8 has name the
// server: "421 <domain> Service not available, closing transmission
// channel".
func replyShuttingDown(host string) smtpreply.Reply {
	return smtpreply.New(421, "4.3.2", host+" Service shutting down, closing connection")
}

func replyTimeout(host string) smtpreply.Reply {
	return smtpreply.New(421, "4.4.2", host+" Timeout, closing connection")
}

func replyTooManyErrors(host string) smtpreply.Reply {
	return smtpreply.New(421, "4.7.0", host+" Too many errors, closing connection")
}

// ErrMessageTooBig and ErrBareLineEnding are the errors of the body reader
// handed to Backend.Deliver, and the replies to the end of data. A Deliver
// that sees one stores nothing and returns it (wrapped or not).
var (
	// ErrMessageTooBig: the body grew past Config.MaxMessageBytes (RFC
	// 1870; RFC 3463 X.3.4, message length exceeds administrative limit).
	ErrMessageTooBig = &replyTooBig
	// ErrBareLineEnding: the body holds a CR or an LF that is not part of
	// a CRLF pair (RFC 5321 sections 2.3.8 and 4.1.1.4). Such a message
	// is refused whole, so that no "\n.\n" or "\r.\r" it carries can end
	// a message early here or further down the line (SMTP smuggling).
	ErrBareLineEnding = &replyBareLineEnding

	replyBareLineEnding = smtpreply.New(554, "5.6.0", "Message contains a bare CR or LF; lines must end with CRLF")
)

// toReply turns a backend error into the reply for the client: a
// smtpreply.Reply in err's chain with a 4xx or 5xx code as it is (its
// enhanced status dropped if its class does not match the code: RFC 3463
// section 2), anything else as 451 4.3.0; ok is false for the latter.
func toReply(err error) (r smtpreply.Reply, ok bool) {
	r, ok = smtpreply.As(err)
	if !ok || r.Code < 400 || r.Code > 599 {
		return replyTempLocal, false
	}
	if r.Status.Class != r.Code/100 {
		r.Status = smtpreply.Status{Class: r.Code / 100}
	}
	if len(r.Text) == 0 || r.Message() == "" {
		r.Text = []string{"Requested action not taken"}
	}
	return r, true
}

var (
	replyNeedEhlo       = smtpreply.New(503, "5.5.1", "Send EHLO first")
	replyNestedStartTLS = smtpreply.New(503, "5.5.1", "STARTTLS not permitted during a mail transaction")
)
