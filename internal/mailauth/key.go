package mailauth

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Algorithm is a DKIM key type, named as the k= tag of the key record
// names it (RFC 6376 section 3.6.1, RFC 8463 section 4.2).
type Algorithm string

// The key types signed with. Both sign with SHA-256 (rsa-sha256,
// ed25519-sha256); rsa-sha1 is never used (RFC 8301 section 3.1).
const (
	RSA     Algorithm = "rsa"
	Ed25519 Algorithm = "ed25519"
)

// RSABits is the size of generated RSA keys: RFC 8301 section 3.2 asks
// signers for at least 1024 bits and recommends 2048.
const RSABits = 2048

// DefaultAlgorithms are the keys a domain gets when none is named: one of
// each, so that every message carries two signatures: not every verifier
// knows Ed25519 (RFC 8463) yet, every one knows RSA.
var DefaultAlgorithms = []Algorithm{Ed25519, RSA}

// Key is one DKIM signing key of a domain. The key record in DNS is at
// Selector._domainkey.Domain (RFC 6376 section 3.6.2.1).
type Key struct {
	Domain     string    // the signing domain (d=), lower case, A-labels
	Selector   string    // s=
	Algorithm  Algorithm // the key type
	PrivateKey []byte    // PEM, PKCS #8 ("PRIVATE KEY")
	Created    time.Time
	Retired    time.Time // zero while the key signs
}

// Active reports whether the key signs: it is not retired.
func (k Key) Active() bool { return k.Retired.IsZero() }

// RetiredKeyPublished is how long the record of a retired key stays
// published by default: a message signed just before the key retired may
// wait in queues (ours and the next hops', RFC 5321 section 4.5.4.1
// suggests giving up after 4 to 5 days) and be verified when it arrives.
// After that the record is removed (or revoked with an empty p=, RFC
// 6376 section 3.6.1), so that the key cannot vouch for anything new.
const RetiredKeyPublished = 7 * 24 * time.Hour

// Published reports whether the key's record belongs in DNS at now: the
// key signs, or retired less than keep ago.
func (k Key) Published(now time.Time, keep time.Duration) bool {
	return k.Active() || now.Before(k.Retired.Add(keep))
}

// RecordName is the DNS name of the key record, fully qualified.
func (k Key) RecordName() string {
	return k.Selector + "._domainkey." + k.Domain + "."
}

// Signer returns the private key.
func (k Key) Signer() (crypto.Signer, error) {
	block, _ := pem.Decode(k.PrivateKey)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("dkim key %s: no PKCS #8 PEM block", k.Selector)
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dkim key %s: %v", k.Selector, err)
	}
	switch p := priv.(type) {
	case *rsa.PrivateKey:
		if k.Algorithm != RSA {
			return nil, fmt.Errorf("dkim key %s: an RSA key, not %s", k.Selector, k.Algorithm)
		}
		if p.N.BitLen() < 1024 {
			return nil, fmt.Errorf("dkim key %s: RSA key of %d bits, under the 1024 of RFC 8301 section 3.2", k.Selector, p.N.BitLen())
		}
		return p, nil
	case ed25519.PrivateKey:
		if k.Algorithm != Ed25519 {
			return nil, fmt.Errorf("dkim key %s: an Ed25519 key, not %s", k.Selector, k.Algorithm)
		}
		return p, nil
	}
	return nil, fmt.Errorf("dkim key %s: unsupported key type %T", k.Selector, priv)
}

// TXT returns the key record (RFC 6376 section 3.6.1), e.g.
// "v=DKIM1; k=ed25519; p=...". For RSA, p= is the SubjectPublicKeyInfo
// in base64 (what every verifier reads, RFC 6376 erratum 3017); for
// Ed25519, the 32 octets of the public key (RFC 8463 section 4.2).
func (k Key) TXT() (string, error) {
	s, err := k.Signer()
	if err != nil {
		return "", err
	}
	var p []byte
	switch pub := s.Public().(type) {
	case *rsa.PublicKey:
		if p, err = x509.MarshalPKIXPublicKey(pub); err != nil {
			return "", err
		}
	case ed25519.PublicKey:
		p = pub
	}
	return "v=DKIM1; k=" + string(k.Algorithm) + "; p=" + base64.StdEncoding.EncodeToString(p), nil
}

