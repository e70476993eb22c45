package pop3

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// command is one POP3 verb: the states it is valid in and its handler. A
// handler writes its response and returns false to end the session.
type command struct {
	states state
	fn     func(s *session, arg string) bool
	// list: the command needs the snapshot's list (session.listMessages).
	list bool
}

// commands is the verb table. RFC 1939 section 3: keywords are case
// insensitive; RFC 2449 section 3: they are 3 or 4 characters long.
var commands = map[string]command{
	// RFC 1939 section 7 (USER/PASS), RFC 5034 (AUTH), RFC 2595 (STLS).
	"USER": {stateAuthorization, cmdUser, false},
	"PASS": {stateAuthorization, cmdPass, false},
	"AUTH": {stateAuthorization, cmdAuth, false},
	"STLS": {stateAuthorization, cmdStls, false},
	// RFC 1939 section 5.
	"STAT": {stateTransaction, cmdStat, false},
	"LIST": {stateTransaction, cmdList, true},
	"RETR": {stateTransaction, cmdRetr, true},
	"DELE": {stateTransaction, cmdDele, true},
	"NOOP": {stateTransaction, cmdNoop, false},
	"RSET": {stateTransaction, cmdRset, false},
	// RFC 1939 section 7.
	"TOP":  {stateTransaction, cmdTop, true},
	"UIDL": {stateTransaction, cmdUidl, true},
	// RFC 1939 sections 4 and 6.
	"QUIT": {stateAuthorization | stateTransaction, cmdQuit, false},
	// RFC 2449 section 5.
	"CAPA": {stateAuthorization | stateTransaction, cmdCapa, false},
	// RFC 6856 section 2.1, valid before login only.
	"UTF8": {stateAuthorization, cmdUTF8, false},
}

// dispatch parses one command line and runs it.
func (s *session) dispatch(line []byte) bool {
	// RFC 1939 section 3: a command is a keyword and arguments of printable
	// ASCII. 8-bit bytes are let through in arguments (UTF-8 user names and
	// passwords); control characters (NUL...) make the line garbage.
	for _, c := range line {
		if c < 0x20 || c == 0x7f {
			return s.badCommand("-ERR Unknown command")
		}
	}
	kw, rest, _ := bytes.Cut(line, []byte(" "))
	var up [4]byte
	if len(kw) < 3 || len(kw) > len(up) {
		return s.badCommand("-ERR Unknown command")
	}
	for i, c := range kw {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		up[i] = c
	}
	cmd, ok := commands[string(up[:len(kw)])]
	if !ok {
		return s.badCommand("-ERR Unknown command")
	}
	if cmd.states&s.state == 0 {
		return s.badCommand("-ERR Command not valid in this state")
	}
	if s.log.Enabled(s.ctx, slog.LevelDebug) { // no allocation otherwise
		s.log.Debug("command", "cmd", string(up[:len(kw)]))
	}
	if s.state == stateTransaction && s.leased != nil {
		if err := s.leased.LockErr(); err != nil {
			return s.lockLost(err)
		}
	}
	if cmd.list && s.msgs == nil && !s.listMessages() {
		return false
	}
	return cmd.fn(s, string(rest))
}

// respLockLost answers any command of a session whose maildrop lock was
// lost. RFC 1939 section 4: the session holds an exclusive-access lock so
// that no one else modifies or removes messages before it enters the
// UPDATE state (section 6), where it removes those it marked deleted;
// without the lock another session may have the maildrop, so this one
// ends without removing anything. RFC 3206 section 4: the failure is the
// server's, and temporary.
const respLockLost = "-ERR [SYS/TEMP] Maildrop lock lost (the mail store was out of reach); session ended, no messages deleted, try again later."

// lockLost ends a session whose maildrop lock was lost.
func (s *session) lockLost(err error) bool {
	s.log.Error("maildrop lock lost: session ended without deleting", "user", s.user, "deleted", s.nDeleted, "err", err)
	s.closeMaildrop()
	s.reply(respLockLost)
	return false
}

// parseNumber parses a non-negative decimal argument of digits only (no
// sign, no spaces), saturating instead of overflowing.
func parseNumber(a string) (int, bool) {
	if a == "" {
		return 0, false
	}
	const maxInt = int(^uint(0) >> 1)
	n := 0
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (maxInt-9)/10 {
			n = maxInt
		} else {
			n = n*10 + int(c-'0')
		}
	}
	return n, true
}

// message resolves a message-number argument to an index. RFC 1939 section
// 5: message numbers start at 1, stay fixed for the session, and a deleted
// message may not be referred to. On failure it answers, and returns -1 and
// whether the session goes on.
func (s *session) message(arg string) (idx int, cont bool) {
	n, ok := parseNumber(arg)
	if !ok {
		return -1, s.badCommand("-ERR Invalid message number")
	}
	if n < 1 || n > len(s.msgs) {
		s.reply("-ERR No such message")
		return -1, true
	}
	if s.deleted[n-1] {
		s.replyf("-ERR Message %d is deleted", n)
		return -1, true
	}
	return n - 1, true
}

