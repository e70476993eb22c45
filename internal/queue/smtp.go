package queue

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postoffice-mail/postoffice/internal/address"
)

// target is one address to connect to.
type target struct {
	host string // name for TLS verification, SNI and reports (or the IP)
	ip   net.IP
	port int
}

func (t target) addr() string { return net.JoinHostPort(t.ip.String(), strconv.Itoa(t.port)) }

// String names the target as Postfix does: host[ip]:port.
func (t target) String() string { return fmt.Sprintf("%s[%s]:%d", t.host, t.ip, t.port) }

// deliverGroup makes one attempt for the recipients of one destination:
// it finds the hosts to try and tries them in turn until one takes the
// transaction (RFC 5321 section 5.1). Connection and session failures
// move on to the next host; once a host has answered MAIL FROM, its
// replies decide.
func (r *Runner) deliverGroup(ctx context.Context, info *msgInfo, from string, g group) map[string]outcome {
	all := func(f *failure) map[string]outcome {
		res := make(map[string]outcome, len(g.rcpts))
		for _, rc := range g.rcpts {
			res[rc] = outcome{fail: f, remote: f.remote}
		}
		return res
	}
	if g.dest.err != nil {
		return all(g.dest.err)
	}
	targets, f := r.targets(ctx, g.dest)
	if f != nil {
		return all(f)
	}
	var last *failure
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		res, f := r.tryTarget(ctx, info, from, g, t)
		if res != nil {
			return res
		}
		last = f
		r.log.Info("host failed, trying the next", "host", t.String(), "err", f.text)
	}
	if ctx.Err() != nil {
		return all(tempFailure("4.3.2", "delivery interrupted by shutdown"))
	}
	if last == nil {
		last = tempFailure("4.4.4", "no host to deliver to")
	}
	last.perm = false // another host, or the same later, may do better
	return all(last)
}

// targets resolves a destination into addresses to try, in order.
func (r *Runner) targets(ctx context.Context, d destination) ([]target, *failure) {
	if d.addr != "" {
		host, portStr, err := net.SplitHostPort(d.addr)
		if err != nil {
			return nil, tempFailure("4.3.5", "bad route %q: %v", d.addr, err)
		}
		port, _ := strconv.Atoi(portStr)
		if ip := net.ParseIP(host); ip != nil {
			return []target{{host: host, ip: ip, port: port}}, nil
		}
		ips, err := r.cfg.Resolver.LookupIP(ctx, host)
		if err != nil {
			// The relay or route is configuration: a name that does not
			// resolve is a problem to fix, not a reason to bounce.
			return nil, tempFailure("4.4.3", "address lookup for %s failed: %v", host, err)
		}
		var ts []target
		for _, ip := range sortAddrs(ips) {
			ts = append(ts, target{host: host, ip: ip, port: port})
		}
		return capTargets(ts), nil
	}

	mx, f := lookupMX(ctx, r.cfg.Resolver, d.domain)
	if f != nil {
		return nil, f
	}
	var ts []target
	var lookupErr error
	for _, h := range mx.hosts {
		ips, err := r.cfg.Resolver.LookupIP(ctx, h)
		if err != nil {
			lookupErr = err
			continue
		}
		for _, ip := range sortAddrs(ips) {
			ts = append(ts, target{host: h, ip: ip, port: r.cfg.MXPort})
		}
	}
	if len(ts) == 0 {
		// RFC 3463 section 3.5: X.4.4 unable to route.
		return nil, tempFailure("4.4.4", "no address for the mail hosts of %s (%s): %v", d.domain, strings.Join(mx.hosts, ", "), lookupErr)
	}
	return capTargets(ts), nil
}

func capTargets(ts []target) []target {
	if len(ts) > maxTargets {
		return ts[:maxTargets]
	}
	return ts
}