// GenerateKey creates a key for domain under selector, created at now.
func GenerateKey(domain, selector string, alg Algorithm, now time.Time) (Key, error) {
	d, err := normalizeDomain(domain)
	if err != nil {
		return Key{}, err
	}
	if err := CheckSelector(selector); err != nil {
		return Key{}, err
	}
	var priv any
	switch alg {
	case RSA:
		priv, err = rsa.GenerateKey(rand.Reader, RSABits)
	case Ed25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		return Key{}, fmt.Errorf("dkim: unknown algorithm %q (want %s or %s)", alg, Ed25519, RSA)
	}
	if err != nil {
		return Key{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return Key{}, err
	}
	return Key{
		Domain:     d,
		Selector:   strings.ToLower(selector),
		Algorithm:  alg,
		PrivateKey: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		Created:    now.UTC(),
	}, nil
}

// CheckSelector reports whether s is a selector: one or more DNS labels
// of letters, digits and inner hyphens, separated by dots (RFC 6376
// section 3.1, "sub-domain" of RFC 5321).
func CheckSelector(s string) error {
	if s == "" || len(s) > 63*4 {
		return fmt.Errorf("dkim: selector %q: want 1 to 252 characters", s)
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("dkim: selector %q: bad label %q", s, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("dkim: selector %q: character %q not allowed", s, c)
			}
		}
	}
	return nil
}

// NewSelector names a new key of a domain by its date and type, e.g.
// "20260315e" for Ed25519 and "20260315r" for RSA keys, as Stalwart
// does: a rotation adds keys under new names and the old records stay
// until the old keys retire. A name already in keys gets "-2", "-3"...
func NewSelector(alg Algorithm, now time.Time, keys []Key) string {
	letter := "e"
	if alg == RSA {
		letter = "r"
	}
	base := now.UTC().Format("20060102") + letter
	name := base
	for n := 2; ; n++ {
		taken := false
		for _, k := range keys {
			if strings.EqualFold(k.Selector, name) {
				taken = true
			}
		}
		if !taken {
			return name
		}
		name = base + "-" + strconv.Itoa(n)
	}
}

// KeyStore keeps the DKIM keys of every domain; the store implements it
// so that every node of a cluster signs with the same keys.
type KeyStore interface {
	// DKIMKeys returns every key of domain, retired ones included,
	// oldest first; none is no error.
	DKIMKeys(ctx context.Context, domain string) ([]Key, error)
	// AddDKIMKey stores a new key; ErrKeyExists if the domain has a key
	// of that selector already (retired or not).
	AddDKIMKey(ctx context.Context, k Key) error
	// RetireDKIMKey marks a key retired at the time given: it no longer
	// signs. ErrKeyNotFound if there is no such key.
	RetireDKIMKey(ctx context.Context, domain, selector string, at time.Time) error
}

// Errors of a KeyStore.
var (
	ErrKeyExists   = errors.New("dkim: the domain has a key of that selector")
	ErrKeyNotFound = errors.New("dkim: no such key")
)

// Keygen creates and stores one new key of domain for each algorithm
// (DefaultAlgorithms when none is given), each under a fresh selector
// from NewSelector, or under selector when one algorithm is asked for.
// The keys sign from now on, next to the domain's older keys until those
// are retired: a rotation under new selectors (RFC 6376 section 3.1)
// without a moment unsigned; publish the new records before retiring
// the old keys.
func Keygen(ctx context.Context, store KeyStore, domain, selector string, algs []Algorithm, now time.Time) ([]Key, error) {
	if len(algs) == 0 {
		algs = DefaultAlgorithms
	}
	if selector != "" && len(algs) != 1 {
		return nil, fmt.Errorf("dkim: a selector names one key: give one algorithm with it")
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return nil, err
	}
	existing, err := store.DKIMKeys(ctx, d)
	if err != nil {
		return nil, err
	}
	var made []Key
	for _, alg := range algs {
		sel := selector
		if sel == "" {
			sel = NewSelector(alg, now, append(existing, made...))
		}
		k, err := GenerateKey(d, sel, alg, now)
		if err != nil {
			return made, err
		}
		if err := store.AddDKIMKey(ctx, k); err != nil {
			return made, err
		}
		made = append(made, k)
	}
	return made, nil
}
