// Package acmecert obtains and renews TLS certificates by ACME (RFC 8555)
// for the host name and the mail names of each local domain, keeps them in
// a Storage shared by the nodes of a cluster, and serves them by SNI on
// every TLS listener.
//
// It answers the CA's challenges itself: HTTP-01 (RFC 8555 section 8.3)
// through HTTPHandler on the port 80 listener, or TLS-ALPN-01 (RFC 8737)
// through TLSConfig on the port 443 listener. One node at a time issues,
// holding a lease lock in the Storage; every node loads what is stored, so
// a certificate obtained by one is served by all without a restart. A
// certificate is renewed at two thirds of its lifetime; when that fails,
// the failure is logged and reported through Status and OnStatus, retried
// with backoff, and the old certificate keeps serving until it expires.
//
// golang.org/x/crypto/acme/autocert was not used: it obtains a certificate
// on the first handshake for a name (not at start), renews a fixed time
// before expiry, has no lock (two nodes sharing its Cache both order), keeps
// TLS-ALPN-01 responses in one process's memory (a cluster node that did
// not order cannot answer the CA), and reports no failure except to the
// handshake that triggered it.
package acmecert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/acme"
)

// LetsEncrypt is the directory URL used when Config.DirectoryURL is empty.
const LetsEncrypt = acme.LetsEncryptURL

// Challenge is the kind of proof of control the Manager answers.
type Challenge string

// The challenges the Manager can answer.
const (
	// HTTP01 is RFC 8555 section 8.3: the CA fetches
	// http://NAME/.well-known/acme-challenge/TOKEN on port 80.
	HTTP01 Challenge = "http-01"
	// TLSALPN01 is RFC 8737: the CA opens TLS to NAME on port 443 offering
	// only the ALPN protocol "acme-tls/1".
	TLSALPN01 Challenge = "tls-alpn-01"
)

// Config configures a Manager. Hostname, Storage and either Names or
// Templates with Domains are needed; the rest has defaults.
type Config struct {
	// Email is the account's contact (RFC 8555 section 7.3), to which the
	// CA sends expiry warnings; empty registers without a contact.
	Email string
	// DirectoryURL is the CA's ACME directory; default LetsEncrypt.
	DirectoryURL string
	// CAFile names a PEM file of root certificates trusted, besides the
	// system's, for the HTTPS connections to a private ACME server.
	CAFile string
	// Challenge is the challenge answered; default HTTP01.
	Challenge Challenge

	// Hostname is the host's name, covered first and served to clients that
	// send no SNI.
	Hostname string
	// Templates are the per-domain names (see DomainPlaceholder); nil means
	// DefaultTemplates. An empty, non-nil list covers the hostname only.
	Templates []string
	// Domains returns the local domains; it is asked at every check, so a
	// domain added at run time gets its certificates on the next check (or
	// at once after Wake).
	Domains func(context.Context) ([]string, error)

	// Storage keeps the account key, the certificates and the status.
	Storage Storage
	// Holder names this node in the Storage's lock; default host name and
	// process id.
	Holder string
	// Fallback serves handshakes for names without an ACME certificate
	// (yet): the configured or self-signed certificate.
	Fallback func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Logger receives what happens; nil discards.
	Logger *slog.Logger
	// OnStatus, if set, is called after the status of a name changed on
	// this node (obtained, failed, or loaded from the Storage).
	OnStatus func(Status)

	// RenewAt is the fraction of a certificate's lifetime after which it is
	// renewed; default 2/3 (30 days before the end of a 90-day one).
	RenewAt float64
	// CheckInterval is the longest time between two checks, each of which
	// loads what the Storage holds and renews what is due; default 10
	// minutes. A check also runs when a renewal or retry falls due.
	CheckInterval time.Duration
	// RetryMin and RetryMax bound the backoff after a failure, which
	// doubles from RetryMin; defaults 10 minutes and 12 hours.
	RetryMin, RetryMax time.Duration
	// LockLease is how long the issuing lock holds without renewal; default
	// 10 minutes. It is renewed before each name.
	LockLease time.Duration
	// Timeout bounds the issuance of one certificate; default 5 minutes.
	Timeout time.Duration
	// HTTPClient, if set, talks to the CA instead of one built from CAFile.
	HTTPClient *http.Client
}