// tryTarget connects to one host and, if the session gets as far as a
// transaction, returns the outcome of every recipient. Otherwise it
// returns the failure that made the host unusable.
func (r *Runner) tryTarget(ctx context.Context, info *msgInfo, from string, g group, t target) (map[string]outcome, *failure) {
	release, err := r.hosts.acquire(ctx, t.addr())
	if err != nil {
		return nil, tempFailure("4.3.2", "interrupted: %v", err)
	}
	defer release()
	select {
	case r.conns <- struct{}{}:
		defer func() { <-r.conns }()
	case <-ctx.Done():
		return nil, tempFailure("4.3.2", "interrupted: %v", ctx.Err())
	}

	level := g.dest.tls
	s, f := r.connect(ctx, t, level)
	if f != nil && f.tlsHandshake && level == TLSMay {
		// Opportunistic TLS that fails in the handshake falls back to
		// plaintext on a new connection, as Postfix's "may" does: the
		// peer's broken TLS must not stop mail that needs none.
		r.log.Info("TLS handshake failed, retrying without TLS", "host", t.String(), "err", f.text)
		s, f = r.connect(ctx, t, TLSNone)
	}
	if f != nil {
		return nil, &f.failure
	}
	defer s.close()
	if rl := g.dest.relay; rl != nil && rl.User != "" {
		if f := s.auth(rl); f != nil {
			return nil, f
		}
	}
	return s.transaction(info, from, g.rcpts), nil
}

// session is an SMTP connection ready for transactions.
type session struct {
	r      *Runner
	t      target
	conn   net.Conn // the raw or TLS connection
	c      *smtp.Client
	tls    bool
	ctx    context.Context
	cancel func() bool // stops closing conn when ctx ends
}

// connFailure is a failure to set up a session; tlsHandshake marks the
// one opportunistic TLS may retry without TLS.
type connFailure struct {
	failure
	tlsHandshake bool
}

func (r *Runner) connFail(t target, status, format string, a ...any) *connFailure {
	return &connFailure{failure: failure{status: status, text: fmt.Sprintf(format, a...), remote: t.host}}
}

// connect opens a session: greeting, EHLO (HELO if refused), STARTTLS
// (RFC 3207) as level asks, then EHLO again inside TLS. The first part
// is spoken here because go-smtp's client cannot say EHLO with our name
// and then decide whether to start TLS; what follows is handed to it.
func (r *Runner) connect(ctx context.Context, t target, level TLSLevel) (*session, *connFailure) {
	dctx, cancel := context.WithTimeout(ctx, r.cfg.ConnectTimeout)
	conn, err := r.cfg.Dial(dctx, "tcp", t.addr())
	cancel()
	if err != nil {
		// RFC 3463 section 3.5: X.4.1 no answer from host.
		return nil, r.connFail(t, "4.4.1", "connect to %s: %v", t, unwrapOp(err))
	}
	// Closing the connection is how a shutdown interrupts a session.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	ok := false
	defer func() {
		if !ok {
			stop()
			conn.Close()
		}
	}()

	tp := textproto.NewConn(conn)
	conn.SetDeadline(time.Now().Add(r.cfg.CommandTimeout))
	// RFC 5321 section 4.2: the greeting may span several lines.
	if _, msg, err := tp.ReadResponse(220); err != nil {
		return nil, r.replyFail(t, err, "greeting")
	} else if !r.greetingOK(msg) {
		// RFC 5321 section 5.2 / 4.2: a host greeting us with our own
		// name is ourselves: delivering there would loop.
		return nil, r.connFail(t, "5.4.6", "%s greets with our own name %s: mail loop", t, r.cfg.Hostname)
	}
	ext, err := hello(tp, r.cfg.Hostname)
	if err != nil {
		return nil, r.replyFail(t, err, "EHLO")
	}
	_, offered := ext["STARTTLS"]
	useTLS := offered && level != TLSNone
	if !useTLS && (level == TLSEncrypt || level == TLSVerify) {
		// RFC 3463 section 3.8: X.7.4 security features not supported.
		return nil, r.connFail(t, "4.7.4", "%s does not offer STARTTLS, which tls = %q requires", t, level)
	}
	var netConn net.Conn = conn
	if useTLS {
		id, err := tp.Cmd("STARTTLS")
		if err == nil {
			tp.StartResponse(id)
			_, _, err = tp.ReadResponse(220)
			tp.EndResponse(id)
		}
		if err != nil {
			f := r.replyFail(t, err, "STARTTLS")
			f.tlsHandshake = level == TLSMay
			return nil, f
		}
		if tp.R.Buffered() > 0 {
			// RFC 3207 section 6 (and CVE-2011-0411): anything the server
			// sent after its 220 came before TLS and must not be taken
			// for a reply inside it.
			return nil, r.connFail(t, "4.7.0", "%s sent data after its STARTTLS reply", t)
		}
		tc := tls.Client(conn, r.tlsConfig(t, level))
		hctx, cancel := context.WithTimeout(ctx, r.cfg.CommandTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			// RFC 3463 section 3.8: X.7.5 cryptographic failure.
			f := r.connFail(t, "4.7.5", "TLS with %s failed: %v", t, err)
			f.tlsHandshake = true
			return nil, f
		}
		netConn = tc
	} else if tp.R.Buffered() > 0 {
		return nil, r.connFail(t, "4.5.0", "%s sent data nobody asked for", t)
	}
	conn.SetDeadline(time.Time{})

	// go-smtp's client reads a greeting first: give it one, then it says
	// EHLO (again, or for the first time inside TLS as RFC 3207 section
	// 4.2 requires).
	c := smtp.NewClient(&resumedConn{Conn: netConn, r: io.MultiReader(strings.NewReader("220 "+t.host+" session resumed\r\n"), netConn)})
	c.CommandTimeout = r.cfg.CommandTimeout
	c.SubmissionTimeout = r.cfg.DataTimeout
	if err := c.Hello(r.cfg.Hostname); err != nil {
		c.Close()
		return nil, r.replyFail(t, err, "EHLO")
	}
	ok = true
	return &session{r: r, t: t, conn: netConn, c: c, tls: useTLS, ctx: ctx, cancel: stop}, nil
}

