package smtpd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Failures of a message's data source that are not the connection's.
var (
	// errLongDataLine: a line of DATA longer than Config.MaxLineLength.
	errLongDataLine = errors.New("line of message data too long")
	// errBadChunk: a BDAT command whose size cannot be read; where its
	// chunk ends is unknown, so the session cannot go on.
	errBadChunk = errors.New("BDAT size unreadable")
	// errChunkAborted: a command other than BDAT between the chunks of a
	// message (RSET, QUIT...): the transaction ends, the command runs.
	errChunkAborted = errors.New("BDAT transaction aborted by another command")
	// errBodyNotConsumed: Deliver returned nil without reading the body
	// to its end; the message it stored would be truncated.
	errBodyNotConsumed = errors.New("smtpd: Deliver returned before the end of the body")
)

// dataSource is a message's data as the client sends it: DATA's
// dot-stuffed lines or BDAT's chunks.
type dataSource interface {
	io.Reader
	// failure is the source's own failure, nil at its end or while it is
	// fine.
	failure() error
	// drain reads and drops the rest of what the client committed to
	// send (DATA: up to the end of data; BDAT: the current chunk), so
	// that the session stays in step with the client.
	drain() error
}

// RFC 5321 section 4.1.1.4: DATA; the message follows, ended by a line
// holding a single dot.
func cmdData(s *session, arg string) bool {
	if r, ok := s.needRecipients(); !ok {
		return s.respond(r)
	}
	if strings.TrimSpace(arg) != "" {
		return s.respond(syntaxReply("Syntax: DATA"))
	}
	if r := s.dataHook(); r != nil {
		return s.respond(*r)
	}
	s.reply(replyData)
	return s.receive(&dotReader{br: s.br, maxLine: s.srv.cfg.MaxLineLength, bol: true}, false)
}

// RFC 3030 section 2: BDAT size [LAST]; the chunk of size octets follows
// at once. The first chunk of a message calls the backend, which reads
// the following chunks through the same body (chunkReader).
func cmdBdat(s *session, arg string) bool {
	size, last, ok := parseBdat(arg)
	if !ok {
		s.respond(replyBadChunk)
		s.log.Info("BDAT size unreadable, closing connection")
		return false
	}
	r, ok := s.needRecipients()
	if ok {
		if hr := s.dataHook(); hr != nil {
			r, ok = *hr, false
		}
	}
	if !ok {
		// The chunk comes anyway: it is read and dropped, within the
		// data timeout.
		s.dataEnd = time.Now().Add(s.srv.cfg.DataTimeout)
		_, err := s.br.Discard(int(min(size, int64(^uint(0)>>1))))
		s.dataEnd = time.Time{}
		if err != nil {
			s.ioError(err)
			return false
		}
		return s.respond(r)
	}
	return s.receive(&chunkReader{s: s, remaining: size, size: size, last: last}, true)
}

// parseBdat reads BDAT's arguments: a size of 1 to 20 digits and an
// optional LAST.
func parseBdat(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || (len(f) == 2 && !strings.EqualFold(f[1], "LAST")) {
		return 0, false, false
	}
	for i := 0; i < len(f[0]); i++ {
		if f[0][i] < '0' || f[0][i] > '9' {
			return 0, false, false
		}
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, false, false
	}
	return n, len(f) == 2, true
}

// receive hands a message to Backend.Deliver as a stream and answers its
// end: 250 only once Deliver returned nil, that is once the message is
// durable. The body reader's own verdicts (too big, bare CR or LF) win
// over whatever Deliver made of them. Whatever happens, the session stays
// in step with the client or ends.
func (s *session) receive(src dataSource, bdat bool) bool {
	env := s.envelope()
	s.dataEnd = time.Now().Add(s.srv.cfg.DataTimeout)
	start := time.Now()
	body := &bodyReader{r: src, limit: s.srv.cfg.MaxMessageBytes}
	err := s.srv.cfg.Backend.Deliver(s.ctx, env, body)
	if err == nil && !body.finish() {
		// A backend bug: whatever it stored is not the whole message.
		s.log.Error("Deliver returned nil before the end of the body", "read_err", body.err)
		err = errBodyNotConsumed
	}
	ferr := src.failure()
	if ferr == nil {
		if ferr = src.drain(); ferr == nil {
			ferr = src.failure()
		}
	}
	// The transaction is over, whatever its outcome.
	s.dataEnd = time.Time{}
	s.resetTx()

	attrs := []any{"id", env.ID, "from", env.From, "rcpts", env.To, "size", body.n, "helo", env.Helo,
		"tls", env.TLS, "auth", env.AuthUser, "bdat", bdat, "duration", time.Since(start).Round(time.Millisecond)}
	attrs = append(attrs, dsnAttrs(env)...)
	if ferr != nil {
		return s.dataFailed(src, ferr, attrs)
	}
	var r smtpreply.Reply
	switch berr := body.err; {
	case berr == ErrMessageTooBig || berr == ErrBareLineEnding:
		r = *berr.(*smtpreply.Reply)
	case err == nil:
		// RFC 5321 section 4.1.1.4; the id names the transaction in the
		// logs and the trace header.
		s.log.Info("message accepted", attrs...)
		s.errors = 0
		return s.respond(smtpreply.New(250, "2.0.0", "Ok: queued as "+env.ID))
	default:
		var ok bool
		if r, ok = toReply(err); !ok {
			s.log.Error("delivery failed", append(attrs, "err", err)...)
			return s.respond(r)
		}
	}
	s.log.Info("message rejected", append(attrs, "code", r.Code, "enhanced", r.Status.String())...)
	return s.respond(r)
}

