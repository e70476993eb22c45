package smtpd

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// splitPath splits the argument of MAIL or RCPT, "FROM:<path> params" or
// "TO:<path> params" (RFC 5321 section 4.1.1.2 and 4.1.1.3), into the
// path without its angle brackets and the parameters. The keyword is case
// insensitive; spaces after the colon are tolerated, as by most servers.
// A source route ("@a,@b:") is dropped (RFC 5321 section 4.1.2 and
// appendix C). A quoted local part may hold ">" (RFC 5321 section 4.1.2):
// the path ends at the first ">" after it.
func splitPath(arg, keyword string) (path, params string, ok bool) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", "", false
	}
	rest := strings.TrimLeft(arg[len(keyword):], " ")
	if rest == "" || rest[0] != '<' {
		return "", "", false
	}
	rest = rest[1:]
	if strings.HasPrefix(rest, "@") {
		i := strings.IndexByte(rest, ':')
		if i < 0 {
			return "", "", false
		}
		rest = rest[i+1:]
	}
	start := 0
	if strings.HasPrefix(rest, `"`) {
		i := 1
		for ; i < len(rest) && rest[i] != '"'; i++ {
			if rest[i] == '\\' {
				i++
			}
		}
		if i >= len(rest) {
			return "", "", false
		}
		start = i + 1
	}
	end := strings.IndexByte(rest[start:], '>')
	if end < 0 {
		return "", "", false
	}
	end += start
	path, after := rest[:end], rest[end+1:]
	if after != "" && after[0] != ' ' {
		return "", "", false
	}
	return path, strings.TrimLeft(after, " "), true
}

// checkAddress parses a path's mailbox (RFC 5321 section 4.1.2) and
// returns it in its written form (address.Address.String), which is what
// the envelope carries from here on. It refuses what cannot be written
// back safely (angle brackets, control characters, invalid UTF-8: 501
// 5.1.7 for the sender, 5.1.3 for a recipient) and non-ASCII without the
// SMTPUTF8 parameter (RFC 6531 section 3.5, 553 5.6.7).
func checkAddress(path string, smtputf8, sender bool) (string, *smtpreply.Reply) {
	a, err := address.Parse(path)
	if err != nil {
		if sender {
			return "", &replyBadSender
		}
		return "", &replyBadRcpt
	}
	if !a.ASCII() && !smtputf8 {
		return "", &replyNeedSMTPUTF8
	}
	return a.String(), nil
}

// param is one ESMTP parameter, "KEYWORD[=value]" (RFC 5321 section
// 4.1.2: esmtp-param); the keyword is upper-cased.
type param struct {
	key, value string
	hasValue   bool
}

// parseParams splits the parameters of MAIL or RCPT. Each keyword may come
// once. A keyword is a letter or digit followed by letters, digits and
// hyphens; a value is printable, without "=" or space (UTF-8 allowed, RFC
// 6531 section 3.3).
func parseParams(s string) ([]param, *smtpreply.Reply) {
	var out []param
	for _, f := range strings.Fields(s) {
		k, v, has := strings.Cut(f, "=")
		if !isKeyword(k) || (has && !isValue(v)) {
			r := syntaxReply("Bad parameter syntax")
			return nil, &r
		}
		p := param{key: strings.ToUpper(k), value: v, hasValue: has}
		for _, q := range out {
			if q.key == p.key {
				r := syntaxReply("Duplicate parameter " + p.key)
				return nil, &r
			}
		}
		out = append(out, p)
	}
	return out, nil
}

func isKeyword(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return true
}

func isValue(v string) bool {
	if v == "" || !utf8.ValidString(v) {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c == '=' || c == 0x7f {
			return false
		}
	}
	return true
}

// unsupported is RFC 5321 section 4.1.1.11's reply to a parameter that
// is not known: 555 (RFC 3463 X.5.4).
func unsupported(p param) *smtpreply.Reply {
	r := smtpreply.New(555, "5.5.4", "Unsupported parameter "+p.key)
	return &r
}

