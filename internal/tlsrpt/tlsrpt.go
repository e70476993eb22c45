// Package tlsrpt is the DNS record of SMTP TLS Reporting (RFC 8460 section
// 3): where a domain wants sending servers to report TLS failures (of
// MTA-STS and STARTTLS) when delivering to it.
package tlsrpt

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// RecordName is the owner of a domain's TLS-RPT record, e.g.
// _smtp._tls.example.com (RFC 8460 section 3).
func RecordName(domain string) string {
	return "_smtp._tls." + strings.TrimSuffix(domain, ".")
}

// Record is a TLS-RPT record.
type Record struct {
	// RUA are the report destinations: "mailto:" or "https:" URIs.
	RUA []string
	// Extensions are unknown fields, as read.
	Extensions [][2]string
}

// Mailto returns the rua URI for reports by mail to address, with the
// characters RFC 8460 section 3 says must be encoded in a tlsrpt-uri (",",
// "!" and ";"), and what a mailto URI itself encodes (RFC 6068),
// percent-encoded.
func Mailto(address string) string {
	return "mailto:" + (&url.URL{Path: address}).EscapedPath()
}

// String is the record's text: "v=TLSRPTv1; rua=URI[,URI...]".
func (r Record) String() string {
	var b strings.Builder
	b.WriteString("v=TLSRPTv1; rua=")
	for i, u := range r.RUA {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strings.NewReplacer(",", "%2C", "!", "%21", ";", "%3B").Replace(u))
	}
	for _, e := range r.Extensions {
		b.WriteString("; " + e[0] + "=" + e[1])
	}
	return b.String()
}

// Parse parses a record by the ABNF of RFC 8460 section 3: "v=TLSRPTv1"
// first, fields separated by ";" with optional spaces around it, rua
// required (a list of mailto: or https: URIs separated by ","; the first
// rua field counts; "!" inside one must be percent-encoded), unknown
// fields kept.
func Parse(txt string) (Record, error) {
	var r Record
	rest, ok := strings.CutPrefix(txt, "v=TLSRPTv1")
	if !ok {
		return r, errors.New("tls-rpt record: does not begin with v=TLSRPTv1")
	}
	fields := strings.Split(rest, ";")
	if strings.Trim(fields[0], " \t") != "" {
		return r, fmt.Errorf("tls-rpt record: %q after v=TLSRPTv1", fields[0])
	}
	fields = fields[1:]
	if len(fields) > 0 && strings.Trim(fields[len(fields)-1], " \t") == "" {
		fields = fields[:len(fields)-1]
	}
	seenRUA := false
	for _, f := range fields {
		f = strings.Trim(f, " \t")
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validName(name) || value == "" {
			return r, fmt.Errorf("tls-rpt record: field %q", f)
		}
		if name != "rua" {
			for _, c := range value { // tlsrpt-ext-value: VCHAR except ";" and "="
				if c < 0x21 || c > 0x7e || c == '=' {
					return r, fmt.Errorf("tls-rpt record: value of %s: %q", name, value)
				}
			}
			r.Extensions = append(r.Extensions, [2]string{name, value})
			continue
		}
		var uris []string
		for _, u := range strings.Split(value, ",") {
			u = strings.Trim(u, " \t")
			pu, err := url.Parse(u)
			if err != nil || (pu.Scheme != "mailto" && pu.Scheme != "https") || strings.ContainsAny(u, " \t!") {
				return r, fmt.Errorf("tls-rpt record: rua %q: a mailto: or https: URI", u)
			}
			if pu.Scheme == "mailto" && !strings.Contains(pu.Opaque, "@") {
				return r, fmt.Errorf("tls-rpt record: rua %q: no address", u)
			}
			if pu.Scheme == "https" && pu.Host == "" {
				return r, fmt.Errorf("tls-rpt record: rua %q: no host", u)
			}
			uris = append(uris, u)
		}
		if !seenRUA {
			r.RUA = uris
		}
		seenRUA = true
	}
	if !seenRUA {
		return r, errors.New("tls-rpt record: no rua")
	}
	return r, nil
}

func validName(k string) bool {
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
