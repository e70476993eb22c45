package smtpclient

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/mime7bit"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Message is one message for one transaction.
type Message struct {
	From  string // the reverse-path, "" for the null sender
	Rcpts []Recipient

	// Size is the content's size in octets as stored (CRLF lines,
	// before dot-stuffing): sent as SIZE= and checked against the
	// peer's maximum (RFC 1870).
	Size int64
	// EightBit: the content has octets above 127. It goes with
	// BODY=8BITMIME (RFC 6152) to a peer that offers it, and is
	// converted to 7 bit for one that does not.
	EightBit bool
	// UTF8Header: the header section has UTF-8 (RFC 6532), so the
	// message needs SMTPUTF8 all the way (RFC 6531); non-ASCII addresses
	// are seen here without being told.
	UTF8Header bool

	// DSN parameters (RFC 3461), passed on to a peer that offers DSN.
	Ret   string // RET: "FULL" or "HDRS", "" for none (section 4.3)
	EnvID string // ENVID, "" for none (section 4.4)

	// Body is the content, header and body, in CRLF lines.
	Body io.Reader
}

// Recipient is one forward-path with its DSN parameters.
type Recipient struct {
	Addr   string
	Notify []string // NOTIFY values (RFC 3461 section 4.1); nil for none
	// ORcpt is the original recipient (RFC 3461 section 4.2), "" for
	// none, of type ORcptType ("" is "rfc822"). It is xtext-encoded
	// here; an address that is not ASCII goes as type "utf-8" (RFC 6533
	// section 3).
	ORcpt     string
	ORcptType string
}

// RcptResult is the outcome for one recipient.
type RcptResult struct {
	Addr string
	// Reply is the peer's reply to its RCPT TO (zero if none was sent).
	Reply smtpreply.Reply
	// Err is nil when the peer took the message for this recipient (a
	// 250 to RCPT and to the end of the data); otherwise why not.
	Err *Error
}

// Result is the outcome of one transaction.
type Result struct {
	Rcpts []RcptResult // one for each Message.Rcpts, in order
	// Final is the reply to the end of the data; zero if none came.
	Final smtpreply.Reply
	// DSN: the peer offered DSN, so NOTIFY, ORCPT, RET and ENVID went
	// with the message. Without it a recipient that asked NOTIFY=SUCCESS
	// is owed a "relayed" notification by the caller (RFC 3461 section
	// 4.1).
	DSN bool
	// Converted: the content was converted to 7 bit for a peer without
	// 8BITMIME (RFC 6152 section 3).
	Converted bool
	// TLS is what protected the connection.
	TLS TLSState
}

// Delivered counts the recipients that took the message.
func (r *Result) Delivered() int {
	n := 0
	for _, rc := range r.Rcpts {
		if rc.Err == nil {
			n++
		}
	}
	return n
}

// prepared is what Send worked out once for a message and may reuse on
// another connection: the content converted to 7 bit.
type prepared struct {
	converted []byte
}

// Send runs one mail transaction (RFC 5321 section 3.3) on the
// connection: RSET first when a transaction ran before on it (RFC 5321
// section 4.1.1.5), MAIL, one RCPT per recipient and DATA, pipelined
// when the peer offers PIPELINING (RFC 2920), then the content.
//
// The Result has every recipient's outcome. The error is non-nil when
// the transaction failed as a whole (MAIL, DATA or the end of the data
// refused, the connection broken, the message unfit for this peer): it
// is then also every recipient's Err that was not decided by its own
// RCPT reply. A recipient refused at RCPT has its own Err and does not
// make an error.
func (c *Conn) Send(ctx context.Context, m *Message) (*Result, error) {
	res, err, _ := c.transact(ctx, m, &prepared{})
	if err != nil {
		return res, err
	}
	return res, nil
}

