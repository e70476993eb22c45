package acmecert

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/net/idna"
)

// DomainPlaceholder is the part of a name template that stands for each
// local domain: "mta-sts.{domain}" is mta-sts.example.com for example.com.
const DomainPlaceholder = "{domain}"

// DefaultTemplates are the per-domain names covered when the configuration
// names none: what Thunderbird (autoconfig), Outlook (autodiscover) and
// sending servers (mta-sts, RFC 8461 section 3.2) ask for over HTTPS.
var DefaultTemplates = []string{"autoconfig." + DomainPlaceholder, "autodiscover." + DomainPlaceholder, "mta-sts." + DomainPlaceholder}

// CheckTemplate reports whether t is a usable name template: it contains
// DomainPlaceholder once, as whole labels at its end ("mail.{domain}" or
// "{domain}" itself), and the rest is a valid DNS name prefix.
func CheckTemplate(t string) error {
	if strings.Count(t, DomainPlaceholder) != 1 || !strings.HasSuffix(t, DomainPlaceholder) {
		return fmt.Errorf("name template %q: must end with %s (e.g. mail.%s)", t, DomainPlaceholder, DomainPlaceholder)
	}
	prefix := strings.TrimSuffix(t, DomainPlaceholder)
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, ".") {
		return fmt.Errorf("name template %q: %s must be whole labels", t, DomainPlaceholder)
	}
	if _, err := normalizeName(prefix + "example.com"); err != nil {
		return fmt.Errorf("name template %q: %v", t, err)
	}
	return nil
}

// Names returns the names certificates are wanted for: hostname, then each
// template applied to each domain, in A-label form (RFC 5890), lower case,
// without duplicates. Names that are not valid DNS names for a public
// certificate (one label, bad characters) are left out and returned in
// skipped with the reason, for the caller to log.
func Names(hostname string, templates, domains []string) (names []string, skipped []error) {
	norm := func(n string) (string, bool) {
		a, err := normalizeName(n)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("%q: %v", n, err))
			return "", false
		}
		return a, true
	}
	var rest []string
	for _, d := range domains {
		for _, t := range templates {
			if a, ok := norm(strings.Replace(t, DomainPlaceholder, strings.TrimSuffix(d, "."), 1)); ok {
				rest = append(rest, a)
			}
		}
	}
	slices.Sort(rest)
	if h, ok := norm(hostname); ok && hostname != "" {
		names = append(names, h)
	}
	for _, n := range slices.Compact(rest) {
		if len(names) == 0 || n != names[0] {
			names = append(names, n)
		}
	}
	return names, skipped
}

// normalizeName returns name in lower-case A-label form, or why it cannot
// have a certificate from a public CA: only letters, digits and hyphens in
// labels of 1 to 63 octets (RFC 1123 section 2.1), at least two labels, at
// most 253 octets; no wildcard (CAs validate those by DNS-01 only, which
// this package does not answer).
func normalizeName(name string) (string, error) {
	name = strings.TrimSuffix(name, ".")
	a, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("not a domain name: %v", err)
	}
	a = strings.ToLower(a)
	if len(a) > 253 {
		return "", fmt.Errorf("longer than 253 octets")
	}
	labels := strings.Split(a, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("a single label; a CA issues only for names with a dot")
	}
	for _, l := range labels {
		if len(l) == 0 || len(l) > 63 {
			return "", fmt.Errorf("label %q: 1 to 63 octets", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("label %q begins or ends with a hyphen", l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("label %q: only letters, digits and hyphens", l)
			}
		}
	}
	return a, nil
}
