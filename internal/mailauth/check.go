package mailauth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/bufpool"
	"github.com/postoffice-mail/postoffice/internal/resolver"
)

// Action is what the SMTP engine does with a checked message at the end
// of the data.
type Action string

// Actions.
const (
	// Accept delivers the message as usual.
	Accept Action = "accept"
	// Quarantine delivers the message marked as suspect, for the reader's
	// filters (POP3 has no junk folder).
	Quarantine Action = "quarantine"
	// Reject refuses the message with Verdict.Reply.
	Reject Action = "reject"
)

// Reply is an SMTP reply to send (RFC 5321 section 4.2, RFC 3463).
type Reply struct {
	Code   int    // e.g. 550
	Status string // enhanced status code, e.g. "5.7.1"
	Text   string
}

func (r Reply) String() string { return fmt.Sprintf("%d %s %s", r.Code, r.Status, r.Text) }

// Envelope is what the SMTP session knows of a message's origin.
type Envelope struct {
	IP       net.IP // the client's address
	HELO     string // the EHLO or HELO argument
	MailFrom string // the reverse path, "" for the null one
}

// SPFResults are the two SPF checks of a transaction, done when MAIL
// arrives (Checker.SPF) and used again at the end of the data.
type SPFResults struct {
	MailFrom SPFResult // the MAIL FROM identity (RFC 7208 section 2.4)
	HELO     SPFResult // the HELO identity (section 2.3)
}

// Checker checks the mail that other hosts send in (port 25): SPF of
// the client, DKIM signatures, the DMARC policy of the author domain; and
// decides what to do with it. Mail from authenticated users and from the
// local delivery agent is not checked (ARCHITECTURE: checks apply at the
// MX).
type Checker struct {
	Resolver resolver.Resolver
	// AuthServID names us in Authentication-Results (RFC 8601 section
	// 2.5): the host name.
	AuthServID string
	// RejectAs is the action for a message that fails the DMARC policy
	// of a domain that asks for reject: Reject (the default, "") or
	// Quarantine, for sites that would rather deliver marked.
	RejectAs Action
	// Sample decides pct= sampling (RFC 7489 section 6.6.4): a number in
	// [0, 100); nil picks at random.
	Sample func() int
}

// SPF checks the MAIL FROM and HELO identities of a transaction.
func (c *Checker) SPF(ctx context.Context, env Envelope) SPFResults {
	return SPFResults{
		MailFrom: CheckSPF(ctx, c.Resolver, env.IP, env.HELO, env.MailFrom),
		HELO:     CheckHELO(ctx, c.Resolver, env.IP, env.HELO),
	}
}

// Verdict is the outcome of the checks of one message: the results for
// the journal and the Authentication-Results field, and the decision.
type Verdict struct {
	SPF  SPFResults
	DKIM []DKIMResult
	// DMARC is the result for the author domain; with several From
	// domains (RFC 7489 section 6.6.1), that of the one with the
	// strictest failing policy.
	DMARC  DMARCResult
	Action Action
	Reply  Reply // for Reject
	// AuthResults is the Authentication-Results field to prepend to the
	// message (CRLF-terminated), with the Checker's AuthServID.
	AuthResults string
}

// Check verifies a message at the end of the data: its DKIM signatures,
// and the DMARC policy of its author domain against them and spf (from
// SPF at MAIL time; nil: checked now). msg is read once, to the end, in
// canonical form (CRLF). An error is only a failure to read msg.
func (c *Checker) Check(ctx context.Context, env Envelope, spf *SPFResults, msg io.Reader) (*Verdict, error) {
	v := &Verdict{Action: Accept}
	if spf != nil {
		v.SPF = *spf
	} else {
		v.SPF = c.SPF(ctx, env)
	}
	// The header once, for the From domains; the whole message then goes
	// to the DKIM verifier.
	br := bufpool.Reader(msg)
	defer bufpool.Put(br) // readHeader copies what it keeps
	consumed, fields, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	v.DKIM, err = VerifyDKIM(ctx, c.Resolver, io.MultiReader(bytes.NewReader(consumed), br))
	if err != nil {
		return nil, err
	}
	domains, count := fromDomains(fields)
	switch {
	case len(domains) == 0:
		// RFC 7489 section 6.6.1: no usable From field, no author domain:
		// DMARC does not apply.
		reason := "no From field"
		if count > 0 {
			reason = "no domain in the From field"
		}
		v.DMARC = DMARCResult{Result: ResultNone, Disposition: DispositionNone, Reason: reason}
	default:
		// Section 6.6.1: with several author domains, each is checked and
		// the strictest failing policy applies.
		for i, d := range domains {
			r := EvaluateDMARC(ctx, c.Resolver, d, v.SPF.MailFrom, v.DKIM, c.Sample)
			if i == 0 || worse(r, v.DMARC) {
				v.DMARC = r
			}
		}
	}
	c.decide(v)
	v.AuthResults = c.authResults(v)
	return v, nil
}