// transact is Send; retry reports a failure before the peer decided anything
// and before the content was read, that a new connection may repeat.
func (c *Conn) transact(ctx context.Context, m *Message, prep *prepared) (res *Result, err *Error, retry bool) {
	res = &Result{Rcpts: make([]RcptResult, len(m.Rcpts)), DSN: c.ext.DSN, TLS: c.tls}
	for i, rc := range m.Rcpts {
		res.Rcpts[i].Addr = rc.Addr
	}
	fail := func(e *Error, retry bool) (*Result, *Error, bool) {
		for i := range res.Rcpts {
			if res.Rcpts[i].Err == nil {
				res.Rcpts[i].Err = e
			}
		}
		return res, e, retry
	}
	if c.broken {
		return fail(localError(c.host, "MAIL FROM", KindConn, false, "4.4.2", "the connection is closed"), true)
	}
	stop := c.watch(ctx)
	defer stop()

	rcptLines, live, utf8, e := c.envelope(m, res)
	if e != nil {
		return fail(e, false)
	}
	if len(live) == 0 {
		// Every recipient was refused here (5.6.7, bad address): no
		// transaction.
		return res, nil, false
	}
	body, size, e := c.content(m, prep)
	if e != nil {
		return fail(e, false)
	}
	res.Converted = m.EightBit && !c.ext.EightBitMIME

	cmds := c.commands(c.mailLine(m, size, utf8), rcptLines, live)
	x, e, retry := c.exchange(cmds, res)
	if e != nil {
		return fail(e, retry)
	}
	switch {
	case x.mailErr != nil:
		if c.ext.Pipelining && x.data.Code == 354 {
			c.endEmpty()
		}
		return fail(x.mailErr, false)
	case x.accepted == 0:
		if c.ext.Pipelining && x.data.Code == 354 {
			// RFC 2920 section 3.1: with no recipient accepted, a DATA
			// that was accepted all the same gets a lone dot.
			c.endEmpty()
		}
		return res, nil, false
	case x.data.Code != 354:
		return fail(replyError(c.host, "DATA", x.data), false)
	}
	rep, e := c.data(body)
	if e != nil {
		return fail(e, false)
	}
	res.Final = rep
	if rep.Code != 250 {
		return fail(replyError(c.host, "end of data", rep), false)
	}
	return res, nil, false
}

// content is the message as this peer gets it: as stored, or converted
// to 7 bit (once per message) for a peer without 8BITMIME (RFC 6152
// section 3), with its size.
func (c *Conn) content(m *Message, prep *prepared) (io.Reader, int64, *Error) {
	if !m.EightBit || c.ext.EightBitMIME {
		return m.Body, m.Size, nil
	}
	if prep.converted == nil {
		raw, err := io.ReadAll(m.Body)
		if err != nil {
			return nil, 0, &Error{Host: c.host, Command: "DATA", Kind: KindLocal, Status: smtpreply.Status{Class: 4, Subject: 3, Detail: 0},
				Text: "reading the message: " + err.Error(), Err: err}
		}
		conv, _, err := mime7bit.Convert(raw)
		if err != nil {
			// RFC 3463 section 3.7: X.6.3 conversion required but not
			// supported.
			return nil, 0, localError(c.host, "MAIL FROM", KindLocal, true, "5.6.3",
				"the peer does not offer 8BITMIME and the message cannot be converted to 7 bit: %v", err)
		}
		prep.converted = conv
	}
	return bytes.NewReader(prep.converted), int64(len(prep.converted)), nil
}

// command is one command up to DATA, with the timeout of its reply.
type command struct {
	name    string
	line    string
	timeout time.Duration
	rcpt    int // the recipient of a RCPT
}

// commands are the transaction's commands up to DATA: RSET first when
// a transaction ran before on the connection (RFC 5321 section
// 4.1.1.5), MAIL, a RCPT per live recipient, DATA.
func (c *Conn) commands(mail string, rcptLines []string, live []int) []command {
	t := c.cfg.Timeouts
	var cmds []command
	if c.used {
		cmds = append(cmds, command{"RSET", "RSET", t.Command, -1})
	}
	cmds = append(cmds, command{"MAIL FROM", mail, t.Mail, -1})
	for _, i := range live {
		cmds = append(cmds, command{"RCPT TO", rcptLines[i], t.Rcpt, i})
	}
	cmds = append(cmds, command{"DATA", "DATA", t.DataInit, -1})
	return cmds
}

// exchanged is what the replies up to DATA said.
type exchanged struct {
	mailErr  *Error // MAIL was refused
	accepted int    // recipients taken
	data     smtpreply.Reply
}