// counts returns the number and total size of the undeleted messages.
func (s *session) counts() (int, int64) {
	if s.msgs == nil {
		// Not listed yet, so nothing is deleted either.
		return s.drop.Stat()
	}
	var total int64
	for _, m := range s.msgs {
		total += m.Size
	}
	return len(s.msgs) - s.nDeleted, total - s.sizeDeleted
}

// writeNumbered writes the scan line "n value" of a multi-line LIST or UIDL.
func (s *session) writeNumbered(n int, size int64, uid string) {
	var b [48]byte
	out := strconv.AppendInt(b[:0], int64(n), 10)
	out = append(out, ' ')
	if uid != "" {
		s.bw.Write(out)
		s.bw.WriteString(uid)
		s.bw.WriteString("\r\n")
		return
	}
	out = strconv.AppendInt(out, size, 10)
	out = append(out, '\r', '\n')
	s.bw.Write(out)
}

// RFC 1939 section 5: STAT answers "+OK count octets", deleted messages
// excluded.
func cmdStat(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: STAT takes no argument")
	}
	n, size := s.counts()
	s.replyf("+OK %d %d", n, size)
	return true
}

// RFC 1939 section 5: LIST [msg] gives the scan listing of one message or
// of every undeleted message. Sizes come from the snapshot, bodies are
// never read.
func cmdList(s *session, arg string) bool {
	args := strings.Fields(arg)
	switch len(args) {
	case 0:
		n, size := s.counts()
		s.replyf("+OK %d messages (%d octets)", n, size)
		for i, m := range s.msgs {
			if !s.deleted[i] {
				s.writeNumbered(i+1, m.Size, "")
			}
		}
		s.reply(".")
	case 1:
		i, cont := s.message(args[0])
		if i < 0 {
			return cont
		}
		s.replyf("+OK %d %d", i+1, s.msgs[i].Size)
	default:
		return s.badCommand("-ERR Syntax error: LIST [msg]")
	}
	return true
}

// RFC 1939 section 7: UIDL [msg] gives the unique-id listing.
func cmdUidl(s *session, arg string) bool {
	args := strings.Fields(arg)
	switch len(args) {
	case 0:
		s.reply("+OK Unique-ID listing follows")
		for i, m := range s.msgs {
			if !s.deleted[i] {
				s.writeNumbered(i+1, 0, m.UID)
			}
		}
		s.reply(".")
	case 1:
		i, cont := s.message(args[0])
		if i < 0 {
			return cont
		}
		s.replyf("+OK %d %s", i+1, s.msgs[i].UID)
	default:
		return s.badCommand("-ERR Syntax error: UIDL [msg]")
	}
	return true
}

// RFC 1939 section 5: RETR msg sends the whole message, byte-stuffed.
func cmdRetr(s *session, arg string) bool {
	args := strings.Fields(arg)
	if len(args) != 1 {
		return s.badCommand("-ERR Syntax error: RETR msg")
	}
	i, cont := s.message(args[0])
	if i < 0 {
		return cont
	}
	return s.sendMessage(i, -1)
}

// RFC 1939 section 7: TOP msg n sends the header, the blank line and the
// first n lines of the body.
func cmdTop(s *session, arg string) bool {
	args := strings.Fields(arg)
	if len(args) != 2 {
		return s.badCommand("-ERR Syntax error: TOP msg n")
	}
	lines, ok := parseNumber(args[1])
	if !ok {
		return s.badCommand("-ERR Invalid number of lines")
	}
	i, cont := s.message(args[0])
	if i < 0 {
		return cont
	}
	return s.sendMessage(i, lines)
}

// RFC 1939 section 5: DELE msg marks a message deleted; it is removed only
// in the UPDATE state.
func cmdDele(s *session, arg string) bool {
	args := strings.Fields(arg)
	if len(args) != 1 {
		return s.badCommand("-ERR Syntax error: DELE msg")
	}
	i, cont := s.message(args[0])
	if i < 0 {
		return cont
	}
	s.deleted[i] = true
	s.nDeleted++
	s.sizeDeleted += s.msgs[i].Size
	s.replyNum("+OK Message ", int64(i+1), " deleted")
	return true
}

// RFC 1939 section 5: NOOP.
func cmdNoop(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: NOOP takes no argument")
	}
	s.reply("+OK")
	return true
}

// RFC 1939 section 5: RSET unmarks every deleted message.
func cmdRset(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: RSET takes no argument")
	}
	clear(s.deleted)
	s.nDeleted, s.sizeDeleted = 0, 0
	n, size := s.counts()
	s.replyf("+OK Maildrop has %d messages (%d octets)", n, size)
	return true
}

