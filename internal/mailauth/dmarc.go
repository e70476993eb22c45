package mailauth

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"

	"github.com/emersion/go-msgauth/dmarc"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"golang.org/x/net/publicsuffix"
)

// Disposition is what a DMARC policy asks a receiver to do with a
// message that fails (RFC 7489 section 6.3, tag p).
type Disposition string

// Dispositions, from the mildest.
const (
	DispositionNone       Disposition = "none"
	DispositionQuarantine Disposition = "quarantine"
	DispositionReject     Disposition = "reject"
)

func (d Disposition) severity() int {
	switch d {
	case DispositionQuarantine:
		return 1
	case DispositionReject:
		return 2
	}
	return 0
}

// DMARCResult is the outcome of DMARC for one author domain (RFC 7489
// section 6.6).
type DMARCResult struct {
	Result string // none, pass, fail, temperror or permerror (RFC 7489 section 11.2)
	Domain string // the author domain: of the From field
	// RecordDomain is where the policy record was found: Domain itself,
	// or its organizational domain (section 6.6.3); "" without a record.
	RecordDomain string
	// Policy is the policy that applies to Domain: p=, or sp= when the
	// record is the organizational domain's and Domain is below it.
	Policy Disposition
	// Disposition is what to do with this message: none for a pass; for
	// a failure, Policy, or the next milder one when the message fell
	// outside the pct= sample (section 6.6.4).
	Disposition Disposition
	SPFAligned  bool // SPF passed for a domain aligned with Domain
	DKIMAligned bool // a DKIM signature passed for an aligned domain
	Reason      string
}

// OrganizationalDomain returns the organizational domain of a domain
// (RFC 7489 section 3.2): its public suffix and one label more, from
// the Public Suffix List; a domain that is itself a public suffix is its
// own.
func OrganizationalDomain(domain string) string {
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	org, err := publicsuffix.EffectiveTLDPlusOne(domain)
	if err != nil {
		return domain
	}
	return org
}

// aligned reports whether two domains are in identifier alignment
// (RFC 7489 section 3.1): the same domain in strict mode, the same
// organizational domain in relaxed mode.
func aligned(a, b string, mode dmarc.AlignmentMode) bool {
	a, b = strings.ToLower(strings.TrimSuffix(a, ".")), strings.ToLower(strings.TrimSuffix(b, "."))
	if a == "" || b == "" {
		return false
	}
	if mode == dmarc.AlignmentStrict {
		return a == b
	}
	return OrganizationalDomain(a) == OrganizationalDomain(b)
}

// errMultipleRecords: section 6.6.3 step 5, more than one record.
var errMultipleRecords = errors.New("more than one DMARC record")

// lookupRecord finds the DMARC record of one name: nil without one.
func lookupRecord(ctx context.Context, r resolver.Resolver, domain string) (*dmarc.Record, error) {
	txts, err := r.LookupTXT(ctx, "_dmarc."+domain)
	if err != nil {
		var de *net.DNSError
		if errors.As(err, &de) && de.IsNotFound {
			return nil, nil
		}
		return nil, err
	}
	// Section 6.6.3 steps 2 and 4: records that do not start with a v= tag of
	// this version are discarded.
	var records []string
	for _, txt := range txts {
		tag, _, _ := strings.Cut(txt, ";")
		k, v, _ := strings.Cut(tag, "=")
		if strings.EqualFold(strings.TrimSpace(k), "v") && strings.TrimSpace(v) == "DMARC1" {
			records = append(records, txt)
		}
	}
	switch len(records) {
	case 0:
		return nil, nil
	case 1:
		return dmarc.Parse(records[0])
	}
	return nil, errMultipleRecords
}

// EvaluateDMARC applies the DMARC policy of an author domain to a
// message, given the results of SPF (the MAIL FROM identity) and DKIM
// (RFC 7489 section 6.6). sample returns a number in [0, 100) to decide
// whether a failing message falls inside the policy's pct= (nil: at
// random).
func EvaluateDMARC(ctx context.Context, r resolver.Resolver, fromDomain string, spfRes SPFResult, dkimRes []DKIMResult, sample func() int) DMARCResult {
	res := DMARCResult{Domain: fromDomain, Disposition: DispositionNone}
	// Section 6.6.3: the record of the author domain, else that of its
	// organizational domain.
	rec, err := lookupRecord(ctx, r, fromDomain)
	recordDomain := fromDomain
	if err == nil && rec == nil {
		if org := OrganizationalDomain(fromDomain); org != fromDomain {
			recordDomain = org
			rec, err = lookupRecord(ctx, r, org)
		}
	}
	switch {
	case err != nil:
		var de *net.DNSError
		if errors.As(err, &de) {
			res.Result, res.Reason = ResultTempError, "DMARC record lookup: "+err.Error()
		} else {
			// Section 6.6.3 step 6: a record without a valid p= tag
			// means no DMARC processing: reported as permerror (section
			// 11.2, "a syntactically incorrect DMARC record").
			res.Result, res.Reason = ResultPermError, "DMARC record of "+recordDomain+": "+strings.TrimPrefix(err.Error(), "dmarc: ")
			res.RecordDomain = recordDomain
		}
		return res
	case rec == nil:
		res.Result, res.Reason = ResultNone, "no DMARC record"
		return res
	}
	res.RecordDomain = recordDomain
	res.Policy = Disposition(rec.Policy)
	if recordDomain != fromDomain && rec.SubdomainPolicy != "" {
		res.Policy = Disposition(rec.SubdomainPolicy)
	}

	// Section 6.6.2: a pass needs one aligned, passing identifier.
	if spfRes.Result == ResultPass && aligned(spfRes.Domain, fromDomain, rec.SPFAlignment) {
		res.SPFAligned = true
	}
	for _, d := range dkimRes {
		if d.Result == ResultPass && aligned(d.Domain, fromDomain, rec.DKIMAlignment) {
			res.DKIMAligned = true
		}
	}
	if res.SPFAligned || res.DKIMAligned {
		res.Result = ResultPass
		return res
	}
	// An aligned identifier that could not be checked for a transient
	// reason might have passed: temperror (section 11.2), not a failure
	// to act on.
	temp := spfRes.Result == ResultTempError && aligned(spfRes.Domain, fromDomain, rec.SPFAlignment)
	for _, d := range dkimRes {
		if d.Result == ResultTempError && aligned(d.Domain, fromDomain, rec.DKIMAlignment) {
			temp = true
		}
	}
	if temp {
		res.Result, res.Reason = ResultTempError, "an aligned SPF or DKIM check failed temporarily"
		return res
	}
	res.Result = ResultFail
	res.Reason = "no aligned SPF or DKIM pass"
	res.Disposition = res.Policy
	// Section 6.6.4: outside the pct= sample, reject is applied as
	// quarantine and quarantine as none.
	if rec.Percent != nil && *rec.Percent < 100 {
		if sample == nil {
			sample = func() int { return rand.IntN(100) }
		}
		if sample() >= *rec.Percent {
			switch res.Disposition {
			case DispositionReject:
				res.Disposition = DispositionQuarantine
			case DispositionQuarantine:
				res.Disposition = DispositionNone
			}
			res.Reason += ", outside the pct sample"
		}
	}
	return res
}