// Status is the state of one name's certificate, for /metrics and the
// dashboard. A zero NotAfter means no certificate is served for the name.
type Status struct {
	Name      string
	NotBefore time.Time
	NotAfter  time.Time
	Issuer    string // the issuer's common name
	RenewAt   time.Time

	LastRenewed time.Time // when this name last got a certificate
	LastError   string    // the last failure, empty after a success
	LastErrorAt time.Time
	Failures    int       // failures since the last success
	NextAttempt time.Time // zero: as soon as due
}

// DaysLeft is the number of days until the certificate expires (negative
// after), or 0 without a certificate.
func (s Status) DaysLeft(now time.Time) float64 {
	if s.NotAfter.IsZero() {
		return 0
	}
	return s.NotAfter.Sub(now).Hours() / 24
}

// Manager obtains, renews and serves the certificates.
type Manager struct {
	cfg    Config
	log    *slog.Logger
	prefix string // storage names begin with it: one set per CA
	now    func() time.Time

	mu     sync.RWMutex
	wanted []string           // the names of the last check, hostname first
	busy   bool               // at the last check, another node held the lock
	certs  map[string]*loaded // by name
	state  map[string]*persisted
	client *acme.Client // nil until the first issuance
	regd   bool         // the account is registered with the client's key

	chalMu sync.RWMutex
	tokens map[string]string           // HTTP-01 token: key authorization
	alpn   map[string]*tls.Certificate // TLS-ALPN-01 name: certificate

	checkMu sync.Mutex // one Check at a time
	wake    chan struct{}
}

// loaded is a certificate as served.
type loaded struct {
	cert *tls.Certificate // Leaf set
	blob []byte           // as stored, to see changes
}

