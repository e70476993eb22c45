package smtpd

import (
	"log/slog"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// Command line limits, CRLF included. RFC 5321 section 4.5.3.1.4: 512
// octets; extensions add room for their parameters.
const (
	maxCommandLine = 512
	// MAIL: SIZE adds 26 (RFC 1870 section 3), BODY 16 (RFC 6152 section
	// 2), ENVID and RET 100 (RFC 3461 section 4), AUTH 500 (RFC 4954
	// section 5), and 10 for SMTPUTF8, its keyword and a space.
	maxMailLine = maxCommandLine + 26 + 16 + 100 + 500 + 10
	// RCPT: NOTIFY and ORCPT add 500 (RFC 3461 section 4).
	maxRcptLine = maxCommandLine + 500
	// RFC 4954 section 4: an AUTH command and each response line of the
	// exchange may be 12288 octets long.
	maxAuthLine = 12288
	// maxLine is the longest line read whole; longer ones are dropped as
	// they are read.
	maxLine = maxAuthLine
)

// command is one SMTP verb: its handler, which writes its reply and
// returns false to end the session, and its longest line.
type command struct {
	fn    func(s *session, arg string) bool
	limit int
}

// commands is the verb table (RFC 5321 section 4.1.1; verbs are case
// insensitive, section 2.4).
var commands map[string]command

func init() {
	commands = map[string]command{
		"EHLO":     {func(s *session, a string) bool { return cmdHelo(s, a, true) }, maxCommandLine},
		"HELO":     {func(s *session, a string) bool { return cmdHelo(s, a, false) }, maxCommandLine},
		"MAIL":     {cmdMail, maxMailLine},
		"RCPT":     {cmdRcpt, maxRcptLine},
		"DATA":     {cmdData, maxCommandLine},
		"BDAT":     {cmdBdat, maxCommandLine}, // RFC 3030
		"RSET":     {cmdRset, maxCommandLine},
		"NOOP":     {cmdNoop, maxCommandLine},
		"QUIT":     {cmdQuit, maxCommandLine},
		"VRFY":     {cmdVrfy, maxCommandLine},
		"HELP":     {cmdHelp, maxCommandLine},
		"STARTTLS": {cmdStartTLS, maxCommandLine}, // RFC 3207
		"AUTH":     {cmdAuth, maxAuthLine},        // RFC 4954
		// Known but not offered (RFC 5321 sections 3.5.2 and 4.2.4: 502).
		"EXPN": {cmdNotImplemented, maxCommandLine},
		"TURN": {cmdNotImplemented, maxCommandLine},
		"ETRN": {cmdNotImplemented, maxCommandLine},
		"SEND": {cmdNotImplemented, maxCommandLine},
		"SOML": {cmdNotImplemented, maxCommandLine},
		"SAML": {cmdNotImplemented, maxCommandLine},
	}
}

// dispatch parses one command line and runs it.
func (s *session) dispatch(line []byte) bool {
	if len(line) == 0 {
		return s.respond(replyEmptyLine)
	}
	// Arguments are checked by their commands: control characters and
	// invalid UTF-8 in an address are refused at MAIL and RCPT with the
	// address's own reply (RFC 3463 X.1.7, X.1.3).
	verb, arg, _ := strings.Cut(string(line), " ")
	cmd, ok := commands[strings.ToUpper(verb)]
	limit := maxCommandLine // for an unknown command
	if ok {
		limit = cmd.limit
	}
	if len(line)+2 > limit {
		return s.respond(replyLineTooLong)
	}
	if !ok {
		return s.respond(replyUnknown)
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("command", "cmd", strings.ToUpper(verb))
	}
	return cmd.fn(s, arg)
}

// RFC 5321 section 4.1.1.1: EHLO and HELO open the session, and reset it
// (section 4.1.4) when sent again. The replies carry no enhanced status
// code (RFC 2034 section 4). The argument should be one domain or address
// literal; more words are taken together, as Postfix does.
func cmdHelo(s *session, arg string, extended bool) bool {
	name := strings.TrimSpace(arg)
	if name == "" || !printable(name) {
		if extended {
			return s.respond(smtpreply.New(501, "", "Syntax: EHLO hostname"))
		}
		return s.respond(smtpreply.New(501, "", "Syntax: HELO hostname"))
	}
	s.resetTx()
	s.helo, s.extended = name, extended
	if s.hooks != nil {
		s.refuseSession("HELO", s.hooks.Helo(s.ctx, name))
	}
	host := s.srv.cfg.Hostname
	if !extended {
		return s.respond(smtpreply.New(250, "", host))
	}
	// RFC 5321 section 4.1.1.1: the first line names the server, the
	// others are the extensions offered.
	lines := []string{host + " Hello " + name,
		"PIPELINING", // RFC 2920
		"SIZE " + strconv.FormatInt(s.srv.cfg.MaxMessageBytes, 10), // RFC 1870
	}
	if s.srv.cfg.TLSConfig != nil && s.tls == "" {
		lines = append(lines, "STARTTLS") // RFC 3207
	}
	if s.authAllowed() {
		lines = append(lines, "AUTH PLAIN LOGIN") // RFC 4954
	}
	lines = append(lines,
		"ENHANCEDSTATUSCODES", // RFC 2034
		"8BITMIME",            // RFC 6152
		"DSN",                 // RFC 3461
		"SMTPUTF8",            // RFC 6531
		"CHUNKING",            // RFC 3030
	)
	return s.respond(smtpreply.Reply{Code: 250, Text: lines})
}

// RFC 5321 section 4.1.1.2: MAIL FROM:<reverse-path> [parameters] opens a
// transaction. <> is the null sender (section 4.5.5).
func cmdMail(s *session, arg string) bool {
	switch {
	case s.helo == "":
		return s.respond(replyNeedHelo)
	case s.srv.cfg.Submission && s.authUser == "":
		// RFC 6409 section 4.3, RFC 4954 section 6.
		return s.respond(replyAuthRequired)
	case s.tx != nil:
		// RFC 5321 section 4.1.4: no nested transactions.
		return s.respond(replyNestedMail)
	case s.refusal != nil:
		return s.respond(*s.refusal)
	}
	path, rest, ok := splitPath(arg, "FROM:")
	if !ok {
		return s.respond(syntaxReply("Syntax: MAIL FROM:<address>"))
	}
	env := &Envelope{
		Helo:       s.helo,
		RemoteAddr: s.remote,
		LocalAddr:  s.local,
		TLS:        s.tls,
		AuthUser:   s.authUser,
		Submission: s.srv.cfg.Submission,
	}
	ps, r := parseParams(rest)
	if r == nil {
		r = mailParams(ps, env)
	}
	if r != nil {
		return s.respond(*r)
	}
	if path != "" {
		from, r := checkAddress(path, env.SMTPUTF8, true)
		if r != nil {
			s.log.Info("rejected", "stage", "MAIL", "from", path, "code", r.Code, "reason", "address syntax")
			return s.respond(*r)
		}
		env.From = from
	}
	if env.Size > s.srv.cfg.MaxMessageBytes {
		// RFC 1870 section 6.
		return s.respond(replyTooBig)
	}
	env.ID = newID()
	if err := s.srv.cfg.Backend.CheckSender(s.ctx, env); err != nil {
		return s.reject("MAIL", err, "from", env.From)
	}
	if s.hooks != nil {
		env.Hooks = s.hooks
		if err := hookRefused(s.hooks.Mail(s.ctx, env, strings.Fields(rest))); err != nil {
			return s.reject("MAIL", err, "from", env.From, "by", "filter")
		}
	}
	s.setTx(env)
	return s.respond(replySender)
}

// RFC 5321 section 4.1.1.3: RCPT TO:<forward-path> [parameters].
func cmdRcpt(s *session, arg string) bool {
	tx := s.tx
	if tx == nil {
		return s.respond(replyNeedMail)
	}
	s.rcptSeen = true
	path, rest, ok := splitPath(arg, "TO:")
	if !ok {
		return s.respond(syntaxReply("Syntax: RCPT TO:<address>"))
	}
	if strings.EqualFold(path, "postmaster") {
		// RFC 5321 section 4.1.1.3: <Postmaster> without a domain is
		// this server's postmaster.
		path = "postmaster@" + s.srv.cfg.Hostname
	}
	ps, r := parseParams(rest)
	var dsn RcptDSN
	if r == nil {
		dsn, r = rcptParams(ps, tx.SMTPUTF8)
	}
	if r != nil {
		return s.respond(*r)
	}
	to, r := checkAddress(path, tx.SMTPUTF8, false)
	if r != nil {
		s.log.Info("rejected", "stage", "RCPT", "rcpt", path, "code", r.Code, "reason", "address syntax")
		return s.respond(*r)
	}
	if len(tx.To) >= s.srv.cfg.MaxRecipients {
		return s.respond(replyTooManyRcpts)
	}
	if err := s.srv.cfg.Backend.CheckRecipient(s.ctx, tx, to); err != nil {
		return s.reject("RCPT", err, "from", tx.From, "rcpt", to)
	}
	if s.hooks != nil {
		if err := hookRefused(s.hooks.Rcpt(s.ctx, tx, to, strings.Fields(rest))); err != nil {
			return s.reject("RCPT", err, "from", tx.From, "rcpt", to, "by", "filter")
		}
	}
	tx.To = append(tx.To, to)
	tx.DSN = append(tx.DSN, dsn)
	return s.respond(replyRcpt)
}

// reject answers a refusal of MAIL or RCPT by the backend, logged.
func (s *session) reject(stage string, err error, attrs ...any) bool {
	r, ok := toReply(err)
	attrs = append(attrs, "stage", stage, "code", r.Code, "enhanced", r.Status.String())
	if ok {
		s.log.Info("rejected", attrs...)
	} else {
		s.log.Error("backend failure", append(attrs, "err", err)...)
	}
	return s.respond(r)
}

// needRecipients checks that DATA or BDAT may start: a transaction with
// at least one accepted recipient (RFC 5321 section 4.1.1.4: 503 without
// MAIL or RCPT, 554 when every RCPT was refused).
func (s *session) needRecipients() (smtpreply.Reply, bool) {
	switch {
	case s.tx == nil:
		return replyNeedMail, false
	case len(s.tx.To) == 0 && s.rcptSeen:
		return replyNoValidRcpts, false
	case len(s.tx.To) == 0:
		return replyNeedRcpt, false
	}
	return smtpreply.Reply{}, true
}

// RFC 5321 section 4.1.1.5: RSET ends the transaction.
func cmdRset(s *session, arg string) bool {
	if strings.TrimSpace(arg) != "" {
		return s.respond(syntaxReply("Syntax: RSET"))
	}
	s.resetTx()
	return s.respond(replyOK)
}

// RFC 5321 section 4.1.1.9: NOOP [string].
func cmdNoop(s *session, _ string) bool { return s.respond(replyOK) }

// RFC 5321 section 4.1.1.10: QUIT ends the session.
func cmdQuit(s *session, arg string) bool {
	if strings.TrimSpace(arg) != "" {
		return s.respond(syntaxReply("Syntax: QUIT"))
	}
	s.reply(replyBye)
	return false
}

// RFC 5321 section 3.5.3: VRFY may be answered 252 when the server will
// not tell (names are not for harvesting).
func cmdVrfy(s *session, arg string) bool {
	if strings.TrimSpace(arg) == "" {
		return s.respond(syntaxReply("Syntax: VRFY address"))
	}
	return s.respond(replyVRFY)
}

// RFC 5321 section 4.1.1.8: HELP.
func cmdHelp(s *session, _ string) bool { return s.respond(replyHelp) }

func cmdNotImplemented(s *session, _ string) bool { return s.respond(replyNotImpl) }

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == utf8.RuneError || (r >= 0x80 && r < 0xa0) {
			return false
		}
	}
	return true
}
