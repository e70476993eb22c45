package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// txn is one transaction a sink accepted.
type txn struct {
	from     string
	rcpts    []string
	data     string
	tls      bool
	authUser string
	helo     string
	utf8     bool
}

// sink is an in-process SMTP server (go-smtp) that records what it gets.
type sink struct {
	t    testing.TB
	addr string
	srv  *smtp.Server

	// rcpt, data: optional refusals, by recipient or per transaction.
	rcpt func(to string) error
	data func(n int) error // n counts DATA commands, from 1
	// user/pass, when set, are required before MAIL.
	user, pass string

	mu       sync.Mutex
	txns     []txn
	datas    int
	sessions int // open at the moment
	maxOpen  int // most open at once
	block    chan struct{}
}

type sinkOption func(*sink, *smtp.Server)

func withTLS(cert tls.Certificate) sinkOption {
	return func(_ *sink, s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
}

// withBrokenTLS offers STARTTLS but only TLS versions the runner refuses,
// so that every handshake fails.
func withBrokenTLS(cert tls.Certificate) sinkOption {
	return func(_ *sink, s *smtp.Server) {
		s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	}
}

func withAuth(user, pass string) sinkOption {
	return func(k *sink, s *smtp.Server) { k.user, k.pass = user, pass }
}

func withMaxSize(n int64) sinkOption {
	return func(_ *sink, s *smtp.Server) { s.MaxMessageBytes = n }
}

// withWire records the sink's whole conversation, as sent and received,
// in w.
func withWire(w *wireLog) sinkOption {
	return func(_ *sink, s *smtp.Server) { s.Debug = w }
}

// wireLog collects a conversation written from several goroutines.
type wireLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *wireLog) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// lines returns the lines of the conversation that start with prefix.
func (w *wireLog) lines(prefix string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range strings.Split(w.b.String(), "\r\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return out
}

func withSMTPUTF8() sinkOption {
	return func(_ *sink, s *smtp.Server) { s.EnableSMTPUTF8 = true }
}

func newSink(t testing.TB, opts ...sinkOption) *sink {
	t.Helper()
	k := &sink{t: t}
	s := smtp.NewServer(k)
	s.Domain = "sink.test"
	s.AllowInsecureAuth = false
	s.ReadTimeout, s.WriteTimeout = 30*time.Second, 30*time.Second
	s.ErrorLog = discardLogger{}
	for _, o := range opts {
		o(k, s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k.addr, k.srv = l.Addr().String(), s
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return k
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...interface{}) {}
func (discardLogger) Println(...interface{})        {}

func (k *sink) transactions() []txn {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]txn(nil), k.txns...)
}

func (k *sink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	_, isTLS := c.TLSConnectionState()
	k.mu.Lock()
	k.sessions++
	k.maxOpen = max(k.maxOpen, k.sessions)
	k.mu.Unlock()
	return &sinkSession{k: k, c: c, tx: txn{tls: isTLS, helo: c.Hostname()}}, nil
}

type sinkSession struct {
	k    *sink
	c    *smtp.Conn
	tx   txn
	user string
}

func (s *sinkSession) AuthMechanisms() []string {
	if s.k.user == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != s.k.user || pass != s.k.pass {
			return smtp.ErrAuthFailed
		}
		s.user = user
		return nil
	}), nil
}

func (s *sinkSession) Reset() {
	_, isTLS := s.c.TLSConnectionState()
	s.tx = txn{tls: isTLS, helo: s.c.Hostname()}
}

func (s *sinkSession) Logout() error {
	s.k.mu.Lock()
	s.k.sessions--
	s.k.mu.Unlock()
	return nil
}

func (s *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.k.user != "" && s.user == "" {
		return smtp.ErrAuthRequired
	}
	s.tx.from, s.tx.authUser, s.tx.utf8 = from, s.user, opts.UTF8
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if s.k.rcpt != nil {
		if err := s.k.rcpt(to); err != nil {
			return err
		}
	}
	s.tx.rcpts = append(s.tx.rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.k.mu.Lock()
	s.k.datas++
	n, block := s.k.datas, s.k.block
	s.k.mu.Unlock()
	if block != nil {
		<-block
	}
	if s.k.data != nil {
		if err := s.k.data(n); err != nil {
			return err
		}
	}
	s.tx.data = string(b)
	s.k.mu.Lock()
	s.k.txns = append(s.k.txns, s.tx)
	s.k.mu.Unlock()
	return nil
}

// fakeResolver answers from maps; names it does not know do not exist.
type fakeResolver struct {
	mx    map[string][]*net.MX
	ip    map[string][]net.IP
	fail  map[string]bool // lookups of these names fail temporarily
	mu    sync.Mutex
	asked []string
}

func (f *fakeResolver) LookupMX(_ context.Context, domain string) ([]*net.MX, error) {
	f.mu.Lock()
	f.asked = append(f.asked, "MX "+domain)
	f.mu.Unlock()
	if f.fail[domain] {
		return nil, &net.DNSError{Err: "server failure", Name: domain, IsTemporary: true}
	}
	if mx, ok := f.mx[domain]; ok {
		return mx, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: domain, IsNotFound: true}
}

func (f *fakeResolver) LookupIP(_ context.Context, host string) ([]net.IP, error) {
	if f.fail[host] {
		return nil, &net.DNSError{Err: "server failure", Name: host, IsTemporary: true}
	}
	if ip, ok := f.ip[host]; ok {
		return ip, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// dialer maps the loopback addresses the fake DNS hands out (127.0.0.x:25)
// to the sinks' real addresses; anything else is refused, so a test can
// never reach a real host.
type dialer struct {
	mu     sync.Mutex
	routes map[string]string
	dials  []string
}

func (d *dialer) route(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.routes == nil {
		d.routes = map[string]string{}
	}
	d.routes[from] = to
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, addr)
	to, ok := d.routes[addr]
	d.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, to)
}

func (d *dialer) dialed() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dials...)
}

