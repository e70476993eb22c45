package milter

import (
	"strconv"
	"strings"
)

// Reply is the SMTP reply a milter asks for (RFC 5321 section 4.2), with
// its enhanced status code (RFC 3463), ready for the engine's own reply
// type.
type Reply struct {
	Code   int      // 4xx or 5xx
	Status string   // e.g. "5.7.1"; "" when the milter gave none
	Lines  []string // the text, one entry per line, without code and status
}

// Temporary reports whether the reply is a temporary failure (4xx).
func (r Reply) Temporary() bool { return r.Code/100 == 4 }

// String writes the reply as it goes on the wire, without the final
// CRLF: "550 5.7.1 text", lines joined by CRLF with "550-" before all but
// the last.
func (r Reply) String() string {
	lines := r.Lines
	if len(lines) == 0 {
		lines = []string{""}
	}
	var b strings.Builder
	for i, l := range lines {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString(strconv.Itoa(r.Code))
		if i < len(lines)-1 {
			b.WriteByte('-')
		} else {
			b.WriteByte(' ')
		}
		if r.Status != "" {
			b.WriteString(r.Status)
			b.WriteByte(' ')
		}
		b.WriteString(l)
	}
	return strings.TrimRight(b.String(), " ")
}

// The replies of milters that reject or tempfail without their own text:
// Sendmail's and Postfix's.
var (
	replyReject   = Reply{Code: 550, Status: "5.7.1", Lines: []string{"Command rejected"}}
	replyTempFail = Reply{Code: 451, Status: "4.7.1", Lines: []string{"Service unavailable - try again later"}}
)

// isStatus reports whether s is an enhanced status code of a failure
// (RFC 3463 section 2: class "." subject "." detail, class 4 or 5).
func isStatus(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 || (parts[0] != "4" && parts[0] != "5") {
		return false
	}
	for _, p := range parts[1:] {
		if p == "" || len(p) > 3 {
			return false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

// parseReply reads a reply as a milter sends it (SMFIR_REPLYCODE): one or
// more lines "550-5.7.1 text" / "550 5.7.1 text". code is the code the
// library read from the first line, used when a line is not well formed.
func parseReply(s string, code int) Reply {
	r := Reply{Code: code}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		text := line
		if len(line) >= 3 {
			if c, err := strconv.Atoi(line[:3]); err == nil && c >= 400 && c <= 599 {
				if r.Code == 0 {
					r.Code = c
				}
				text = strings.TrimLeft(line[3:], " -")
			}
		}
		if st, rest, _ := strings.Cut(text, " "); isStatus(st) {
			if r.Status == "" {
				r.Status = st
			}
			text = rest
		} else if isStatus(text) {
			if r.Status == "" {
				r.Status = text
			}
			text = ""
		}
		r.Lines = append(r.Lines, text)
	}
	// RFC 3463 section 2: the class of the status is that of the code.
	if r.Status != "" && r.Status[0] != byte('0'+r.Code/100) {
		r.Status = ""
	}
	if r.Status == "" {
		if r.Temporary() {
			r.Status = "4.7.1"
		} else {
			r.Status = "5.7.1"
		}
	}
	return r
}