// greetingOK reports whether the greeting does not name this host.
func (r *Runner) greetingOK(msg string) bool {
	first, _, _ := strings.Cut(msg, "\n")
	name, _, _ := strings.Cut(first, " ")
	return !strings.EqualFold(strings.TrimSuffix(name, "."), r.cfg.Hostname)
}

// hello sends EHLO, or HELO to a server that does not know EHLO (RFC 5321
// section 4.1.1.1), and returns the extensions offered.
func hello(tp *textproto.Conn, name string) (map[string]string, error) {
	cmd := func(format string, a ...any) (string, error) {
		id, err := tp.Cmd(format, a...)
		if err != nil {
			return "", err
		}
		tp.StartResponse(id)
		defer tp.EndResponse(id)
		_, msg, err := tp.ReadResponse(250)
		return msg, err
	}
	msg, err := cmd("EHLO %s", name)
	var te *textproto.Error
	if errors.As(err, &te) && (te.Code == 500 || te.Code == 502) {
		_, err = cmd("HELO %s", name)
		return map[string]string{}, err
	}
	if err != nil {
		return nil, err
	}
	ext := map[string]string{}
	lines := strings.Split(msg, "\n")
	for _, l := range lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext, nil
}

// replyFail turns an error in session setup into a failure. The session
// is unusable whatever the code: another host is tried.
func (r *Runner) replyFail(t target, err error, stage string) *connFailure {
	status, text := describe(err)
	if status == "" {
		status = "4.4.2" // RFC 3463 section 3.5: X.4.2 bad connection
	}
	return r.connFail(t, status, "%s said: %s (in reply to %s)", t, text, stage)
}

// describe returns the status and text of an SMTP reply error, or "" and
// the error's text for a network error.
func describe(err error) (status, text string) {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return statusOf(se.Code, se.EnhancedCode), fmt.Sprintf("%d %s %s", se.Code, statusOf(se.Code, se.EnhancedCode), oneLine(se.Message))
	}
	var te *textproto.Error
	if errors.As(err, &te) {
		msg := oneLine(te.Msg)
		st := statusOf(te.Code, smtp.EnhancedCodeNotSet)
		if code, rest, ok := strings.Cut(msg, " "); ok && isEnhanced(code) && code[0] == st[0] {
			st, msg = code, rest
		}
		return st, fmt.Sprintf("%d %s %s", te.Code, st, msg)
	}
	return "", unwrapOp(err).Error()
}

// statusOf is the RFC 3463 status of a reply: its enhanced code, or
// X.0.0 of its class (RFC 3463 section 3.1: "other undefined status").
func statusOf(code int, ec smtp.EnhancedCode) string {
	if (ec[0] == 2 || ec[0] == 4 || ec[0] == 5) && ec[0] == code/100 {
		return fmt.Sprintf("%d.%d.%d", ec[0], ec[1], ec[2])
	}
	switch code / 100 {
	case 2:
		return "2.0.0"
	case 4:
		return "4.0.0"
	}
	return "5.0.0"
}

func isEnhanced(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if _, err := strconv.Atoi(p); err != nil {
			return false
		}
	}
	return true
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// unwrapOp drops net.OpError's repetition of addresses.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}

