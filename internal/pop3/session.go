package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/netutil"
)

// state is the RFC 1939 section 3 session state.
type state uint8

const (
	stateAuthorization state = 1 << iota
	stateTransaction
	stateUpdate
)

func (st state) String() string {
	switch st {
	case stateAuthorization:
		return "AUTHORIZATION"
	case stateTransaction:
		return "TRANSACTION"
	case stateUpdate:
		return "UPDATE"
	}
	return "?"
}

// Line limits. RFC 2449 section 4 allows commands of 255 octets including
// CRLF; we are lenient up to maxCommandLine. SASL continuation lines (RFC
// 5034 section 4) may be longer.
const (
	maxCommandLine = 1024
	maxSASLLine    = 8 * 1024
	// readBufSize is small: an idle session keeps it while it waits for a
	// command, and longer lines are read in pieces anyway (readLine).
	readBufSize = 1024
	// writeBufSize holds a typical message whole, so that RETR sends it in
	// one write rather than one per 16 KiB, and the client reads it in as
	// few (BenchmarkPOP3Download; the figures are in bench/RESULTS.md).
	// Only a session that is answering holds one (writerPool).
	writeBufSize = 64 * 1024
)

var errLineTooLong = errors.New("line too long")

// session is one POP3 connection. Apart from raw and killed, its fields are
// used only by the session goroutine.
type session struct {
	srv *Server
	id  uint64
	log *slog.Logger
	ctx context.Context
	// cancel ends ctx when the session ends.
	cancel context.CancelFunc

	raw    net.Conn // the accepted connection (a *tls.Conn for implicit TLS)
	netc   net.Conn // the network connection under raw; Server.Close closes it
	conn   net.Conn // raw, or a *tls.Conn after STLS
	killed atomic.Bool
	br     *bufio.Reader
	bw     *bufio.Writer
	line   []byte // reused line buffer
	err    error  // the I/O error that ended the session inside a command

	isTLS    bool
	loopback bool
	state    state
	bad      int // bad commands so far

	pendingUser string // USER argument waiting for PASS (RFC 1939 section 7)
	utf8        bool   // the client sent UTF8 (RFC 6856 section 2.1)
	user        string // canonical user once authenticated

	drop        Maildrop
	leased      LeasedMaildrop // drop, if its lock can be lost
	dropClosed  bool
	msgs        []Message
	deleted     []bool
	nDeleted    int
	sizeDeleted int64
	copyBuf     []byte
	dw          dotWriter
}

func newSession(srv *Server, c net.Conn) *session {
	s := &session{
		srv:      srv,
		id:       srv.nextID.Add(1),
		raw:      c,
		netc:     c,
		conn:     c,
		state:    stateAuthorization,
		loopback: netutil.IsLoopback(c.RemoteAddr()),
	}
	if tc, ok := c.(*tls.Conn); ok {
		s.netc = tc.NetConn()
	}
	s.ctx, s.cancel = context.WithCancel(clientinfo.WithRemote(srv.ctx, addrString(c.RemoteAddr())))
	s.log = srv.log.With("session", s.id, "remote", addrString(c.RemoteAddr()))
	s.br = bufio.NewReaderSize(c, readBufSize)
	s.acquireWriter()
	return s
}

// kill closes the network connection from another goroutine (Server.Close),
// under any TLS layer so that nothing waits on a TLS close_notify; the
// session goroutine then fails its read or write and ends.
func (s *session) kill() {
	s.killed.Store(true)
	s.netc.Close()
}

// connWriter writes to the current connection with a write deadline renewed
// on every write: a client that stops reading is dropped after the
// inactivity timeout, however long the response.
type connWriter struct{ s *session }

func (w connWriter) Write(p []byte) (int, error) {
	w.s.conn.SetWriteDeadline(time.Now().Add(w.s.srv.timeout))
	return w.s.conn.Write(p)
}

func (s *session) serve() {
	defer func() {
		if v := recover(); v != nil {
			if s.srv.onPanic != nil {
				s.srv.onPanic(v)
			} else {
				s.log.Error("session panic", "panic", v, "stack", string(debug.Stack()))
			}
		}
		// Without QUIT nothing is committed (RFC 1939 section 6); the
		// maildrop is released before the connection closes.
		s.closeMaildrop()
		s.conn.Close()
		s.cancel()
		s.releaseWriter()
		s.log.Debug("session closed")
	}()

	s.log.Debug("session opened")
	if tc, ok := s.raw.(*tls.Conn); ok {
		// RFC 8314 section 3.3: with implicit TLS the handshake comes
		// before any POP3 data.
		tc.SetDeadline(time.Now().Add(s.srv.timeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.log.Debug("TLS handshake failed", "err", err)
			return
		}
		s.isTLS = true
	}

	// RFC 1939 section 4: the greeting. No APOP timestamp: APOP is not
	// supported.
	s.replyf("+OK %s POP3 server ready", s.srv.hostname)
	for {
		if err := s.flushIfIdle(); err != nil {
			s.ioError(err)
			return
		}
		line, err := s.readLine(maxCommandLine)
		s.acquireWriter()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				if !s.badCommand("-ERR Line too long") {
					break
				}
				continue
			}
			s.ioError(err)
			return
		}
		if !s.dispatch(line) {
			break
		}
	}
	if s.err == nil {
		s.err = s.bw.Flush()
	}
	if s.err != nil {
		s.ioError(s.err)
	}
}

