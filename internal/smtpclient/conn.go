package smtpclient

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Target is one address of a next hop to connect to.
type Target struct {
	// Host names the peer: for TLS verification and SNI (an IP address
	// when the next hop is given as one) and in errors and logs.
	Host string
	IP   net.IP
	Port int
}

// Addr is the address to dial, "ip:port".
func (t Target) Addr() string { return net.JoinHostPort(t.IP.String(), strconv.Itoa(t.Port)) }

// String names the target as Postfix does: host[ip]:port.
func (t Target) String() string { return fmt.Sprintf("%s[%s]:%d", t.Host, t.IP, t.Port) }

// TLSLevel is how much TLS a connection insists on, named as Postfix
// names its smtp_tls_security_level values.
type TLSLevel string

const (
	// TLSNone never uses STARTTLS.
	TLSNone TLSLevel = "none"
	// TLSMay uses STARTTLS whenever the peer offers it, without checking
	// its certificate (opportunistic TLS, RFC 7435); a failed handshake
	// falls back to a plaintext connection, as Postfix's "may" does: a
	// peer's broken TLS must not stop mail that needs none.
	TLSMay TLSLevel = "may"
	// TLSEncrypt requires STARTTLS (RFC 3207) but not a valid certificate.
	TLSEncrypt TLSLevel = "encrypt"
	// TLSVerify requires STARTTLS and a certificate valid for Target.Host.
	TLSVerify TLSLevel = "verify"
)

// Auth is a relay host's credentials: AUTH PLAIN (RFC 4616), or LOGIN
// when the relay offers only that, over TLS only (RFC 4954 section 4
// leaves plaintext to policy; ours is never).
type Auth struct {
	User     string
	Password string
}

// Options says how to set up one connection.
type Options struct {
	TLS  TLSLevel // "": TLSMay
	Auth *Auth    // nil: no authentication
}

// Timeouts bound each wait. Zero values take the defaults, which are
// RFC 5321 section 4.5.3.2's for the replies.
type Timeouts struct {
	Connect   time.Duration // TCP connect: 30 s (Postfix's smtp_connect_timeout)
	Greeting  time.Duration // the 220 greeting: 5 min (section 4.5.3.2.1)
	Command   time.Duration // EHLO, STARTTLS and its handshake, AUTH, RSET, QUIT: 5 min (section 4.5.3.2.7's server timeout)
	Mail      time.Duration // MAIL: 5 min (section 4.5.3.2.2)
	Rcpt      time.Duration // each RCPT: 5 min (section 4.5.3.2.3)
	DataInit  time.Duration // DATA's 354: 2 min (section 4.5.3.2.4)
	DataBlock time.Duration // each write of the content: 3 min (section 4.5.3.2.5)
	DataTerm  time.Duration // the reply to the final dot: 10 min (section 4.5.3.2.6)
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Connect, 30*time.Second)
	def(&t.Greeting, 5*time.Minute)
	def(&t.Command, 5*time.Minute)
	def(&t.Mail, 5*time.Minute)
	def(&t.Rcpt, 5*time.Minute)
	def(&t.DataInit, 2*time.Minute)
	def(&t.DataBlock, 3*time.Minute)
	def(&t.DataTerm, 10*time.Minute)
	return t
}

// Config is what every connection shares.
type Config struct {
	// Hostname is our name, said in EHLO (RFC 5321 section 4.1.1.1).
	Hostname string
	// RootCAs verifies certificates at TLSVerify; nil: the system's.
	RootCAs *x509.CertPool
	// Dial opens connections; nil: a net.Dialer.
	Dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	Timeouts Timeouts
}

func (cfg Config) withDefaults() Config {
	cfg.Timeouts = cfg.Timeouts.withDefaults()
	if cfg.Dial == nil {
		d := &net.Dialer{}
		cfg.Dial = d.DialContext
	}
	return cfg
}

