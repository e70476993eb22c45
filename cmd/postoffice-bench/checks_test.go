package main

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

// TestChecksZone: the zone of compare --checks answers as an
// authoritative server (negative answers with the SOA), and a message
// signedBy sender.example verifies against it.
func TestChecksZone(t *testing.T) {
	e := &checksEnv{domain: "bench.test"}
	var err error
	if e.senderKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	if e.localKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	rrs, err := e.zone()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: zoneHandler(rrs)}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	ask := func(name string, qtype uint16) *dns.Msg {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		r, _, err := new(dns.Client).Exchange(m, pc.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := ask("_dmarc.sender.example", dns.TypeTXT); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 ||
		strings.Join(r.Answer[0].(*dns.TXT).Txt, "") != "v=DMARC1; p=reject" {
		t.Errorf("DMARC record: %v", r)
	}
	for _, c := range []struct {
		name  string
		qtype uint16
		rcode int
	}{{"nothing.sender.example", dns.TypeTXT, dns.RcodeNameError}, {"mail.sender.example", dns.TypeMX, dns.RcodeSuccess}} {
		r := ask(c.name, c.qtype)
		if r.Rcode != c.rcode || len(r.Answer) != 0 || len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA ||
			r.Ns[0].Header().Name != "sender.example." {
			t.Errorf("%s %s: %v; want rcode %d with sender.example's SOA", c.name, dns.TypeToString[c.qtype], r, c.rcode)
		}
	}

	signed, err := e.signedBy(generateMessageFrom("<sender@sender.example>", "user1@bench.test", 1, 4096))
	if err != nil {
		t.Fatal(err)
	}
	lookup := func(domain string) ([]string, error) {
		r := ask(domain, dns.TypeTXT)
		var out []string
		for _, rr := range r.Answer {
			out = append(out, strings.Join(rr.(*dns.TXT).Txt, ""))
		}
		return out, nil
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "sender.example" {
		t.Fatalf("verification of a signed message: %+v, %v", vs, err)
	}
}
