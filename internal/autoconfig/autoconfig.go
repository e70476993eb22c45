// Package autoconfig is what mail clients ask a mail host so that a user
// types only an address and a password: Thunderbird's autoconfig document,
// Outlook's autodiscover (POX) answer, an Apple configuration profile
// (.mobileconfig), all describing the host's POP3 and submission
// listeners. The SRV records of RFC 6186 and RFC 8314 that describe them
// in DNS are package dnsrecords'.
package autoconfig

import (
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"

	"golang.org/x/net/idna"
)

// Security is how a listener protects its connections.
type Security int

const (
	// ImplicitTLS is TLS from the first octet (RFC 8314): POP3S on 995,
	// submissions on 465.
	ImplicitTLS Security = iota
	// STARTTLS is a plain connection that the client must upgrade with
	// STLS (RFC 2595) or STARTTLS (RFC 3207) before logging in: POP3 on
	// 110, submission on 587.
	STARTTLS
)

// Listener is one port clients can use.
type Listener struct {
	Port     int
	Security Security
}

// Host describes what the documents tell clients: where to connect and
// how. Only listeners with TLS are described; a listener without TLS is
// left out of Host by the caller.
type Host struct {
	// Hostname is the name clients connect to; the certificate covers it.
	Hostname string
	// POP3 and Submission are the listeners, in the caller's order;
	// documents list implicit TLS first (RFC 8314 section 3: preferred).
	POP3       []Listener
	Submission []Listener
	// DisplayName is the provider's name shown by some clients; default
	// the hostname.
	DisplayName string
}

// Check reports what makes h unusable: no hostname, a port out of range,
// no POP3 listener (there is nothing to configure) or an unknown security.
func (h Host) Check() error {
	if _, err := idna.Lookup.ToASCII(h.Hostname); err != nil || h.Hostname == "" || strings.Contains(h.Hostname, "..") {
		return fmt.Errorf("autoconfig: hostname %q", h.Hostname)
	}
	if len(h.POP3) == 0 {
		return errors.New("autoconfig: no POP3 listener with TLS")
	}
	for _, l := range slices.Concat(h.POP3, h.Submission) {
		if l.Port < 1 || l.Port > 65535 {
			return fmt.Errorf("autoconfig: port %d", l.Port)
		}
		if l.Security != ImplicitTLS && l.Security != STARTTLS {
			return fmt.Errorf("autoconfig: security %d", l.Security)
		}
	}
	return nil
}

func (h Host) displayName() string {
	if h.DisplayName != "" {
		return h.DisplayName
	}
	return h.Hostname
}

// preferred returns ls with implicit TLS first, otherwise in order.
func preferred(ls []Listener) []Listener {
	out := slices.Clone(ls)
	slices.SortStableFunc(out, func(a, b Listener) int { return int(a.Security) - int(b.Security) })
	return out
}

// ParseAddress checks that s is a plain address (local@domain, no display
// name or comments, at most 254 octets, RFC 5321 section 4.5.3.1.3) and
// returns it with the domain in lower-case A-label form, and the domain.
// An address is hostile input: it ends up in XML, a profile and a log.
func ParseAddress(s string) (addr, domain string, err error) {
	if len(s) > 254 || strings.ContainsAny(s, " \t\r\n<>\"()[]\\,;:") {
		return "", "", fmt.Errorf("address %q", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s {
		return "", "", fmt.Errorf("address %q", s)
	}
	at := strings.LastIndexByte(s, '@')
	local, dom := s[:at], s[at+1:]
	if local == "" {
		return "", "", fmt.Errorf("address %q", s)
	}
	dom, err = idna.Lookup.ToASCII(strings.TrimSuffix(dom, "."))
	if err != nil || !strings.Contains(dom, ".") {
		return "", "", fmt.Errorf("address %q: domain", s)
	}
	dom = strings.ToLower(dom)
	return local + "@" + dom, dom, nil
}
