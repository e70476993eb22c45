package smtpd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Buffer sizes. A session keeps both for its whole life; replies are
// short, and message data is read through the read buffer in windows of
// its size.
const (
	readBufSize  = 8 << 10
	writeBufSize = 2 << 10
)

// Errors that end a session's read of a command.
var (
	errLineTooLong = errors.New("line too long")
	errBareLF      = errors.New("line ends in a bare LF")
	// errDraining: the server is shutting down and the session has no
	// transaction (Server.Shutdown).
	errDraining = errors.New("server shutting down")
)

// session is one SMTP connection. Apart from what is marked otherwise,
// its fields are used only by the session goroutine.
type session struct {
	srv *Server
	id  string
	log *slog.Logger
	ctx context.Context
	// cancel ends ctx when the session ends.
	cancel context.CancelFunc

	raw    net.Conn // the connection as handed over (a *tls.Conn for implicit TLS)
	netc   net.Conn // the network connection under raw: kill closes it
	conn   net.Conn // raw, or a *tls.Conn after STARTTLS
	br     *bufio.Reader
	bw     *bufio.Writer
	line   []byte // reused command line buffer
	killed atomic.Bool
	// interrupted: Shutdown found the session waiting for a command with
	// no transaction; every read fails from then on (connReader).
	interrupted atomic.Bool

	// mu guards waiting, which Shutdown reads.
	mu      sync.Mutex
	waiting bool // reading a command, no transaction open

	remote, local string
	loopback      bool
	tls           string // Envelope.TLS, "" if plaintext

	helo     string // EHLO/HELO argument, "" before it
	extended bool   // EHLO rather than HELO
	authUser string
	tx       *Envelope // the mail transaction in progress, nil if none
	rcptSeen bool      // the transaction had RCPT commands, accepted or not
	errors   int       // error replies since the last message accepted
	dataEnd  time.Time // while message data is read: the DataTimeout limit

	// hooks are the backend's hooks for this session (SessionOpener), nil
	// if none; refusal is their refusal of the session at connect or
	// HELO, the answer to every MAIL.
	hooks   SessionHooks
	refusal *smtpreply.Reply
}

func newSession(srv *Server, c net.Conn) *session {
	s := &session{
		srv:      srv,
		id:       newID(),
		raw:      c,
		netc:     c,
		conn:     c,
		remote:   addrString(c.RemoteAddr()),
		local:    addrString(c.LocalAddr()),
		loopback: isLocal(c.RemoteAddr()),
	}
	if tc, ok := c.(*tls.Conn); ok {
		s.netc = tc.NetConn()
	}
	s.ctx, s.cancel = context.WithCancel(clientinfo.WithRemote(srv.ctx, s.remote))
	s.log = srv.log.With("conn", s.id, "remote", s.remote)
	s.br = bufio.NewReaderSize(connReader{s}, readBufSize)
	s.bw = bufio.NewWriterSize(connWriter{s}, writeBufSize)
	return s
}

// kill closes the network connection from another goroutine (Server.Close),
// under any TLS layer so that nothing waits on a TLS close_notify; the
// session goroutine then fails its read or write and ends.
func (s *session) kill() {
	s.killed.Store(true)
	s.netc.Close()
}

// close closes the connection, once the session is over.
func (s *session) close() {
	s.conn.Close()
	s.raw.Close() // the network connection, also when a STARTTLS handshake failed
	s.log.Debug("connection closed")
}

// interruptIfIdle ends the wait for a command of a session without a
// transaction (Shutdown): its read fails, and it answers 421 4.3.2. A
// session in a transaction or busy with a command is left alone: it sees
// the server draining before it reads its next command with no
// transaction open.
func (s *session) interruptIfIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiting {
		s.interrupted.Store(true)
		s.netc.SetReadDeadline(time.Now())
	}
}

// connReader reads from the current connection. Before it can block it
// sends the replies held in the write buffer: replies to pipelined
// commands go out together (RFC 2920 section 3.2), and none is held while
// the session waits for the client. Each read has its own deadline: the
// read timeout from now (RFC 5321 section 4.5.3.2), and while message
// data is read no later than the end of the data timeout.
type connReader struct{ s *session }

func (r connReader) Read(p []byte) (int, error) {
	s := r.s
	if s.bw.Buffered() > 0 {
		if err := s.bw.Flush(); err != nil {
			return 0, err
		}
	}
	d := time.Now().Add(s.srv.cfg.ReadTimeout)
	if !s.dataEnd.IsZero() && d.After(s.dataEnd) {
		d = s.dataEnd
	}
	s.conn.SetReadDeadline(d)
	// Checked after the deadline is set: an interruption either is seen
	// here or comes after, and its deadline then ends the read.
	if s.interrupted.Load() {
		return 0, errDraining
	}
	return s.conn.Read(p)
}

// connWriter writes to the current connection, with a write deadline on
// every write: a client that stops reading is dropped.
type connWriter struct{ s *session }

