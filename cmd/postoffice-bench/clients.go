package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// ioTimeout bounds every read and write of the clients: a server that
// stalls fails the operation instead of hanging the benchmark.
const ioTimeout = 2 * time.Minute

// dial connects to addr; an error says how long the attempt took.
func dial(ctx context.Context, addr string) (net.Conn, error) {
	return dialFrom(ctx, "", addr)
}

// dialFrom is dial from the local address localIP ("": the system's
// choice).
func dialFrom(ctx context.Context, localIP, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: ioTimeout}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	t := time.Now()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%w (after %v)", err, time.Since(t).Round(time.Millisecond))
	}
	return c, nil
}

// pop3Client is a minimal POP3 client (RFC 1939) for load generation.
type pop3Client struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
	// read counts the octets received.
	read int64
}

func dialPOP3(ctx context.Context, addr string) (*pop3Client, error) {
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	p := &pop3Client{c: c, r: bufio.NewReaderSize(c, 32*1024), w: bufio.NewWriterSize(c, 512)}
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := p.status(); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	return p, nil
}

func (p *pop3Client) Close() error { return p.c.Close() }

// readLine returns one line without its CRLF; the slice is valid until the
// next read. The deadline is the command's (send): setting one per line
// was two fifths of the client's CPU in the download workload.
func (p *pop3Client) readLine() ([]byte, error) {
	line, err := p.r.ReadSlice('\n')
	p.read += int64(len(line))
	if err == bufio.ErrBufferFull {
		// An overlong line: read the rest and keep only the start.
		start := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = p.r.ReadSlice('\n')
			p.read += int64(len(line))
		}
		line = start
	}
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}

// status reads a status line; -ERR becomes an error.
func (p *pop3Client) status() (string, error) {
	line, err := p.readLine()
	if err != nil {
		return "", err
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		return "", fmt.Errorf("server: %q", truncate(string(line), 120))
	}
	return string(line), nil
}

func (p *pop3Client) send(cmd string) error {
	// For the command and its whole answer.
	p.c.SetDeadline(time.Now().Add(ioTimeout))
	p.w.WriteString(cmd)
	p.w.WriteString("\r\n")
	return p.w.Flush()
}

// cmd sends a command and reads its status line.
func (p *pop3Client) cmd(cmd string) (string, error) {
	if err := p.send(cmd); err != nil {
		return "", err
	}
	s, err := p.status()
	if err != nil {
		verb, _, _ := strings.Cut(cmd, " ")
		return "", fmt.Errorf("%s: %w", verb, err)
	}
	return s, nil
}

// multi sends a command with a multi-line answer and calls fn (if not
// nil) with each line of it, dot-unstuffed, without CRLF. It returns the
// unstuffed octets of the content including CRLFs.
func (p *pop3Client) multi(cmd string, fn func(line []byte)) (int64, error) {
	if _, err := p.cmd(cmd); err != nil {
		return 0, err
	}
	if fn == nil {
		return p.skipMulti()
	}
	return p.readContent(fn)
}

// readContent reads the content of a multi-line response line by line,
// calling fn with each line dot-unstuffed and without its CRLF, and the
// terminating line; it returns the content's octets.
func (p *pop3Client) readContent(fn func(line []byte)) (int64, error) {
	var n int64
	for {
		line, err := p.readLine()
		if err != nil {
			return n, err
		}
		if len(line) > 0 && line[0] == '.' {
			if len(line) == 1 {
				return n, nil
			}
			line = line[1:]
		}
		n += int64(len(line)) + 2
		fn(line)
	}
}

// skipMulti reads the content of a multi-line response and its terminating
// line without handing out lines: the load generator then costs a fraction
// of the CPU it would reading line by line (it shares the cores with the
// server it measures). It returns the content's octets after
// dot-unstuffing (RFC 1939 section 3).
func (p *pop3Client) skipMulti() (int64, error) {
	var n int64
	start := true // at the start of a line
	for {
		if p.r.Buffered() < 3 {
			// Enough to tell the terminating line from a stuffed dot:
			// until the end, at least the terminating line is to come.
			if _, err := p.r.Peek(3); err != nil {
				return n, err
			}
		}
		buf, _ := p.r.Peek(p.r.Buffered())
		i := 0
		for i < len(buf) {
			if start && buf[i] == '.' {
				if len(buf)-i < 3 {
					break // read more first
				}
				if buf[i+1] == '\r' && buf[i+2] == '\n' {
					p.r.Discard(i + 3)
					p.read += int64(i + 3)
					return n, nil
				}
				i++ // the stuffed dot
			}
			j := bytes.IndexByte(buf[i:], '\n')
			if j < 0 {
				n += int64(len(buf) - i)
				i = len(buf)
				start = false
				break
			}
			n += int64(j + 1)
			i += j + 1
			start = true
		}
		p.r.Discard(i)
		p.read += int64(i)
	}
}

// login authenticates with USER and PASS (RFC 1939 section 7).
func (p *pop3Client) login(user, password string) error {
	if _, err := p.cmd("USER " + user); err != nil {
		return err
	}
	_, err := p.cmd("PASS " + password)
	return err
}

// stat returns the message count and size (RFC 1939 section 5).
func (p *pop3Client) stat() (int, int64, error) {
	s, err := p.cmd("STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, 0, fmt.Errorf("STAT: malformed answer %q", s)
	}
	n, err1 := strconv.Atoi(f[1])
	size, err2 := strconv.ParseInt(f[2], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, fmt.Errorf("STAT: malformed answer %q", s)
	}
	return n, size, nil
}

