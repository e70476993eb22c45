package testlib

import (
	"testing"
)

// TestRspamdPortTaken: the first address picked for rspamd's milter is
// held by another server (an SMTP one, which cannot pass for a milter).
// rspamd cannot bind it and exits; StartRspamd starts it again on
// another port, where it answers the milter negotiation.
func TestRspamdPortTaken(t *testing.T) {
	l := otherServer(t, "220 other.test ESMTP ready")
	taken := l.Addr().String()
	picks := 0
	pick := func(t testing.TB) string {
		picks++
		if picks == 1 {
			return taken
		}
		return freePort(t)
	}
	dns := StartDNS(t)
	r := startRspamdPicking(t, pick, dns.Addr)
	if picks != 2 || r.Milter == "tcp:"+taken {
		t.Fatalf("milter %s after %d picks; the taken address was %s", r.Milter, picks, taken)
	}
	if !milterAnswers(r.Milter[len("tcp:"):]) {
		t.Errorf("rspamd does not answer on %s; log:\n%s", r.Milter, r.Log())
	}
}
