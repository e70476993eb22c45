package smtpclient

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/postoffice-mail/postoffice/internal/address"
)

// path writes a reverse-path or forward-path (RFC 5321 section 4.1.2):
// the address in angle brackets as address.Path writes it, the one
// writer of an address (a local part quoted where it must be), "<>" for
// the null sender. An address it cannot write safely is refused
// (errBadAddress), and so is one with a control character or an angle
// bracket anywhere, which could end the path or the command early.
func path(addr string) (string, error) {
	if err := checkAddress(addr); err != nil {
		return "", err
	}
	if addr == "" {
		return "<>", nil
	}
	p, err := address.Path(addr)
	if err != nil {
		return "", fmt.Errorf("%w: %v", errBadAddress, err)
	}
	return p, nil
}

// errBadAddress is wrapped by the refusal of an address that cannot be
// written on the wire.
var errBadAddress = errors.New("address cannot be sent")

// checkAddress refuses an address with CR, LF, NUL or another control
// character (they would end or split the command line: RFC 5321 section
// 4.1.2 allows none of them), or invalid UTF-8; address.Path refuses the
// rest that cannot be written (an angle bracket outside quotes).
func checkAddress(addr string) error {
	for i := 0; i < len(addr); i++ {
		if c := addr[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: %q has the character %q", errBadAddress, addr, c)
		}
	}
	if !utf8.ValidString(addr) {
		return fmt.Errorf("%w: %q is not valid UTF-8", errBadAddress, addr)
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// xtext encodes s as RFC 3461 section 4 says: the printable ASCII
// characters other than "+" and "=" as themselves, every other octet as
// "+" and two upper-case hex digits.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= '!' && c <= '~' && c != '+' && c != '=' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "+%02X", c)
		}
	}
	return b.String()
}

// utf8AddrXtext encodes a UTF-8 address as RFC 6533 section 3 says for
// the "utf-8" address type in ORCPT: each non-ASCII character, and the
// ASCII characters xtext cannot carry ("+", "=", "\", controls, space),
// as "\x{HEX}" of its code point.
func utf8AddrXtext(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '!' && r <= '~' && r != '+' && r != '=' && r != '\\' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%X}`, r)
		}
	}
	return b.String()
}

// Notify values of RFC 3461 section 4.1.
const (
	NotifyNever   = "NEVER"
	NotifySuccess = "SUCCESS"
	NotifyFailure = "FAILURE"
	NotifyDelay   = "DELAY"
)

// notifyParam checks a NOTIFY list (RFC 3461 section 4.1): NEVER alone,
// or one or more of SUCCESS, FAILURE and DELAY, each once.
func notifyParam(list []string) (string, error) {
	seen := map[string]bool{}
	var out []string
	for _, v := range list {
		v = strings.ToUpper(v)
		switch v {
		case NotifyNever, NotifySuccess, NotifyFailure, NotifyDelay:
		default:
			return "", fmt.Errorf("NOTIFY value %q is not one of NEVER, SUCCESS, FAILURE, DELAY", v)
		}
		if seen[v] {
			continue
		}
		seen[v] = true
		out = append(out, v)
	}
	if seen[NotifyNever] && len(out) > 1 {
		return "", errors.New("NOTIFY=NEVER cannot be combined with other values")
	}
	return strings.Join(out, ","), nil
}
