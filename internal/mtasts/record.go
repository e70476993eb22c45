package mtasts

import (
	"errors"
	"fmt"
	"strings"
)

// RecordName is the owner of a domain's MTA-STS TXT record (RFC 8461
// section 3.1), e.g. _mta-sts.example.com.
func RecordName(domain string) string {
	return "_mta-sts." + strings.TrimSuffix(domain, ".")
}

// PolicyURL is where a domain's policy is fetched (RFC 8461 section 3.2).
func PolicyURL(domain string) string {
	return "https://mta-sts." + strings.TrimSuffix(domain, ".") + WellKnownPath
}

// WellKnownPath is the path of the policy on the policy host.
const WellKnownPath = "/.well-known/mta-sts.txt"

// Record is the TXT record of RFC 8461 section 3.1.
type Record struct {
	ID         string // 1 to 32 letters and digits
	Extensions []Extension
}

// String is the record's text: "v=STSv1; id=ID".
func (r Record) String() string {
	s := "v=STSv1; id=" + r.ID
	for _, e := range r.Extensions {
		s += "; " + e.Name + "=" + e.Value
	}
	return s
}

// ParseRecord parses a TXT record by the ABNF of RFC 8461 section 3.1:
// "v=STSv1" first, then fields separated by ";" with optional spaces
// around it, an optional ";" at the end; id required (the first counts);
// unknown fields kept as Extensions.
func ParseRecord(txt string) (Record, error) {
	var r Record
	rest, ok := strings.CutPrefix(txt, "v=STSv1")
	if !ok {
		return r, errors.New("mta-sts record: does not begin with v=STSv1")
	}
	fields := strings.Split(rest, ";")
	if strings.Trim(fields[0], " \t") != "" {
		return r, fmt.Errorf("mta-sts record: %q after v=STSv1", fields[0])
	}
	fields = fields[1:]
	if len(fields) > 0 && strings.Trim(fields[len(fields)-1], " \t") == "" {
		fields = fields[:len(fields)-1] // optional final delimiter
	}
	seenID := false
	for _, f := range fields {
		f = strings.Trim(f, " \t")
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validFieldName(name) || value == "" {
			return r, fmt.Errorf("mta-sts record: field %q", f)
		}
		if name == "id" {
			if len(value) > 32 || !alnum(value) {
				return r, fmt.Errorf("mta-sts record: id %q: 1 to 32 letters and digits", value)
			}
			if !seenID {
				r.ID = value
			}
			seenID = true
			continue
		}
		for _, c := range value { // sts-ext-value: VCHAR except ";" and "="
			if c < 0x21 || c > 0x7e || c == '=' {
				return r, fmt.Errorf("mta-sts record: value of %s: %q", name, value)
			}
		}
		r.Extensions = append(r.Extensions, Extension{name, value})
	}
	if !seenID {
		return r, errors.New("mta-sts record: no id")
	}
	return r, nil
}

func alnum(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}

// ErrNoRecord is returned by SelectRecord when no record announces a
// policy.
var ErrNoRecord = errors.New("mta-sts: no v=STSv1 record")

// SelectRecord picks the policy announcement out of the TXT strings of
// _mta-sts.DOMAIN (RFC 8461 section 3.1): records that do not begin with
// "v=STSv1;" are discarded; exactly one must remain, and be valid.
func SelectRecord(txts []string) (Record, error) {
	var sts []string
	for _, t := range txts {
		if strings.HasPrefix(t, "v=STSv1;") {
			sts = append(sts, t)
		}
	}
	switch len(sts) {
	case 0:
		return Record{}, ErrNoRecord
	case 1:
		return ParseRecord(sts[0])
	}
	return Record{}, fmt.Errorf("mta-sts: %d v=STSv1 records", len(sts))
}