// flushIfIdle flushes the responses unless a complete command line is
// already buffered: RFC 2449 section 6.6 (PIPELINING) lets the server batch
// responses to pipelined commands. Output is never held while the session
// could block reading, so no deadlock.
func (s *session) flushIfIdle() error {
	if n := s.br.Buffered(); n > 0 {
		b, _ := s.br.Peek(n)
		if bytes.IndexByte(b, '\n') >= 0 {
			return nil
		}
	}
	if err := s.bw.Flush(); err != nil {
		return err
	}
	s.releaseWriter()
	return nil
}

// writerPool holds the response buffers of the sessions that wait for a
// command: a session keeps none while idle, which would otherwise be most
// of the memory of an idle logged-in session.
var writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}

// acquireWriter gives the session a response buffer, if it has none.
func (s *session) acquireWriter() {
	if s.bw == nil {
		s.bw = writerPool.Get().(*bufio.Writer)
		s.bw.Reset(connWriter{s})
	}
}

// releaseWriter returns the response buffer to the pool; anything still
// in it is dropped (callers flush first).
func (s *session) releaseWriter() {
	if s.bw != nil {
		s.bw.Reset(nil)
		writerPool.Put(s.bw)
		s.bw = nil
	}
}

// readLine reads one line of at most limit octets (terminator excluded),
// renewing the inactivity deadline. A longer line is read to its end and
// discarded in pieces (never buffered whole), then errLineTooLong is
// returned. CRLF and a bare LF both end a line.
func (s *session) readLine(limit int) ([]byte, error) {
	s.conn.SetReadDeadline(time.Now().Add(s.srv.timeout))
	s.line = s.line[:0]
	tooLong := false
	for {
		chunk, err := s.br.ReadSlice('\n')
		if !tooLong {
			if len(s.line)+len(chunk) > limit+2 {
				tooLong = true
				s.line = s.line[:0]
			} else {
				s.line = append(s.line, chunk...)
			}
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, err
		}
	}
	if tooLong {
		return nil, errLineTooLong
	}
	line := bytes.TrimSuffix(s.line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) > limit {
		return nil, errLineTooLong
	}
	return line, nil
}

// ioError logs why the connection ended. On inactivity (RFC 1939 section 3)
// the client is told before the connection is closed.
func (s *session) ioError(err error) {
	switch {
	case s.killed.Load():
		s.log.Debug("session closed by server")
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Info("inactivity timeout", "state", s.state.String())
		s.bw.Reset(connWriter{s})
		s.bw.WriteString("-ERR Disconnected for inactivity.\r\n")
		s.bw.Flush()
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		s.log.Debug("connection closed by client", "state", s.state.String())
	default:
		s.log.Debug("connection error", "err", err, "state", s.state.String())
	}
}

// reply writes one response line; write errors are caught by the next flush.
func (s *session) reply(line string) {
	s.bw.WriteString(line)
	s.bw.WriteString("\r\n")
}

// replyNum writes prefix, n and suffix as one response line without fmt
// (RETR and DELE answer once per message).
func (s *session) replyNum(prefix string, n int64, suffix string) {
	var b [24]byte
	s.bw.WriteString(prefix)
	s.bw.Write(strconv.AppendInt(b[:0], n, 10))
	s.bw.WriteString(suffix)
	s.bw.WriteString("\r\n")
}

func (s *session) replyf(format string, args ...any) {
	fmt.Fprintf(s.bw, format, args...)
	s.bw.WriteString("\r\n")
}

// badCommand answers a bad command with msg and counts it; at
// MaxBadCommands it answers "-ERR Too many bad commands" instead and returns
// false to end the session.
func (s *session) badCommand(msg string) bool {
	s.bad++
	if s.bad >= s.srv.maxBad {
		s.log.Info("too many bad commands", "state", s.state.String())
		s.reply("-ERR Too many bad commands")
		return false
	}
	s.reply(msg)
	return true
}

// Response lines for backend errors, with RFC 2449 section 8 / RFC 3206
// response codes.
const (
	respAuthFailed = "-ERR [AUTH] Authentication failed."
	respInUse      = "-ERR [IN-USE] Mailbox is locked by another POP3 session."
	respLoginDelay = "-ERR [LOGIN-DELAY] Logged in too recently, try again later."
	respSysTemp    = "-ERR [SYS/TEMP] Temporary server failure, try again later."
	respSysPerm    = "-ERR [SYS/PERM] Internal server error."
)

// errorResponse maps a backend error to its response: ErrAuthFailed to
// [AUTH] (RFC 3206 section 5), ErrInUse to [IN-USE] (RFC 2449 section 8.1.2),
// TempError and cancellation to [SYS/TEMP], anything else to [SYS/PERM]
// (RFC 3206 section 4).
func errorResponse(err error) string {
	var te TempError
	var pte *TempError
	switch {
	case errors.Is(err, ErrAuthFailed):
		return respAuthFailed
	case errors.Is(err, ErrInUse):
		return respInUse
	case errors.As(err, &te), errors.As(err, &pte),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return respSysTemp
	default:
		return respSysPerm
	}
}

// closeMaildrop releases the maildrop lock, once.
func (s *session) closeMaildrop() {
	if s.drop == nil || s.dropClosed {
		return
	}
	s.dropClosed = true
	if err := s.drop.Close(); err != nil {
		s.log.Warn("closing maildrop failed", "user", s.user, "err", err)
	}
}

// plaintextAllowed reports whether USER/PASS and AUTH PLAIN/LOGIN, which
// send the password in the clear, may be used (RFC 2595 section 2.3, RFC
// 8314 section 5.2): on TLS, on loopback, or when configured.
func (s *session) plaintextAllowed() bool {
	return s.isTLS || s.loopback || s.srv.cfg.AllowPlaintextAuth
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
