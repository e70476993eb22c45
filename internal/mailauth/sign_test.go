package mailauth

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// txtRR writes a TXT record in presentation format, the value cut into
// character-strings of at most 255 octets (RFC 1035 section 3.3.14).
func txtRR(name, value string) string {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, `"`+value[:255]+`"`)
		value = value[255:]
	}
	parts = append(parts, `"`+value+`"`)
	return name + " 60 IN TXT " + strings.Join(parts, " ")
}

// keyDNS starts a DNS server with the key records of keys.
func keyDNS(t testing.TB, keys ...Key) *testlib.DNS {
	t.Helper()
	d := testlib.StartDNS(t)
	for _, k := range keys {
		txt, err := k.TXT()
		if err != nil {
			t.Fatal(err)
		}
		d.Add(t, txtRR(k.RecordName(), txt))
	}
	return d
}

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: bob@example.net\r\n" +
	"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" +
	"Date: Sun, 15 Mar 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"Received: from somewhere\r\n" +
	"\tby relay; Sun, 15 Mar 2026 10:00:00 +0000\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Hello Bob,\r\n" +
	"  with   some  spacing   \r\n" +
	"\r\n" +
	"\r\n"

func signedWith(t *testing.T, keys []Key, msg string) string {
	t.Helper()
	s := &Signer{Keys: &memKeys{keys: keys}}
	sig, err := s.Sign(context.Background(), strings.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	return sig + msg
}

func TestHeaderKeys(t *testing.T) {
	_, fields, err := readHeader(bufioReader(testMessage))
	if err != nil {
		t.Fatal(err)
	}
	got := headerKeys(fields)
	count := func(name string) int {
		n := 0
		for _, k := range got {
			if k == name {
				n++
			}
		}
		return n
	}
	for name, want := range map[string]int{
		"From": 2, "To": 2, "Subject": 2, "Reply-To": 1, "Cc": 1, // oversigned, present or not
		"Date": 2, "Message-ID": 2, "MIME-Version": 2, "Content-Type": 2, // oversigned when present
		"Sender": 0, "References": 0, "List-Id": 0, // absent
		"Received": 0, // trace fields are not signed
	} {
		if n := count(name); n != want {
			t.Errorf("h= has %s %d times, want %d (h=%s)", name, n, want, strings.Join(got, ":"))
		}
	}
}

func TestSignVerify(t *testing.T) {
	rk, ek := testKeys(t)
	d := keyDNS(t, rk, ek)
	r := resolver.Server(d.Addr, 0)
	ctx := context.Background()

	signed := signedWith(t, []Key{rk, ek}, testMessage)
	if n := strings.Count(signed, "DKIM-Signature:"); n != 2 {
		t.Fatalf("%d signatures, want 2 (dual signing)", n)
	}
	for _, want := range []string{"a=rsa-sha256", "a=ed25519-sha256", "c=relaxed/relaxed", "d=example.org", "s=20260315r", "s=20260315e"} {
		if !strings.Contains(strings.ReplaceAll(signed, "\r\n ", ""), want) {
			t.Errorf("signatures lack %q:\n%s", want, signed)
		}
	}
	res, err := VerifyDKIM(ctx, r, strings.NewReader(signed))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results", len(res))
	}
	for _, v := range res {
		if v.Result != ResultPass || v.Domain != "example.org" || v.SignaturePrefix == "" {
			t.Errorf("verification: %+v", v)
		}
	}
	algs := []string{res[0].Algorithm, res[1].Algorithm}
	slices.Sort(algs)
	if !slices.Equal(algs, []string{"ed25519-sha256", "rsa-sha256"}) {
		t.Errorf("algorithms %q", algs)
	}

	// Relaxed canonicalization: refolding a header field and changing
	// white space in the body keeps the signatures good (RFC 6376
	// section 3.4.2, 3.4.4).
	refolded := strings.Replace(signed, "To: bob@example.net", "To:\r\n   bob@example.net", 1)
	refolded = strings.Replace(refolded, "  with   some  spacing   ", " with some spacing", 1)
	if res, _ := VerifyDKIM(ctx, r, strings.NewReader(refolded)); len(res) != 2 || res[0].Result != ResultPass || res[1].Result != ResultPass {
		t.Errorf("after refolding: %+v", res)
	}

	// What must break them: a changed body, a changed subject, and an
	// added Reply-To or second From (oversigning).
	for name, bad := range map[string]string{
		"body":     strings.Replace(signed, "Hello Bob", "Hello Eve", 1),
		"subject":  strings.Replace(signed, "Subject: =?utf-8", "Subject: =?UTF-8", 1),
		"reply-to": strings.Replace(signed, "Received:", "Reply-To: eve@evil.test\r\nReceived:", 1),
		"2nd from": strings.Replace(signed, "Received:", "From: eve@evil.test\r\nReceived:", 1),
		"2nd subj": strings.Replace(signed, "\r\n\r\nHello", "\r\nSubject: pay now\r\n\r\nHello", 1),
	} {
		res, err := VerifyDKIM(ctx, r, strings.NewReader(bad))
		if err != nil || len(res) != 2 {
			t.Fatalf("%s: %+v %v", name, res, err)
		}
		for _, v := range res {
			if v.Result != ResultFail {
				t.Errorf("%s: %s signature %s, want fail", name, v.Algorithm, v.Result)
			}
		}
	}

	// A key record that is gone: permerror; a DNS server failure:
	// temperror (RFC 6376 section 6.1.2).
	d.ServFail("_domainkey.example.org.")
	res, _ = VerifyDKIM(ctx, r, strings.NewReader(signed))
	for _, v := range res {
		if v.Result != ResultTempError {
			t.Errorf("SERVFAIL for the key: %+v, want temperror", v)
		}
	}
	d2 := keyDNS(t, rk)
	res, _ = VerifyDKIM(ctx, resolver.Server(d2.Addr, 0), strings.NewReader(signed))
	got := map[string]string{}
	for _, v := range res {
		got[v.Selector] = v.Result
	}
	if got["20260315r"] != ResultPass || got["20260315e"] != ResultPermError {
		t.Errorf("one key record missing: %v, want rsa pass, ed25519 permerror", got)
	}
}

