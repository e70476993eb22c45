package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/autoconfig"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/mailhttp"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/resolver"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// The wiring of issue 19: certificates by ACME for every TLS listener,
// the [http] listener (mailhttp's site: ACME challenges, autoconfig,
// MTA-STS, the console's redirect), and the DNS records a domain needs.

// Every TLS listener (POP3S and STLS, SMTP STARTTLS on 25 and 587,
// submissions on 465, the console with [admin] tls, HTTPS on 443) shares
// Server.tlsCfg: its GetConfigForClient hands each handshake the current
// ACME manager's TLSConfig, built over the base configuration whose
// certificate, the Manager's Fallback, is the configured or self-signed
// one (tlsutil). Without ACME, or for a name ACME does not cover, that
// certificate serves. A renewed certificate is served from the next
// handshake on, and a reload that switches ACME on or off swaps the
// manager under every listener, without restarting one.

// acmeRun is one running ACME manager.
type acmeRun struct {
	m        *acmecert.Manager
	tls      *tls.Config // m.TLSConfig(base)
	settings acmeSettings
	cancel   context.CancelFunc
	done     chan struct{}

	mu       sync.Mutex
	failedAt map[string]time.Time // per name, the last failure counted in /metrics
}

// acmeSettings are what a manager is built from: a change starts another.
type acmeSettings struct {
	acme     config.ACME
	hostname string
}

func acmeSettingsOf(c config.Config) acmeSettings { return acmeSettings{c.ACME, c.Hostname} }

// configForClient is the GetConfigForClient of every TLS listener: the
// running manager's configuration (which answers TLS-ALPN-01 validation
// itself), or nil for the base one.
func (s *Server) configForClient(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	r := s.acmeNow()
	if r == nil {
		return nil, nil
	}
	if r.tls.GetConfigForClient != nil {
		if c, err := r.tls.GetConfigForClient(hello); c != nil || err != nil {
			return c, err
		}
	}
	return r.tls, nil
}

func (s *Server) acmeNow() *acmeRun {
	s.acmeMu.Lock()
	defer s.acmeMu.Unlock()
	return s.acme
}

// acmeHolder names this process in the ACME issuing lock: the node name
// and, on a shared store, the instance holding it.
func (s *Server) acmeHolder(cfg config.Config) string {
	if is, ok := s.st.(instances); ok {
		return cfg.Store.NodeName + "/" + is.Instance()
	}
	return fmt.Sprintf("%s/%d", cfg.Store.NodeName, os.Getpid())
}

// newACME builds (does not run) the manager of cfg, nil when ACME is off.
func (s *Server) newACME(cfg config.Config) (*acmeRun, error) {
	if !cfg.ACME.Enabled {
		return nil, nil
	}
	r := &acmeRun{settings: acmeSettingsOf(cfg), failedAt: map[string]time.Time{}, done: make(chan struct{})}
	templates := slices.Clone(cfg.ACME.Names)
	if templates == nil {
		templates = []string{} // the hostname only
	}
	m, err := acmecert.New(acmecert.Config{
		Email:        cfg.ACME.Email,
		DirectoryURL: cfg.ACME.DirectoryURL,
		CAFile:       cfg.ACME.CAFile,
		Challenge:    acmecert.Challenge(cfg.ACME.Challenge),
		Hostname:     cfg.Hostname,
		Templates:    templates,
		Domains:      s.domainNames,
		Storage:      s.st.ACMEStorage(),
		Holder:       s.acmeHolder(cfg),
		Fallback:     s.tlsBase.GetCertificate,
		Logger:       s.log, // acmecert adds module=acme
		OnStatus:     func(st acmecert.Status) { s.certificateStatus(r, st) },
	})
	if err != nil {
		return nil, err
	}
	r.m = m
	r.tls = m.TLSConfig(s.tlsBase)
	return r, nil
}

// domainNames lists the local domains, for the manager's names.
func (s *Server) domainNames(ctx context.Context) ([]string, error) {
	ds, err := s.st.ListDomains(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return names, nil
}

// certificateStatus feeds /metrics: the expiry of what is served, and each
// failure once (a status is reported again when only its time of next
// attempt changed, or when loaded from the store by another node).
func (s *Server) certificateStatus(r *acmeRun, st acmecert.Status) {
	r.mu.Lock()
	failed := !st.LastErrorAt.IsZero() && st.LastErrorAt.After(r.failedAt[st.Name])
	if failed {
		r.failedAt[st.Name] = st.LastErrorAt
	}
	r.mu.Unlock()
	s.metrics.Certificate(st.Name, st.NotAfter, failed)
}

// runACME makes r the running manager (nil: none), stopping the one
// before; the certificates it serves apply from the next handshake. At
// start, r is the manager New made, serving (the fallback) but not run.
func (s *Server) runACME(r *acmeRun) {
	s.acmeMu.Lock()
	old := s.acme
	s.acme = r
	s.acmeMu.Unlock()
	if old != nil && old != r && old.cancel != nil {
		old.cancel()
		<-old.done
		if r == nil {
			for _, st := range old.m.Status() {
				s.metrics.ForgetCertificate(st.Name)
			}
		}
	}
	if r == nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.m.Run(ctx)
	}()
}