// persisted is the part of a Status kept in the Storage, so that every
// node reports a failure and backs off, whichever node tried.
type persisted struct {
	LastRenewed time.Time `json:"last_renewed,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	blob        []byte
}

// New checks cfg and returns a Manager; nothing is obtained until Run or
// Check.
func New(cfg Config) (*Manager, error) {
	if cfg.Storage == nil {
		return nil, errors.New("acmecert: no Storage")
	}
	if cfg.Hostname == "" {
		return nil, errors.New("acmecert: no Hostname")
	}
	if cfg.DirectoryURL == "" {
		cfg.DirectoryURL = LetsEncrypt
	}
	u, err := url.Parse(cfg.DirectoryURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("acmecert: directory URL %q: must be an https URL", cfg.DirectoryURL)
	}
	switch cfg.Challenge {
	case "":
		cfg.Challenge = HTTP01
	case HTTP01, TLSALPN01:
	default:
		return nil, fmt.Errorf("acmecert: challenge %q: must be %s or %s", cfg.Challenge, HTTP01, TLSALPN01)
	}
	if cfg.Templates == nil {
		cfg.Templates = DefaultTemplates
	}
	for _, t := range cfg.Templates {
		if err := CheckTemplate(t); err != nil {
			return nil, fmt.Errorf("acmecert: %v", err)
		}
	}
	if len(cfg.Templates) > 0 && cfg.Domains == nil {
		return nil, errors.New("acmecert: name templates without a Domains function")
	}
	if _, err := normalizeName(cfg.Hostname); err != nil {
		return nil, fmt.Errorf("acmecert: hostname %q: %v", cfg.Hostname, err)
	}
	if cfg.Email != "" && (!strings.Contains(cfg.Email, "@") || strings.ContainsAny(cfg.Email, " \t\r\n,<>")) {
		return nil, fmt.Errorf("acmecert: email %q: not an address", cfg.Email)
	}
	if cfg.HTTPClient == nil {
		c, err := httpClient(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.HTTPClient = c
	}
	if cfg.Holder == "" {
		h, _ := os.Hostname()
		cfg.Holder = fmt.Sprintf("%s/%d", h, os.Getpid())
	}
	if cfg.RenewAt <= 0 || cfg.RenewAt >= 1 {
		cfg.RenewAt = 2.0 / 3
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.CheckInterval, 10*time.Minute)
	def(&cfg.RetryMin, 10*time.Minute)
	def(&cfg.RetryMax, 12*time.Hour)
	def(&cfg.LockLease, 10*time.Minute)
	def(&cfg.Timeout, 5*time.Minute)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{
		cfg:    cfg,
		log:    log.With("module", "acme"),
		prefix: "acme/" + strings.ReplaceAll(u.Host, ":", "_") + "/",
		now:    time.Now,
		certs:  map[string]*loaded{},
		state:  map[string]*persisted{},
		tokens: map[string]string{},
		alpn:   map[string]*tls.Certificate{},
		wake:   make(chan struct{}, 1),
	}, nil
}

// httpClient returns a client trusting the system's roots and caFile's.
func httpClient(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{Timeout: time.Minute}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("acmecert: CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("acmecert: CA file %s: no PEM certificate in it", caFile)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: time.Minute}, nil
}

// Run checks at once, then whenever a renewal or retry falls due, at least
// every CheckInterval, and after Wake, until ctx is done.
func (m *Manager) Run(ctx context.Context) {
	for {
		if err := m.Check(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("acme check", "err", err)
		}
		wait := m.nextCheck(m.now())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-m.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// Wake makes Run check now, e.g. after a domain was added.
func (m *Manager) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// nextCheck is how long Run sleeps: until the next renewal or retry, at
// most CheckInterval, at least a second.
func (m *Manager) nextCheck(now time.Time) time.Duration {
	next := now.Add(m.cfg.CheckInterval)
	m.mu.RLock()
	if m.busy {
		// Another node is obtaining: look for its certificates soon.
		next = now.Add(min(m.cfg.CheckInterval, 30*time.Second))
	}
	for name, p := range m.state {
		if m.certs[name] == nil && p.NextAttempt.Before(next) {
			next = p.NextAttempt // no certificate: the retry
		}
	}
	for name, l := range m.certs {
		at := m.renewTime(l.cert.Leaf)
		if p := m.state[name]; p != nil && p.NextAttempt.After(at) {
			at = p.NextAttempt // due, but backing off
		}
		if at.Before(next) {
			next = at
		}
	}
	m.mu.RUnlock()
	if d := next.Sub(now); d > time.Second {
		return d
	}
	return time.Second
}

func (m *Manager) renewTime(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(time.Duration(float64(life) * m.cfg.RenewAt))
}

// Check loads what the Storage holds for every name and, if some name has
// no valid certificate or is due for renewal, takes the lock and obtains
// them. Failures of single names are recorded in their Status, not
// returned; the error is for what stops the whole check.
func (m *Manager) Check(ctx context.Context) error {
	m.checkMu.Lock()
	defer m.checkMu.Unlock()
	names, err := m.names(ctx)
	if err != nil {
		return err
	}
	m.forgetOthers(names)
	m.mu.Lock()
	m.wanted, m.busy = names, false
	m.mu.Unlock()
	var due []string
	for _, n := range names {
		m.load(ctx, n)
		if m.due(n, m.now()) {
			due = append(due, n)
		}
	}
	if len(due) == 0 {
		return nil
	}
	lock := m.prefix + "lock"
	ok, err := m.cfg.Storage.TryLock(ctx, lock, m.cfg.Holder, m.cfg.LockLease)
	if err != nil {
		return fmt.Errorf("taking the issuing lock: %w", err)
	}
	if !ok {
		m.log.Info("another node is obtaining certificates", "due", len(due))
		m.mu.Lock()
		m.busy = true
		m.mu.Unlock()
		return nil
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := m.cfg.Storage.Unlock(uctx, lock, m.cfg.Holder); err != nil {
			m.log.Warn("releasing the issuing lock", "err", err)
		}
	}()
	for i, n := range due {
		if i > 0 {
			// Extend the lease before each name: the lock holds for
			// LockLease after the last renewal.
			ok, err := m.cfg.Storage.TryLock(ctx, lock, m.cfg.Holder, m.cfg.LockLease)
			if err != nil || !ok {
				return fmt.Errorf("lost the issuing lock (held: %v): %v", ok, err)
			}
		}
		// Another node may have renewed it before we took the lock.
		m.load(ctx, n)
		if !m.due(n, m.now()) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		octx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
		err := m.obtain(octx, n)
		cancel()
		m.record(ctx, n, err)
	}
	return nil
}

// names returns the names wanted now.
func (m *Manager) names(ctx context.Context) ([]string, error) {
	var domains []string
	if len(m.cfg.Templates) > 0 {
		d, err := m.cfg.Domains(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing domains: %w", err)
		}
		domains = d
	}
	names, skipped := Names(m.cfg.Hostname, m.cfg.Templates, domains)
	for _, err := range skipped {
		m.log.Warn("no certificate for a name", "err", err)
	}
	return names, nil
}

// forgetOthers stops serving names that are no longer wanted (a domain
// removed); their certificates stay in the Storage until they expire.
func (m *Manager) forgetOthers(names []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n := range m.certs {
		if !slices.Contains(names, n) {
			delete(m.certs, n)
			delete(m.state, n)
		}
	}
}

// due reports whether name needs a certificate now: none valid, or past
// its renewal time, and not waiting for a retry.
func (m *Manager) due(name string, now time.Time) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if p := m.state[name]; p != nil && now.Before(p.NextAttempt) {
		return false
	}
	l := m.certs[name]
	return l == nil || !now.Before(m.renewTime(l.cert.Leaf))
}

// load installs what the Storage holds for name when it differs from what
// is served: a certificate that is valid for name, not expired, and ends
// later than the one served (a stale copy never replaces a renewed one).
func (m *Manager) load(ctx context.Context, name string) {
	blob, err := m.cfg.Storage.Get(ctx, m.certName(name))
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		m.log.Warn("reading a certificate from the store", "name", name, "err", err)
	default:
		m.mu.RLock()
		cur := m.certs[name]
		m.mu.RUnlock()
		if cur == nil || string(cur.blob) != string(blob) {
			m.install(name, blob)
		}
	}
	sblob, err := m.cfg.Storage.Get(ctx, m.statusName(name))
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			m.log.Warn("reading a certificate's status from the store", "name", name, "err", err)
		}
		return
	}
	m.mu.RLock()
	cur := m.state[name]
	m.mu.RUnlock()
	if cur != nil && string(cur.blob) == string(sblob) {
		return
	}
	var p persisted
	if err := json.Unmarshal(sblob, &p); err != nil {
		m.log.Warn("a certificate's status in the store is not JSON", "name", name, "err", err)
		return
	}
	p.blob = sblob
	m.mu.Lock()
	m.state[name] = &p
	m.mu.Unlock()
	m.report(name)
}

// install parses a stored certificate and serves it if it is better than
// the one served. It reports whether it did.
func (m *Manager) install(name string, blob []byte) bool {
	cert, err := parseCertBlob(blob)
	if err == nil {
		err = usable(cert.Leaf, name, m.now())
	}
	if err != nil {
		m.log.Warn("ignoring a stored certificate", "name", name, "err", err)
		return false
	}
	m.mu.Lock()
	cur := m.certs[name]
	if cur != nil && !cert.Leaf.NotAfter.After(cur.cert.Leaf.NotAfter) {
		m.mu.Unlock()
		return false
	}
	m.certs[name] = &loaded{cert: cert, blob: blob}
	m.mu.Unlock()
	m.log.Info("serving certificate", "name", name, "not_after", cert.Leaf.NotAfter, "issuer", cert.Leaf.Issuer.CommonName, "serial", cert.Leaf.SerialNumber.Text(16))
	m.report(name)
	return true
}

// usable reports why leaf cannot be served for name at now.
func usable(leaf *x509.Certificate, name string, now time.Time) error {
	if err := leaf.VerifyHostname(name); err != nil {
		return err
	}
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !leaf.NotAfter.After(leaf.NotBefore) {
		return errors.New("no lifetime")
	}
	return nil
}

// record keeps the outcome of an issuance for name in the Storage, logs it
// and reports it.
func (m *Manager) record(ctx context.Context, name string, err error) {
	now := m.now()
	m.mu.Lock()
	p := persisted{}
	if cur := m.state[name]; cur != nil {
		p = *cur
	}
	if err == nil {
		p = persisted{LastRenewed: now}
	} else {
		p.Failures++
		p.LastError = err.Error()
		p.LastErrorAt = now
		p.NextAttempt = now.Add(m.backoff(p.Failures))
	}
	blob, jerr := json.Marshal(&p)
	if jerr != nil {
		panic(jerr) // a struct of strings, ints and times always marshals
	}
	p.blob = blob
	m.state[name] = &p
	l := m.certs[name]
	m.mu.Unlock()
	if err != nil {
		attrs := []any{"name", name, "err", err, "failures", p.Failures, "next_attempt", p.NextAttempt}
		if l != nil {
			attrs = append(attrs, "serving_until", l.cert.Leaf.NotAfter, "days_left", fmt.Sprintf("%.1f", l.cert.Leaf.NotAfter.Sub(now).Hours()/24))
		} else {
			attrs = append(attrs, "serving", "fallback certificate")
		}
		m.log.Error("certificate not obtained", attrs...)
	}
	if perr := m.cfg.Storage.Put(ctx, m.statusName(name), blob); perr != nil {
		m.log.Warn("storing a certificate's status", "name", name, "err", perr)
	}
	m.report(name)
}

// backoff is the wait after the n-th consecutive failure: RetryMin
// doubled n-1 times, at most RetryMax, less up to a tenth at random so
// that the names that failed together do not retry together.
func (m *Manager) backoff(n int) time.Duration {
	d := m.cfg.RetryMin
	for i := 1; i < n && d < m.cfg.RetryMax; i++ {
		d *= 2
	}
	d = min(d, m.cfg.RetryMax)
	return d - time.Duration(rand.Int64N(int64(d)/10+1))
}

// Status returns the status of every name wanted at the last check,
// hostname first, also of those without a certificate yet.
func (m *Manager) Status() []Status {
	m.mu.RLock()
	defer m.mu.RUnlock()
	st := make([]Status, len(m.wanted))
	for i, n := range m.wanted {
		st[i] = m.statusLocked(n)
	}
	return st
}

func (m *Manager) statusLocked(name string) Status {
	s := Status{Name: name}
	if l := m.certs[name]; l != nil {
		leaf := l.cert.Leaf
		s.NotBefore, s.NotAfter, s.Issuer = leaf.NotBefore, leaf.NotAfter, leaf.Issuer.CommonName
		s.RenewAt = m.renewTime(leaf)
	}
	if p := m.state[name]; p != nil {
		s.LastRenewed, s.LastError, s.LastErrorAt = p.LastRenewed, p.LastError, p.LastErrorAt
		s.Failures, s.NextAttempt = p.Failures, p.NextAttempt
	}
	return s
}

func (m *Manager) report(name string) {
	if m.cfg.OnStatus == nil {
		return
	}
	m.mu.RLock()
	s := m.statusLocked(name)
	m.mu.RUnlock()
	m.cfg.OnStatus(s)
}

// Storage names, under one prefix per CA.
func (m *Manager) certName(name string) string   { return m.prefix + "cert/" + name }
func (m *Manager) statusName(name string) string { return m.prefix + "status/" + name }
func (m *Manager) accountName() string           { return m.prefix + "account.key" }
func (m *Manager) tokenName(token string) string { return m.prefix + "http-01/" + token }
func (m *Manager) alpnName(name string) string   { return m.prefix + "tls-alpn-01/" + name }