// dataFailed ends a message whose data source failed.
func (s *session) dataFailed(src dataSource, err error, attrs []any) bool {
	switch {
	case errors.Is(err, errLongDataLine):
		// RFC 5321 section 4.5.3.1.6. The rest of the data would be read
		// as commands: the session ends.
		s.log.Info("message rejected", append(attrs, "code", replyLongDataLine.Code, "reason", "line too long")...)
		s.respond(replyLongDataLine)
		return false
	case errors.Is(err, errBadChunk):
		s.log.Info("message aborted", append(attrs, "reason", "BDAT size unreadable")...)
		s.respond(replyBadChunk)
		return false
	case errors.Is(err, errChunkAborted):
		c := src.(*chunkReader)
		s.log.Info("message aborted", append(attrs, "reason", "command between chunks")...)
		if c.abort != nil {
			return s.respond(*c.abort)
		}
		return s.dispatch(c.pending)
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Info("message aborted", append(attrs, "reason", "timeout")...)
	default:
		s.log.Info("message aborted", append(attrs, "err", err)...)
	}
	s.ioError(err)
	return false
}

// envelope returns a copy of the transaction for Deliver.
func (s *session) envelope() *Envelope {
	env := *s.tx
	env.To = append([]string(nil), s.tx.To...)
	env.DSN = append([]RcptDSN(nil), s.tx.DSN...)
	return &env
}

// dotReader reads DATA (RFC 5321 section 4.1.1.4): it removes the dot
// that starts a line beginning with a dot (section 4.5.2: only that dot)
// and ends at CRLF "." CRLF, and only there: a dot line after a bare CR
// or LF ends nothing (the body reader refuses the message for the bare
// line ending). It reads the session's buffer in windows and copies runs
// of octets at once: no octet-by-octet state machine.
type dotReader struct {
	br      *bufio.Reader
	maxLine int
	bol     bool // at the start of a line: the data so far is empty or ends in CRLF
	prevCR  bool // the last octet taken was a CR
	lineLen int  // octets of the current line so far, a stuffing dot included
	done    bool // the end of data was read
	err     error
}

func (d *dotReader) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	for len(p) > 0 {
		if d.done {
			return 0, io.EOF
		}
		if d.br.Buffered() == 0 {
			if _, err := d.br.Peek(1); err != nil {
				return 0, d.fail(err)
			}
		}
		buf, _ := d.br.Peek(d.br.Buffered())
		n, used, more, err := d.scan(buf, p)
		d.br.Discard(used)
		if err != nil {
			return 0, d.fail(err)
		}
		if n > 0 {
			return n, nil
		}
		if more {
			// A dot at the start of a line, and too few octets buffered
			// to tell an end of data from a stuffed line.
			if _, err := d.br.Peek(3); err != nil && !errors.Is(err, bufio.ErrBufferFull) {
				return 0, d.fail(err)
			}
		}
	}
	return 0, nil
}

func (d *dotReader) fail(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	d.err = err
	return err
}

// scan takes octets from buf into p: it returns how many it wrote, how
// many it took from buf, and whether it needs more octets buffered before
// it can go on.
func (d *dotReader) scan(buf, p []byte) (n, i int, more bool, err error) {
	for i < len(buf) && n < len(p) {
		if d.bol {
			if buf[i] == '.' {
				if len(buf)-i < 3 {
					return n, i, n == 0 && i == 0, nil
				}
				if buf[i+1] == '\r' && buf[i+2] == '\n' {
					d.done = true
					return n, i + 3, false, nil
				}
				i++ // the stuffing dot
				d.lineLen = 1
			}
			d.bol = false
		}
		seg := buf[i:]
		if room := len(p) - n; len(seg) > room {
			seg = seg[:room]
		}
		k := bytes.IndexByte(seg, '\n')
		if k < 0 {
			if d.lineLen += len(seg); d.lineLen > d.maxLine {
				return n, i, false, errLongDataLine
			}
			n += copy(p[n:], seg)
			i += len(seg)
			d.prevCR = seg[len(seg)-1] == '\r'
			continue
		}
		if d.lineLen+k+1 > d.maxLine {
			return n, i, false, errLongDataLine
		}
		seg = seg[:k+1]
		n += copy(p[n:], seg)
		i += len(seg)
		d.bol = k > 0 && seg[k-1] == '\r' || k == 0 && d.prevCR
		d.prevCR = false
		d.lineLen = 0
	}
	return n, i, false, nil
}

func (d *dotReader) failure() error {
	if d.err == nil || d.done {
		return nil
	}
	return d.err
}

