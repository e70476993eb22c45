package acmecert

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/acme"
)

// acmeClient returns the client with the account key, loading the key from
// the Storage or creating and storing it, and registers the account once
// (RFC 8555 section 7.3; an existing account with that key is found
// again). The caller holds the issuing lock, so that two nodes never create
// two accounts.
func (m *Manager) acmeClient(ctx context.Context) (*acme.Client, error) {
	m.mu.RLock()
	c, regd := m.client, m.regd
	m.mu.RUnlock()
	if c == nil {
		key, err := m.accountKey(ctx)
		if err != nil {
			return nil, err
		}
		c = &acme.Client{Key: key, DirectoryURL: m.cfg.DirectoryURL, HTTPClient: m.cfg.HTTPClient, UserAgent: "postoffice"}
		m.mu.Lock()
		m.client = c
		m.mu.Unlock()
	}
	if regd {
		return c, nil
	}
	acct := &acme.Account{}
	if m.cfg.Email != "" {
		acct.Contact = []string{"mailto:" + m.cfg.Email}
	}
	// Setting up ACME is agreeing to the CA's terms of service, as with
	// certbot --agree-tos; the README says so.
	if _, err := c.Register(ctx, acct, acme.AcceptTOS); err != nil && !errors.Is(err, acme.ErrAccountAlreadyExists) {
		return nil, fmt.Errorf("registering the ACME account: %w", err)
	}
	m.mu.Lock()
	m.regd = true
	m.mu.Unlock()
	return c, nil
}

