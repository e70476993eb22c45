package store

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Checks every backend applies to its arguments in the same way, so that
// what one refuses (ErrInvalid) the other refuses too.

// HeaderProblem says what is wrong with a per-copy header of a Delivery,
// "" if nothing: it must be empty or lines in canonical form, each ending
// in CRLF, or it would run into the first line of the body.
func HeaderProblem(h []byte) string {
	if len(h) == 0 {
		return ""
	}
	if !bytes.HasSuffix(h, []byte("\r\n")) {
		return "does not end in CRLF"
	}
	if bytes.Count(h, []byte("\r")) != bytes.Count(h, []byte("\n")) || bytes.Count(h, []byte("\r\n")) != bytes.Count(h, []byte("\n")) {
		return "has a bare CR or LF"
	}
	return ""
}

// QueueAddressProblem says what is wrong with an address given to
// Enqueue, "" if nothing. It checks only what would break the SMTP
// dialogue: a remote address is the remote host's business (its local
// part may be case sensitive or quoted), so it is kept as given.
func QueueAddressProblem(a string) string {
	switch {
	case a == "":
		return "is empty"
	case !utf8.ValidString(a):
		return "is not valid UTF-8"
	case !strings.Contains(a, "@"):
		return "has no @"
	}
	for _, r := range a {
		if r < 0x20 || r == 0x7f {
			return "contains a control character"
		}
	}
	return ""
}

// DomainInUseError is DeleteDomain's refusal of a domain that still has
// users, extra addresses or aliases. It is ErrExists for errors.Is.
type DomainInUseError struct {
	Domain                    string
	Users, Addresses, Aliases int
}

func (e *DomainInUseError) Error() string {
	var parts []string
	for _, c := range []struct {
		n           int
		one, plural string
	}{{e.Users, "user", "users"}, {e.Addresses, "extra address", "extra addresses"}, {e.Aliases, "alias", "aliases"}} {
		switch {
		case c.n == 1:
			parts = append(parts, "1 "+c.one)
		case c.n > 1:
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.plural))
		}
	}
	list := strings.Join(parts, ", ")
	if i := strings.LastIndex(list, ", "); i >= 0 {
		list = list[:i] + " and " + list[i+2:]
	}
	return fmt.Sprintf("domain %s is still in use by %s: delete those first", e.Domain, list)
}

// Is makes the error ErrExists.
func (e *DomainInUseError) Is(target error) bool { return target == ErrExists }
