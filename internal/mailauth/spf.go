package mailauth

import (
	"context"
	"net"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/postoffice-mail/postoffice/internal/resolver"
)

// SPFTimeout bounds one SPF evaluation: RFC 7208 section 4.6.4 asks for
// a limit on the whole evaluation, "at least 20 seconds".
const SPFTimeout = 20 * time.Second

// SPF identities (RFC 7208 section 2.3 and 2.4).
const (
	IdentityMailFrom = "mailfrom"
	IdentityHELO     = "helo"
)

// SPFResult is the outcome of an SPF check (RFC 7208 section 2.6).
type SPFResult struct {
	Result   string // none, neutral, pass, fail, softfail, temperror or permerror
	Identity string // IdentityMailFrom or IdentityHELO
	// Sender is the identity checked, as RFC 7208 section 4.1 gives it
	// to check_host(): the MAIL FROM address, "postmaster@" and the HELO
	// domain for a null reverse path (section 2.4) and for a HELO check.
	Sender string
	Domain string // the domain whose record was evaluated
	Reason string // what matched or failed, for people
}

// CheckSPF checks the MAIL FROM identity of a client at ip (RFC 7208
// section 2.4): the domain of mailFrom or, for a null reverse path
// ("" or "<>"), the HELO domain. This is the result that DMARC uses
// (RFC 7489 section 4.1).
func CheckSPF(ctx context.Context, r resolver.Resolver, ip net.IP, helo, mailFrom string) SPFResult {
	mailFrom = strings.Trim(mailFrom, "<>")
	if mailFrom == "" {
		res := checkHost(ctx, r, ip, helo, "postmaster@"+helo)
		res.Identity = IdentityMailFrom
		return res
	}
	res := checkHost(ctx, r, ip, helo, mailFrom)
	res.Identity = IdentityMailFrom
	return res
}

// CheckHELO checks the HELO identity (RFC 7208 section 2.3), which the
// RFC recommends checking on its own: a client whose HELO name's record
// says fail is refused by some receivers before MAIL.
func CheckHELO(ctx context.Context, r resolver.Resolver, ip net.IP, helo string) SPFResult {
	res := checkHost(ctx, r, ip, helo, "postmaster@"+helo)
	res.Identity = IdentityHELO
	return res
}

// checkHost runs check_host() (RFC 7208 section 4) for sender.
func checkHost(ctx context.Context, r resolver.Resolver, ip net.IP, helo, sender string) SPFResult {
	at := strings.LastIndexByte(sender, '@')
	local, domain := sender[:at], sender[at+1:]
	res := SPFResult{Sender: sender}
	d, err := normalizeDomain(domain)
	// Section 4.3: a malformed domain, or one that is not a multi-label
	// name (an address literal included), gives "none" at once.
	if err != nil || !strings.Contains(d, ".") || strings.HasPrefix(domain, "[") {
		res.Result, res.Domain, res.Reason = ResultNone, domain, "not a domain that SPF applies to"
		return res
	}
	res.Domain = d
	if ip == nil || ip.To16() == nil {
		res.Result, res.Reason = ResultPermError, "no client address"
		return res
	}
	ctx, cancel := context.WithTimeout(ctx, SPFTimeout)
	defer cancel()
	result, err := spf.CheckHostWithSender(ip, helo, local+"@"+d,
		spf.WithContext(ctx), spf.WithResolver(r))
	res.Result = string(result)
	if err != nil {
		res.Reason = err.Error()
	}
	return res
}