// stopACME stops the running manager, at shutdown.
func (s *Server) stopACME() {
	s.acmeMu.Lock()
	r := s.acme
	s.acme = nil
	s.acmeMu.Unlock()
	if r != nil && r.cancel != nil {
		r.cancel()
		<-r.done
	}
}

// reloadACME applies a change of [acme] or of the hostname.
func (s *Server) reloadACME(cfg config.Config) ([]string, error) {
	cur := s.acmeNow()
	if cur == nil && !cfg.ACME.Enabled || cur != nil && reflect.DeepEqual(cur.settings, acmeSettingsOf(cfg)) {
		return nil, nil
	}
	r, err := s.newACME(cfg)
	if err != nil {
		return nil, fmt.Errorf("acme: %w (the previous settings stay)", err)
	}
	s.runACME(r)
	if r == nil {
		return []string{"acme: off; the configured or self-signed certificate serves every name"}, nil
	}
	return []string{"acme: certificates from " + cfg.ACME.DirectoryURL + " (obtained or loaded now)"}, nil
}

// DomainsChanged implements control.Controller: the manager checks at
// once, so that a new domain's names get certificates, and the DKIM keys
// are read again, so that a new key signs (and a retired one stops) now.
func (s *Server) DomainsChanged(ctx context.Context) ([]string, error) {
	s.dkim.keys.Forget()
	r := s.acmeNow()
	if r == nil {
		return nil, nil
	}
	r.m.Wake()
	return []string{"acme: checking the certificates of every domain's names now"}, nil
}

// certificates is the status of every name ACME covers, for status and
// the dashboard.
func (s *Server) certificates() []control.Certificate {
	r := s.acmeNow()
	if r == nil {
		return nil
	}
	var out []control.Certificate
	for _, st := range r.m.Status() {
		out = append(out, control.Certificate{
			Name: st.Name, NotBefore: st.NotBefore, NotAfter: st.NotAfter, Issuer: st.Issuer, RenewAt: st.RenewAt,
			LastError: st.LastError, LastErrorAt: st.LastErrorAt, Failures: st.Failures, NextAttempt: st.NextAttempt,
		})
	}
	return out
}

// The HTTP service: mailhttp's site on [http] listen and, over TLS, on
// tls_listen. Its limits are fixed: HTTP clients (mail clients, sending
// servers, the CA) open few connections.

var httpLimits = config.Service{Autostart: true, MaxSessions: 1000, MaxSessionsPerIP: 50}

// webSettings are what a generation of the HTTP service is built from.
type webSettings struct {
	hostname   string
	host       autoconfig.Host
	policy     string // the MTA-STS policy's text, "" for none
	consoleURL string
}

func (s *Server) webSettingsOf(cfg config.Config) webSettings {
	w := webSettings{hostname: cfg.Hostname, host: s.autoconfigHost(cfg), consoleURL: s.consoleRedirect(cfg)}
	if p := mtaSTSPolicy(cfg); p != nil {
		w.policy = p.String()
	}
	return w
}

// newWeb is the site and its HTTP server for one generation of the http
// service.
func (s *Server) newWeb(cfg config.Config) protoServer {
	log := s.log.With("service", "http")
	isLocal := func(ctx context.Context, d string) (bool, error) { return s.st.HasDomain(ctx, d) }
	key, err := s.st.Secret(context.Background(), profileSecret)
	if err != nil {
		log.Error("no profile links: reading the server's secret", "err", err)
		key = nil
	}
	w := s.webSettingsOf(cfg)
	site, err := mailhttp.New(mailhttp.Config{
		Hostname: cfg.Hostname,
		IsLocal:  isLocal,
		// Whichever manager runs now answers (or none: 404).
		ACME: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			if a := s.acmeNow(); a != nil {
				a.m.HTTPHandler(nil).ServeHTTP(rw, r)
				return
			}
			http.NotFound(rw, r)
		}),
		Autoconfig: &autoconfig.Handler{Host: w.host, IsLocal: isLocal, ProfileKey: key, Logger: log},
		MTASTS:     mtaSTSPolicy(cfg),
		ConsoleURL: w.consoleURL,
		Logger:     log,
	})
	if err != nil {
		// The configuration's checks make this unreachable; serve 404s
		// rather than nothing.
		log.Error("the HTTP site", "err", err)
		return newHTTPProto(mailhttp.Server(http.NotFoundHandler(), log))
	}
	return newHTTPProto(mailhttp.Server(site, log))
}

