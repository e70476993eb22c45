package directory

import "testing"

// TestSHACryptVectors: the test vectors of "Unix crypt using SHA-256 and
// SHA-512" (Drepper), and hashes made by Dovecot's doveadm pw.
func TestSHACryptVectors(t *testing.T) {
	for _, c := range []struct{ hash, pw string }{
		{"$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5", "Hello world!"},
		{"$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA", "Hello world!"},
		{"$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5", "This is just a test"},
		{"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1", "Hello world!"},
		{"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.", "Hello world!"},
		{"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
			"a very much longer text to encrypt.  This one even stretches over morethan one line."},
		// doveadm pw -s SHA512-CRYPT / SHA256-CRYPT (Dovecot 2.3).
		{"$6$9FWLEy7DRcmiu7Q9$g7ctmjZPomTFp.F2sRENscNaVzV890/m/Pvw.rT9rVsm5e8BPdV8GOei8908dtRBO.R9atxhBDHImufviR2Hz/", "sesame 42"},
		{"$5$y5h0UJMuGlP3oGL.$fWrxkMBvczhV3PMC3zT.gh/7eSjOeekBIj2sSD3hsm4", "sesame 42"},
	} {
		ok, err := verifySHACrypt(c.hash, c.pw)
		if err != nil || !ok {
			got, _, _ := shaCrypt(c.hash, c.pw)
			t.Errorf("verifySHACrypt(%s) = %v, %v (computed %s)", c.hash, ok, err, got)
		}
		if ok, err := verifySHACrypt(c.hash, c.pw+"x"); ok || err != nil {
			t.Errorf("verifySHACrypt(%s, wrong password) = %v, %v", c.hash, ok, err)
		}
	}
	for _, bad := range []string{"$5$", "$5$salt", "$5$rounds=x$salt$h", "$6$rounds=99999999$salt$h", "$7$salt$h"} {
		if _, err := verifySHACrypt(bad, "pw"); err == nil {
			t.Errorf("verifySHACrypt(%q) accepted a malformed hash", bad)
		}
	}
}
