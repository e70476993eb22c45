// Package dnsrecords says which DNS records a mail domain served by
// postoffice needs, in zone-file syntax ready to paste, and checks
// through a resolver which of them are published, missing or wrong:
// what `postoffice domain records` and `domain check` print and the
// console's domain page shows.
//
// The records: the MX (RFC 5321 section 5.1); SPF for the domain and for
// the mail host's HELO name (RFC 7208); one DKIM key record per active
// key (RFC 6376 section 3.6.2); DMARC (RFC 7489 section 6.1); the SRV
// records that let mail clients find the services (RFC 6186, RFC 8314
// section 5.1); MTA-STS (RFC 8461 section 3.1) and its policy host;
// TLS reporting (RFC 8460 section 3); the autoconfig and autodiscover
// names that Thunderbird and Outlook ask. It is the one place that says
// what a domain's records are: the CLI, the console and the HTTP site
// (internal/mailhttp) take them from here.
package dnsrecords

import (
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/tlsrpt"
	"golang.org/x/net/idna"
)

// Ports are the ports of the client services; 0 for a service not
// offered, which gets a "not available" SRV record (target ".": the
// service "is decidedly not available", RFC 2782).
type Ports struct {
	Submission  int // SMTP submission with STARTTLS (587, RFC 6409)
	Submissions int // submission over implicit TLS (465, RFC 8314)
	POP3        int // POP3 with STLS (110)
	POP3S       int // POP3 over implicit TLS (995)
}

// DefaultPorts are the standard ports, postoffice's defaults.
var DefaultPorts = Ports{Submission: 587, Submissions: 465, POP3: 110, POP3S: 995}

// Domain is a mail domain and what its records point at.
type Domain struct {
	Name string // e.g. "example.com"
	MX   string // the mail host, e.g. "mail.example.com"
	// Keys are the domain's DKIM keys; the active ones are published,
	// and the retired ones for KeepRetired after their retirement.
	Keys []mailauth.Key
	// KeepRetired is how long a retired key's record stays;
	// mailauth.RetiredKeyPublished when 0.
	KeepRetired time.Duration
	// Now is the time the records are for; time.Now() when zero.
	Now   time.Time
	Ports Ports
	// DMARCPolicy is the policy to publish: DispositionQuarantine when
	// empty, a start that no mistake elsewhere turns into lost mail.
	DMARCPolicy mailauth.Disposition
	// ReportAddress receives DMARC aggregate and TLS reports;
	// "postmaster@" the domain when empty.
	ReportAddress string
	// MTASTS is the policy served at
	// https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 section
	// 3.2), whose id the _mta-sts record carries; nil: no MTA-STS records.
	MTASTS *mtasts.Policy
	// Autoconfig: the mail host answers Thunderbird's autoconfig and
	// Outlook's autodiscover over HTTP(S), so their names point at it.
	Autoconfig bool
	// IPs are the mail host's public addresses, if known: they get
	// address records and the reverse (PTR) records that receivers check
	// (RFC 8601 section 2.7.3's iprev; Gmail requires them).
	IPs []net.IP
	TTL uint32 // 0: an hour
}

// Record is one DNS record the domain needs.
type Record struct {
	Name    string // owner, fully qualified: "_dmarc.example.com."
	Type    string // "MX", "A", "AAAA", "PTR", "TXT", "SRV" or "CNAME"
	Value   string // the data in zone-file syntax, e.g. "10 mail.example.com."
	Comment string // what it is for
	rr      dns.RR
	kind    kind
	key     mailauth.Key // for kindDKIM
	ip      net.IP       // for kindAddress and kindPTR
}

// kind is what a record is for, which says how to check it.
type kind int

const (
	kindMX kind = iota
	kindAddress
	kindPTR
	kindSPF
	kindHELOSPF
	kindDKIM
	kindDMARC
	kindSRV
	kindMTASTS
	kindAlias
	kindTLSRPT
)

// String is the record as a zone-file line.
func (r Record) String() string { return r.rr.String() }

func fqdn(name string) string { return dns.Fqdn(strings.ToLower(name)) }

// asciiName converts a domain to A-labels for DNS (RFC 5891), lower
// case, without a final dot.
func asciiName(name string) (string, error) {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if name == "" {
		return "", fmt.Errorf("empty domain name")
	}
	a, err := idna.Lookup.ToASCII(name)
	if err != nil {
		return "", fmt.Errorf("domain %q: %v", name, err)
	}
	if _, ok := dns.IsDomainName(a); !ok {
		return "", fmt.Errorf("domain %q: not a domain name", name)
	}
	return a, nil
}