// profileSecret is the purpose of the store's secret that signs profile
// links.
const profileSecret = "profile-link"

// profileLinkLife is how long a profile link the console gives out works.
const profileLinkLife = 7 * 24 * time.Hour

// ProfileLink implements admin.Controller: a link to the Apple profile of
// a user's address on the [http] listener (HTTPS when there is one).
func (s *Server) ProfileLink(ctx context.Context, address string) (string, time.Time, error) {
	cfg := s.Config()
	base := s.webBase(cfg)
	if base == "" {
		return "", time.Time{}, errors.New("no [http] listener: set [http] tls_listen (or listen) to serve profiles")
	}
	key, err := s.st.Secret(ctx, profileSecret)
	if err != nil {
		return "", time.Time{}, err
	}
	expires := time.Now().Add(profileLinkLife).Truncate(time.Second)
	link, err := autoconfig.ProfileLink(key, address, expires)
	if err != nil {
		return "", time.Time{}, err
	}
	return base + link, expires, nil
}

// webBase is the site's URL without a path: https on the first
// tls_listen port, else http on the first listen port; "" without one.
func (s *Server) webBase(cfg config.Config) string {
	if p := s.port(cfg.HTTP.TLSListen, "https"); p > 0 {
		return "https://" + hostPort(cfg.Hostname, p, 443)
	}
	if p := s.port(cfg.HTTP.Listen, "http"); p > 0 {
		return "http://" + hostPort(cfg.Hostname, p, 80)
	}
	return ""
}

