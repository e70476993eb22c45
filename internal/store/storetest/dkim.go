package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// dkimKey makes an Ed25519 key (quick to make) of domain under selector.
func (e *env) dkimKey(domain, selector string, created time.Time) mailauth.Key {
	e.t.Helper()
	k, err := mailauth.GenerateKey(domain, selector, mailauth.Ed25519, created)
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func sameKey(a, b mailauth.Key) bool {
	return a.Domain == b.Domain && a.Selector == b.Selector && a.Algorithm == b.Algorithm &&
		string(a.PrivateKey) == string(b.PrivateKey) && a.Created.Equal(b.Created) && a.Retired.Equal(b.Retired)
}

// testDKIMKeys: the key store (mailauth.KeyStore) keeps every key with
// its fields, oldest first, per domain whatever the case it is asked in;
// a selector is taken once per domain, retired or not; retirement is
// kept, and everything survives a restart.
func testDKIMKeys(t *testing.T, e *env) {
	if ks, err := e.s.DKIMKeys(e.ctx, "example.com"); err != nil || len(ks) != 0 {
		t.Fatalf("DKIMKeys of a domain without keys = %v, %v; want none", ks, err)
	}
	t0 := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	older := e.dkimKey("example.com", "b2026", t0)
	newer := e.dkimKey("example.com", "a2026", t0.Add(time.Hour))
	other := e.dkimKey("example.org", "b2026", t0)
	// Added newest first: the store orders by creation.
	for _, k := range []mailauth.Key{newer, older, other} {
		e.must(e.s.AddDKIMKey(e.ctx, k), "AddDKIMKey "+k.Selector+"."+k.Domain)
	}
	rsa, err := mailauth.GenerateKey("example.com", "r2026", mailauth.RSA, t0.Add(2*time.Hour+500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	e.must(e.s.AddDKIMKey(e.ctx, rsa), "AddDKIMKey rsa")
	rsa.Created = rsa.Created.Truncate(time.Second) // stored in whole seconds

	check := func(when string, want ...mailauth.Key) {
		t.Helper()
		got, err := e.s.DKIMKeys(e.ctx, "Example.COM")
		if err != nil {
			t.Fatalf("%s: DKIMKeys: %v", when, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: DKIMKeys = %d keys, want %d", when, len(got), len(want))
		}
		for i := range want {
			if !sameKey(got[i], want[i]) {
				t.Errorf("%s: key %d = %s/%s %s created %v retired %v; want %s/%s %s created %v retired %v", when, i,
					got[i].Domain, got[i].Selector, got[i].Algorithm, got[i].Created, got[i].Retired,
					want[i].Domain, want[i].Selector, want[i].Algorithm, want[i].Created, want[i].Retired)
			}
			if _, err := got[i].Signer(); err != nil {
				t.Errorf("%s: key %d does not parse: %v", when, i, err)
			}
		}
	}
	check("after adding", older, newer, rsa)

	// A selector is taken once per domain, whatever its case.
	again := e.dkimKey("example.com", "B2026", t0)
	if err := e.s.AddDKIMKey(e.ctx, again); !errors.Is(err, mailauth.ErrKeyExists) {
		t.Errorf("AddDKIMKey of a taken selector: %v, want ErrKeyExists", err)
	}
	bad := older
	bad.Selector = "no_underscore"
	if err := e.s.AddDKIMKey(e.ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("AddDKIMKey with a bad selector: %v, want ErrInvalid", err)
	}
	bad = older
	bad.Selector, bad.PrivateKey = "c2026", []byte("not a key")
	if err := e.s.AddDKIMKey(e.ctx, bad); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("AddDKIMKey with a broken private key: %v, want ErrInvalid", err)
	}

	// Retiring: the key stays, marked; a second retirement keeps the first
	// time; an unknown key is not found.
	at := t0.Add(24 * time.Hour)
	e.must(e.s.RetireDKIMKey(e.ctx, "EXAMPLE.com", "B2026", at), "RetireDKIMKey")
	e.must(e.s.RetireDKIMKey(e.ctx, "example.com", "b2026", at.Add(time.Hour)), "RetireDKIMKey again")
	if err := e.s.RetireDKIMKey(e.ctx, "example.com", "nosuch", at); !errors.Is(err, mailauth.ErrKeyNotFound) {
		t.Errorf("RetireDKIMKey of an unknown selector: %v, want ErrKeyNotFound", err)
	}
	if err := e.s.RetireDKIMKey(e.ctx, "example.net", "b2026", at); !errors.Is(err, mailauth.ErrKeyNotFound) {
		t.Errorf("RetireDKIMKey of another domain's selector: %v, want ErrKeyNotFound", err)
	}
	retired := older
	retired.Retired = at
	check("after retiring", retired, newer, rsa)
	if got, err := e.s.DKIMKeys(e.ctx, "example.org"); err != nil || len(got) != 1 || !sameKey(got[0], other) {
		t.Errorf("the other domain's keys = %v, %v; want its one key, active", got, err)
	}

	e.reopen()
	check("after a restart", retired, newer, rsa)
}
