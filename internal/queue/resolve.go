package queue

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/resolver"
	"golang.org/x/net/idna"
)

// Resolver looks up what MX delivery needs. Errors are *net.DNSError:
// IsNotFound for a name that does not exist or has no record of the type
// (NXDOMAIN or NODATA), anything else is temporary.
type Resolver interface {
	LookupMX(ctx context.Context, domain string) ([]*net.MX, error)
	LookupIP(ctx context.Context, host string) ([]net.IP, error)
}

// NewResolver gives MX delivery its lookups from r: the resolver the
// checks of incoming mail use too (internal/resolver), so that both share
// one configuration and one cache.
func NewResolver(r resolver.Resolver) Resolver { return adapted{r} }

// SystemResolver uses the operating system's configuration (Go's
// net.DefaultResolver).
func SystemResolver() Resolver { return NewResolver(resolver.System()) }

// adapted has LookupMX and LookupTXT (MTA-STS discovery, mtasts.Resolver)
// from the resolver.Resolver.
type adapted struct{ resolver.Resolver }

func (a adapted) LookupIP(ctx context.Context, host string) ([]net.IP, error) {
	addrs, err := a.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, err
	}
	ips := make([]net.IP, len(addrs))
	for i, ad := range addrs {
		ips[i] = ad.IP
	}
	return ips, nil
}

func isNotFound(err error) bool {
	var de *net.DNSError
	return errors.As(err, &de) && de.IsNotFound
}

// mxResult is the outcome of looking up where a domain's mail goes.
type mxResult struct {
	hosts    []string // in the order to try them
	implicit bool     // no MX: the domain's own address (RFC 5321 section 5.1)
	nullMX   bool     // RFC 7505: the domain accepts no mail
}

// orderMX sorts MX records by preference, lowest first, in a random order
// among equal preferences so that load spreads over them (RFC 5321
// section 5.1), and removes duplicates. shuffle is rand.Shuffle, or a
// fixed permutation in tests.
func orderMX(mxs []*net.MX, shuffle func(n int, swap func(i, j int))) []string {
	mxs = slices.Clone(mxs)
	shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	var hosts []string
	seen := map[string]bool{}
	for _, mx := range mxs {
		h := strings.ToLower(strings.TrimSuffix(mx.Host, "."))
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		hosts = append(hosts, h)
	}
	return hosts
}

// isNullMX reports whether the records are a null MX (RFC 7505 section
// 3: a single MX record with preference 0 and the root "." as target).
// One "." among other records is a misconfiguration; orderMX drops it.
func isNullMX(mxs []*net.MX) bool {
	return len(mxs) == 1 && strings.TrimSuffix(mxs[0].Host, ".") == ""
}

// lookupMX finds the hosts for a domain's mail (RFC 5321 section 5.1):
// its MX records by preference; without any, the domain itself (the
// "implicit MX"), if it has an address; a null MX (RFC 7505) means the
// domain accepts no mail. A failed outcome is returned for the domain that
// does not exist (permanent) or a lookup that failed (temporary).
func lookupMX(ctx context.Context, res Resolver, domain string) (mxResult, *outcome) {
	mxs, err := res.LookupMX(ctx, domain)
	if err != nil && !isNotFound(err) && len(mxs) == 0 {
		// RFC 3463 section 3.5: X.4.3 directory server failure.
		return mxResult{}, tempFailure("4.4.3", "MX lookup for %s failed: %v", domain, err)
	}
	if isNullMX(mxs) {
		// RFC 7505 section 4.2: X.1.10 recipient address has null MX.
		return mxResult{nullMX: true}, permFailure("5.1.10", "the domain %s accepts no mail (null MX, RFC 7505)", domain)
	}
	if len(mxs) > 0 {
		if hosts := orderMX(mxs, rand.Shuffle); len(hosts) > 0 {
			return mxResult{hosts: hosts}, nil
		}
	}
	// RFC 5321 section 5.1: no MX records, the domain is its own mail host
	// if it has an address.
	if _, err := res.LookupIP(ctx, domain); err != nil {
		if isNotFound(err) {
			// RFC 3463 section 3.2: X.1.2 bad destination system address.
			return mxResult{}, permFailure("5.1.2", "the domain %s has no MX and no address records", domain)
		}
		return mxResult{}, tempFailure("4.4.3", "address lookup for %s failed: %v", domain, err)
	}
	return mxResult{hosts: []string{domain}, implicit: true}, nil
}

// asciiDomain converts an internationalized domain to its A-label form
// for DNS (RFC 5891); an ASCII one is only lower-cased.
func asciiDomain(domain string) (string, error) {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if isASCII(domain) {
		return domain, nil
	}
	a, err := idna.Lookup.ToASCII(domain)
	if err != nil {
		return "", fmt.Errorf("domain %q: %v", domain, err)
	}
	return a, nil
}

// sortAddrs puts IPv4 addresses first (keeping the resolver's order
// otherwise): a host without IPv6 connectivity then wastes no time on
// unreachable addresses before the working ones.
func sortAddrs(ips []net.IP) []net.IP {
	ips = slices.Clone(ips)
	slices.SortStableFunc(ips, func(a, b net.IP) int {
		a4, b4 := a.To4() != nil, b.To4() != nil
		switch {
		case a4 && !b4:
			return -1
		case !a4 && b4:
			return 1
		}
		return 0
	})
	return ips
}