// bounceRecorder is a Bouncer that keeps the notifications.
type bounceRecorder struct {
	mu   sync.Mutex
	msgs []sentBounce
	err  error
}

type sentBounce struct {
	to  string
	msg string
}

func (b *bounceRecorder) bounce(_ context.Context, to string, msg []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	b.msgs = append(b.msgs, sentBounce{to, string(msg)})
	return nil
}

func (b *bounceRecorder) sent() []sentBounce {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]sentBounce(nil), b.msgs...)
}

// harness is a runner over a real store, with a clock the test moves.
type harness struct {
	t       testing.TB
	st      *sqlite.Store
	r       *Runner
	res     *fakeResolver
	dial    *dialer
	bounces *bounceRecorder
	now     time.Time
	mu      sync.Mutex
}

func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := &harness{t: t, st: st, res: &fakeResolver{mx: map[string][]*net.MX{}, ip: map[string][]net.IP{}, fail: map[string]bool{}},
		dial: &dialer{}, bounces: &bounceRecorder{}, now: time.Now().Truncate(time.Second)}
	cfg := Config{
		Hostname:       "out.test",
		Store:          st,
		Bounce:         h.bounces.bounce,
		Resolver:       h.res,
		Dial:           h.dial.dial,
		Now:            h.clock,
		RetryInitial:   time.Minute,
		RetryMax:       time.Hour,
		MaxLifetime:    24 * time.Hour,
		CommandTimeout: 30 * time.Second,
		DataTimeout:    30 * time.Second,
		Logger:         slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	h.r = New(cfg)
	t.Cleanup(func() { h.r.Shutdown(context.Background()) })
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

// mx publishes MX records for domain: each host at its own loopback
// address, and routes that address to sink (nil: connections refused).
func (h *harness) mx(domain string, hosts ...mxHost) {
	for _, m := range hosts {
		h.res.mx[domain] = append(h.res.mx[domain], &net.MX{Host: m.name + ".", Pref: m.pref})
		h.res.ip[m.name] = []net.IP{net.ParseIP(m.ip)}
		if m.sink != nil {
			h.dial.route(net.JoinHostPort(m.ip, "25"), m.sink.addr)
		}
	}
}

type mxHost struct {
	name string
	pref uint16
	ip   string
	sink *sink
}

func (h *harness) enqueue(from string, rcpts []string, body string) int64 {
	h.t.Helper()
	id, err := h.st.Enqueue(context.Background(), from, rcpts, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	// The store stamps the message with the real clock: keep the test's
	// clock from lagging behind it (it started earlier, maybe in the
	// previous second).
	h.mu.Lock()
	if now := time.Now().Truncate(time.Second); now.After(h.now) {
		h.now = now
	}
	h.mu.Unlock()
	return id
}

// attempt makes one attempt at every due message, synchronously.
func (h *harness) attempt() int {
	h.t.Helper()
	ms, err := h.st.ClaimQueued(context.Background(), h.clock(), claimLease, 100)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, m := range ms {
		h.r.process(m)
	}
	return len(ms)
}

// queued returns the message, or ok false once it left the queue.
func (h *harness) queued(id int64) (store.QueuedMessage, bool) {
	h.t.Helper()
	m, err := h.st.QueuedMessage(context.Background(), id)
	if errors.Is(err, store.ErrNotFound) {
		return m, false
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return m, true
}

func (h *harness) recipient(id int64, addr string) store.QueueRecipient {
	h.t.Helper()
	m, ok := h.queued(id)
	if !ok {
		h.t.Fatalf("message %d left the queue", id)
	}
	for _, rc := range m.Recipients {
		if rc.Address == addr {
			return rc
		}
	}
	h.t.Fatalf("message %d has no recipient %s", id, addr)
	return store.QueueRecipient{}
}

// selfSigned returns a certificate for the names (DNS names or IPs).
func selfSigned(t testing.TB, names ...string) (tls.Certificate, *x509.Certificate) {
	c := testlib.Cert(t, names...)
	return c, c.Leaf
}

// field returns the value of a "Name: value" line of a notification.
func field(msg, name string) string {
	for _, l := range strings.Split(msg, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
