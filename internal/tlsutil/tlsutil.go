// Package tlsutil loads the server certificate, or creates a self-signed one
// on first start so that STLS (RFC 2595) and implicit TLS (RFC 8314) work
// out of the box.
package tlsutil

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/postoffice-mail/postoffice/internal/atomicfile"
)

// Source holds the current certificate; Reload swaps it without dropping
// connections (each handshake asks GetCertificate).
type Source struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// Load returns a Source for certFile/keyFile. When both are empty it uses
// DATADIR/tls/cert.pem and key.pem, creating a self-signed pair for hostname
// if they do not exist yet.
func Load(certFile, keyFile, dataDir, hostname string) (*Source, error) {
	if certFile == "" && keyFile == "" {
		dir := filepath.Join(dataDir, "tls")
		certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		if _, err := os.Stat(certFile); errors.Is(err, os.ErrNotExist) {
			if err := writeSelfSigned(dir, certFile, keyFile, hostname); err != nil {
				return nil, fmt.Errorf("creating self-signed certificate: %w", err)
			}
		}
	}
	s := &Source{certFile: certFile, keyFile: keyFile}
	return s, s.Reload()
}

// Reload re-reads the certificate and key files.
func (s *Source) Reload() error {
	c, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("loading certificate %s / key %s: %w", s.certFile, s.keyFile, err)
	}
	s.cert.Store(&c)
	return nil
}

// Config returns a server tls.Config (ServerConfig) that always uses the
// Source's current certificate.
func (s *Source) Config() *tls.Config {
	return ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return s.cert.Load(), nil
	})
}

// CipherSuites are the TLS 1.2 suites postoffice's servers offer: only
// ECDHE key exchange (forward secrecy) with AEAD ciphers, AES-GCM and
// ChaCha20-Poly1305, as RFC 9325 section 4.2 recommends. The CBC suites
// Go would otherwise add (SHA-1 MACs, Lucky Thirteen) and RSA key
// exchange are left out; every client of the last decade speaks one of
// these or TLS 1.3, whose suites are all AEAD and not configurable.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// ServerConfig is the one server TLS configuration (POP3 STLS and 995,
// SMTP STARTTLS and 465, the console): TLS 1.2 or newer, CipherSuites
// for TLS 1.2, the certificate from getCert.
func ServerConfig(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   CipherSuites,
		GetCertificate: getCert,
	}
}

func writeSelfSigned(dir, certFile, keyFile, hostname string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"postoffice self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{hostname, "localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	// Key first: a cert without its key would be left if we crashed between.
	if err := atomicfile.Write(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	// Owner-only like every file postoffice creates: the certificate is
	// public, but nobody else needs it from here.
	return atomicfile.Write(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}