func hostPort(host string, port, standard int) string {
	if port == standard {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// consoleRedirect is where / of the HTTP site sends a browser: the
// console at the hostname, on its port; "" when the console is off.
func (s *Server) consoleRedirect(cfg config.Config) string {
	if cfg.Admin.Listen == "" {
		return ""
	}
	port := portOf(cfg.Admin.Listen)
	if port == 0 {
		if u := s.consoleURL(); u != "" {
			port = portOf(strings.TrimSuffix(strings.SplitN(u, "://", 2)[1], "/"))
		}
	}
	if port == 0 {
		return ""
	}
	scheme, standard := "http", 80
	if cfg.Admin.TLS {
		scheme, standard = "https", 443
	}
	return scheme + "://" + hostPort(cfg.Hostname, port, standard) + "/"
}

// portOf is the port of a host:port, 0 if none.
func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// port is the port clients use for a listener: that of the first
// configured address or, for port 0, the one it got; 0 without one.
func (s *Server) port(addrs []string, label string) int {
	if len(addrs) == 0 {
		return 0
	}
	if p := portOf(addrs[0]); p != 0 {
		return p
	}
	for _, a := range s.Addrs(label) {
		if t, ok := a.(*net.TCPAddr); ok {
			return t.Port
		}
	}
	return 0
}

// autoconfigHost describes the POP3 and submission listeners to mail
// clients. Every one offers TLS: implicit on pop3s and submissions,
// STLS and STARTTLS on the others.
func (s *Server) autoconfigHost(cfg config.Config) autoconfig.Host {
	h := autoconfig.Host{Hostname: cfg.Hostname}
	add := func(to *[]autoconfig.Listener, addrs []string, label string, sec autoconfig.Security) {
		if p := s.port(addrs, label); p > 0 {
			*to = append(*to, autoconfig.Listener{Port: p, Security: sec})
		}
	}
	add(&h.POP3, cfg.POP3.TLSListen, "pop3s", autoconfig.ImplicitTLS)
	add(&h.POP3, cfg.POP3.Listen, "pop3", autoconfig.STARTTLS)
	add(&h.Submission, cfg.Submission.TLSListen, "submissions", autoconfig.ImplicitTLS)
	add(&h.Submission, cfg.Submission.Listen, "submission", autoconfig.STARTTLS)
	return h
}

// mtaSTSPolicy is the policy of [mta_sts] served for every local domain,
// nil when off or when nothing serves it over HTTPS (RFC 8461 section
// 3.3: the policy is fetched from port 443 only).
func mtaSTSPolicy(cfg config.Config) *mtasts.Policy {
	if cfg.MTASTS.Mode == "off" || len(cfg.HTTP.TLSListen) == 0 {
		return nil
	}
	mx := slices.Clone(cfg.MTASTS.MX)
	if len(mx) == 0 {
		mx = []string{cfg.Hostname}
	}
	return &mtasts.Policy{Mode: mtasts.Mode(cfg.MTASTS.Mode), MX: mx, MaxAge: time.Duration(cfg.MTASTS.MaxAge)}
}

// RecordsDomain describes the records of a local domain under cfg: MX
// and the client services point at the hostname, the ports are those
// configured (a running server's own for port 0, bound given), the DKIM
// keys those of the store, a retired key's record kept while mail that
// it signed may still wait in a queue (KeepRetired: at least
// mailauth.RetiredKeyPublished, and two days more than [queue]
// max_lifetime), the MTA-STS policy that of
// [mta_sts], autoconfig's names when [http] serves them. ErrNotFound
// (wrapped) for a domain that is not local.
func RecordsDomain(ctx context.Context, cfg config.Config, st store.Store, domain string, port func(addrs []string, label string) int) (dnsrecords.Domain, error) {
	ok, err := st.HasDomain(ctx, domain)
	if err != nil {
		return dnsrecords.Domain{}, err
	}
	if !ok {
		return dnsrecords.Domain{}, fmt.Errorf("%s is not a domain of this host: %w", domain, store.ErrNotFound)
	}
	if port == nil {
		port = func(addrs []string, _ string) int {
			if len(addrs) == 0 {
				return 0
			}
			return portOf(addrs[0])
		}
	}
	d := dnsrecords.Domain{
		Name: domain,
		MX:   cfg.Hostname,
		Ports: dnsrecords.Ports{
			Submission:  port(cfg.Submission.Listen, "submission"),
			Submissions: port(cfg.Submission.TLSListen, "submissions"),
			POP3:        port(cfg.POP3.Listen, "pop3"),
			POP3S:       port(cfg.POP3.TLSListen, "pop3s"),
		},
		MTASTS:     mtaSTSPolicy(cfg),
		Autoconfig: len(cfg.HTTP.Listen) > 0 || len(cfg.HTTP.TLSListen) > 0,
	}
	d.KeepRetired = KeepRetired(cfg)
	if d.Keys, err = st.DKIMKeys(ctx, domain); err != nil {
		return d, fmt.Errorf("the DKIM keys of %s: %w", domain, err)
	}
	return d, nil
}

// KeepRetired is how long a retired DKIM key's record stays published
// under cfg: mailauth.RetiredKeyPublished, or two days more than [queue]
// max_lifetime if that is longer, since a message signed at intake just
// before the key retired may wait in the queue that long.
func KeepRetired(cfg config.Config) time.Duration {
	return max(mailauth.RetiredKeyPublished, time.Duration(cfg.Queue.MaxLifetime)+48*time.Hour)
}

// Resolver is the resolver of [queue] dns_server, or the system's,
// without a cache: for checks of records an operator has just published.
// The mail paths share the Server's cached one (sharedResolver).
func Resolver(cfg config.Config) resolver.Resolver {
	if cfg.Queue.DNSServer != "" {
		return resolver.Server(cfg.Queue.DNSServer, 0)
	}
	return resolver.System()
}

// sharedResolver is the one resolver of the mail paths (the checks of
// incoming mail, the queue's MX and MTA-STS lookups), so that they share
// its cache of answers across messages, services and reloads; a reload
// that changes [queue] dns_server starts a new one.
type sharedResolver struct {
	mu   sync.Mutex
	addr string
	r    resolver.Resolver
}

func (s *sharedResolver) get(cfg config.Config) resolver.Resolver {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.r == nil || s.addr != cfg.Queue.DNSServer {
		s.addr = cfg.Queue.DNSServer
		if s.addr != "" {
			s.r = resolver.CachingServer(s.addr, 0)
		} else {
			s.r = resolver.System()
		}
	}
	return s.r
}

// DomainRecords implements admin.Controller.
func (s *Server) DomainRecords(ctx context.Context, domain string) ([]dnsrecords.Record, error) {
	d, err := RecordsDomain(ctx, s.Config(), s.st, domain, s.port)
	if err != nil {
		return nil, err
	}
	return dnsrecords.Records(d)
}

// CheckDomain implements admin.Controller: the records looked up through
// the configured resolver.
func (s *Server) CheckDomain(ctx context.Context, domain string) ([]dnsrecords.Finding, error) {
	cfg := s.Config()
	d, err := RecordsDomain(ctx, cfg, s.st, domain, s.port)
	if err != nil {
		return nil, err
	}
	return dnsrecords.Check(ctx, Resolver(cfg), d)
}
