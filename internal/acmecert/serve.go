package acmecert

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
)

// ALPNProto is the ALPN protocol of TLS-ALPN-01 validation (RFC 8737
// section 6.2).
const ALPNProto = acme.ALPNProto

// ChallengePath is the path prefix of HTTP-01 validation requests (RFC 8555
// section 8.3).
const ChallengePath = "/.well-known/acme-challenge/"

// GetCertificate is a tls.Config.GetCertificate: the ACME certificate for
// the SNI name, the hostname's when the client sends none, else Fallback.
// An expired certificate is not served: after the end of a failed renewal
// the Fallback (a configured certificate) serves instead.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if isALPNChallenge(hello) {
		return m.challengeCert(hello)
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		name = m.cfg.Hostname
	}
	m.mu.RLock()
	l := m.certs[name]
	m.mu.RUnlock()
	if l != nil && m.now().Before(l.cert.Leaf.NotAfter) {
		return l.cert, nil
	}
	if m.cfg.Fallback != nil {
		return m.cfg.Fallback(hello)
	}
	return nil, fmt.Errorf("acmecert: no certificate for %q", name)
}

// TLSConfig returns a copy of base (nil: a new config, TLS 1.2 or newer)
// that serves the ACME certificates and answers TLS-ALPN-01 validation;
// base's Certificates are dropped (Config.Fallback serves other names).
// Only a ClientHello offering exactly "acme-tls/1", as a CA sends (RFC 8737
// section 3), is answered with the challenge certificate and that protocol;
// other clients see base's NextProtos unchanged, so a listener's own ALPN
// protocols keep working.
func (m *Manager) TLSConfig(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c.GetCertificate = m.GetCertificate
	c.Certificates = nil
	next := c.GetConfigForClient
	c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if !isALPNChallenge(hello) {
			if next != nil {
				return next(hello)
			}
			return nil, nil
		}
		cert, err := m.challengeCert(hello)
		if err != nil {
			return nil, err
		}
		return &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{*cert},
			NextProtos:   []string{ALPNProto},
		}, nil
	}
	return c
}

func isALPNChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ALPNProto
}

// challengeCert returns the TLS-ALPN-01 certificate for the SNI name: this
// node's, or the one another node stored while it issues.
func (m *Manager) challengeCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if _, err := normalizeName(name); err != nil {
		return nil, fmt.Errorf("acmecert: TLS-ALPN-01 for %q: %v", name, err)
	}
	m.chalMu.RLock()
	c := m.alpn[name]
	m.chalMu.RUnlock()
	if c != nil {
		return c, nil
	}
	ctx, cancel := context.WithTimeout(hello.Context(), 10*time.Second)
	defer cancel()
	blob, err := m.cfg.Storage.Get(ctx, m.alpnName(name))
	if err != nil {
		return nil, fmt.Errorf("acmecert: no TLS-ALPN-01 challenge for %q: %w", name, err)
	}
	return parseCertBlob(blob)
}

// HTTPHandler answers HTTP-01 validation requests (GET or HEAD of
// /.well-known/acme-challenge/TOKEN, RFC 8555 section 8.3) with the key
// authorization, from this node or from the Storage when another node is
// issuing; other requests go to next (nil: 404).
func (m *Manager) HTTPHandler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, ChallengePath) {
			if next != nil {
				next.ServeHTTP(w, r)
			} else {
				http.NotFound(w, r)
			}
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		token := strings.TrimPrefix(r.URL.Path, ChallengePath)
		if !validToken(token) {
			http.NotFound(w, r)
			return
		}
		m.chalMu.RLock()
		ka, ok := m.tokens[token]
		m.chalMu.RUnlock()
		if !ok {
			ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			defer cancel()
			blob, err := m.cfg.Storage.Get(ctx, m.tokenName(token))
			switch {
			case errors.Is(err, ErrNotFound):
				http.NotFound(w, r)
				return
			case err != nil:
				m.log.Warn("reading an HTTP-01 response from the store", "err", err)
				http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
				return
			}
			ka = string(blob)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte(ka))
	})
}
