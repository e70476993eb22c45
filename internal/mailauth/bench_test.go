package mailauth

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/resolver"
)

// benchMessage is a plain message of about 10 KiB, the size of a typical
// mail without attachments.
func benchMessage() string {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: benchmark\r\n" +
		"Date: Sun, 15 Mar 2026 10:00:00 +0000\r\nMessage-ID: <b@example.org>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n\r\n")
	for i := 0; b.Len() < 10*1024; i++ {
		fmt.Fprintf(&b, "Line %d of the benchmark message, some ordinary text of ordinary length.\r\n", i)
	}
	return b.String()
}

func benchSign(b *testing.B, keys ...Key) {
	msg := benchMessage()
	s := &Signer{Keys: &memKeys{keys: keys}}
	ctx := context.Background()
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		sig, err := s.Sign(ctx, strings.NewReader(msg))
		if err != nil || sig == "" {
			b.Fatal(sig, err)
		}
	}
}

// The cost of signing one message, per key type and for the default
// dual signature.
func BenchmarkSignEd25519(b *testing.B) { _, ek := testKeys(b); benchSign(b, ek) }
func BenchmarkSignRSA(b *testing.B)     { rk, _ := testKeys(b); benchSign(b, rk) }
func BenchmarkSignBoth(b *testing.B)    { rk, ek := testKeys(b); benchSign(b, rk, ek) }

// The cost of the checks of one incoming message at the end of the data
// (SPF of both identities, two DKIM signatures, DMARC), with a DNS server
// on loopback: the DNS round trips are included, as a local caching
// resolver would answer them.
func BenchmarkCheck(b *testing.B) {
	d := benchDNS(b)
	rk, ek := testKeys(b)
	msg := (&Signer{Keys: &memKeys{keys: []Key{rk, ek}}})
	sig, err := msg.Sign(context.Background(), strings.NewReader(benchMessage()))
	if err != nil {
		b.Fatal(err)
	}
	signed := sig + benchMessage()
	c := &Checker{Resolver: resolver.Server(d, 0), AuthServID: "mx.postoffice.test"}
	env := Envelope{goodIP, "mx.example.org", "alice@example.org"}
	ctx := context.Background()
	b.SetBytes(int64(len(signed)))
	b.ReportAllocs()
	for b.Loop() {
		v, err := c.Check(ctx, env, nil, strings.NewReader(signed))
		if err != nil || v.DMARC.Result != ResultPass {
			b.Fatal(v, err)
		}
	}
}

// BenchmarkVerifyDKIM is the DKIM part of BenchmarkCheck alone.
func BenchmarkVerifyDKIM(b *testing.B) {
	d := benchDNS(b)
	rk, ek := testKeys(b)
	sig, err := (&Signer{Keys: &memKeys{keys: []Key{rk, ek}}}).Sign(context.Background(), strings.NewReader(benchMessage()))
	if err != nil {
		b.Fatal(err)
	}
	signed := sig + benchMessage()
	r := resolver.Server(d, 0)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		res, err := VerifyDKIM(ctx, r, strings.NewReader(signed))
		if err != nil || len(res) != 2 || res[0].Result != ResultPass {
			b.Fatal(res, err)
		}
	}
}

// BenchmarkSPF is the SPF part alone: both identities.
func BenchmarkSPF(b *testing.B) {
	d := benchDNS(b)
	c := &Checker{Resolver: resolver.Server(d, 0)}
	env := Envelope{goodIP, "mx.example.org", "alice@example.org"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if r := c.SPF(ctx, env); r.MailFrom.Result != ResultPass {
			b.Fatal(r)
		}
	}
}

func benchDNS(b *testing.B) string { return authDNS(b).Addr }
