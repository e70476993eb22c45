package testlib

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SMTPSink is an SMTP server on loopback that takes every message and
// keeps it, for the tests of SMTP clients (the queue's, smtpclient's).
// It is deliberately simple and strict: CRLF lines, the commands of RFC
// 5321 and the extensions its options offer; it answers in lock step but
// reads pipelined commands (RFC 2920) as they come.
type SMTPSink struct {
	Addr string // 127.0.0.1:port

	opts SinkOptions
	l    net.Listener
	wg   sync.WaitGroup

	mu      sync.Mutex
	live    map[net.Conn]bool
	closed  bool
	txns    []SinkTxn
	datas   int // messages ended with a dot, taken or not
	conns   int
	open    int
	maxOpen int
	quits   int
	rsets   int
}

// SinkOptions choose what the sink offers.
type SinkOptions struct {
	Hostname     string           // in the greeting and EHLO reply; "sink.test"
	Cert         *tls.Certificate // offer STARTTLS with it
	NoPipelining bool
	No8BitMIME   bool
	SMTPUTF8     bool
	DSN          bool
	MaxSize      int64             // SIZE to offer, 0 for "SIZE" without a limit
	Auth         map[string]string // user -> password, AUTH PLAIN (over TLS)
	// Refuse answers RCPT TO for these addresses with 550 5.1.1.
	Refuse []string
	// Rcpt, when set, answers RCPT TO for the address in the path: a
	// reply line ("451 4.7.1 greylisted"), or "" to take it.
	Rcpt func(addr string) string
	// Data, when set, answers the end of the n-th message's content (n
	// from 1, counted over all connections): a reply line, or "" for
	// 250. It may block, as a stalled peer does.
	Data func(n int) string
	// TLS, when set, is what STARTTLS uses instead of a configuration
	// made of Cert (which must be set too, to offer STARTTLS).
	TLS *tls.Config
	// DataDelay is waited before a message is taken and answered, as by
	// a server that writes it to disk first.
	DataDelay time.Duration
	// Listener, when set, is served instead of a new listener on
	// 127.0.0.1.
	Listener net.Listener
}

// SinkTxn is one message taken.
type SinkTxn struct {
	Conn     int      // which connection (1, 2, ...)
	Helo     string   // the client's EHLO or HELO argument
	TLS      bool     // it came over TLS
	AuthUser string   // who authenticated, "" for no one
	Mail     string   // the MAIL FROM line, parameters included
	Rcpts    []string // the RCPT TO lines
	Data     []byte   // the content, dot-stuffing undone, with CRLF
}

// From is the reverse-path of the MAIL line as written, without the
// angle brackets.
func (t SinkTxn) From() string { return Path(t.Mail) }

// To is the forward-path of each RCPT line as written, without the
// angle brackets.
func (t SinkTxn) To() []string {
	out := make([]string, len(t.Rcpts))
	for i, l := range t.Rcpts {
		out[i] = Path(l)
	}
	return out
}

// StartSMTPSink starts a sink; it stops at the end of the test.
func StartSMTPSink(t testing.TB, opts SinkOptions) *SMTPSink {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "sink.test"
	}
	l := opts.Listener
	if l == nil {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	s := &SMTPSink{Addr: l.Addr().String(), opts: opts, l: l, live: map[net.Conn]bool{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.stop)
	return s
}

// Port is the sink's TCP port.
func (s *SMTPSink) Port() int { return s.l.Addr().(*net.TCPAddr).Port }

// Txns returns the messages taken so far.
func (s *SMTPSink) Txns() []SinkTxn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SinkTxn(nil), s.txns...)
}

// Stats returns the connections accepted, the most open at once, the
// QUIT commands and the RSET commands received.
func (s *SMTPSink) Stats() (conns, maxOpen, quits, rsets int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, s.maxOpen, s.quits, s.rsets
}

// Datas counts the message contents received, taken or refused.
func (s *SMTPSink) Datas() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.datas
}

// Open returns the connections open now.
func (s *SMTPSink) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open
}

// stop closes the listener and the connections still open (a client's
// pool may keep one open), and waits for the sessions to end.
func (s *SMTPSink) stop() {
	s.l.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.live {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *SMTPSink) serve() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.live[c] = true
		s.conns++
		s.open++
		s.maxOpen = max(s.maxOpen, s.open)
		n := s.conns
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				s.open--
				delete(s.live, c)
				s.mu.Unlock()
			}()
			defer c.Close()
			s.session(c, n)
		}()
	}
}

