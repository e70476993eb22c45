// Package mtasts is SMTP MTA Strict Transport Security (RFC 8461): the
// policy a domain publishes (parsed strictly, and written), the _mta-sts
// TXT record that announces it, the matching of MX names against it, and
// a Fetcher that discovers, fetches and caches a domain's policy for the
// outbound queue.
package mtasts

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Mode is what a sending MTA does when it cannot deliver over TLS to an MX
// the policy names (RFC 8461 section 5).
type Mode string

// The modes of RFC 8461 section 3.2.
const (
	// Enforce: do not deliver to an MX that fails validation.
	Enforce Mode = "enforce"
	// Testing: deliver anyway, and report the failure (TLS-RPT, RFC 8460).
	Testing Mode = "testing"
	// None: the domain has no active policy (used to withdraw one).
	None Mode = "none"
)

// MaxMaxAge is the longest max_age (RFC 8461 section 3.2: "maximum value of
// 31557600", a year); a longer one is read as this.
const MaxMaxAge = 31557600 * time.Second

// Extension is a policy or record field this package does not know,
// kept as read (RFC 8461 section 3.2: unknown fields are ignored).
type Extension struct {
	Name, Value string
}

// Policy is an MTA-STS policy (RFC 8461 section 3.2).
type Policy struct {
	Mode Mode
	// MX are the allowed MX patterns: a name ("mail.example.com"), or a
	// wildcard that matches one more leftmost label ("*.example.net").
	MX []string
	// MaxAge is how long a sender may cache the policy, whole seconds, at
	// most MaxMaxAge.
	MaxAge time.Duration
	// Extensions are the unknown fields, in order.
	Extensions []Extension
}

// Parse parses a policy body strictly by the ABNF of RFC 8461 section 3.2:
// "key: value" lines ended by LF or CRLF (the last one optionally), keys
// and keyword values case-sensitive, no empty line, no space before the
// colon; version ("STSv1"), mode and max_age required, and at least one mx
// unless the mode is "none"; of a repeated field other than mx the first
// counts (the others must still be valid); unknown fields are kept as
// Extensions.
func Parse(body string) (*Policy, error) {
	if body == "" {
		return nil, errors.New("mta-sts policy: empty")
	}
	lines := strings.Split(body, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1] // the optional final terminator
	}
	p := &Policy{}
	seen := map[string]bool{}
	for i, line := range lines {
		line = strings.TrimSuffix(line, "\r")
		errf := func(format string, a ...any) error {
			return fmt.Errorf("mta-sts policy line %d: %s", i+1, fmt.Sprintf(format, a...))
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, errf("no colon in %q", line)
		}
		if !validFieldName(key) {
			return nil, errf("field name %q", key)
		}
		value = strings.TrimRight(strings.TrimLeft(value, " \t"), " \t")
		if value == "" {
			return nil, errf("%s has no value", key)
		}
		dup := seen[key]
		seen[key] = true
		switch key {
		case "version":
			if value != "STSv1" {
				return nil, errf("version %q, want STSv1", value)
			}
		case "mode":
			m := Mode(value)
			if m != Enforce && m != Testing && m != None {
				return nil, errf("mode %q, want enforce, testing or none", value)
			}
			if !dup {
				p.Mode = m
			}
		case "max_age":
			// 1*10DIGIT
			if len(value) > 10 || strings.Trim(value, "0123456789") != "" {
				return nil, errf("max_age %q: at most 10 digits", value)
			}
			n, _ := strconv.ParseInt(value, 10, 64)
			if !dup {
				p.MaxAge = time.Duration(min(n, int64(MaxMaxAge/time.Second))) * time.Second
			}
		case "mx":
			if err := checkMXPattern(value); err != nil {
				return nil, errf("mx %q: %v", value, err)
			}
			p.MX = append(p.MX, strings.ToLower(value))
		default:
			if err := checkExtValue(value); err != nil {
				return nil, errf("%s: %v", key, err)
			}
			p.Extensions = append(p.Extensions, Extension{key, value})
		}
	}
	for _, f := range []string{"version", "mode", "max_age"} {
		if !seen[f] {
			return nil, fmt.Errorf("mta-sts policy: no %s", f)
		}
	}
	if p.Mode != None && len(p.MX) == 0 {
		return nil, fmt.Errorf("mta-sts policy: mode %s without mx", p.Mode)
	}
	return p, nil
}

// validFieldName is sts-policy-ext-name, which the known names match too:
// (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".").
func validFieldName(k string) bool {
	if k == "" || len(k) > 32 {
		return false
	}
	for i, c := range k {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return false
		}
	}
	return true
}

// checkExtValue is sts-policy-ext-value: visible characters (ASCII or
// UTF-8), with spaces only inside. The caller trimmed the ends.
func checkExtValue(v string) error {
	for _, c := range v {
		if c < 0x20 || c == 0x7f || c == '\t' || c == 0xfffd {
			return fmt.Errorf("character %q in value", c)
		}
	}
	return nil
}

// checkMXPattern is sts-policy-mx-value: ["*."] Domain, Domain as in RFC
// 5321 section 4.1.2 (LDH labels in ASCII; A-labels for IDNs, RFC 8461
// section 3.2).
func checkMXPattern(v string) error {
	d := strings.TrimPrefix(v, "*.")
	if d == "" || len(d) > 253 {
		return errors.New("not a domain")
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return errors.New("empty or long label")
		}
		for i, c := range l {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' && i > 0 && i < len(l)-1
			if !ok {
				return fmt.Errorf("label %q", l)
			}
		}
	}
	return nil
}

// String writes the policy in the format of RFC 8461 section 3.2, CRLF
// after every line: version, mode, each mx, max_age, then the extensions.
func (p *Policy) String() string {
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	b.WriteString("mode: " + string(p.Mode) + "\r\n")
	for _, mx := range p.MX {
		b.WriteString("mx: " + mx + "\r\n")
	}
	b.WriteString("max_age: " + strconv.FormatInt(int64(p.MaxAge/time.Second), 10) + "\r\n")
	for _, e := range p.Extensions {
		b.WriteString(e.Name + ": " + e.Value + "\r\n")
	}
	return b.String()
}

// Check reports what makes p unfit to publish: an unknown mode, no mx
// outside mode none, a bad mx pattern, max_age outside 1 second to a year.
func (p *Policy) Check() error {
	_, err := Parse(p.String())
	if err == nil && (p.MaxAge < time.Second || p.MaxAge > MaxMaxAge) {
		err = fmt.Errorf("mta-sts policy: max_age %v: between 1 second and a year", p.MaxAge)
	}
	return err
}

// ID is an id for the _mta-sts record of p (1 to 32 letters and digits,
// RFC 8461 section 3.1) that changes when the policy does: derived from its
// text, so every node of a cluster publishes the same one.
func (p *Policy) ID() string {
	sum := sha256.Sum256([]byte(p.String()))
	return hex.EncodeToString(sum[:16])
}

// Match reports whether an MX host name is allowed by one of the policy's
// patterns (RFC 8461 section 4.1): equal, case-insensitively, to a name;
// or, for a "*." pattern, the pattern's domain with exactly one more label
// on the left.
func (p *Policy) Match(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, pat := range p.MX {
		pat = strings.ToLower(pat)
		if d, ok := strings.CutPrefix(pat, "*."); ok {
			first, rest, found := strings.Cut(host, ".")
			if found && first != "" && rest == d {
				return true
			}
		} else if host == pat {
			return true
		}
	}
	return false
}
