package mailauth

import (
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// memKeys is a KeyStore in memory, for the tests of this package (the
// store implements the real one).
type memKeys struct {
	mu   sync.Mutex
	keys []Key
}

func (m *memKeys) DKIMKeys(_ context.Context, domain string) ([]Key, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Key
	for _, k := range m.keys {
		if k.Domain == domain {
			out = append(out, k)
		}
	}
	return out, nil
}

func (m *memKeys) AddDKIMKey(_ context.Context, k Key) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, x := range m.keys {
		if x.Domain == k.Domain && x.Selector == k.Selector {
			return ErrKeyExists
		}
	}
	m.keys = append(m.keys, k)
	return nil
}

func (m *memKeys) RetireDKIMKey(_ context.Context, domain, selector string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, x := range m.keys {
		if x.Domain == domain && x.Selector == selector {
			m.keys[i].Retired = at
			return nil
		}
	}
	return ErrKeyNotFound
}

// Test keys are made once: RSA generation is slow.
var (
	testKeysOnce sync.Once
	testRSA      Key
	testEd       Key
)

func testKeys(t testing.TB) (rsaKey, edKey Key) {
	t.Helper()
	testKeysOnce.Do(func() {
		now := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
		var err error
		if testRSA, err = GenerateKey("example.org", "20260315r", RSA, now); err != nil {
			panic(err)
		}
		if testEd, err = GenerateKey("example.org", "20260315e", Ed25519, now); err != nil {
			panic(err)
		}
	})
	return testRSA, testEd
}

func TestGenerateKey(t *testing.T) {
	rk, ek := testKeys(t)

	s, err := rk.Signer()
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := s.(*rsa.PrivateKey)
	if !ok || priv.N.BitLen() != 2048 {
		t.Fatalf("RSA key: %T, want a 2048-bit *rsa.PrivateKey", s)
	}
	txt, err := rk.TXT()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := strings.CutPrefix(txt, "v=DKIM1; k=rsa; p=")
	if !ok {
		t.Fatalf("RSA record %q", txt)
	}
	der, err := base64.StdEncoding.DecodeString(p)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil || !pub.(*rsa.PublicKey).Equal(&priv.PublicKey) {
		t.Fatalf("RSA record's p= is not the public key: %v", err)
	}

	s, err = ek.Signer()
	if err != nil {
		t.Fatal(err)
	}
	edPriv, ok := s.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("Ed25519 key: %T", s)
	}
	txt, err = ek.TXT()
	if err != nil {
		t.Fatal(err)
	}
	p, ok = strings.CutPrefix(txt, "v=DKIM1; k=ed25519; p=")
	if !ok {
		t.Fatalf("Ed25519 record %q", txt)
	}
	raw, err := base64.StdEncoding.DecodeString(p)
	// RFC 8463 section 4.2: the bare 32-octet key, not a
	// SubjectPublicKeyInfo.
	if err != nil || len(raw) != ed25519.PublicKeySize || !edPriv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(raw)) {
		t.Fatalf("Ed25519 record's p= is not the 32-octet public key (%d octets, %v)", len(raw), err)
	}

	if got := ek.RecordName(); got != "20260315e._domainkey.example.org." {
		t.Errorf("RecordName = %q", got)
	}
	if !ek.Active() {
		t.Error("a new key is not active")
	}

	// Domains are normalized: case, final dot, IDNA.
	k, err := GenerateKey("Bücher.Example.", "s1", Ed25519, time.Now())
	if err != nil || k.Domain != "xn--bcher-kva.example" {
		t.Errorf("domain = %q, %v", k.Domain, err)
	}
	if _, err := GenerateKey("example.org", "s1", "dsa", time.Now()); err == nil {
		t.Error("an unknown algorithm gave a key")
	}
	if _, err := GenerateKey("example.org", "bad_selector", Ed25519, time.Now()); err == nil {
		t.Error("a bad selector gave a key")
	}

	// A key whose PEM does not match its algorithm is refused.
	wrong := ek
	wrong.Algorithm = RSA
	if _, err := wrong.Signer(); err == nil {
		t.Error("an Ed25519 key claiming RSA gave a signer")
	}
	bad := ek
	bad.PrivateKey = []byte("not pem")
	if _, err := bad.TXT(); err == nil {
		t.Error("a key without PEM gave a record")
	}
}

func TestCheckSelector(t *testing.T) {
	for _, s := range []string{"s1", "20260315e", "a.b-c", "x"} {
		if err := CheckSelector(s); err != nil {
			t.Errorf("CheckSelector(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"", "-a", "a-", "a..b", "a_b", "a b", "é", strings.Repeat("a", 64)} {
		if err := CheckSelector(s); err == nil {
			t.Errorf("CheckSelector(%q) accepted", s)
		}
	}
}

func TestNewSelector(t *testing.T) {
	now := time.Date(2026, 3, 15, 23, 30, 0, 0, time.FixedZone("x", -3600))
	if got := NewSelector(Ed25519, now, nil); got != "20260316e" {
		t.Errorf("Ed25519 selector = %q, want the UTC date and e", got)
	}
	if got := NewSelector(RSA, now, nil); got != "20260316r" {
		t.Errorf("RSA selector = %q", got)
	}
	taken := []Key{{Selector: "20260316e"}, {Selector: "20260316E-2"}}
	if got := NewSelector(Ed25519, now, taken); got != "20260316e-3" {
		t.Errorf("selector next to taken ones = %q, want 20260316e-3", got)
	}
}

func TestKeygen(t *testing.T) {
	ctx := context.Background()
	store := &memKeys{}
	now := time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)
	keys, err := Keygen(ctx, store, "Example.ORG", "", nil, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].Algorithm != Ed25519 || keys[1].Algorithm != RSA {
		t.Fatalf("default keygen = %+v, want one Ed25519 and one RSA key", keys)
	}
	if keys[0].Selector != "20260315e" || keys[1].Selector != "20260315r" || keys[0].Domain != "example.org" {
		t.Errorf("selectors %q %q, domain %q", keys[0].Selector, keys[1].Selector, keys[0].Domain)
	}
	stored, _ := store.DKIMKeys(ctx, "example.org")
	if len(stored) != 2 {
		t.Fatalf("%d keys stored", len(stored))
	}

	// A rotation the same day gets new names; the old keys stay until
	// retired.
	more, err := Keygen(ctx, store, "example.org", "", []Algorithm{Ed25519}, now)
	if err != nil || len(more) != 1 || more[0].Selector != "20260315e-2" {
		t.Fatalf("second keygen = %+v, %v", more, err)
	}
	if err := store.RetireDKIMKey(ctx, "example.org", "20260315e", now); err != nil {
		t.Fatal(err)
	}

	// An explicit selector with one algorithm; with two it is an error;
	// a taken one is the store's ErrKeyExists.
	if k, err := Keygen(ctx, store, "example.org", "mail", []Algorithm{Ed25519}, now); err != nil || k[0].Selector != "mail" {
		t.Errorf("keygen with selector: %+v, %v", k, err)
	}
	if _, err := Keygen(ctx, store, "example.org", "other", nil, now); err == nil {
		t.Error("one selector for two algorithms accepted")
	}
	if _, err := Keygen(ctx, store, "example.org", "mail", []Algorithm{Ed25519}, now); !errors.Is(err, ErrKeyExists) {
		t.Errorf("taken selector: %v, want ErrKeyExists", err)
	}
}