// txtStrings cuts a TXT value into character-strings of at most 255
// octets (RFC 1035 section 3.3.14); verifiers join them (RFC 6376
// section 3.6.2.2, RFC 7208 section 3.3).
func txtStrings(v string) []string {
	var out []string
	for len(v) > 255 {
		out = append(out, v[:255])
		v = v[255:]
	}
	return append(out, v)
}

func (d Domain) reportAddress() string {
	if d.ReportAddress != "" {
		return d.ReportAddress
	}
	return "postmaster@" + d.Name
}

// Records returns every record the domain needs, in the order a person
// reads them: mail routing, authentication, client services, policies.
func Records(d Domain) ([]Record, error) {
	name, err := asciiName(d.Name)
	if err != nil {
		return nil, err
	}
	mx, err := asciiName(d.MX)
	if err != nil {
		return nil, fmt.Errorf("mail host: %v", err)
	}
	d.Name, d.MX = name, mx
	ttl := d.TTL
	if ttl == 0 {
		ttl = 3600
	}
	hdr := func(owner string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: fqdn(owner), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	}
	var recs []Record
	var k kind
	add := func(comment string, rr dns.RR) {
		h := rr.Header()
		value := strings.TrimPrefix(rr.String(), h.String())
		recs = append(recs, Record{Name: h.Name, Type: dns.TypeToString[h.Rrtype], Value: value, Comment: comment, rr: rr, kind: k})
	}
	txt := func(owner, v string) dns.RR {
		return &dns.TXT{Hdr: hdr(owner, dns.TypeTXT), Txt: txtStrings(v)}
	}

	k = kindMX
	add("Mail for "+name+" goes to "+mx+" (RFC 5321 section 5.1).",
		&dns.MX{Hdr: hdr(name, dns.TypeMX), Preference: 10, Mx: fqdn(mx)})
	for _, ip := range d.IPs {
		k = kindAddress
		if ip4 := ip.To4(); ip4 != nil {
			add("The mail host's address.", &dns.A{Hdr: hdr(mx, dns.TypeA), A: ip4})
		} else {
			add("The mail host's address.", &dns.AAAA{Hdr: hdr(mx, dns.TypeAAAA), AAAA: ip})
		}
		recs[len(recs)-1].ip = ip
		k = kindPTR
		rev, err := dns.ReverseAddr(ip.String())
		if err != nil {
			return nil, err
		}
		add("The address's name, set where the address comes from (the hosting provider): receivers want it to match (forward-confirmed reverse DNS).",
			&dns.PTR{Hdr: hdr(rev, dns.TypePTR), Ptr: fqdn(mx)})
		recs[len(recs)-1].ip = ip
	}
	k = kindSPF
	add("SPF: only the domain's mail hosts send its mail (RFC 7208).",
		txt(name, "v=spf1 mx -all"))
	k = kindHELOSPF
	add("SPF for the mail host's own name, which it gives in EHLO (RFC 7208 section 2.3).",
		txt(mx, "v=spf1 a -all"))
	k = kindDKIM
	dkim, err := dkimRecords(name, d.Keys, d.now(), d.KeepRetired, hdr)
	if err != nil {
		return nil, err
	}
	recs = append(recs, dkim...)
	policy := d.DMARCPolicy
	if policy == "" {
		policy = mailauth.DispositionQuarantine
	}
	k = kindDMARC
	add("DMARC: what receivers do with mail that claims to be from "+name+" and is not authenticated (RFC 7489).",
		txt("_dmarc."+name, "v=DMARC1; p="+string(policy)+"; rua=mailto:"+d.reportAddress()))

	// RFC 6186 and RFC 8314 section 5.1: implicit TLS preferred (lower
	// priority number), a port of 0 published as "not available".
	k = kindSRV
	srv := func(service, what string, prio uint16, port int) {
		rr := &dns.SRV{Hdr: hdr("_"+service+"._tcp."+name, dns.TypeSRV), Priority: prio, Weight: 1, Port: uint16(port), Target: fqdn(mx)}
		comment := fmt.Sprintf("Mail clients find %s at port %d (RFC 6186).", what, port)
		if port == 0 {
			rr.Priority, rr.Weight, rr.Target = 0, 0, "."
			comment = fmt.Sprintf("No %s here: clients need not try (target \".\", RFC 2782).", what)
		}
		add(comment, rr)
	}
	srv("submissions", "submission over TLS", 0, d.Ports.Submissions)
	srv("submission", "submission with STARTTLS", 10, d.Ports.Submission)
	srv("pop3s", "POP3 over TLS", 0, d.Ports.POP3S)
	srv("pop3", "POP3 with STLS", 10, d.Ports.POP3)
	// postoffice has no IMAP: say so, rather than let clients probe.
	srv("imaps", "IMAP over TLS", 0, 0)
	srv("imap", "IMAP", 0, 0)

	if p := d.MTASTS; p != nil {
		k = kindMTASTS
		add("MTA-STS: senders deliver to "+strings.Join(p.MX, ", ")+" over verified TLS (RFC 8461 section 3.1); the id changes with the policy.",
			txt(mtasts.RecordName(name), mtasts.Record{ID: p.ID()}.String()))
		k = kindAlias
		add("The MTA-STS policy is served over HTTPS by the mail host (RFC 8461 section 3.2).",
			&dns.CNAME{Hdr: hdr("mta-sts."+name, dns.TypeCNAME), Target: fqdn(mx)})
	}
	k = kindTLSRPT
	add("TLS reports from senders (RFC 8460 section 3).",
		txt(tlsrpt.RecordName(name), tlsrpt.Record{RUA: []string{tlsrpt.Mailto(d.reportAddress())}}.String()))
	if d.Autoconfig {
		k = kindAlias
		add("Thunderbird asks autoconfig."+name+" for the account settings.",
			&dns.CNAME{Hdr: hdr("autoconfig."+name, dns.TypeCNAME), Target: fqdn(mx)})
		add("Outlook asks autodiscover."+name+" for the account settings.",
			&dns.CNAME{Hdr: hdr("autodiscover."+name, dns.TypeCNAME), Target: fqdn(mx)})
		k = kindSRV
		add("Outlook finds autodiscover over HTTPS at the mail host.",
			&dns.SRV{Hdr: hdr("_autodiscover._tcp."+name, dns.TypeSRV), Priority: 0, Weight: 1, Port: 443, Target: fqdn(mx)})
	}
	return recs, nil
}

