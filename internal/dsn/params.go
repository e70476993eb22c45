package dsn

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The DSN parameters a client gives with a message (RFC 3461 section 4)
// travel with it from the door to the router, the queue and the next
// hop: RET and ENVID with the message, NOTIFY and ORCPT with each
// recipient.

// RET values (RFC 3461 section 4.3): return the full message or only
// its header section in a failure notification.
const (
	RetFull = "FULL"
	RetHdrs = "HDRS"
)

// NOTIFY values (RFC 3461 section 4.1).
const (
	NotifyNever   = "NEVER"
	NotifySuccess = "SUCCESS"
	NotifyFailure = "FAILURE"
	NotifyDelay   = "DELAY"
)

// MaxEnvIDLen bounds ENVID (RFC 3461 section 4.4: at most 100
// characters).
const MaxEnvIDLen = 100

// MaxReturned bounds the message a notification returns whole (RET=FULL,
// RFC 3461 section 4.3); a larger one comes back as its header section
// only, as RET=HDRS would have it, which the notification says.
// Postfix's bounce_size_limit is 50,000 octets and truncates; here a
// message comes back whole or not at all.
const MaxReturned = 1 << 20

// ReturnsFull reports whether a notification with action about a
// message of size octets sent with ret returns the whole message: RET=FULL
// asked for it, it is within MaxReturned, and the notification reports a
// failure (RFC 3461 section 4.3: RET concerns "failed" DSNs; the others
// return the header section). Without RET (section 4.3 leaves it to the
// MTA) the header section is enough.
func ReturnsFull(ret string, size int64, action string) bool {
	return ret == RetFull && size <= MaxReturned && action == Failed
}

// RcptParams are one recipient's DSN parameters.
type RcptParams struct {
	// Notify is nil when NOTIFY was absent, ["NEVER"], or some of
	// SUCCESS, FAILURE and DELAY (RFC 3461 section 4.1), upper case.
	Notify []string
	// ORcptType and ORcpt are the original recipient (RFC 3461 section
	// 4.2): its address type ("rfc822", or "utf-8" of RFC 6533) and the
	// address, xtext-decoded; both "" when absent.
	ORcptType string
	ORcpt     string
}

// Wants reports whether the recipient is to be told of event (one of
// NotifySuccess, NotifyFailure, NotifyDelay). RFC 3461 section 4.1: NEVER
// asks for nothing, a list for what it names; without NOTIFY the MTA
// may report failures, or failures and delays: failures and delays here,
// as Postfix does.
func (p RcptParams) Wants(event string) bool {
	if p.Notify == nil {
		return event == NotifyFailure || event == NotifyDelay
	}
	for _, v := range p.Notify {
		if strings.EqualFold(v, event) {
			return true
		}
	}
	return false
}

// NotifyString is NOTIFY as written, "SUCCESS,DELAY"; "" when absent.
func (p RcptParams) NotifyString() string { return strings.Join(p.Notify, ",") }

// ParseNotify reads NotifyString's form back: "" is nil.
func ParseNotify(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Check reports what is wrong with the parameters: a NOTIFY value that
// is not one of RFC 3461 section 4.1's, NEVER with another value, a
// value twice; an original recipient without a type or with control
// characters or invalid UTF-8.
func (p RcptParams) Check() error {
	if p.Notify != nil {
		if len(p.Notify) == 0 {
			return errors.New("NOTIFY without a value")
		}
		seen := map[string]bool{}
		for _, v := range p.Notify {
			switch v {
			case NotifyNever, NotifySuccess, NotifyFailure, NotifyDelay:
			default:
				return fmt.Errorf("NOTIFY value %q is not one of NEVER, SUCCESS, FAILURE, DELAY", v)
			}
			if seen[v] {
				return fmt.Errorf("NOTIFY value %s given twice", v)
			}
			seen[v] = true
		}
		if seen[NotifyNever] && len(p.Notify) > 1 {
			return errors.New("NOTIFY=NEVER with another value")
		}
	}
	if (p.ORcpt == "") != (p.ORcptType == "") {
		return errors.New("ORCPT needs both an address type and an address")
	}
	for _, s := range []string{p.ORcptType, p.ORcpt} {
		if err := checkText(s); err != nil {
			return fmt.Errorf("ORCPT: %w", err)
		}
	}
	return nil
}

// CheckRet reports a RET that is neither FULL nor HDRS ("" is absent).
func CheckRet(ret string) error {
	if ret != "" && ret != RetFull && ret != RetHdrs {
		return fmt.Errorf("RET %q is neither FULL nor HDRS", ret)
	}
	return nil
}

// CheckEnvID reports an ENVID that is not printable ASCII of at most
// MaxEnvIDLen characters (RFC 3461 section 4.4; "" is absent).
func CheckEnvID(id string) error {
	if len(id) > MaxEnvIDLen {
		return fmt.Errorf("ENVID longer than %d characters", MaxEnvIDLen)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] > 0x7e {
			return fmt.Errorf("ENVID has the octet %#x", id[i])
		}
	}
	return nil
}

func checkText(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("control character %q", r)
		}
	}
	return nil
}