// QUIT. RFC 1939 section 4: in AUTHORIZATION it just ends the session.
// RFC 1939 section 6: in TRANSACTION it enters UPDATE, removes the deleted
// messages and answers +OK only once that is durable; on failure it answers
// -ERR and nothing counts as deleted. Either way the session ends.
func cmdQuit(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: QUIT takes no argument")
	}
	if s.state == stateAuthorization {
		s.replyf("+OK %s POP3 server signing off", s.srv.hostname)
		return false
	}
	s.state = stateUpdate
	var deleted []int
	if s.nDeleted > 0 {
		deleted = make([]int, 0, s.nDeleted)
		for i, d := range s.deleted {
			if d {
				deleted = append(deleted, i)
			}
		}
		if err := s.drop.Commit(s.ctx, deleted); err != nil {
			if errors.Is(err, ErrLockLost) {
				// Found lost by the transaction that would have deleted.
				return s.lockLost(err)
			}
			s.log.Error("removing deleted messages failed", "user", s.user, "deleted", len(deleted), "err", err)
			s.closeMaildrop()
			// RFC 1939 section 6: "-ERR some deleted messages not removed";
			// RFC 3206 section 4: the failure is the server's, retry later.
			s.reply("-ERR [SYS/TEMP] Deleted messages not removed, try again later.")
			return false
		}
	}
	// Release the lock before answering, so that a client reconnecting at
	// once does not find its maildrop still in use.
	s.closeMaildrop()
	s.log.Info("logout", "user", s.user, "deleted", len(deleted))
	switch left, _ := s.counts(); left {
	case 0:
		s.replyf("+OK %s POP3 server signing off (maildrop empty)", s.srv.hostname)
	case 1:
		s.replyf("+OK %s POP3 server signing off (1 message left)", s.srv.hostname)
	default:
		s.replyf("+OK %s POP3 server signing off (%d messages left)", s.srv.hostname, left)
	}
	return false
}

// capabilities is the RFC 2449 section 5 CAPA list. RFC 2449 section 5:
// capabilities of the AUTHORIZATION state are announced in both states, so
// the list depends on the state only for the per-user values of
// LOGIN-DELAY and EXPIRE (sections 6.5 and 6.7). USER and SASL are left out where
// plaintext authentication is refused (RFC 2595 section 2.3); STLS only
// where it can be used (RFC 2595 section 4).
func (s *session) capabilities() []string {
	caps := make([]string, 0, 9)
	plain := s.plaintextAllowed()
	if plain {
		caps = append(caps, "USER") // RFC 2449 section 6.2
	}
	caps = append(caps,
		"TOP",            // RFC 2449 section 6.1
		"UIDL",           // RFC 2449 section 6.8
		"PIPELINING",     // RFC 2449 section 6.6
		"RESP-CODES",     // RFC 2449 section 6.4
		"AUTH-RESP-CODE", // RFC 3206 section 6
	)
	if plain {
		caps = append(caps, "SASL "+strings.Join(saslMechanisms, " ")) // RFC 5034 section 5
	}
	if s.srv.cfg.TLSConfig != nil && !s.isTLS {
		caps = append(caps, "STLS") // RFC 2595 section 4
	}
	caps = append(caps, s.policyCapabilities()...)
	// RFC 6856 section 2: UTF-8 mode; USER: user names and passwords may
	// be UTF-8 (the directory takes UTF-8 addresses as login names).
	caps = append(caps, "UTF8 USER")
	return append(caps, "IMPLEMENTATION postoffice") // RFC 2449 section 6.9
}

// policyCapabilities announces LOGIN-DELAY (RFC 2449 section 6.5) and
// EXPIRE (section 6.7). Before login, when users may have their own
// values, the argument is followed by USER; after login the values are
// the user's.
func (s *session) policyCapabilities() []string {
	cfg := &s.srv.cfg
	delay, expire := cfg.LoginDelay, cfg.Expire
	suffix := ""
	if cfg.PolicyPerUser {
		if s.state == stateAuthorization {
			suffix = " USER"
		} else if p, ok := s.drop.(PolicyMaildrop); ok {
			delay, expire = p.Policy()
		}
	}
	var caps []string
	if delay > 0 || suffix != "" {
		caps = append(caps, fmt.Sprintf("LOGIN-DELAY %d%s", int64(delay/time.Second), suffix))
	}
	if expire != nil {
		arg := "NEVER"
		if *expire >= 0 {
			arg = strconv.FormatInt(int64(*expire/(24*time.Hour)), 10)
		}
		caps = append(caps, "EXPIRE "+arg+suffix)
	}
	return caps
}

// RFC 2449 section 5: CAPA.
func cmdCapa(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: CAPA takes no argument")
	}
	s.reply("+OK Capability list follows")
	for _, c := range s.capabilities() {
		s.reply(c)
	}
	s.reply(".")
	return true
}

// RFC 6856 section 2.1: UTF8 switches the session to UTF-8 mode, in the
// AUTHORIZATION state (the command table enforces that). Messages are
// sent as they are stored in either mode: a message with UTF-8 header
// fields (RFC 6532) is not downgraded for a client that did not ask for
// UTF-8 (RFC 6857 and RFC 6858 describe how, optionally); user names and
// passwords may be UTF-8 in either mode (UTF8 USER).
func cmdUTF8(s *session, arg string) bool {
	if len(strings.Fields(arg)) != 0 {
		return s.badCommand("-ERR Syntax error: UTF8 takes no argument")
	}
	s.utf8 = true
	s.reply("+OK UTF-8 mode")
	return true
}