// mailParams applies the parameters of MAIL FROM to env: SIZE (RFC 1870
// section 3), BODY (RFC 6152 section 2), SMTPUTF8 (RFC 6531 section 3.4),
// RET and ENVID (RFC 3461 sections 4.3 and 4.4) and AUTH (RFC 4954
// section 5), which is taken and ignored: this server trusts no other
// server's word on who authenticated.
func mailParams(ps []param, env *Envelope) *smtpreply.Reply {
	for _, p := range ps {
		bad := func(text string) *smtpreply.Reply {
			r := syntaxReply(text)
			return &r
		}
		switch p.key {
		case "SIZE":
			n, ok := parseSize(p.value)
			if !p.hasValue || !ok {
				return bad("Syntax: SIZE=octets")
			}
			env.Size = n
		case "BODY":
			switch strings.ToUpper(p.value) {
			case "7BIT":
			case "8BITMIME":
				env.Body8Bit = true
			case "BINARYMIME":
				// RFC 3030 section 3: offered only with BINARYMIME in
				// EHLO, which is not: bodies here are CRLF text.
				r := smtpreply.New(504, "5.5.4", "BODY=BINARYMIME not supported")
				return &r
			default:
				return bad("Syntax: BODY=7BIT or BODY=8BITMIME")
			}
		case "SMTPUTF8":
			if p.hasValue {
				return bad("Syntax: SMTPUTF8 takes no value")
			}
			env.SMTPUTF8 = true
		case "RET":
			switch v := strings.ToUpper(p.value); v {
			case "FULL", "HDRS":
				env.Ret = v
			default:
				return bad("Syntax: RET=FULL or RET=HDRS")
			}
		case "ENVID":
			// RFC 3461 section 4.4: xtext of printable ASCII, at most
			// 100 characters.
			v, ok := decodeXtext(p.value)
			if !ok || len(p.value) > 100 || !printableASCII(v) {
				return bad("Syntax: ENVID=xtext")
			}
			env.EnvID = v
		case "AUTH":
			if !p.hasValue {
				return bad("Syntax: AUTH=xtext or AUTH=<>")
			}
		default:
			return unsupported(p)
		}
	}
	return nil
}

// rcptParams reads the parameters of RCPT TO: NOTIFY and ORCPT (RFC 3461
// sections 4.1 and 4.2).
func rcptParams(ps []param, smtputf8 bool) (RcptDSN, *smtpreply.Reply) {
	var d RcptDSN
	for _, p := range ps {
		switch p.key {
		case "NOTIFY":
			n, ok := parseNotify(p.value)
			if !p.hasValue || !ok {
				r := syntaxReply("Syntax: NOTIFY=NEVER or NOTIFY=SUCCESS,FAILURE,DELAY")
				return d, &r
			}
			d.Notify = n
		case "ORCPT":
			typ, addr, ok := parseORcpt(p.value, smtputf8)
			if !p.hasValue || !ok {
				r := syntaxReply("Syntax: ORCPT=addr-type;xtext")
				return d, &r
			}
			d.ORcptType, d.ORcpt = typ, addr
		default:
			return d, unsupported(p)
		}
	}
	return d, nil
}

// parseSize reads SIZE's value, 1 to 20 digits (RFC 1870 section 5); a
// number too large for int64 is taken as the largest.
func parseSize(v string) (int64, bool) {
	if v == "" || len(v) > 20 {
		return 0, false
	}
	for i := 0; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		n = 1<<63 - 1
	}
	return n, true
}

// parseNotify reads NOTIFY's value (RFC 3461 section 4.1): "NEVER", or a
// comma-separated list of "SUCCESS", "FAILURE" and "DELAY", each at most
// once; case insensitive, returned upper-case.
func parseNotify(v string) ([]string, bool) {
	if strings.EqualFold(v, "NEVER") {
		return []string{"NEVER"}, true
	}
	var out []string
	for _, e := range strings.Split(v, ",") {
		e = strings.ToUpper(e)
		switch e {
		case "SUCCESS", "FAILURE", "DELAY":
		default:
			return nil, false
		}
		for _, o := range out {
			if o == e {
				return nil, false
			}
		}
		out = append(out, e)
	}
	return out, true
}