// Extensions are the service extensions a peer offered in its EHLO reply
// (RFC 5321 section 4.1.1.1).
type Extensions struct {
	ESMTP               bool  // it answered EHLO (false: HELO, no extension)
	StartTLS            bool  // RFC 3207
	Pipelining          bool  // RFC 2920
	EightBitMIME        bool  // RFC 6152
	SMTPUTF8            bool  // RFC 6531
	DSN                 bool  // RFC 3461
	Chunking            bool  // RFC 3030 (offered; this client sends DATA)
	EnhancedStatusCodes bool  // RFC 2034
	Size                int64 // RFC 1870: the fixed maximum, 0 when none is declared
	SizeOffered         bool
	Auth                []string // RFC 4954 mechanisms, upper case
}

// parseExtensions reads the lines after the first of an EHLO reply:
// a keyword, then parameters separated by spaces.
func parseExtensions(lines []string) Extensions {
	ext := Extensions{ESMTP: true}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "STARTTLS":
			ext.StartTLS = true
		case "PIPELINING":
			ext.Pipelining = true
		case "8BITMIME":
			ext.EightBitMIME = true
		case "SMTPUTF8":
			ext.SMTPUTF8 = true
		case "DSN":
			ext.DSN = true
		case "CHUNKING":
			ext.Chunking = true
		case "ENHANCEDSTATUSCODES":
			ext.EnhancedStatusCodes = true
		case "SIZE":
			ext.SizeOffered = true
			// RFC 1870 section 4: an optional decimal maximum; 0 or
			// none means no fixed maximum.
			if len(f) > 1 {
				if n, err := strconv.ParseInt(f[1], 10, 64); err == nil && n > 0 {
					ext.Size = n
				}
			}
		case "AUTH":
			for _, m := range f[1:] {
				ext.Auth = append(ext.Auth, strings.ToUpper(m))
			}
		}
	}
	return ext
}

// TLSState is what protects a connection.
type TLSState struct {
	Encrypted bool // STARTTLS succeeded
	// Verified: the certificate is valid for Target.Host and chains to
	// Config.RootCAs, checked at every level (TLSVerify requires it;
	// the others report it, as Postfix logs "Trusted" or "Untrusted").
	Verified bool
	// VerifyErr is why the certificate of an encrypted connection did
	// not verify; nil when it did.
	VerifyErr error
	// FellBack: the peer offered STARTTLS but the handshake failed, and
	// this connection is a plaintext retry (TLSMay only).
	FellBack    bool
	Version     uint16 // tls.VersionTLS13 etc.
	CipherSuite uint16
}

// Satisfies reports whether a connection in this state may carry a
// message whose policy is level: any connection does for "none" and
// "may" (it is what "may" made of this peer), an encrypted one for
// "encrypt", a verified one for "verify".
func (s TLSState) Satisfies(level TLSLevel) bool {
	switch level {
	case TLSEncrypt:
		return s.Encrypted
	case TLSVerify:
		return s.Verified
	}
	return true
}

// Conn is one SMTP connection, set up and ready for transactions. It is
// not safe for concurrent use.
type Conn struct {
	cfg    Config
	target Target
	host   string // target.String()
	opts   Options

	conn     net.Conn // TCP, or TLS after STARTTLS
	r        *bufio.Reader
	w        *bufio.Writer
	wtimeout time.Duration // the write deadline each write gets

	greeting smtpreply.Reply
	ext      Extensions
	tls      TLSState

	created time.Time
	broken  bool // an error left the connection in an unknown state
	used    bool // a transaction ran: RSET before the next
}