// The signatures verify with an independent verifier, python3-dkim,
// which fetches the key records that TXT gave from a DNS server.
func TestSignVerifiedByDKIMPy(t *testing.T) {
	rk, ek := testKeys(t)
	d := keyDNS(t, rk, ek)
	signed := signedWith(t, []Key{rk, ek}, testMessage)
	for i := range 2 {
		if ok, out := testlib.DKIMVerify(t, d.Addr, []byte(signed), i); !ok {
			t.Errorf("dkimverify of signature %d: %s\n%s", i, out, signed)
		}
	}
	// And it fails what it must: the verifier is really checking.
	tampered := strings.Replace(signed, "Hello Bob", "Hello Eve", 1)
	for i := range 2 {
		if ok, out := testlib.DKIMVerify(t, d.Addr, []byte(tampered), i); ok {
			t.Errorf("dkimverify passed a tampered body, signature %d: %s", i, out)
		}
	}
}

// A large message is signed streaming (the body never held whole) and
// verifies.
func TestSignLargeMessage(t *testing.T) {
	rk, ek := testKeys(t)
	d := keyDNS(t, rk, ek)
	var body bytes.Buffer
	for i := 0; body.Len() < 3<<20; i++ {
		fmt.Fprintf(&body, "line %d of a big message, with some text to fill it up\r\n", i)
	}
	head := "From: alice@example.org\r\nTo: bob@example.net\r\nSubject: big\r\n\r\n"
	s := &Signer{Keys: &memKeys{keys: []Key{rk, ek}}}
	// One byte at a time from the source: the signer must not care.
	sig, err := s.Sign(context.Background(), iotest.HalfReader(io.MultiReader(strings.NewReader(head), bytes.NewReader(body.Bytes()))))
	if err != nil {
		t.Fatal(err)
	}
	msg := sig + head + body.String()
	res, err := VerifyDKIM(context.Background(), resolver.Server(d.Addr, 0), strings.NewReader(msg))
	if err != nil || len(res) != 2 || res[0].Result != ResultPass || res[1].Result != ResultPass {
		t.Fatalf("big message: %+v %v", res, err)
	}
	if ok, out := testlib.DKIMVerify(t, d.Addr, []byte(msg), 1); !ok {
		t.Errorf("dkimverify of a 3 MiB message: %s", out)
	}
}

func TestSignChoosesKeys(t *testing.T) {
	rk, ek := testKeys(t)
	ctx := context.Background()
	retired := ek
	retired.Retired = time.Now()
	other := ek
	other.Domain = "other.test"

	for _, tc := range []struct {
		name string
		keys []Key
		msg  string
		want []string // selectors signed with
	}{
		{"active only", []Key{rk, retired}, testMessage, []string{"20260315r"}},
		{"no key of the From domain", []Key{other}, testMessage, nil},
		{"all retired", []Key{retired}, testMessage, nil},
		{"no From", []Key{rk}, "To: x@example.org\r\n\r\nbody\r\n", nil},
		{"From domain in other case", []Key{ek}, "From: A <A@EXAMPLE.ORG>\r\n\r\nbody\r\n", []string{"20260315e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Signer{Keys: &memKeys{keys: tc.keys}}
			sig, err := s.Sign(ctx, strings.NewReader(tc.msg))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range strings.Split(sig, "DKIM-Signature:")[1:] {
				tags := signatureTags(strings.ReplaceAll(f, "\r\n", ""))
				got = append(got, tags["s"])
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("signed with %q, want %q", got, tc.want)
			}
		})
	}

	// The store's failure is the signer's.
	s := &Signer{Keys: failingKeys{}}
	if _, err := s.Sign(ctx, strings.NewReader(testMessage)); !errors.Is(err, errStoreDown) {
		t.Errorf("store failure: %v", err)
	}
	// A header section over the limit is refused, not read on forever.
	huge := "From: a@example.org\r\nX: " + strings.Repeat("y", MaxHeaderBytes) + "\r\n\r\nbody\r\n"
	if _, err := (&Signer{Keys: &memKeys{keys: []Key{ek}}}).Sign(ctx, strings.NewReader(huge)); !errors.Is(err, ErrHeaderTooLong) {
		t.Errorf("huge header: %v", err)
	}
}

var errStoreDown = errors.New("store down")

type failingKeys struct{ *memKeys }

func (failingKeys) DKIMKeys(context.Context, string) ([]Key, error) { return nil, errStoreDown }

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