func (m *Manager) accountKey(ctx context.Context) (crypto.Signer, error) {
	blob, err := m.cfg.Storage.Get(ctx, m.accountName())
	if err == nil {
		b, _ := pem.Decode(blob)
		if b == nil || b.Type != "PRIVATE KEY" {
			return nil, errors.New("the stored ACME account key is not a PEM private key")
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("the stored ACME account key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("the stored ACME account key cannot sign")
		}
		return s, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("reading the ACME account key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := m.cfg.Storage.Put(ctx, m.accountName(), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, fmt.Errorf("storing the ACME account key: %w", err)
	}
	m.log.Info("created an ACME account key", "directory", m.cfg.DirectoryURL)
	return key, nil
}

// obtain runs one issuance for name (RFC 8555 section 7.4): a new order,
// the configured challenge for each pending authorization, finalization
// with a CSR for a new key, and the certificate chain stored and served.
func (m *Manager) obtain(ctx context.Context, name string) error {
	c, err := m.acmeClient(ctx)
	if err != nil {
		return err
	}
	m.log.Info("requesting a certificate", "name", name, "challenge", m.cfg.Challenge, "directory", m.cfg.DirectoryURL)
	order, err := c.AuthorizeOrder(ctx, acme.DomainIDs(name))
	if err != nil {
		return fmt.Errorf("new order: %w", err)
	}
	for _, u := range order.AuthzURLs {
		if err := m.authorize(ctx, c, u); err != nil {
			return err
		}
	}
	order, err = c.WaitOrder(ctx, order.URI)
	if err != nil {
		return fmt.Errorf("order: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	if err != nil {
		return err
	}
	chain, _, err := c.CreateOrderCert(ctx, order.FinalizeURL, csr, true)
	if err != nil {
		return fmt.Errorf("finalize: %w", err)
	}
	blob, err := certBlob(key, chain)
	if err != nil {
		return err
	}
	cert, err := parseCertBlob(blob)
	if err != nil {
		return fmt.Errorf("the CA's certificate: %w", err)
	}
	if err := usable(cert.Leaf, name, m.now()); err != nil {
		return fmt.Errorf("the CA's certificate: %w", err)
	}
	if err := m.cfg.Storage.Put(ctx, m.certName(name), blob); err != nil {
		return fmt.Errorf("storing the certificate: %w", err)
	}
	m.install(name, blob)
	return nil
}

// authorize answers the configured challenge of one authorization, unless
// it is already valid (completed for a previous order, RFC 8555 section
// 7.4).
func (m *Manager) authorize(ctx context.Context, c *acme.Client, url string) error {
	z, err := c.GetAuthorization(ctx, url)
	if err != nil {
		return fmt.Errorf("authorization: %w", err)
	}
	if z.Status == acme.StatusValid {
		return nil
	}
	if z.Status != acme.StatusPending {
		return fmt.Errorf("authorization for %s is %s", z.Identifier.Value, z.Status)
	}
	var chal *acme.Challenge
	for _, ch := range z.Challenges {
		if ch.Type == string(m.cfg.Challenge) {
			chal = ch
		}
	}
	if chal == nil {
		return fmt.Errorf("the CA offers no %s challenge for %s", m.cfg.Challenge, z.Identifier.Value)
	}
	cleanup, err := m.publish(ctx, c, chal, z.Identifier.Value)
	if err != nil {
		return err
	}
	defer cleanup()
	if _, err := c.Accept(ctx, chal); err != nil {
		return fmt.Errorf("accepting the %s challenge: %w", chal.Type, err)
	}
	if _, err := c.WaitAuthorization(ctx, z.URI); err != nil {
		return fmt.Errorf("%s validation of %s: %w", chal.Type, z.Identifier.Value, err)
	}
	return nil
}

// publish makes the challenge's response available on this node and, by
// the Storage, on the others; cleanup withdraws it.
func (m *Manager) publish(ctx context.Context, c *acme.Client, chal *acme.Challenge, name string) (cleanup func(), err error) {
	st := m.cfg.Storage
	bg := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	}
	switch chal.Type {
	case string(HTTP01):
		if !validToken(chal.Token) {
			return nil, fmt.Errorf("the CA's HTTP-01 token %q is not base64url", chal.Token)
		}
		ka, err := c.HTTP01ChallengeResponse(chal.Token)
		if err != nil {
			return nil, err
		}
		m.chalMu.Lock()
		m.tokens[chal.Token] = ka
		m.chalMu.Unlock()
		if err := st.Put(ctx, m.tokenName(chal.Token), []byte(ka)); err != nil {
			m.log.Warn("storing the HTTP-01 response; only this node can answer", "err", err)
		}
		return func() {
			m.chalMu.Lock()
			delete(m.tokens, chal.Token)
			m.chalMu.Unlock()
			cctx, cancel := bg()
			defer cancel()
			st.Delete(cctx, m.tokenName(chal.Token))
		}, nil
	case string(TLSALPN01):
		cert, err := c.TLSALPN01ChallengeCert(chal.Token, name)
		if err != nil {
			return nil, err
		}
		signer, ok := cert.PrivateKey.(crypto.Signer)
		if !ok {
			return nil, errors.New("TLS-ALPN-01 certificate without a signing key")
		}
		blob, err := certBlob(signer, cert.Certificate)
		if err != nil {
			return nil, err
		}
		m.chalMu.Lock()
		m.alpn[name] = &cert
		m.chalMu.Unlock()
		if err := st.Put(ctx, m.alpnName(name), blob); err != nil {
			m.log.Warn("storing the TLS-ALPN-01 certificate; only this node can answer", "err", err)
		}
		return func() {
			m.chalMu.Lock()
			delete(m.alpn, name)
			m.chalMu.Unlock()
			cctx, cancel := bg()
			defer cancel()
			st.Delete(cctx, m.alpnName(name))
		}, nil
	}
	return nil, fmt.Errorf("challenge type %q", chal.Type)
}

// validToken reports whether t is a non-empty base64url string (RFC 8555
// section 8.3: the token "MUST NOT contain any characters outside the
// base64url alphabet"), safe in a URL path and a storage name.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// certBlob is the stored form of a certificate: its private key, then the
// chain, leaf first, all PEM.
func certBlob(key crypto.Signer, chain [][]byte) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, c := range chain {
		pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c})
	}
	return b.Bytes(), nil
}

// parseCertBlob reads a certBlob, checking that key and leaf match.
func parseCertBlob(blob []byte) (*tls.Certificate, error) {
	// X509KeyPair takes the CERTIFICATE blocks of its first argument and
	// the key block of its second; one blob holds both.
	c, err := tls.X509KeyPair(blob, blob)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}