// Dial connects to t and sets up a session: the greeting, EHLO (HELO to
// a peer that refuses EHLO), STARTTLS as opts.TLS asks and EHLO again
// inside TLS, then AUTH when opts.Auth is set. A failed handshake at
// TLSMay is retried once without TLS on a new connection. The error is
// an *Error; it concerns this host, not any message: a caller tries the
// next host.
func Dial(ctx context.Context, cfg Config, t Target, opts Options) (*Conn, error) {
	cfg = cfg.withDefaults()
	if opts.TLS == "" {
		opts.TLS = TLSMay
	}
	c, err, handshake := dial(ctx, cfg, t, opts, opts.TLS)
	if err != nil && handshake && opts.TLS == TLSMay {
		c, err, _ = dial(ctx, cfg, t, opts, TLSNone)
		if err == nil {
			c.tls.FellBack = true
		}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// dial makes one connection attempt at the given level; handshake
// reports a failure in the TLS handshake, the one TLSMay retries
// without TLS.
func dial(ctx context.Context, cfg Config, t Target, opts Options, level TLSLevel) (c *Conn, err *Error, handshake bool) {
	host := t.String()
	dctx, cancel := context.WithTimeout(ctx, cfg.Timeouts.Connect)
	nc, derr := cfg.Dial(dctx, "tcp", t.Addr())
	cancel()
	if derr != nil {
		e := netError(host, "connect", derr)
		// RFC 3463 section 3.5: X.4.1 no answer from host.
		e.Status = smtpreply.Status{Class: 4, Subject: 4, Detail: 1}
		if ctx.Err() != nil {
			e.Text = "interrupted: " + ctx.Err().Error()
		}
		return nil, e, false
	}
	c = &Conn{cfg: cfg, target: t, host: host, opts: opts, conn: nc, created: time.Now()}
	c.setStream(nc)
	stop := c.watch(ctx)
	defer stop()
	if err, handshake = c.setup(level); err != nil {
		c.conn.Close()
		return nil, err, handshake
	}
	return c, nil, false
}

func (c *Conn) setStream(nc net.Conn) {
	c.r = bufio.NewReaderSize(nc, 4096)
	c.w = bufio.NewWriterSize(&deadlineWriter{c: c, conn: nc}, 32*1024)
}

// watch closes the connection if ctx ends before the returned stop is
// called: how a shutdown interrupts a session.
func (c *Conn) watch(ctx context.Context) (stop func()) {
	if ctx.Done() == nil {
		return func() {}
	}
	nc := c.conn
	s := context.AfterFunc(ctx, func() { nc.Close() })
	return func() { s() }
}

// setup runs the session up to the first transaction.
func (c *Conn) setup(level TLSLevel) (*Error, bool) {
	// RFC 5321 section 4.2: the greeting may span several lines; 220 is
	// service ready, anything else (554) is a refusal.
	rep, err := c.read("greeting", c.cfg.Timeouts.Greeting)
	if err != nil {
		return err, false
	}
	if rep.Code != 220 {
		return replyError(c.host, "greeting", rep), false
	}
	c.greeting = rep
	if c.greetsAsUs(rep) {
		// RFC 5321 section 5.2: a host that greets us with our own name
		// is ourselves; delivering there would loop. RFC 3463 section
		// 3.5: X.4.6 routing loop detected.
		return localError(c.host, "greeting", KindProtocol, true, "5.4.6", "greets with our own name %s: mail loop", c.cfg.Hostname), false
	}
	if err := c.hello(); err != nil {
		return err, false
	}
	useTLS := c.ext.StartTLS && level != TLSNone
	if !useTLS && (level == TLSEncrypt || level == TLSVerify) {
		// RFC 3463 section 3.8: X.7.4 security features not supported.
		return localError(c.host, "EHLO", KindTLS, false, "4.7.4", "STARTTLS is not offered, and TLS level %q requires it", level), false
	}
	if useTLS {
		err, handshake := c.startTLS(level)
		if err != nil && err.Kind == KindReply && level == TLSMay && !c.broken {
			// STARTTLS refused (454, RFC 3207 section 4): the session is
			// as it was, and "may" goes on in plaintext.
			c.tls.FellBack = true
		} else if err != nil {
			return err, handshake
		}
	}
	if c.opts.Auth != nil {
		if err := c.auth(c.opts.Auth); err != nil {
			return err, false
		}
	}
	return nil, false
}

func (c *Conn) greetsAsUs(rep smtpreply.Reply) bool {
	if c.cfg.Hostname == "" || len(rep.Text) == 0 {
		return false
	}
	name, _, _ := strings.Cut(rep.Text[0], " ")
	return strings.EqualFold(strings.TrimSuffix(name, "."), c.cfg.Hostname)
}

// hello sends EHLO with our name (RFC 5321 section 4.1.1.1), or HELO to
// a peer that answers EHLO with a permanent error (500, 502: the command
// is unknown to it), and keeps the extensions offered.
func (c *Conn) hello() *Error {
	rep, err := c.cmd("EHLO", c.cfg.Timeouts.Command, "EHLO "+c.cfg.Hostname)
	if err != nil {
		return err
	}
	if rep.Code == 250 {
		if len(rep.Text) > 0 {
			c.ext = parseExtensions(rep.Text[1:])
		} else {
			c.ext = Extensions{ESMTP: true}
		}
		return nil
	}
	if !rep.Permanent() {
		return replyError(c.host, "EHLO", rep)
	}
	rep, err = c.cmd("HELO", c.cfg.Timeouts.Command, "HELO "+c.cfg.Hostname)
	if err != nil {
		return err
	}
	if rep.Code != 250 {
		return replyError(c.host, "HELO", rep)
	}
	c.ext = Extensions{}
	return nil
}

// startTLS upgrades the connection (RFC 3207) and says EHLO again: RFC
// 3207 section 4.2 has the client discard what it learnt before TLS,
// the extensions included.
func (c *Conn) startTLS(level TLSLevel) (*Error, bool) {
	rep, err := c.cmd("STARTTLS", c.cfg.Timeouts.Command, "STARTTLS")
	if err != nil {
		return err, false
	}
	if rep.Code != 220 {
		return replyError(c.host, "STARTTLS", rep), false
	}
	if c.r.Buffered() > 0 {
		// Whatever the peer sent after its 220 came before TLS and would
		// be taken for a reply inside it (the client side of
		// CVE-2011-0411); RFC 3207 section 4.2 discards all of it.
		return localError(c.host, "STARTTLS", KindProtocol, false, "4.7.0", "data after the STARTTLS reply, before TLS"), false
	}
	cfg := &tls.Config{ServerName: c.target.Host, MinVersion: tls.VersionTLS12}
	if level == TLSVerify {
		cfg.RootCAs = c.cfg.RootCAs
	} else {
		// Opportunistic and "encrypt" TLS protect against passive
		// eavesdropping only (RFC 7435 section 1.3); most MX
		// certificates would not verify anyway.
		cfg.InsecureSkipVerify = true
		if net.ParseIP(c.target.Host) != nil {
			cfg.ServerName = "" // SNI takes no IP address (RFC 6066 section 3)
		}
	}
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(c.cfg.Timeouts.Command))
	if herr := tc.Handshake(); herr != nil {
		// RFC 3463 section 3.8: X.7.5 cryptographic failure.
		e := &Error{Host: c.host, Command: "STARTTLS", Kind: KindTLS, Status: smtpreply.Status{Class: 4, Subject: 7, Detail: 5},
			Text: "TLS handshake failed: " + unwrapOp(herr).Error(), Err: herr}
		if isTimeout(herr) {
			e.Kind, e.Text = KindTimeout, "TLS handshake timed out"
		}
		return e, true
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = TLSState{Encrypted: true, Verified: level == TLSVerify, Version: st.Version, CipherSuite: st.CipherSuite}
	if level != TLSVerify {
		c.tls.VerifyErr = c.verify(st.PeerCertificates)
		c.tls.Verified = c.tls.VerifyErr == nil
	}
	c.conn = tc
	c.setStream(tc)
	if err := c.hello(); err != nil {
		return err, false
	}
	return nil, false
}

// verify checks a peer's certificate chain as TLSVerify's handshake
// does, for the levels that do not require it: valid for Target.Host,
// chaining to Config.RootCAs.
func (c *Conn) verify(certs []*x509.Certificate) error {
	if len(certs) == 0 {
		return errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, ic := range certs[1:] {
		inter.AddCert(ic)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{DNSName: c.target.Host, Roots: c.cfg.RootCAs, Intermediates: inter})
	return err
}

// auth authenticates to a relay (RFC 4954), only inside TLS: credentials
// never go in the clear. A refusal is temporary whatever its code: it is
// the configuration that is wrong, not the message.
func (c *Conn) auth(a *Auth) *Error {
	if !c.tls.Encrypted {
		return localError(c.host, "AUTH", KindTLS, false, "4.7.0", "not sending credentials without TLS")
	}
	has := func(m string) bool {
		for _, x := range c.ext.Auth {
			if x == m {
				return true
			}
		}
		return false
	}
	var rep smtpreply.Reply
	var err *Error
	switch {
	case has("PLAIN"):
		// RFC 4616 section 2: authzid NUL authcid NUL passwd, sent as
		// the initial response (RFC 4954 section 4).
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + a.User + "\x00" + a.Password))
		rep, err = c.cmd("AUTH", c.cfg.Timeouts.Command, "AUTH PLAIN "+ir)
	case has("LOGIN"):
		// The LOGIN mechanism (draft-murchison-sasl-login): the user
		// name and the password, each as the answer to a 334.
		rep, err = c.cmd("AUTH", c.cfg.Timeouts.Command, "AUTH LOGIN")
		for _, s := range []string{a.User, a.Password} {
			if err != nil || rep.Code != 334 {
				break
			}
			rep, err = c.cmd("AUTH", c.cfg.Timeouts.Command, base64.StdEncoding.EncodeToString([]byte(s)))
		}
	default:
		return localError(c.host, "AUTH", KindLocal, false, "4.7.4", "the relay offers neither AUTH PLAIN nor AUTH LOGIN")
	}
	if err != nil {
		return err
	}
	if rep.Code != 235 {
		e := replyError(c.host, "AUTH", rep)
		e.Permanent = false
		if e.Status.Class == 5 {
			e.Status.Class = 4
		}
		if rep.Code == 334 {
			// A further challenge: abort the exchange (RFC 4954 section 4).
			c.cmd("AUTH", c.cfg.Timeouts.Command, "*")
		}
		return e
	}
	return nil
}

// Target is the peer of this connection.
func (c *Conn) Target() Target { return c.target }

// Extensions are what the peer offered (inside TLS when TLS is on).
func (c *Conn) Extensions() Extensions { return c.ext }

// TLS is what protects this connection.
func (c *Conn) TLS() TLSState { return c.tls }

// Greeting is the peer's 220 greeting.
func (c *Conn) Greeting() smtpreply.Reply { return c.greeting }

// Usable reports whether another transaction may run on the connection:
// no error left it in an unknown state.
func (c *Conn) Usable() bool { return !c.broken }

// Close ends the session politely (QUIT, RFC 5321 section 4.1.1.10)
// when it is usable, then closes the connection.
func (c *Conn) Close() error {
	if !c.broken {
		c.broken = true
		t := min(c.cfg.Timeouts.Command, 10*time.Second)
		c.cmd("QUIT", t, "QUIT")
	}
	return c.conn.Close()
}

// cmd sends one command line and reads its reply.
func (c *Conn) cmd(name string, timeout time.Duration, line string) (smtpreply.Reply, *Error) {
	if err := c.send(name, timeout, line); err != nil {
		return smtpreply.Reply{}, err
	}
	return c.read(name, timeout)
}

// send writes one command line and flushes it.
func (c *Conn) send(name string, timeout time.Duration, line string) *Error {
	c.w.WriteString(line)
	c.w.WriteString("\r\n")
	return c.flush(name, timeout)
}

func (c *Conn) flush(name string, timeout time.Duration) *Error {
	c.wtimeout = timeout
	if err := c.w.Flush(); err != nil {
		c.broken = true
		return netError(c.host, name, err)
	}
	return nil
}

// read reads one reply within timeout; any failure leaves the
// connection broken.
func (c *Conn) read(name string, timeout time.Duration) (smtpreply.Reply, *Error) {
	c.conn.SetReadDeadline(time.Now().Add(timeout))
	rep, err := readReply(c.r)
	if err != nil {
		c.broken = true
		if errors.Is(err, errReplySyntax) || errors.Is(err, errReplyTooLong) {
			// RFC 3463 section 3.6: X.5.0 other or undefined protocol status.
			return smtpreply.Reply{}, &Error{Host: c.host, Command: name, Kind: KindProtocol,
				Status: smtpreply.Status{Class: 4, Subject: 5, Detail: 0}, Text: err.Error(), Err: err}
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return smtpreply.Reply{}, netError(c.host, name, err)
	}
	if rep.Code == 421 {
		// RFC 5321 section 3.8: the service is closing the channel.
		c.broken = true
	}
	return rep, nil
}

// deadlineWriter gives each write to the connection the current write
// timeout: a stalled peer cannot hold a connection forever while a slow
// one may take as long as the message needs (RFC 5321 section
// 4.5.3.2.5: the timeout is per block, not for the whole content).
type deadlineWriter struct {
	c    *Conn
	conn net.Conn
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(time.Now().Add(d.c.wtimeout))
	return d.conn.Write(p)
}
