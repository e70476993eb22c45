// Package mailhttp is what the [http] listener of a mail host serves to
// clients and other servers: the ACME HTTP-01 challenges, the client
// autoconfiguration documents (package autoconfig), the MTA-STS policy of
// every local domain (RFC 8461), and a redirect to the web console. The
// DNS records that point clients and servers at it are package
// dnsrecords'.
package mailhttp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/autoconfig"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
)

// Config describes the site.
type Config struct {
	// Hostname is the host's name: the target of the DNS records.
	Hostname string
	// IsLocal reports whether domain (lower case, A-labels) is a local
	// domain; only those have a policy and documents.
	IsLocal func(ctx context.Context, domain string) (bool, error)
	// ACME answers /.well-known/acme-challenge/ on every host name (the
	// acmecert Manager's HTTPHandler); nil: 404.
	ACME http.Handler
	// Autoconfig serves the client documents; nil: none.
	Autoconfig *autoconfig.Handler
	// MTASTS is the policy served for every local domain (the one whose
	// id dnsrecords publishes); nil: none.
	MTASTS *mtasts.Policy
	// ConsoleURL is where "/" redirects, the web console (e.g.
	// https://mail.example.com:8443/); empty: "/" is 404.
	ConsoleURL string
	Logger     *slog.Logger
}

// Site is the http.Handler of the listener.
type Site struct {
	cfg    Config
	policy *mtasts.Policy
	log    *slog.Logger
}

// New checks cfg and returns the Site.
func New(cfg Config) (*Site, error) {
	if cfg.Hostname == "" || cfg.IsLocal == nil {
		return nil, errors.New("mailhttp: a hostname and an IsLocal function are needed")
	}
	cfg.Hostname = strings.ToLower(strings.TrimSuffix(cfg.Hostname, "."))
	s := &Site{cfg: cfg, log: cfg.Logger}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if p := cfg.MTASTS; p != nil {
		if err := p.Check(); err != nil {
			return nil, fmt.Errorf("mailhttp: %w", err)
		}
		s.policy = p
	}
	if cfg.ConsoleURL != "" && !strings.HasPrefix(cfg.ConsoleURL, "https://") && !strings.HasPrefix(cfg.ConsoleURL, "http://") {
		return nil, fmt.Errorf("mailhttp: console URL %q: not an http(s) URL", cfg.ConsoleURL)
	}
	return s, nil
}

// Policy is the MTA-STS policy served, nil without one.
func (s *Site) Policy() *mtasts.Policy { return s.policy }

// ServeHTTP routes by path, and by host where the path alone does not say:
//
//	/.well-known/acme-challenge/*                 ACME HTTP-01 (any host)
//	/.well-known/mta-sts.txt                      on mta-sts.DOMAIN: the policy
//	/mail/config-v1.1.xml                         Thunderbird (autoconfig.DOMAIN)
//	/.well-known/autoconfig/mail/config-v1.1.xml  Thunderbird (DOMAIN)
//	/autodiscover/autodiscover.xml                Outlook, any case (POST)
//	/mail.mobileconfig?t=TOKEN                    Apple profile of a signed link
//	/                                             redirect to the console
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	path := r.URL.Path
	a := s.cfg.Autoconfig
	switch {
	case strings.HasPrefix(path, acmecert.ChallengePath):
		if s.cfg.ACME == nil {
			http.NotFound(w, r)
			return
		}
		s.cfg.ACME.ServeHTTP(w, r)
	case path == mtasts.WellKnownPath:
		s.servePolicy(w, r)
	case a != nil && (path == autoconfig.ThunderbirdPath || path == autoconfig.ThunderbirdWellKnownPath):
		a.ServeThunderbird(w, r)
	case a != nil && strings.EqualFold(path, autoconfig.AutodiscoverPath):
		a.ServeAutodiscover(w, r)
	case a != nil && path == autoconfig.ProfilePath:
		a.ServeProfile(w, r)
	case path == "/" && s.cfg.ConsoleURL != "":
		http.Redirect(w, r, s.cfg.ConsoleURL, http.StatusFound)
	default:
		http.NotFound(w, r)
	}
}

// servePolicy serves the MTA-STS policy on mta-sts.DOMAIN for a local
// DOMAIN, as text/plain (RFC 8461 section 3.2).
func (s *Site) servePolicy(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	domain, ok := strings.CutPrefix(autoconfig.RequestHost(r), "mta-sts.")
	if s.policy == nil || !ok {
		http.NotFound(w, r)
		return
	}
	local, err := s.cfg.IsLocal(r.Context(), domain)
	if err != nil {
		s.log.Warn("mta-sts: checking a domain", "domain", domain, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if !local {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	// RFC 8461 section 3.3: senders do not use HTTP caching; say so anyway.
	w.Header().Set("Cache-Control", "no-cache")
	w.Write([]byte(s.policy.String()))
}

// Server returns an http.Server for the listener with timeouts that keep
// slow or idle clients from holding connections, small headers, errors to
// the logger, and HTTP/1.1 only. On a TLS listener (port 443), a
// connection that negotiated acme-tls/1 (a TLS-ALPN-01 validation, RFC 8737
// section 3: nothing follows the handshake) is closed.
func Server(h http.Handler, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.New(&slogWriter{logger}, "", 0),
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){
			acmecert.ALPNProto: func(_ *http.Server, c *tls.Conn, _ http.Handler) { c.Close() },
		},
	}
}

type slogWriter struct{ l *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	w.l.Info("http: " + strings.TrimSpace(string(p)))
	return len(p), nil
}