func (w connWriter) Write(p []byte) (int, error) {
	w.s.conn.SetWriteDeadline(time.Now().Add(w.s.srv.cfg.WriteTimeout))
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
		if s.hooks != nil {
			s.resetTx()
			s.hooks.Close()
		}
		s.cancel()
	}()
	s.log.Debug("connection opened", "local", s.local)

	if tc, ok := implicitTLS(s.raw); ok {
		// RFC 8314 section 3.3: with implicit TLS the handshake comes
		// before any SMTP data.
		tc.SetDeadline(time.Now().Add(s.srv.cfg.ReadTimeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.log.Debug("TLS handshake failed", "err", err)
			return
		}
		s.tls = tlsString(tc.ConnectionState())
	}
	s.openHooks()

	// RFC 5321 section 4.2: the greeting names the server; no enhanced
	// status code (RFC 2034 section 4).
	s.reply(smtpreply.New(220, "", s.srv.cfg.Hostname+" ESMTP postoffice"))
	for {
		line, err := s.readCommand()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				// RFC 5321 section 4.5.3.1.4; the rest of the line was
				// read and dropped: the session is still in step.
				if !s.respond(replyLineTooLong) {
					break
				}
				continue
			}
			if errors.Is(err, errBareLF) {
				if !s.respond(replyBareLFCommand) {
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
	if err := s.bw.Flush(); err != nil {
		s.ioError(err)
	}
}

// readCommand reads the next command line, or fails with errDraining when
// the server is shutting down and the session has no transaction: the
// next command is then never read, whatever is buffered.
func (s *session) readCommand() ([]byte, error) {
	s.mu.Lock()
	idle := s.tx == nil
	if idle && s.srv.draining.Load() {
		s.mu.Unlock()
		return nil, errDraining
	}
	s.waiting = idle
	s.mu.Unlock()

	line, err := s.readLine(maxLine)

	s.mu.Lock()
	s.waiting = false
	s.mu.Unlock()
	if s.interrupted.Load() {
		return nil, errDraining
	}
	return line, err
}

// readLine reads one line of at most limit octets, CRLF excluded; the line
// must end in CRLF (errBareLF otherwise: RFC 5321 section 2.3.8). A longer
// line is read to its end and dropped in pieces, never buffered whole,
// then errLineTooLong is returned.
func (s *session) readLine(limit int) ([]byte, error) {
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
	line := s.line[:len(s.line)-1]
	if len(line) == 0 || line[len(line)-1] != '\r' {
		return nil, errBareLF
	}
	line = line[:len(line)-1]
	if len(line) > limit {
		return nil, errLineTooLong
	}
	return line, nil
}

// ioError ends the session on a failed read or write: on a timeout (RFC
// 5321 section 4.5.3.2) or at shutdown the client is told first.
func (s *session) ioError(err error) {
	switch {
	case s.killed.Load():
		s.log.Debug("session closed by server")
	case errors.Is(err, errDraining):
		s.log.Debug("session ended for shutdown")
		s.final(replyShuttingDown(s.srv.cfg.Hostname))
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Info("timeout", "in_transaction", s.tx != nil)
		s.final(replyTimeout(s.srv.cfg.Hostname))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		s.log.Debug("connection closed by client", "in_transaction", s.tx != nil)
	default:
		s.log.Debug("connection error", "err", err)
	}
}

// final writes a last reply, after those still buffered, on a connection
// about to be closed.
func (s *session) final(r smtpreply.Reply) {
	s.bw.WriteString(r.Wire())
	s.bw.Flush()
}

// reply writes r to the write buffer; write errors show at the next flush.
func (s *session) reply(r smtpreply.Reply) {
	s.bw.WriteString(r.Wire())
}

// respond writes r and counts it if it is an error reply. At
// Config.MaxErrors of them it adds 421 4.7.0 and returns false: the
// session ends.
func (s *session) respond(r smtpreply.Reply) bool {
	s.reply(r)
	if r.Code < 400 {
		return true
	}
	s.errors++
	if s.errors >= s.srv.cfg.MaxErrors {
		s.log.Warn("too many errors, closing connection", "errors", s.errors)
		s.reply(replyTooManyErrors(s.srv.cfg.Hostname))
		return false
	}
	return true
}

// resetTx ends the mail transaction in progress, if any.
func (s *session) resetTx() {
	s.mu.Lock()
	open := s.tx != nil
	s.tx = nil
	s.mu.Unlock()
	s.rcptSeen = false
	if open && s.hooks != nil {
		s.hooks.Reset(s.ctx)
	}
}

// setTx opens a mail transaction.
func (s *session) setTx(env *Envelope) {
	s.mu.Lock()
	s.tx = env
	s.mu.Unlock()
	s.rcptSeen = false
}

// authAllowed: AUTH with a plaintext password only under TLS, from a
// loopback client, or when the operator allows it (RFC 4954 section 4,
// RFC 8314 section 3).
func (s *session) authAllowed() bool {
	return !s.srv.cfg.NoAuth && (s.tls != "" || s.loopback || s.srv.cfg.AllowPlaintextAuth)
}

// tlsString formats a connection state for Envelope.TLS, e.g.
// "TLS1.3 TLS_AES_128_GCM_SHA256".
func tlsString(cs tls.ConnectionState) string {
	return string(bytes.ReplaceAll([]byte(tls.VersionName(cs.Version)), []byte(" "), nil)) + " " + tls.CipherSuiteName(cs.CipherSuite)
}

// isLocal reports whether a client address is loopback or a unix-domain
// socket: plaintext AUTH is allowed there (nothing to sniff).
func isLocal(a net.Addr) bool {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	ap, err := netip.ParseAddrPort(a.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// newID returns a short random identifier: of a connection in the logs,
// of a transaction in Envelope.ID.
func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