func (d *dotReader) drain() error {
	var buf [4096]byte
	for !d.done && d.err == nil {
		d.Read(buf[:])
	}
	return d.failure()
}

// chunkReader reads the chunks of a BDAT transaction (RFC 3030 section
// 2) as one body: at the end of a chunk that is not the last it answers
// 250 and reads the next command, which must be BDAT. NOOP is answered;
// any other command ends the transaction unanswered and is run after it
// (errChunkAborted).
type chunkReader struct {
	s         *session
	remaining int64 // octets of the current chunk still to read
	size      int64 // octets of the current chunk
	last      bool
	err       error
	pending   []byte           // the command that ended the transaction
	abort     *smtpreply.Reply // or the reply to a bad line in its place
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	for c.remaining == 0 {
		if c.last {
			return 0, io.EOF
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.s.br.Read(p)
	c.remaining -= int64(n)
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		c.err = err
	}
	return n, err
}

// next acknowledges a chunk and reads the command after it.
func (c *chunkReader) next() error {
	s := c.s
	s.reply(smtpreply.New(250, "2.0.0", strconv.FormatInt(c.size, 10)+" octets received"))
	for {
		line, err := s.readLine(maxLine)
		switch {
		case errors.Is(err, errLineTooLong):
			c.abort = &replyLineTooLong
			return errChunkAborted
		case errors.Is(err, errBareLF):
			c.abort = &replyBareLFCommand
			return errChunkAborted
		case err != nil:
			return err
		}
		verb, arg, _ := strings.Cut(string(line), " ")
		switch strings.ToUpper(verb) {
		case "BDAT":
			size, last, ok := parseBdat(arg)
			if !ok {
				return errBadChunk
			}
			c.remaining, c.size, c.last = size, size, last
			return nil
		case "NOOP":
			s.reply(replyOK)
		default:
			c.pending = append([]byte(nil), line...)
			return errChunkAborted
		}
	}
}

func (c *chunkReader) failure() error {
	if c.err == io.EOF {
		return nil
	}
	return c.err
}

// drain drops the rest of the current chunk; chunks after it belong to no
// transaction (their BDAT gets 503, cmdBdat).
func (c *chunkReader) drain() error {
	if c.err != nil {
		return c.failure()
	}
	for c.remaining > 0 {
		n, err := c.s.br.Discard(int(min(c.remaining, 1<<20)))
		c.remaining -= int64(n)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			c.err = err
			return err
		}
	}
	c.last, c.err = true, io.EOF
	return nil
}

// bodyReader is what Deliver reads: the message as received, CRLF line
// endings, dot-stuffing removed. It counts the size (ErrMessageTooBig past
// the limit) and checks that every CR and LF belongs to a CRLF pair
// (ErrBareLineEnding).
type bodyReader struct {
	r       dataSource
	limit   int64
	n       int64 // octets returned so far
	pending bool  // the last octet returned was a CR
	err     error // first error returned, sticky
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.r.Read(p)
	if !b.check(p[:n]) {
		return b.fail(ErrBareLineEnding)
	}
	b.n += int64(n)
	if b.n > b.limit {
		return b.fail(ErrMessageTooBig)
	}
	if err == io.EOF && b.pending { // a body ending in a bare CR (BDAT)
		return b.fail(ErrBareLineEnding)
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// check reports whether every CR and LF of p (after what came before) is
// part of a CRLF pair; a CR at the end of p waits for the next octet.
func (b *bodyReader) check(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	if b.pending {
		if p[0] != '\n' {
			return false
		}
		b.pending = false
		p = p[1:]
	}
	for len(p) > 0 {
		k := bytes.IndexByte(p, '\n')
		if k < 0 {
			j := bytes.IndexByte(p, '\r')
			if j >= 0 && j != len(p)-1 {
				return false
			}
			b.pending = j >= 0
			return true
		}
		// The one CR allowed before this LF is the octet right before it.
		if k == 0 || bytes.IndexByte(p[:k], '\r') != k-1 {
			return false
		}
		p = p[k+1:]
	}
	return true
}

func (b *bodyReader) fail(err error) (int, error) {
	b.err = err
	return 0, err
}

// finish reports whether the body was read to its end, reading on if
// Deliver stopped right before io.EOF (an io.Reader may legitimately
// return the last octets without io.EOF).
func (b *bodyReader) finish() bool {
	if b.err == io.EOF {
		return true
	}
	if b.err != nil {
		return false
	}
	var one [1]byte
	n, err := b.Read(one[:])
	return n == 0 && err == io.EOF
}

// dsnAttrs are the DSN parameters of a transaction for its log line, when
// it has any (RFC 3461 sections 4.1 to 4.4).
func dsnAttrs(env *Envelope) []any {
	var out []any
	if env.Ret != "" {
		out = append(out, "ret", env.Ret)
	}
	if env.EnvID != "" {
		out = append(out, "envid", env.EnvID)
	}
	for _, d := range env.DSN {
		if d.Notify != nil || d.ORcpt != "" {
			out = append(out, "dsn", env.DSN)
			break
		}
	}
	return out
}
