package queue

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// txn is one transaction a sink accepted.
type txn struct {
	from     string   // the reverse-path as written, without <>
	rcpts    []string // the forward-paths as written
	mail     string   // the MAIL line, parameters included
	rcptCmds []string // the RCPT lines
	data     string
	tls      bool
	authUser string
	helo     string
	utf8     bool // MAIL had SMTPUTF8
}

// sink is an SMTP server on loopback (testlib.SMTPSink) that records
// what it gets; options choose what it offers and refuses.
type sink struct {
	*testlib.SMTPSink
	addr string
}

type sinkOption func(*testlib.SinkOptions)

func withTLS(cert tls.Certificate) sinkOption {
	return func(o *testlib.SinkOptions) { o.Cert = &cert }
}

// withBrokenTLS offers STARTTLS but only TLS versions the runner refuses,
// so that every handshake fails.
func withBrokenTLS(cert tls.Certificate) sinkOption {
	return func(o *testlib.SinkOptions) {
		o.Cert = &cert
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
	}
}

func withAuth(user, pass string) sinkOption {
	return func(o *testlib.SinkOptions) { o.Auth = map[string]string{user: pass} }
}

func withMaxSize(n int64) sinkOption {
	return func(o *testlib.SinkOptions) { o.MaxSize = n }
}

func withSMTPUTF8() sinkOption {
	return func(o *testlib.SinkOptions) { o.SMTPUTF8 = true }
}

func withDSN() sinkOption {
	return func(o *testlib.SinkOptions) { o.DSN = true }
}

func without8BitMIME() sinkOption {
	return func(o *testlib.SinkOptions) { o.No8BitMIME = true }
}

// withRcpt answers RCPT TO with f's reply line ("" takes the recipient).
func withRcpt(f func(to string) string) sinkOption {
	return func(o *testlib.SinkOptions) { o.Rcpt = f }
}

// withData answers the end of the n-th message's data with f's reply
// line ("" takes it).
func withData(f func(n int) string) sinkOption {
	return func(o *testlib.SinkOptions) { o.Data = f }
}

func newSink(t testing.TB, opts ...sinkOption) *sink {
	t.Helper()
	o := testlib.SinkOptions{}
	for _, f := range opts {
		f(&o)
	}
	s := testlib.StartSMTPSink(t, o)
	return &sink{SMTPSink: s, addr: s.Addr}
}

func (k *sink) transactions() []txn {
	var out []txn
	for _, t := range k.Txns() {
		out = append(out, txn{from: t.From(), rcpts: t.To(), mail: t.Mail, rcptCmds: t.Rcpts, data: string(t.Data),
			tls: t.TLS, authUser: t.AuthUser, helo: t.Helo, utf8: strings.Contains(t.Mail, " SMTPUTF8")})
	}
	return out
}

func (k *sink) maxOpen() int {
	_, n, _, _ := k.Stats()
	return n
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
	id, err := h.st.Enqueue(context.Background(), store.QueueEnvelope{From: from, To: rcpts}, strings.NewReader(body))
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

// waitFor polls cond for up to 30 seconds (what another process does
// is asynchronous).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30 s for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