func (r *Runner) tlsConfig(t target, level TLSLevel) *tls.Config {
	cfg := &tls.Config{ServerName: t.host, MinVersion: tls.VersionTLS12}
	if level != TLSVerify {
		// Opportunistic and "encrypt" TLS protect against passive
		// eavesdropping only (RFC 7435); most MX certificates would not
		// verify anyway.
		cfg.InsecureSkipVerify = true
	} else {
		cfg.RootCAs = r.cfg.RootCAs
	}
	if net.ParseIP(t.host) != nil && level != TLSVerify {
		cfg.ServerName = "" // SNI takes no IP addresses
	}
	return cfg
}

// resumedConn replays a greeting before the connection's own data.
type resumedConn struct {
	net.Conn
	r io.Reader
}

func (c *resumedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (s *session) close() {
	s.c.Quit()
	s.c.Close()
	s.cancel()
}

// auth authenticates to a relay with AUTH PLAIN (RFC 4954, RFC 4616),
// only inside TLS: credentials are never sent in the clear.
func (s *session) auth(rl *Relay) *failure {
	if !s.tls {
		return &failure{status: "4.7.0", remote: s.t.host,
			text: fmt.Sprintf("%s: not sending credentials without TLS (STARTTLS not offered)", s.t)}
	}
	if !s.c.SupportsAuth("PLAIN") {
		return &failure{status: "4.7.4", remote: s.t.host, text: fmt.Sprintf("%s does not offer AUTH PLAIN", s.t)}
	}
	if err := s.c.Auth(sasl.NewPlainClient("", rl.User, rl.Password)); err != nil {
		status, text := describe(err)
		if status == "" {
			status = "4.4.2"
		}
		// A refused login is deferred, not bounced: it is the
		// configuration that is wrong, not the message.
		if status[0] == '5' {
			status = "4" + status[1:]
		}
		return &failure{status: status, remote: s.t.host, text: fmt.Sprintf("%s refused the login: %s (in reply to AUTH)", s.t, text)}
	}
	return nil
}

// transaction sends the message to the recipients in one SMTP
// transaction (RFC 5321 section 3.3) and returns each one's outcome.
func (s *session) transaction(info *msgInfo, from string, rcpts []string) map[string]outcome {
	res := make(map[string]outcome, len(rcpts))
	remote := s.t.host
	failAll := func(list []string, f *failure) map[string]outcome {
		f.remote = remote
		for _, rc := range list {
			res[rc] = outcome{fail: f, remote: remote}
		}
		return res
	}
	replyFailure := func(err error, stage string) *failure {
		status, text := describe(err)
		if status == "" {
			// The connection broke: whatever the peer did is unknown,
			// try again (at least once, RFC 5321 section 6.1).
			return &failure{status: "4.4.2", text: fmt.Sprintf("%s: %s (during %s)", s.t, text, stage)}
		}
		return &failure{perm: status[0] == '5', status: status,
			text: fmt.Sprintf("%s said: %s (in reply to %s)", s.t, text, stage)}
	}

	// Every address goes out as address.Quote writes it, the one writer
	// of an address: a local part is quoted where it must be, and one
	// that cannot be written safely (queued before postoffice refused
	// such addresses at MAIL and RCPT) is never sent at all.
	// RFC 3463 section 3.2: X.1.7 bad sender, X.1.3 bad recipient syntax.
	wireFrom, err := address.Quote(from)
	if err != nil {
		return failAll(rcpts, &failure{perm: true, status: "5.1.7",
			text: fmt.Sprintf("the sender address cannot be written safely: %v", err)})
	}
	wire := make(map[string]string, len(rcpts))
	var writable []string
	for _, rc := range rcpts {
		w, err := address.Quote(rc)
		if err != nil || w == "" {
			res[rc] = outcome{remote: remote, fail: &failure{perm: true, status: "5.1.3", remote: remote,
				text: fmt.Sprintf("the recipient address cannot be written safely: %v", err)}}
			continue
		}
		wire[rc] = w
		writable = append(writable, rc)
	}
	rcpts = writable
	if len(rcpts) == 0 {
		return res
	}

	// RFC 1870 section 6: a message larger than the server's fixed
	// maximum will never be accepted; X.3.4 message too big for system.
	if max, ok := s.c.MaxMessageSize(); ok && max > 0 && info.size > int64(max) {
		return failAll(rcpts, &failure{perm: true, status: "5.3.4",
			text: fmt.Sprintf("message of %d octets is larger than %s accepts (SIZE %d)", info.size, s.t, max)})
	}
	smtputf8, _ := s.c.Extension("SMTPUTF8")
	eightbit, _ := s.c.Extension("8BITMIME")
	if !smtputf8 {
		// RFC 6531 section 3.2: non-ASCII addresses need SMTPUTF8 all
		// the way; X.6.7 (RFC 6531 section 3.7.4) non-ASCII addresses
		// not permitted.
		f := &failure{perm: true, status: "5.6.7"}
		if !isASCII(from) {
			f.text = fmt.Sprintf("the sender address %s is not ASCII and %s does not support SMTPUTF8", from, s.t)
			return failAll(rcpts, f)
		}
		var ascii []string
		for _, rc := range rcpts {
			if isASCII(rc) {
				ascii = append(ascii, rc)
			} else {
				res[rc] = outcome{remote: remote, fail: &failure{perm: true, status: "5.6.7", remote: remote,
					text: fmt.Sprintf("the recipient address is not ASCII and %s does not support SMTPUTF8", s.t)}}
			}
		}
		rcpts = ascii
		if len(rcpts) == 0 {
			return res
		}
	}
	if info.eightBit && !eightbit && !smtputf8 {
		// RFC 6152 section 3: 8-bit data may go only to a server that
		// offers 8BITMIME; X.6.3 conversion required but not supported.
		return failAll(rcpts, &failure{perm: true, status: "5.6.3",
			text: fmt.Sprintf("the message has 8-bit content and %s does not support 8BITMIME", s.t)})
	}

	body, err := s.r.cfg.Store.OpenQueued(s.ctx, info.id)
	if err != nil {
		return failAll(rcpts, &failure{status: "4.3.0", text: fmt.Sprintf("reading the queued message: %v", err)})
	}
	defer body.Close()

	opts := &smtp.MailOptions{Size: info.size}
	// RFC 6531 section 3.4 / RFC 6532: UTF-8 addresses or header fields
	// are announced with SMTPUTF8 to a server that supports it.
	opts.UTF8 = smtputf8 && (info.utf8Header || !isASCII(from) || !allASCII(rcpts))
	if err := s.c.Mail(wireFrom, opts); err != nil {
		return failAll(rcpts, replyFailure(err, "MAIL FROM"))
	}
	var accepted []string
	for i, rc := range rcpts {
		if err := s.c.Rcpt(wire[rc], nil); err != nil {
			f := replyFailure(err, "RCPT TO")
			f.remote = remote
			res[rc] = outcome{fail: f, remote: remote}
			var se *smtp.SMTPError
			if !errors.As(err, &se) {
				// The connection broke: the rest is deferred too.
				return failAll(rcpts[i+1:], f)
			}
			continue
		}
		accepted = append(accepted, rc)
	}
	if len(accepted) == 0 {
		s.c.Reset()
		return res
	}
	w, err := s.c.Data()
	if err != nil {
		return failAll(accepted, replyFailure(err, "DATA"))
	}
	// RFC 5321 section 4.5.3.2.5: 3 minutes for each data block.
	_, err = io.Copy(&deadlineWriter{w: w, conn: s.conn, timeout: 3 * time.Minute}, body)
	if err != nil {
		// The message is incomplete: close the connection rather than
		// end the data, so that the peer cannot take a truncated message.
		s.conn.Close()
		return failAll(accepted, &failure{status: "4.4.2", text: fmt.Sprintf("sending the message to %s: %v", s.t, unwrapOp(err))})
	}
	s.conn.SetWriteDeadline(time.Time{})
	if _, err := w.CloseWithResponse(); err != nil {
		return failAll(accepted, replyFailure(err, "end of DATA"))
	}
	for _, rc := range accepted {
		res[rc] = outcome{remote: remote}
	}
	return res
}

// deadlineWriter extends the write deadline before each write, so that a
// stalled peer cannot hold a connection forever while a slow one may
// take as long as the message needs.
type deadlineWriter struct {
	w       io.Writer
	conn    net.Conn
	timeout time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(time.Now().Add(d.timeout))
	return d.w.Write(p)
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func allASCII(ss []string) bool {
	for _, s := range ss {
		if !isASCII(s) {
			return false
		}
	}
	return true
}