// exchange sends the commands and reads their replies, recording each
// RCPT's in res. RFC 2920 section 3.1: RSET, MAIL and RCPT may be sent
// without waiting for their replies, and DATA ends the group; the
// replies are then read in order. Without PIPELINING, each command
// waits for its reply, and a refused MAIL or no accepted recipient stops
// the transaction before DATA. The error is a failure of the whole
// transaction; retry as transact's.
func (c *Conn) exchange(cmds []command, res *Result) (x exchanged, err *Error, retry bool) {
	reused := c.used
	c.used = true
	pipelined := c.ext.Pipelining
	if pipelined {
		for _, cmd := range cmds {
			c.w.WriteString(cmd.line)
			c.w.WriteString("\r\n")
		}
		if e := c.flush(cmds[0].name, c.cfg.Timeouts.Command); e != nil {
			return x, e, reused
		}
	}
	mailOK := false
	for _, cmd := range cmds {
		if !pipelined {
			if cmd.name == "DATA" && (x.mailErr != nil || x.accepted == 0) {
				break
			}
			if cmd.name == "RCPT TO" && x.mailErr != nil {
				break
			}
			if e := c.send(cmd.name, cmd.timeout, cmd.line); e != nil {
				return x, e, reused && !mailOK
			}
		}
		rep, e := c.read(cmd.name, cmd.timeout)
		if e != nil {
			return x, e, reused && !mailOK
		}
		switch cmd.name {
		case "RSET":
			if rep.Code != 250 {
				// The connection is not fit for a transaction: drop it
				// and let a new one carry the message.
				c.broken = true
				e := replyError(c.host, "RSET", rep)
				e.Permanent = false
				if pipelined {
					c.conn.Close()
				}
				return x, e, true
			}
		case "MAIL FROM":
			if rep.Code != 250 {
				x.mailErr = replyError(c.host, "MAIL FROM", rep)
			} else {
				mailOK = true
			}
		case "RCPT TO":
			ri := cmd.rcpt
			res.Rcpts[ri].Reply = rep
			switch {
			case x.mailErr != nil:
				// Refused because MAIL was: the MAIL reply decides.
			case rep.Code == 250 || rep.Code == 251:
				x.accepted++
			default:
				res.Rcpts[ri].Err = replyError(c.host, "RCPT TO", rep)
			}
		case "DATA":
			x.data = rep
		}
		if c.broken {
			// A 421 (RFC 5321 section 3.8): the peer is closing; the
			// rest of the replies will not come.
			return x, replyError(c.host, cmd.name, rep), false
		}
	}
	return x, nil, false
}

// data sends the content, dot-stuffed, each write with its block
// timeout, and reads the reply to its end.
func (c *Conn) data(body io.Reader) (smtpreply.Reply, *Error) {
	c.wtimeout = c.cfg.Timeouts.DataBlock
	dw := newDotWriter(c.w)
	br := &readErr{r: body}
	_, werr := io.Copy(dw, br)
	if werr == nil {
		werr = dw.Close()
	}
	if werr == nil {
		werr = c.w.Flush()
	}
	if werr != nil {
		// The content is incomplete: close the connection rather than
		// end the data, so that the peer cannot take a truncated
		// message.
		c.broken = true
		c.conn.Close()
		if br.err != nil {
			return smtpreply.Reply{}, &Error{Host: c.host, Command: "DATA", Kind: KindLocal, Status: smtpreply.Status{Class: 4, Subject: 3, Detail: 0},
				Text: "reading the message: " + br.err.Error(), Err: br.err}
		}
		return smtpreply.Reply{}, netError(c.host, "DATA", werr)
	}
	return c.read("end of data", c.cfg.Timeouts.DataTerm)
}

// endEmpty ends a DATA that got 354 although nothing is to be sent: a
// lone dot, and its reply, which tells nothing.
func (c *Conn) endEmpty() {
	if e := c.send("end of data", c.cfg.Timeouts.DataInit, "."); e == nil {
		c.read("end of data", c.cfg.Timeouts.DataTerm)
	}
}