func (d Domain) now() time.Time {
	if d.Now.IsZero() {
		return time.Now()
	}
	return d.Now
}

// DKIMRecords returns the key records of domain's keys that belong in
// DNS at now (mailauth.Key.Published with keep, RFC 6376 section
// 3.6.2): what `postoffice dkim keygen` prints, as Records has them.
func DKIMRecords(domain string, keys []mailauth.Key, now time.Time, keep time.Duration, ttl uint32) ([]Record, error) {
	name, err := asciiName(domain)
	if err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = 3600
	}
	return dkimRecords(name, keys, now, keep, func(owner string, t uint16) dns.RR_Header {
		return dns.RR_Header{Name: fqdn(owner), Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	})
}

func dkimRecords(name string, keys []mailauth.Key, now time.Time, keep time.Duration, hdr func(string, uint16) dns.RR_Header) ([]Record, error) {
	if keep <= 0 {
		keep = mailauth.RetiredKeyPublished
	}
	var recs []Record
	for _, key := range keys {
		if !key.Published(now, keep) || !strings.EqualFold(key.Domain, name) {
			continue
		}
		v, err := key.TXT()
		if err != nil {
			return nil, err
		}
		comment := fmt.Sprintf("DKIM key %s (%s), created %s, signs (RFC 6376 section 3.6.2).", key.Selector, key.Algorithm, key.Created.Format("2006-01-02"))
		if !key.Active() {
			comment = fmt.Sprintf("DKIM key %s (%s), retired %s: signs no more; keep the record until %s so that mail signed before still verifies, then delete it.",
				key.Selector, key.Algorithm, key.Retired.Format("2006-01-02"), key.Retired.Add(keep).Format("2006-01-02"))
		}
		rr := &dns.TXT{Hdr: hdr(key.Selector+"._domainkey."+name, dns.TypeTXT), Txt: txtStrings(v)}
		h := rr.Header()
		recs = append(recs, Record{Name: h.Name, Type: "TXT", Value: strings.TrimPrefix(rr.String(), h.String()),
			Comment: comment, rr: rr, kind: kindDKIM, key: key})
	}
	return recs, nil
}

// Zone writes records as zone-file lines, each after its comment.
func Zone(recs []Record) string {
	var b strings.Builder
	for _, r := range recs {
		b.WriteString("; ")
		b.WriteString(r.Comment)
		b.WriteByte('\n')
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	return b.String()
}
