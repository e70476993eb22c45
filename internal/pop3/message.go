package pop3

import (
	"bufio"
	"bytes"
	"io"
)

// sendMessage answers RETR (lines < 0) or TOP msg lines for message index
// i: the status line, then the byte-stuffed content as a multi-line
// response. Once the status line is sent a failure can no longer be
// reported (RFC 1939 has no way to abort a multi-line response), so a read
// error mid-message ends the session.
func (s *session) sendMessage(i, lines int) bool {
	rc, err := s.drop.Open(s.ctx, i)
	if err != nil {
		s.log.Error("opening message failed", "user", s.user, "message", i+1, "err", err)
		s.reply(sysErrorResponse(err))
		return true
	}
	defer rc.Close()

	size := s.msgs[i].Size
	if lines < 0 {
		s.replyNum("+OK ", size, " octets")
	} else {
		s.reply("+OK Top of message follows")
	}
	s.dw = dotWriter{w: s.bw}
	dw := &s.dw
	var n int64
	if lines < 0 {
		if s.copyBuf == nil {
			s.copyBuf = make([]byte, 32*1024)
		}
		// Hide any WriterTo of the body (strings.Reader, os.File...): it
		// would allocate a buffer or a copy per message instead of using
		// the session's.
		n, err = io.CopyBuffer(dw, struct{ io.Reader }{rc}, s.copyBuf)
	} else {
		err = copyTop(dw, rc, lines)
	}
	if err != nil {
		if dw.err == nil { // a read error, not the client going away
			s.log.Error("reading message failed", "user", s.user, "message", i+1, "err", err)
		}
		return false
	}
	if lines < 0 && n != size {
		// Sizes are counted at delivery (RFC 1939 section 11: LIST sizes
		// should be exact); a mismatch is a store bug worth knowing about.
		s.log.Warn("message size differs from its listed size", "user", s.user, "message", i+1, "listed", size, "sent", n)
	}
	dw.Close()
	if lines < 0 {
		if r, ok := s.drop.(RetrievalRecorder); ok {
			r.Retrieved(i)
		}
	}
	return true
}

// sysErrorResponse answers a failure of an operation that is not an
// authentication: [SYS/TEMP] or [SYS/PERM] (RFC 3206 section 4).
func sysErrorResponse(err error) string {
	if r := errorResponse(err); r == respSysTemp {
		return r
	}
	return respSysPerm
}

// dotWriter writes the body of a multi-line response. RFC 1939 section 3:
// a line that begins with "." gets another "." in front, and the response
// ends with CRLF "." CRLF. Every other byte, 8-bit ones included, passes
// unchanged; the content is expected in canonical CRLF form already.
type dotWriter struct {
	w       *bufio.Writer
	midLine bool  // the last byte written was not the end of a line
	err     error // first write error
}

func (d *dotWriter) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	n := 0
	for len(p) > 0 {
		if !d.midLine && p[0] == '.' {
			if err := d.w.WriteByte('.'); err != nil {
				d.err = err
				return n, err
			}
		}
		// Up to the next line that starts with a dot, or all of p: whole
		// runs of lines in one copy rather than a copy per line.
		seg := p
		if j := bytes.Index(p, dotLine); j >= 0 {
			seg = p[:j+1]
		}
		m, err := d.w.Write(seg)
		n += m
		if err != nil {
			d.err = err
			return n, err
		}
		d.midLine = seg[len(seg)-1] != '\n'
		p = p[len(seg):]
	}
	return n, nil
}

// dotLine marks the start of a line that begins with a dot.
var dotLine = []byte("\n.")

// Close ends the multi-line response, first ending an unterminated last line.
func (d *dotWriter) Close() error {
	if d.err != nil {
		return d.err
	}
	if d.midLine {
		d.w.WriteString("\r\n")
	}
	_, d.err = d.w.WriteString(".\r\n")
	return d.err
}

// copyTop copies the header of a message, the blank line after it, and
// then at most n lines of its body (RFC 1939 section 7, TOP). A message
// without a blank line is all header and is copied whole.
func copyTop(w io.Writer, r io.Reader, n int) error {
	br := bufio.NewReaderSize(r, 4096)
	inHeader, atStart := true, true
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			if atStart && !inHeader {
				if n == 0 {
					return nil
				}
				n--
			}
			if atStart && inHeader && (string(chunk) == "\r\n" || string(chunk) == "\n") {
				inHeader = false
			}
			if _, werr := w.Write(chunk); werr != nil {
				return werr
			}
			atStart = chunk[len(chunk)-1] == '\n'
		}
		switch err {
		case nil, bufio.ErrBufferFull:
		case io.EOF:
			return nil
		default:
			return err
		}
	}
}
