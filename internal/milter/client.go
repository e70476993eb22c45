// Package milter is postoffice's milter client: the exit points where
// filters that speak the Sendmail/Postfix milter protocol (version 6),
// such as rspamd, ClamAV's clamav-milter, OpenDKIM and OpenDMARC, see each
// SMTP session and transaction and decide on it.
//
// The SMTP engine holds one Session per SMTP connection and one
// Transaction per MAIL, and calls them at connect, HELO, MAIL, RCPT,
// DATA and at the end of the data. Every answer comes back as data, a
// Verdict (continue, accept, reject or tempfail with the milter's reply,
// discard) and, at the end of the message, a Result with the changes the
// milters made: header fields added, changed, inserted or deleted and a
// replaced body (already applied: Result.Message reads the new message),
// recipients added or deleted, a changed sender, quarantine. Several
// milters form a chain, as in Postfix: each sees the message as the ones
// before it left it.
//
// A milter that cannot be reached, times out or breaks the protocol gets
// its configured OnError: TempFail refuses the mail with 451 4.7.1 (the
// client retries; nothing is lost or let through unfiltered), Accept
// goes on without it. Either way a line is logged.
//
// The protocol itself is github.com/d--j/go-milter's client: version 6
// with all its actions, the macros a milter asks for at negotiation
// (SMFIF_SETSYMLIST), skips and progress replies; emersion's go-milter,
// which it grew from, has neither macro negotiation nor insert-header
// and change-from with ESMTP arguments.
package milter

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// Action is what a milter (or the chain) decided at an event.
type Action int

// Actions.
const (
	// Continue: go on; no milter objects.
	Continue Action = iota
	// Accept: every milter accepted: none looks at the rest of this
	// transaction (or session, at connect and HELO). The engine goes on
	// as for Continue.
	Accept
	// Reject refuses with Verdict.Reply (5xx): the recipient at RCPT,
	// the transaction at MAIL and later, every transaction of the
	// session at connect and HELO.
	Reject
	// TempFail refuses with Verdict.Reply (4xx), with the same scope.
	TempFail
	// Discard accepts the transaction and drops the message: the client
	// is told 250, nobody gets it.
	Discard
)