// parseORcpt reads ORCPT's value (RFC 3461 section 4.2), "addr-type;xtext"
// of at most 500 characters. The "rfc822" type is xtext of an address,
// ASCII by the RFC, but Postfix sends the UTF-8 of an internationalized
// original recipient in it ("j+C3+BCrgen@..."): taken when it is valid
// UTF-8. The "utf-8" type (RFC 6533 section 3) carries non-ASCII as
// "\x{HEX}", or as UTF-8 itself with SMTPUTF8. The type is returned
// lower case, the address decoded; it must hold no control character,
// since it is written back into notifications and to the next hop.
func parseORcpt(v string, smtputf8 bool) (typ, addr string, ok bool) {
	if len(v) > 500 {
		return "", "", false
	}
	t, x, found := strings.Cut(v, ";")
	if !found || !isAtom(t) || x == "" {
		return "", "", false
	}
	typ = strings.ToLower(t)
	if typ == "utf-8" {
		addr, ok = decodeUTF8Addr(x, smtputf8)
	} else {
		addr, ok = decodeXtext(x)
		ok = ok && printable(addr)
	}
	if !ok {
		return "", "", false
	}
	return typ, addr, true
}

// isAtom: the address type is an atom of RFC 5322 (RFC 3461 section 4.2).
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r >= utf8.RuneSelf || !address.IsAtext(r) {
			return false
		}
	}
	return true
}

// decodeXtext decodes xtext (RFC 3461 section 4): the characters "!"
// through "~" but "+" and "=" as themselves, "+" and two hex digits for
// any octet.
func decodeXtext(s string) (string, bool) {
	if strings.IndexByte(s, '+') < 0 {
		for i := 0; i < len(s); i++ {
			if c := s[i]; c < '!' || c > '~' || c == '=' {
				return "", false
			}
		}
		return s, true
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			if i+2 >= len(s) {
				return "", false
			}
			h, ok := unhex2(s[i+1], s[i+2])
			if !ok {
				return "", false
			}
			b = append(b, h)
			i += 2
		case c < '!' || c > '~' || c == '=':
			return "", false
		default:
			b = append(b, c)
		}
	}
	return string(b), true
}

func unhex2(a, b byte) (byte, bool) {
	x, ok1 := unhex(a)
	y, ok2 := unhex(b)
	return x<<4 | y, ok1 && ok2
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// decodeUTF8Addr decodes utf-8-addr-xtext and, with SMTPUTF8,
// utf-8-addr-unitext (RFC 6533 section 3): printable ASCII but "+", "="
// and "\" as themselves, "\x{HEX}" for any code point, and raw UTF-8 in
// the unitext form.
func decodeUTF8Addr(s string, unitext bool) (string, bool) {
	if !utf8.ValidString(s) {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			rest := s[i:]
			if !strings.HasPrefix(rest, `\x{`) {
				return "", false
			}
			end := strings.IndexByte(rest, '}')
			if end < 4 || end > 9 {
				return "", false
			}
			n, err := strconv.ParseUint(rest[3:end], 16, 32)
			r := rune(n)
			if err != nil || !utf8.ValidRune(r) || r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				return "", false
			}
			b.WriteRune(r)
			i += end + 1
		case c >= utf8.RuneSelf:
			if !unitext {
				return "", false
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r < 0xa0 {
				return "", false
			}
			b.WriteRune(r)
			i += size
		case c < '!' || c > '~' || c == '+' || c == '=':
			return "", false
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), true
}

// printableASCII: RFC 3461 section 4.4 asks ENVID for printable ASCII;
// addresses of type rfc822 are ASCII. Space is allowed, controls are not.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}
