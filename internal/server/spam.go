package server

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/milter"
)

// SpamHeader is the field that marks a message as spam for POP3 users'
// clients (they have no junk folder on the server to file it in): the
// milters' verdict and DMARC's quarantine (RFC 7489 section 6.3) alike.
const SpamHeader = "X-Spam: yes\r\n"

// spamVerdict is what the milters said of a message as spam.
type spamVerdict struct {
	marked    bool     // a milter quarantined it or marked it spam
	hasHeader bool     // a milter wrote an X-Spam field itself
	score     *float64 // the score a milter gave, if any
}

// Header fields by which spam filters give their verdict and score:
// rspamd's X-Spam (its "add header" action) and X-Spamd-Result
// ("default: True [16.20 / 15.00]"), SpamAssassin's X-Spam-Flag,
// X-Spam-Status ("Yes, score=7.2 required=5.0") and X-Spam-Score.
var (
	spamdResultScore = regexp.MustCompile(`\[\s*(-?[0-9]+(?:\.[0-9]+)?)\s*/`)
	statusScore      = regexp.MustCompile(`score=(-?[0-9]+(?:\.[0-9]+)?)`)
)

// spamOf reads the milters' verdict from the changes they made, never
// from the message as it came: a sender's own X-Spam-Score says nothing.
func spamOf(res *milter.Result) spamVerdict {
	var v spamVerdict
	v.marked = res.Quarantine != ""
	setScore := func(s string) {
		if f, err := strconv.ParseFloat(s, 64); err == nil && v.score == nil {
			v.score = &f
		}
	}
	for _, ch := range res.Changes {
		if ch.Kind != milter.AddHeader && ch.Kind != milter.InsertHeader && ch.Kind != milter.ChangeHeader {
			continue
		}
		value := strings.TrimSpace(ch.Value)
		yes := len(value) >= 3 && strings.EqualFold(value[:3], "yes")
		switch strings.ToLower(ch.Name) {
		case "x-spam":
			v.hasHeader = v.hasHeader || yes
			v.marked = v.marked || yes
		case "x-spam-flag":
			v.marked = v.marked || yes
		case "x-spam-status":
			v.marked = v.marked || yes
			if m := statusScore.FindStringSubmatch(value); m != nil {
				setScore(m[1])
			}
		case "x-spamd-result":
			if m := spamdResultScore.FindStringSubmatch(value); m != nil {
				setScore(m[1])
			}
		case "x-spam-score":
			setScore(value)
		}
	}
	return v
}

// maxSpamHeader bounds the header section read to mark a message (the
// milter client refuses more before).
const maxSpamHeader = 1 << 20

// markSpam returns msg marked as spam: SpamHeader first unless a milter
// wrote its own X-Spam field (addHeader false), and, when tag is not
// empty, the tag before the Subject ("[SPAM] lunch"), once.
func markSpam(msg io.Reader, addHeader bool, tag string) (io.Reader, error) {
	var prefix []byte
	if addHeader {
		prefix = []byte(SpamHeader)
	}
	if tag == "" {
		return io.MultiReader(bytes.NewReader(prefix), msg), nil
	}
	br := bufio.NewReaderSize(msg, 32<<10)
	var head []byte
	for {
		line, err := br.ReadSlice('\n')
		head = append(head, line...)
		if len(head) > maxSpamHeader {
			return nil, errors.New("header section over 1 MiB")
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err == io.EOF || string(line) == "\r\n" {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return io.MultiReader(bytes.NewReader(prefix), bytes.NewReader(tagSubject(head, tag)), br), nil
}

// tagSubject puts tag before the value of the Subject field of head (a
// header section, CRLF line endings, RFC 5322 section 3.6.5), or adds a
// Subject that is the tag when there is none. A subject that already
// starts with the tag is left alone.
func tagSubject(head []byte, tag string) []byte {
	start := 0
	for start < len(head) {
		end := bytes.IndexByte(head[start:], '\n')
		if end < 0 {
			end = len(head)
		} else {
			end += start + 1
		}
		line := head[start:end]
		if len(line) > 8 && strings.EqualFold(string(line[:8]), "subject:") {
			value := line[8:]
			trimmed := bytes.TrimLeft(value, " \t")
			if bytes.HasPrefix(trimmed, []byte(tag)) {
				return head
			}
			out := make([]byte, 0, len(head)+len(tag)+2)
			out = append(out, head[:start+8]...)
			out = append(out, ' ')
			out = append(out, tag...)
			if len(bytes.TrimSpace(trimmed)) > 0 {
				out = append(out, ' ')
			}
			out = append(out, trimmed...)
			return append(out, head[end:]...)
		}
		start = end
	}
	// No Subject: one before the end of the header section.
	field := "Subject: " + tag + "\r\n"
	if bytes.HasSuffix(head, []byte("\r\n\r\n")) || bytes.Equal(head, []byte("\r\n")) {
		i := len(head) - 2
		return append(append(append([]byte(nil), head[:i]...), field...), "\r\n"...)
	}
	return append(append([]byte(nil), head...), field...)
}
