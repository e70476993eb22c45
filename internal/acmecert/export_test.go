package acmecert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"time"
)

// HTTPClientForTest is httpClient, for the tests outside the package.
var HTTPClientForTest = httpClient

// SelfSigned returns a self-signed certificate for name, Leaf set.
func SelfSigned(name string, notBefore, notAfter time.Time) *tls.Certificate {
	c, _ := selfSignedBlob(name, notBefore, notAfter)
	return c
}

// selfSignedBlob returns a self-signed certificate for name and its stored
// form.
func selfSignedBlob(name string, notBefore, notAfter time.Time) (*tls.Certificate, []byte) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		DNSNames:     []string{name},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	blob, err := certBlob(key, [][]byte{der})
	if err != nil {
		panic(err)
	}
	c, err := parseCertBlob(blob)
	if err != nil {
		panic(err)
	}
	return c, blob
}