// worse reports whether a is a result to act on before b: a failure
// with a stricter disposition, or a failure against a non-failure.
func worse(a, b DMARCResult) bool {
	if (a.Result == ResultFail) != (b.Result == ResultFail) {
		return a.Result == ResultFail
	}
	return a.Disposition.severity() > b.Disposition.severity()
}

// decide turns the DMARC disposition into the action (RFC 7489 section
// 6.7: the receiver applies the policy): reject refused with 550 5.7.1
// (RFC 3463 section 3.8, "delivery not authorized, message refused"),
// or quarantined when the site says so; quarantine delivered marked.
func (c *Checker) decide(v *Verdict) {
	switch v.DMARC.Disposition {
	case DispositionReject:
		if c.RejectAs == Quarantine {
			v.Action = Quarantine
			return
		}
		v.Action = Reject
		v.Reply = Reply{Code: 550, Status: "5.7.1",
			Text: "rejected by the DMARC policy of " + v.DMARC.Domain + ": the From domain is not authenticated"}
	case DispositionQuarantine:
		v.Action = Quarantine
	default:
		v.Action = Accept
	}
}

// authResults builds the Authentication-Results field (RFC 8601): SPF of
// both identities, each DKIM signature, DMARC.
func (c *Checker) authResults(v *Verdict) string {
	var results []resinfo
	// SPF: the MAIL FROM identity; the HELO identity when it has a
	// record (an address literal or a name without one says nothing).
	// Reasons only for results other than pass.
	spfReason := func(s SPFResult) string {
		if s.Result == ResultPass {
			return ""
		}
		return s.Reason
	}
	if s := v.SPF.MailFrom; s.Result != "" {
		results = append(results, resinfo{method: "spf", result: s.Result, reason: spfReason(s),
			props: [][2]string{{"smtp.mailfrom", s.Sender}}})
	}
	if s := v.SPF.HELO; s.Result != "" && s.Result != ResultNone {
		results = append(results, resinfo{method: "spf", result: s.Result, reason: spfReason(s),
			props: [][2]string{{"smtp.helo", strings.TrimPrefix(s.Sender, "postmaster@")}}})
	}
	if len(v.DKIM) == 0 {
		results = append(results, resinfo{method: "dkim", result: ResultNone})
	}
	for _, d := range v.DKIM {
		ri := resinfo{method: "dkim", result: d.Result, props: [][2]string{
			{"header.d", d.Domain}, {"header.i", d.Identifier}, {"header.s", d.Selector},
			{"header.a", d.Algorithm}, {"header.b", d.SignaturePrefix}}}
		if d.Result != ResultPass {
			ri.reason = d.Reason
		}
		results = append(results, ri)
	}
	ri := resinfo{method: "dmarc", result: v.DMARC.Result, props: [][2]string{{"header.from", v.DMARC.Domain}}}
	if v.DMARC.Policy != "" {
		// As OpenDMARC writes it: the policy and what was done.
		ri.comment = "p=" + string(v.DMARC.Policy) + " dis=" + strings.ToUpper(string(v.DMARC.Disposition))
	}
	if v.DMARC.Result != ResultPass && v.DMARC.Result != ResultNone {
		ri.reason = v.DMARC.Reason
	}
	results = append(results, ri)
	return formatAuthResults(c.AuthServID, results)
}