var actionNames = [...]string{"continue", "accept", "reject", "tempfail", "discard"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Verdict is the chain's decision at one event.
type Verdict struct {
	Action Action
	Reply  Reply  // for Reject and TempFail
	Milter string // the milter that decided; "" for Continue
	// Err is the failure behind a TempFail that no milter asked for: the
	// milter could not be asked (on_error = tempfail).
	Err error
}

// Refused reports whether the verdict refuses (Reject or TempFail).
func (v Verdict) Refused() bool { return v.Action == Reject || v.Action == TempFail }

// Options are what the milter client needs of the server.
type Options struct {
	Hostname   string // our host name: macro j
	DaemonName string // macro {daemon_name}; "postoffice" when empty
	Version    string // macro v, e.g. "postoffice 1.0"
	Logger     *slog.Logger
	// Observe, when set, is told each milter's answer that is not
	// "continue" at each event (connect, helo, mail, rcpt, data,
	// message), its action's name ("accept", "reject", "tempfail",
	// "discard"), "error" for a milter that could not be asked, and at
	// the end of a message "continue" or "quarantine" for each milter
	// that let it through: the counts of /metrics.
	Observe func(milter, event, action string)
	// TempDir holds replaced bodies over 1 MiB ("": os.TempDir()).
	TempDir string
	// MaxMessageSize bounds what a milter may send back at the end of
	// a message (a replaced body, added fields); more is a milter
	// failure. 0: 64 MiB.
	MaxMessageSize int64
}

// Client holds the configured milters. It is safe for concurrent use:
// each SMTP session has its own Session.
type Client struct {
	milters []Config
	opts    Options
	log     *slog.Logger
}

// New returns a client for the milters, in chain order.
func New(cfgs []Config, opts Options) (*Client, error) {
	c := &Client{opts: opts, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.opts.DaemonName == "" {
		c.opts.DaemonName = "postoffice"
	}
	if c.opts.MaxMessageSize <= 0 {
		c.opts.MaxMessageSize = 64 << 20
	}
	for _, cfg := range cfgs {
		if err := cfg.Check(); err != nil {
			return nil, err
		}
		c.milters = append(c.milters, cfg.withDefaults())
	}
	return c, nil
}

// Conn describes an SMTP connection for the milters.
type Conn struct {
	Service string         // ServiceSMTP or ServiceSubmission: which milters apply
	Local   netip.AddrPort // our end ({daemon_addr}, {daemon_port})
	Remote  netip.AddrPort // the client's ({client_addr}, {client_port}); zero when unknown
	// RemoteName is the client's host name, forward-confirmed, or ""
	// ({client_name}; "unknown" as Postfix sends it).
	RemoteName string
	// PTR is the name the client's address maps to, confirmed or not
	// ({client_ptr}); "" when none.
	PTR string
}

// defaultMacros are the macros sent at each stage to a milter that does
// not ask for its own list: Postfix's defaults (milter_*_macros), with
// {client_addr} and {client_name} at MAIL as rspamd's documentation asks.
var defaultMacros = [][]string{
	gomilter.StageConnect: {gomilter.MacroMTAFQDN, gomilter.MacroDaemonName, gomilter.MacroDaemonAddr,
		gomilter.MacroDaemonPort, gomilter.MacroMTAVersion, gomilter.MacroIfAddr,
		gomilter.MacroClientAddr, gomilter.MacroClientPort, gomilter.MacroClientName, gomilter.MacroClientPTR},
	gomilter.StageHelo: {gomilter.MacroTlsVersion, gomilter.MacroCipher, gomilter.MacroCipherBits,
		gomilter.MacroCertSubject, gomilter.MacroCertIssuer},
	gomilter.StageMail: {gomilter.MacroQueueId, gomilter.MacroAuthType, gomilter.MacroAuthAuthen,
		gomilter.MacroAuthAuthor, gomilter.MacroMailAddr, gomilter.MacroMailHost, gomilter.MacroMailMailer,
		gomilter.MacroClientAddr, gomilter.MacroClientName},
	gomilter.StageRcpt: {gomilter.MacroQueueId, gomilter.MacroRcptAddr, gomilter.MacroRcptHost, gomilter.MacroRcptMailer},
	gomilter.StageData: {gomilter.MacroQueueId},
	gomilter.StageEOM:  {gomilter.MacroQueueId},
	gomilter.StageEOH:  {gomilter.MacroQueueId},
}

// Session is the milters' view of one SMTP connection. The engine calls
// it from the session's goroutine only: Connect first, then Helo (again
// after STARTTLS), TLS and Auth as they happen, Mail for each
// transaction, Close at the end.
type Session struct {
	c      *Client
	conn   Conn
	macros *gomilter.MacroBag
	ms     []*msession
	// refused is a session-wide refusal: a milter rejected at connect or
	// HELO, or failed with on_error = tempfail. Every Mail gets it.
	refused *Verdict
	tx      *Transaction
	helo    bool // Helo was called
}

// msession is one milter in one session.
type msession struct {
	cfg    Config
	cs     *gomilter.ClientSession
	conn   *limitConn
	done   bool // accepted the session, or dropped after a failure
	failed bool // dropped after a failure (on_error = accept)
	txEnd  bool // accepted, refused or discarded this transaction
	inTx   bool // MAIL sent: Abort or End resets it
	data   bool // DATA sent
}

// Session starts the milters' view of a connection; nothing is sent
// before Connect.
func (c *Client) Session(conn Conn) *Session {
	s := &Session{c: c, conn: conn, macros: gomilter.NewMacroBag()}
	m := s.macros
	m.Set(gomilter.MacroMTAFQDN, c.opts.Hostname)
	m.Set(gomilter.MacroDaemonName, c.opts.DaemonName)
	if c.opts.Version != "" {
		m.Set(gomilter.MacroMTAVersion, c.opts.Version)
	}
	if conn.Local.IsValid() {
		m.Set(gomilter.MacroDaemonAddr, conn.Local.Addr().String())
		m.Set(gomilter.MacroIfAddr, conn.Local.Addr().String())
		m.Set(gomilter.MacroDaemonPort, strconv.Itoa(int(conn.Local.Port())))
	}
	if conn.Remote.IsValid() {
		m.Set(gomilter.MacroClientAddr, conn.Remote.Addr().Unmap().String())
		m.Set(gomilter.MacroClientPort, strconv.Itoa(int(conn.Remote.Port())))
	}
	name := conn.RemoteName
	if name == "" {
		name = "unknown"
	}
	m.Set(gomilter.MacroClientName, name)
	if conn.PTR != "" {
		m.Set(gomilter.MacroClientPTR, conn.PTR)
	} else {
		m.Set(gomilter.MacroClientPTR, "unknown")
	}
	for _, cfg := range c.milters {
		for _, svc := range cfg.Services {
			if svc == conn.Service {
				s.ms = append(s.ms, &msession{cfg: cfg})
				break
			}
		}
	}
	return s
}

// limitConn is the connection to a milter: the client library reads and
// writes it; we set its deadlines per event, and bound what a milter may
// send: each packet (the library would allocate up to 512 MiB for the
// length a packet claims) and, at the end of a message, all of it.
//
// What the library writes is held until it next reads (or closes), up to
// maxHeld: the library writes each packet on its own, and a command's
// macros, or the header fields a milter asked not to answer, then go out
// in one write instead of a system call each. The octets and their order
// are unchanged.
type limitConn struct {
	net.Conn
	budget int64 // octets the milter may still send; < 0: no limit
	out    []byte

	// The framing of what the milter sends: a 4-octet length, then that
	// many octets (the milter protocol's packets).
	hdr  [4]byte
	nhdr int   // octets of the length read so far
	left int64 // octets of the current packet still to come
}

// maxPacket is the largest packet taken from a milter: a body chunk of
// the largest size the protocol knows (1 MiB) and its command octet.
const maxPacket = 1<<20 + 1

var errTooMuch = errors.New("milter sent more than the message size limit")

// maxHeld is the most limitConn holds: a larger write (a body chunk)
// goes out at once after what is held, neither copied nor kept in a
// buffer that every idle session would then carry.
const maxHeld = 4 << 10

func (l *limitConn) Write(p []byte) (int, error) {
	if len(l.out)+len(p) > maxHeld {
		if err := l.flush(); err != nil {
			return 0, err
		}
		if len(p) > maxHeld {
			return l.Conn.Write(p)
		}
	}
	l.out = append(l.out, p...)
	return len(p), nil
}

// flush writes what is held.
func (l *limitConn) flush() error {
	if len(l.out) == 0 {
		return nil
	}
	_, err := l.Conn.Write(l.out)
	l.out = l.out[:0]
	return err
}

func (l *limitConn) Close() error {
	l.flush()
	return l.Conn.Close()
}

func (l *limitConn) Read(p []byte) (int, error) {
	if err := l.flush(); err != nil {
		return 0, err
	}
	if l.budget == 0 {
		return 0, errTooMuch
	}
	if l.budget > 0 && int64(len(p)) > l.budget {
		p = p[:l.budget]
	}
	n, err := l.Conn.Read(p)
	if l.budget > 0 {
		l.budget -= int64(n)
	}
	for i := 0; i < n; {
		if l.left > 0 {
			k := min(int64(n-i), l.left)
			l.left -= k
			i += int(k)
			continue
		}
		l.hdr[l.nhdr] = p[i]
		l.nhdr++
		i++
		if l.nhdr == 4 {
			l.nhdr = 0
			l.left = int64(binary.BigEndian.Uint32(l.hdr[:]))
			if l.left > maxPacket {
				return 0, fmt.Errorf("milter sent a packet of %d octets, over the %d taken", l.left, maxPacket)
			}
		}
	}
	return n, err
}

// dialer dials one milter for the library and keeps the connection.
type dialer struct {
	ctx     context.Context
	timeout time.Duration
	conn    *limitConn
}

func (d *dialer) Dial(network, addr string) (net.Conn, error) {
	nd := net.Dialer{Timeout: d.timeout}
	c, err := nd.DialContext(d.ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// The option negotiation follows at once, under the same bound.
	c.SetDeadline(time.Now().Add(d.timeout))
	d.conn = &limitConn{Conn: c, budget: -1}
	return d.conn, nil
}

// family returns the protocol family and address of the client for the
// connect event (SMFIC_CONNECT).
func (s *Session) family() (gomilter.ProtoFamily, uint16, string) {
	if !s.conn.Remote.IsValid() {
		return gomilter.FamilyUnknown, 0, ""
	}
	a := s.conn.Remote.Addr().Unmap()
	if a.Is4() {
		return gomilter.FamilyInet, s.conn.Remote.Port(), a.String()
	}
	return gomilter.FamilyInet6, s.conn.Remote.Port(), a.String()
}

// Connect connects to each milter of the session's service and sends the
// connect event. A Reject or TempFail refuses the whole session: every
// later call returns it again, so the engine may say so at once or go on
// to MAIL and refuse there, as Postfix does.
func (s *Session) Connect(ctx context.Context) Verdict {
	family, port, addr := s.family()
	host := s.conn.RemoteName
	if host == "" {
		// Sendmail's form for a client without a name: the address
		// literal.
		host = "[" + addr + "]"
		if addr == "" {
			host = "localhost"
		}
	}
	for _, m := range s.ms {
		d := &dialer{ctx: ctx, timeout: m.cfg.ConnectTimeout}
		network, address, _ := ParseAddress(m.cfg.Address)
		client := gomilter.NewClient(network, address,
			gomilter.WithDialer(d),
			gomilter.WithReadTimeout(0), gomilter.WithWriteTimeout(0), // deadlines are ours
			gomilter.WithoutDefaultMacros(),
			gomilter.WithMacroRequest(gomilter.StageConnect, defaultMacros[gomilter.StageConnect]),
			gomilter.WithMacroRequest(gomilter.StageHelo, defaultMacros[gomilter.StageHelo]),
			gomilter.WithMacroRequest(gomilter.StageMail, defaultMacros[gomilter.StageMail]),
			gomilter.WithMacroRequest(gomilter.StageRcpt, defaultMacros[gomilter.StageRcpt]),
			gomilter.WithMacroRequest(gomilter.StageData, defaultMacros[gomilter.StageData]),
			gomilter.WithMacroRequest(gomilter.StageEOH, defaultMacros[gomilter.StageEOH]),
			gomilter.WithMacroRequest(gomilter.StageEOM, defaultMacros[gomilter.StageEOM]),
		)
		cs, err := client.Session(s.macros)
		if err != nil {
			if d.conn != nil {
				d.conn.Close()
			}
			if v := s.fail(m, "connect", err); v != nil {
				return *v
			}
			continue
		}
		m.cs, m.conn = cs, d.conn
	}
	return s.event(ctx, "connect", false, func(m *msession) (*gomilter.Action, error) {
		return m.cs.Conn(host, family, port, addr)
	})
}

// Helo sends the HELO or EHLO argument: again after STARTTLS, when the
// client greets anew.
func (s *Session) Helo(ctx context.Context, name string) Verdict {
	s.helo = true
	return s.event(ctx, "helo", false, func(m *msession) (*gomilter.Action, error) {
		return m.cs.Helo(name)
	})
}

// TLS records the TLS parameters of the connection for the macros
// {tls_version}, {cipher}, {cipher_bits} and, for a verified client
// certificate, {cert_subject} and {cert_issuer}; call it after the
// handshake (before Helo).
func (s *Session) TLS(version, cipher string, bits int, certSubject, certIssuer string) {
	s.macros.Set(gomilter.MacroTlsVersion, version)
	s.macros.Set(gomilter.MacroCipher, cipher)
	s.macros.Set(gomilter.MacroCipherBits, strconv.Itoa(bits))
	if certSubject != "" {
		s.macros.Set(gomilter.MacroCertSubject, certSubject)
		s.macros.Set(gomilter.MacroCertIssuer, certIssuer)
	}
}

// Auth records a successful authentication for the macros {auth_type}
// (the SASL mechanism) and {auth_authen} (the user), which OpenDKIM and
// rspamd use to tell submissions from incoming mail.
func (s *Session) Auth(mechanism, user string) {
	s.macros.Set(gomilter.MacroAuthType, mechanism)
	s.macros.Set(gomilter.MacroAuthAuthen, user)
}

// Close ends the session with every milter (SMFIC_QUIT).
func (s *Session) Close() {
	for _, m := range s.ms {
		if m.cs != nil {
			m.cs.Close()
		}
	}
}

// deadline bounds the next exchange with a milter by timeout and by ctx;
// the returned func lifts the context's part.
func deadline(ctx context.Context, m *msession, timeout time.Duration) func() {
	m.conn.SetDeadline(time.Now().Add(timeout))
	stop := context.AfterFunc(ctx, func() { m.conn.SetDeadline(time.Unix(1, 0)) })
	return func() { stop() }
}

// fail handles a milter that could not be asked: logged, then dropped
// from the session (on_error = accept, nil returned) or the session
// refused with 451 4.7.1 (on_error = tempfail).
func (s *Session) fail(m *msession, event string, err error) *Verdict {
	if m.cs != nil {
		m.cs.Close()
	}
	m.done = true
	s.c.log.Warn("milter failed", "milter", m.cfg.Name, "event", event, "err", err, "on_error", string(m.cfg.OnError))
	s.c.observe(m.cfg.Name, event, "error")
	if m.cfg.OnError == OnErrorAccept {
		m.failed = true
		return nil
	}
	v := Verdict{Action: TempFail, Reply: replyTempFail, Milter: m.cfg.Name, Err: err}
	if s.refused == nil {
		s.refused = &v
	}
	return &v
}

// observe passes an answer to Options.Observe.
func (c *Client) observe(milter, event, action string) {
	if c.opts.Observe != nil {
		c.opts.Observe(milter, event, action)
	}
}

// Failed returns the milters of the session that failed and were let go
// (on_error = accept): mail goes on without them, unfiltered by them.
func (s *Session) Failed() []string {
	var out []string
	for _, m := range s.ms {
		if m.failed {
			out = append(out, m.cfg.Name)
		}
	}
	return out
}

// verdictOf turns a milter's answer into a verdict.
func verdictOf(m *msession, a *gomilter.Action) Verdict {
	v := Verdict{Milter: m.cfg.Name}
	switch a.Type {
	case gomilter.ActionAccept:
		v.Action = Accept
	case gomilter.ActionDiscard:
		v.Action = Discard
	case gomilter.ActionReject:
		v.Action, v.Reply = Reject, replyReject
	case gomilter.ActionTempFail:
		v.Action, v.Reply = TempFail, replyTempFail
	case gomilter.ActionRejectWithCode:
		v.Reply = parseReply(a.SMTPReply, int(a.SMTPCode))
		v.Action = Reject
		if v.Reply.Temporary() {
			v.Action = TempFail
		}
	default:
		v.Action, v.Milter = Continue, ""
	}
	return v
}

// event sends one event to each milter still listening, in chain order,
// and returns the first refusal or discard; inTx says whether it belongs
// to the transaction (an Accept ends the milter's part in it) or to the
// session.
func (s *Session) event(ctx context.Context, name string, inTx bool, call func(*msession) (*gomilter.Action, error)) Verdict {
	if s.refused != nil {
		return *s.refused
	}
	accepted, asked := 0, 0
	for _, m := range s.ms {
		if m.done || (inTx && m.txEnd) {
			continue
		}
		asked++
		undo := deadline(ctx, m, m.cfg.CommandTimeout)
		a, err := call(m)
		undo()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			if v := s.fail(m, name, err); v != nil {
				return *v
			}
			continue
		}
		v := verdictOf(m, a)
		if v.Action != Continue {
			s.c.observe(m.cfg.Name, name, v.Action.String())
		}
		switch v.Action {
		case Continue:
		case Accept:
			accepted++
			if inTx {
				m.txEnd = true
			} else {
				m.done = true
			}
		case Discard:
			if inTx {
				return v
			}
		case Reject, TempFail:
			if !inTx {
				s.refused = &v
			}
			return v
		}
	}
	if asked > 0 && accepted == asked {
		return Verdict{Action: Accept}
	}
	return Verdict{Action: Continue}
}
