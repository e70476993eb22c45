package mailauth

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/postoffice-mail/postoffice/internal/bufpool"
	"github.com/postoffice-mail/postoffice/internal/resolver"
)

// Result values, as Authentication-Results spells them (RFC 8601 section
// 2.7; RFC 7208 section 8 for SPF's).
const (
	ResultNone      = "none"
	ResultPass      = "pass"
	ResultFail      = "fail"
	ResultSoftFail  = "softfail"
	ResultNeutral   = "neutral"
	ResultPolicy    = "policy"
	ResultTempError = "temperror"
	ResultPermError = "permerror"
)

// MaxSignatures is how many DKIM-Signature fields of a message are
// verified; the rest are ignored (RFC 6376 lets a verifier bound the
// signatures it tries, against denial of service), so that a message
// cannot make us do unbounded DNS lookups and hashing.
const MaxSignatures = 8

// DKIMResult is the outcome of one DKIM signature (RFC 6376 section 6).
type DKIMResult struct {
	Result     string // pass, fail, neutral, policy, temperror or permerror
	Domain     string // d=, the signing domain
	Selector   string // s=
	Algorithm  string // a=, e.g. "ed25519-sha256"
	Identifier string // i=, the agent or user identifier
	// SignaturePrefix is the start of b=, which tells apart two
	// signatures of one domain in Authentication-Results (header.b, RFC
	// 6008).
	SignaturePrefix string
	Reason          string // why it did not pass, for people
}

// signatureTags returns the tags of a DKIM-Signature field's value; a
// tag list that does not parse gives what parsed (the verifier says
// permerror for it anyway).
func signatureTags(v string) map[string]string {
	tags := map[string]string{}
	for _, part := range strings.Split(v, ";") {
		k, val, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		tags[strings.TrimSpace(k)] = strings.Join(strings.Fields(val), "")
	}
	return tags
}

// VerifyDKIM verifies the DKIM signatures of a message (at most
// MaxSignatures), asking r for the key records. It returns one result
// per signature in the order of the fields, none for an unsigned
// message. An error is only a failure to read msg.
func VerifyDKIM(ctx context.Context, r resolver.Resolver, msg io.Reader) ([]DKIMResult, error) {
	br := bufpool.Reader(msg)
	defer bufpool.Put(br) // readHeader copies what it keeps
	consumed, fields, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	var sigs []map[string]string
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			sigs = append(sigs, signatureTags(f.value()))
		}
	}
	if len(sigs) == 0 {
		return nil, nil
	}
	if len(sigs) > MaxSignatures {
		sigs = sigs[:MaxSignatures]
	}
	rest := &readErr{r: br}
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(consumed), rest), &dkim.VerifyOptions{
		LookupTXT: func(name string) ([]string, error) {
			return r.LookupTXT(ctx, name)
		},
		MaxVerifications: MaxSignatures,
	})
	if rest.err != nil {
		return nil, rest.err
	}
	if err != nil && !errors.Is(err, dkim.ErrTooManySignatures) {
		// Not a read error: a message the library cannot take apart
		// (e.g. no end to its header section). Every signature is
		// unusable: permerror (RFC 6376 section 6.1.1).
		results := make([]DKIMResult, len(sigs))
		for i, t := range sigs {
			results[i] = tagResult(t)
			results[i].Result = ResultPermError
			results[i].Reason = strings.TrimPrefix(err.Error(), "dkim: ")
		}
		return results, nil
	}
	results := make([]DKIMResult, 0, len(verifs))
	for i, v := range verifs {
		var res DKIMResult
		if i < len(sigs) {
			res = tagResult(sigs[i])
		}
		if v.Domain != "" {
			res.Domain = strings.ToLower(v.Domain)
		}
		if v.Identifier != "" {
			res.Identifier = v.Identifier
		}
		switch {
		case v.Err == nil:
			res.Result = ResultPass
		case dkim.IsTempFail(v.Err):
			res.Result = ResultTempError
		case dkim.IsPermFail(v.Err):
			res.Result = ResultPermError
		default:
			// A signature or body hash that does not verify (RFC 8601
			// section 2.7.1: "fail").
			res.Result = ResultFail
		}
		if v.Err != nil {
			res.Reason = strings.TrimPrefix(v.Err.Error(), "dkim: ")
		}
		results = append(results, res)
	}
	return results, nil
}

// tagResult fills the fields of a result that come from the signature's
// tags.
func tagResult(t map[string]string) DKIMResult {
	res := DKIMResult{
		Domain:          strings.ToLower(t["d"]),
		Selector:        t["s"],
		Algorithm:       t["a"],
		Identifier:      t["i"],
		SignaturePrefix: t["b"],
	}
	if len(res.SignaturePrefix) > 12 {
		res.SignaturePrefix = res.SignaturePrefix[:12]
	}
	return res
}

// readErr remembers the first error other than io.EOF of reading r.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}