// readErr remembers the error of the reader it wraps: a failure to read
// the message is told apart from a failure to write it.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// envelope checks the message against the peer and writes each RCPT
// line; live lists the recipients that can be sent, utf8 whether the
// transaction needs SMTPUTF8. A recipient that cannot be sent gets its
// Err in res; a failure of the whole message is returned.
func (c *Conn) envelope(m *Message, res *Result) (rcpts []string, live []int, utf8 bool, err *Error) {
	if _, err := path(m.From); err != nil {
		// RFC 3463 section 3.2: X.1.7 bad sender's mailbox address syntax.
		return nil, nil, false, localError(c.host, "MAIL FROM", KindLocal, true, "5.1.7", "%v", err)
	}
	if c.ext.Size > 0 && m.Size > c.ext.Size {
		// RFC 1870 section 6: a message larger than the peer's fixed
		// maximum will never be accepted. RFC 3463 section 3.4: X.3.4
		// message too big for system.
		return nil, nil, false, localError(c.host, "MAIL FROM", KindLocal, true, "5.3.4",
			"the message of %d octets is larger than the peer accepts (SIZE %d)", m.Size, c.ext.Size)
	}
	if m.Ret != "" && !strings.EqualFold(m.Ret, "FULL") && !strings.EqualFold(m.Ret, "HDRS") {
		return nil, nil, false, localError(c.host, "MAIL FROM", KindLocal, true, "5.5.4", "RET=%q is neither FULL nor HDRS", m.Ret)
	}
	if !c.ext.SMTPUTF8 {
		// RFC 6531 section 3.2: a message that needs SMTPUTF8 must not go
		// to a server without it; RFC 6531 section 3.5: X.6.7 non-ASCII
		// addresses not permitted.
		if m.UTF8Header {
			return nil, nil, false, localError(c.host, "MAIL FROM", KindLocal, true, "5.6.7",
				"the message has UTF-8 header fields and the peer does not offer SMTPUTF8")
		}
		if !isASCII(m.From) {
			return nil, nil, false, localError(c.host, "MAIL FROM", KindLocal, true, "5.6.7",
				"the sender address is not ASCII and the peer does not offer SMTPUTF8")
		}
	}
	utf8 = c.ext.SMTPUTF8 && (m.UTF8Header || !isASCII(m.From))
	rcpts = make([]string, len(m.Rcpts))
	for i, rc := range m.Rcpts {
		line, err := c.rcptLine(rc)
		if err != nil {
			res.Rcpts[i].Err = err
			continue
		}
		if !isASCII(rc.Addr) {
			utf8 = true
		}
		rcpts[i] = line
		live = append(live, i)
	}
	return rcpts, live, utf8, nil
}

// mailLine is the MAIL command with its parameters.
func (c *Conn) mailLine(m *Message, size int64, utf8 bool) string {
	p, _ := path(m.From) // checked in envelope
	var b strings.Builder
	b.WriteString("MAIL FROM:")
	b.WriteString(p)
	if c.ext.SizeOffered && size > 0 {
		// RFC 1870 section 6: the size, a promise about the content as
		// it will be sent.
		b.WriteString(" SIZE=")
		b.WriteString(strconv.FormatInt(size, 10))
	}
	if m.EightBit && c.ext.EightBitMIME {
		b.WriteString(" BODY=8BITMIME") // RFC 6152 section 2
	}
	if utf8 {
		b.WriteString(" SMTPUTF8") // RFC 6531 section 3.4
	}
	if c.ext.DSN {
		if m.Ret != "" {
			b.WriteString(" RET=")
			b.WriteString(strings.ToUpper(m.Ret)) // RFC 3461 section 4.3
		}
		if m.EnvID != "" {
			b.WriteString(" ENVID=")
			b.WriteString(xtext(m.EnvID)) // RFC 3461 section 4.4
		}
	}
	return b.String()
}

// rcptLine is the RCPT command for one recipient with its parameters, or
// why the recipient cannot be sent to this peer.
func (c *Conn) rcptLine(rc Recipient) (string, *Error) {
	p, err := path(rc.Addr)
	if err != nil {
		// RFC 3463 section 3.2: X.1.3 bad destination mailbox address syntax.
		return "", localError(c.host, "RCPT TO", KindLocal, true, "5.1.3", "%v", err)
	}
	if !c.ext.SMTPUTF8 && !isASCII(rc.Addr) {
		// RFC 6531 sections 3.2 and 3.5, as for the sender.
		return "", localError(c.host, "RCPT TO", KindLocal, true, "5.6.7",
			"the recipient address is not ASCII and the peer does not offer SMTPUTF8")
	}
	var b strings.Builder
	b.WriteString("RCPT TO:")
	b.WriteString(p)
	if c.ext.DSN {
		if len(rc.Notify) > 0 {
			n, err := notifyParam(rc.Notify)
			if err != nil {
				return "", localError(c.host, "RCPT TO", KindLocal, true, "5.5.4", "%v", err)
			}
			b.WriteString(" NOTIFY=")
			b.WriteString(n)
		}
		if rc.ORcpt != "" {
			// RFC 3461 section 4.2: ORCPT=addr-type;xtext.
			typ := rc.ORcptType
			if typ == "" {
				typ = "rfc822"
			}
			b.WriteString(" ORCPT=")
			if !isASCII(rc.ORcpt) || strings.EqualFold(typ, "utf-8") {
				b.WriteString("utf-8;")
				b.WriteString(utf8AddrXtext(rc.ORcpt))
			} else {
				b.WriteString(typ)
				b.WriteString(";")
				b.WriteString(xtext(rc.ORcpt))
			}
		}
	}
	return b.String(), nil
}