// retr fetches message n, writing its unstuffed content (CRLF lines) to w
// when w is not nil, and returns its size.
func (p *pop3Client) retr(n int, w io.Writer) (int64, error) {
	var fn func([]byte)
	if w != nil {
		fn = func(line []byte) {
			w.Write(line)
			w.Write([]byte("\r\n"))
		}
	}
	return p.multi("RETR "+strconv.Itoa(n), fn)
}

func (p *pop3Client) quit() error {
	_, err := p.cmd("QUIT")
	return err
}

// smtpClient is a minimal SMTP client (RFC 5321) for load generation.
type smtpClient struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
	// pipelining: the server offers PIPELINING (RFC 2920), which MTAs
	// such as Postfix's smtp(8) client then use.
	pipelining bool
}

func dialSMTP(ctx context.Context, localIP, addr, helo string) (*smtpClient, error) {
	c, err := dialFrom(ctx, localIP, addr)
	if err != nil {
		return nil, err
	}
	s := &smtpClient{c: c, r: bufio.NewReaderSize(c, 4096), w: bufio.NewWriterSize(c, 64*1024)}
	if _, err := s.reply(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	lines, err := s.cmdLines("EHLO "+helo, 250)
	if err != nil {
		c.Close()
		return nil, err
	}
	for _, l := range lines[1:] {
		if len(l) > 4 && strings.EqualFold(strings.TrimSpace(l[4:]), "PIPELINING") {
			s.pipelining = true
		}
	}
	return s, nil
}

func (s *smtpClient) Close() error { return s.c.Close() }

// reply reads a (multi-line) reply and checks its code; it returns the
// last line.
func (s *smtpClient) reply(want int) (string, error) {
	lines, err := s.replyLines(want)
	if len(lines) == 0 {
		return "", err
	}
	return lines[len(lines)-1], err
}

// replyLines reads a (multi-line) reply and checks its code.
func (s *smtpClient) replyLines(want int) ([]string, error) {
	s.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return nil, fmt.Errorf("malformed reply %q", line)
		}
		lines = append(lines, line)
		if len(line) == 3 || line[3] != '-' {
			break
		}
	}
	last := lines[len(lines)-1]
	code, err := strconv.Atoi(last[:3])
	if err != nil {
		return lines, fmt.Errorf("malformed reply %q", last)
	}
	if code != want {
		return lines, fmt.Errorf("server: %q", truncate(last, 120))
	}
	return lines, nil
}

func (s *smtpClient) cmd(cmd string, want int) (string, error) {
	lines, err := s.cmdLines(cmd, want)
	if len(lines) == 0 {
		return "", err
	}
	return lines[len(lines)-1], err
}

func (s *smtpClient) cmdLines(cmd string, want int) ([]string, error) {
	s.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	s.w.WriteString(cmd)
	s.w.WriteString("\r\n")
	if err := s.w.Flush(); err != nil {
		return nil, err
	}
	r, err := s.replyLines(want)
	if err != nil {
		verb, _, _ := strings.Cut(cmd, " ")
		return r, fmt.Errorf("%s: %w", verb, err)
	}
	return r, nil
}

// send delivers one message in canonical CRLF form; it returns once the
// server accepted it (250 to the end of DATA). With PIPELINING, MAIL,
// RCPT and DATA go in one write (RFC 2920 section 3.1: DATA last).
// authPlain logs in with AUTH PLAIN and an initial response (RFC 4954
// section 4, RFC 4616): no authorization identity, user, password.
func (s *smtpClient) authPlain(user, password string) error {
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	_, err := s.cmd("AUTH PLAIN "+resp, 235)
	return err
}

func (s *smtpClient) send(from, to string, msg []byte) error {
	cmds := []struct {
		line string
		want int
	}{{"MAIL FROM:<" + from + ">", 250}, {"RCPT TO:<" + to + ">", 250}, {"DATA", 354}}
	if s.pipelining {
		s.c.SetWriteDeadline(time.Now().Add(ioTimeout))
		for _, c := range cmds {
			s.w.WriteString(c.line)
			s.w.WriteString("\r\n")
		}
		if err := s.w.Flush(); err != nil {
			return err
		}
		for _, c := range cmds {
			if _, err := s.reply(c.want); err != nil {
				verb, _, _ := strings.Cut(c.line, " ")
				return fmt.Errorf("%s: %w", verb, err)
			}
		}
	} else {
		for _, c := range cmds {
			if _, err := s.cmd(c.line, c.want); err != nil {
				return err
			}
		}
	}
	s.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	writeDotStuffed(s.w, msg)
	s.w.WriteString(".\r\n")
	if err := s.w.Flush(); err != nil {
		return err
	}
	if _, err := s.reply(250); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

func (s *smtpClient) quit() error {
	_, err := s.cmd("QUIT", 221)
	return err
}

// writeDotStuffed writes canonical text with a "." before each line that
// starts with one (RFC 5321 section 4.5.2).
func writeDotStuffed(w *bufio.Writer, msg []byte) {
	start := true
	for len(msg) > 0 {
		if start && msg[0] == '.' {
			w.WriteByte('.')
		}
		i := bytes.IndexByte(msg, '\n')
		if i < 0 {
			w.Write(msg)
			w.WriteString("\r\n")
			return
		}
		w.Write(msg[:i+1])
		msg = msg[i+1:]
		start = true
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