func (s *SMTPSink) session(c net.Conn, n int) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	reply := func(lines ...string) bool {
		for _, l := range lines {
			w.WriteString(l + "\r\n")
		}
		// Lock step, but replies to pipelined commands go out together
		// (RFC 2920 section 3.2) when more input is waiting.
		if r.Buffered() > 0 {
			return true
		}
		return w.Flush() == nil
	}
	readLine := func() (string, bool) {
		l, err := r.ReadString('\n')
		if err != nil || !strings.HasSuffix(l, "\r\n") {
			return "", false
		}
		return strings.TrimSuffix(l, "\r\n"), true
	}
	isTLS, authUser, helo := false, "", ""
	var txn *SinkTxn
	if !reply("220 " + s.opts.Hostname + " ESMTP sink") {
		return
	}
	for {
		line, ok := readLine()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			helo = arg
			ext := []string{"250-" + s.opts.Hostname}
			if !s.opts.NoPipelining {
				ext = append(ext, "250-PIPELINING")
			}
			if !s.opts.No8BitMIME {
				ext = append(ext, "250-8BITMIME")
			}
			if s.opts.SMTPUTF8 {
				ext = append(ext, "250-SMTPUTF8")
			}
			if s.opts.DSN {
				ext = append(ext, "250-DSN")
			}
			if s.opts.Cert != nil && !isTLS {
				ext = append(ext, "250-STARTTLS")
			}
			if s.opts.Auth != nil && isTLS {
				ext = append(ext, "250-AUTH PLAIN")
			}
			size := "250-SIZE"
			if s.opts.MaxSize > 0 {
				size += " " + strconv.FormatInt(s.opts.MaxSize, 10)
			}
			ext = append(ext, size, "250 ENHANCEDSTATUSCODES")
			txn = nil
			if !reply(ext...) {
				return
			}
		case "HELO":
			helo = arg
			reply("250 " + s.opts.Hostname)
		case "STARTTLS":
			if s.opts.Cert == nil || isTLS {
				reply("502 5.5.1 not now")
				continue
			}
			if !reply("220 2.0.0 go ahead") || w.Flush() != nil || r.Buffered() > 0 {
				return
			}
			cfg := s.opts.TLS
			if cfg == nil {
				cfg = &tls.Config{Certificates: []tls.Certificate{*s.opts.Cert}}
			}
			tc := tls.Server(c, cfg)
			if tc.Handshake() != nil {
				return
			}
			c, isTLS, txn = tc, true, nil
			r, w = bufio.NewReader(tc), bufio.NewWriter(tc)
		case "AUTH":
			mech, ir, _ := strings.Cut(arg, " ")
			if !isTLS || !strings.EqualFold(mech, "PLAIN") {
				reply("504 5.5.4 no")
				continue
			}
			b, _ := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(b), "\x00")
			if len(parts) == 3 && s.opts.Auth[parts[1]] == parts[2] && parts[2] != "" {
				authUser = parts[1]
				reply("235 2.7.0 ok")
			} else {
				reply("535 5.7.8 bad credentials")
			}
		case "MAIL":
			txn = &SinkTxn{Conn: n, TLS: isTLS, AuthUser: authUser, Helo: helo, Mail: line}
			reply("250 2.1.0 ok")
		case "RCPT":
			if txn == nil {
				reply("503 5.5.1 MAIL first")
				continue
			}
			refused := false
			for _, a := range s.opts.Refuse {
				if strings.Contains(line, "<"+a+">") {
					refused = true
				}
			}
			if refused {
				reply("550 5.1.1 no such user")
				continue
			}
			if s.opts.Rcpt != nil {
				if r := s.opts.Rcpt(Path(line)); r != "" {
					reply(r)
					continue
				}
			}
			txn.Rcpts = append(txn.Rcpts, line)
			reply("250 2.1.5 ok")
		case "DATA":
			if txn == nil || len(txn.Rcpts) == 0 {
				reply("554 5.5.1 no valid recipients")
				continue
			}
			if !reply("354 go ahead") || w.Flush() != nil {
				return
			}
			var data bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, "."))
			}
			txn.Data = data.Bytes()
			time.Sleep(s.opts.DataDelay)
			s.mu.Lock()
			s.datas++
			nth := s.datas
			s.mu.Unlock()
			if s.opts.Data != nil {
				if r := s.opts.Data(nth); r != "" {
					txn = nil
					reply(r)
					continue
				}
			}
			s.mu.Lock()
			s.txns = append(s.txns, *txn)
			s.mu.Unlock()
			txn = nil
			reply(fmt.Sprintf("250 2.0.0 ok: queued as %d", n))
		case "RSET":
			txn = nil
			s.mu.Lock()
			s.rsets++
			s.mu.Unlock()
			reply("250 2.0.0 ok")
		case "NOOP":
			reply("250 2.0.0 ok")
		case "QUIT":
			s.mu.Lock()
			s.quits++
			s.mu.Unlock()
			reply("221 2.0.0 bye")
			w.Flush()
			return
		default:
			reply("500 5.5.1 unknown command")
		}
	}
}

// Path returns the path of a MAIL FROM or RCPT TO line as written between
// its angle brackets ("" for <>): a quoted local part may hold ">".
func Path(line string) string {
	i := strings.IndexByte(line, '<')
	if i < 0 {
		return ""
	}
	rest := line[i+1:]
	start := 0
	if strings.HasPrefix(rest, `"`) {
		for start = 1; start < len(rest) && rest[start] != '"'; start++ {
			if rest[start] == '\\' {
				start++
			}
		}
	}
	if j := strings.IndexByte(rest[min(start, len(rest)):], '>'); j >= 0 {
		return rest[:start+j]
	}
	return rest
}
