// Package queue is postoffice's outbound queue runner: it delivers what the
// router queued for remote recipients by SMTP (RFC 5321), to the hosts of
// each recipient domain's MX records (section 5) or to a configured relay
// host or per-domain route, retries temporary failures on a backing-off
// schedule, and returns failures to the sender as delivery status
// notifications (RFC 3464) routed like any message.
//
// Delivery is at least once: a recipient is marked delivered only after
// the remote host's 250 reply to the end of the data, and a message leaves
// the store only when every recipient is delivered, or failed and its
// sender told. A crash at any point repeats work (a delivery, a bounce)
// rather than lose it.
package queue

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TLSLevel is how much TLS an outbound connection insists on.
type TLSLevel string

// TLS levels, named as Postfix names its smtp_tls_security_level values.
const (
	// TLSNone never uses STARTTLS.
	TLSNone TLSLevel = "none"
	// TLSMay uses STARTTLS whenever the peer offers it, without checking
	// its certificate (opportunistic TLS, RFC 7435); a failed handshake
	// falls back to a plaintext connection.
	TLSMay TLSLevel = "may"
	// TLSEncrypt requires STARTTLS (RFC 3207) but not a valid certificate.
	TLSEncrypt TLSLevel = "encrypt"
	// TLSVerify requires STARTTLS and a certificate valid for the host
	// name (the MX host or the relay's configured name).
	TLSVerify TLSLevel = "verify"
)

// Bouncer sends a notification message (a DSN, from the null sender) to
// one address; it returns once the notification is durable (in a mailbox
// or queued). An error wrapping ErrUndeliverable means it never can be
// (the sender is unknown): the runner drops the notification then rather
// than retry it.
type Bouncer func(ctx context.Context, to string, msg []byte) error

// ErrUndeliverable marks a notification that cannot be delivered at all.
var ErrUndeliverable = errors.New("notification undeliverable")

// Relay is a smart host that takes all remote mail.
type Relay struct {
	Addr     string // host:port
	User     string // AUTH PLAIN (RFC 4616) credentials, "" for none
	Password string
	TLS      TLSLevel
}

// Event reports what happened to one recipient, for journals and metrics.
type Event struct {
	Kind      string // "forwarded", "deferred", "bounced"
	QueueID   int64
	From      string
	To        string
	MessageID string
	Size      int64
	Remote    string // the host that answered, if any
	Status    string // RFC 3463 code
	Detail    string
}

// Config configures a Runner. Zero values take the defaults noted.
type Config struct {
	Hostname string // used in EHLO and in notifications
	Store    store.Queue
	Bounce   Bouncer
	Resolver Resolver // nil: SystemResolver()
	Logger   *slog.Logger

	MXPort int      // port of MX hosts; 25
	TLS    TLSLevel // for MX hosts and routes; TLSMay
	Relay  *Relay   // nil: deliver to MX hosts
	// Routes sends the mail of a domain (lower case, A-labels) to a
	// host:port instead of its MX hosts or the relay.
	Routes map[string]string

	RetryInitial time.Duration // first retry interval; 1 minute
	RetryMax     time.Duration // longest retry interval; 4 hours
	MaxLifetime  time.Duration // then recipients bounce; 5 days
	DelayWarning time.Duration // warn the sender once after this; 0 never
	PollInterval time.Duration // how often to look for due messages; 5 seconds

	MaxConcurrent int // SMTP connections in all; 20
	MaxPerHost    int // SMTP connections to one host address; 5

	ConnectTimeout time.Duration // 30 seconds
	// CommandTimeout bounds the wait for each reply (RFC 5321 section
	// 4.5.3.2: 5 minutes) and DataTimeout the one after the data (10
	// minutes).
	CommandTimeout time.Duration
	DataTimeout    time.Duration

	// RootCAs verifies certificates at TLSVerify; nil: the system's.
	RootCAs *x509.CertPool
	// Dial opens connections; nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// OnEvent, if set, is called for each recipient's outcome.
	OnEvent func(Event)
	// Now is the clock, for tests.
	Now func() time.Time
}

// claimLease is how long a claim protects a message being delivered from
// another runner while its runner lives; an attempt is bounded by far
// less (timeouts). The claims of a runner that dies end sooner: at its
// next start (ReleaseClaims), and in a store that several nodes share
// with the liveness lease of its process, when another node takes them.
const claimLease = time.Hour

// maxTargets bounds how many host addresses one attempt tries
// (RFC 5321 section 5.1: try at least two; Postfix tries five).
const maxTargets = 10

// Runner delivers queued messages in the background.
type Runner struct {
	cfg   Config
	log   *slog.Logger
	kick  chan struct{}
	conns chan struct{} // one token per open SMTP connection
	hosts *limiter

	// ctx is cancelled to abort deliveries at the end of Shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	inflight map[int64]bool
	started  bool
	stopping bool
	stop     chan struct{}
	done     chan struct{}
	wg       sync.WaitGroup
}

// New returns a Runner; nothing happens until Start.
func New(cfg Config) *Runner {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RetryInitial, time.Minute)
	def(&cfg.RetryMax, 4*time.Hour)
	def(&cfg.MaxLifetime, 5*24*time.Hour)
	def(&cfg.PollInterval, 5*time.Second)
	def(&cfg.ConnectTimeout, 30*time.Second)
	def(&cfg.CommandTimeout, 5*time.Minute)
	def(&cfg.DataTimeout, 10*time.Minute)
	if cfg.MXPort == 0 {
		cfg.MXPort = 25
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSMay
	}
	if cfg.Relay != nil && cfg.Relay.TLS == "" {
		cfg.Relay.TLS = TLSMay
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 20
	}
	if cfg.MaxPerHost <= 0 {
		cfg.MaxPerHost = 5
	}
	if cfg.Resolver == nil {
		cfg.Resolver = SystemResolver()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Routes) > 0 {
		routes := make(map[string]string, len(cfg.Routes))
		for domain, hop := range cfg.Routes {
			if d, err := asciiDomain(domain); err == nil {
				routes[d] = hop
			}
		}
		cfg.Routes = routes
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: cfg.ConnectTimeout}
		cfg.Dial = d.DialContext
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Runner{
		cfg:      cfg,
		log:      cfg.Logger,
		kick:     make(chan struct{}, 1),
		conns:    make(chan struct{}, cfg.MaxConcurrent),
		hosts:    newLimiter(cfg.MaxPerHost),
		ctx:      ctx,
		cancel:   cancel,
		inflight: map[int64]bool{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// Start ends the claims that no running runner holds (those a crashed
// process left, never those of another live node's runner) and starts
// delivering in the background.
func (r *Runner) Start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started {
		return errors.New("queue runner already started")
	}
	if err := r.cfg.Store.ReleaseClaims(context.Background()); err != nil {
		return fmt.Errorf("queue: releasing old claims: %w", err)
	}
	r.started = true
	go r.loop()
	return nil
}

// Kick makes the runner look for due messages now (after an Enqueue in
// this process) rather than at the next poll.
func (r *Runner) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Shutdown stops taking messages, lets the attempts under way finish until
// ctx is done, then aborts them (their recipients are retried at the next
// start) and waits until their outcome is recorded.
func (r *Runner) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	started, stopping := r.started, r.stopping
	r.stopping = true
	r.mu.Unlock()
	if !started {
		r.cancel()
		return nil
	}
	if !stopping {
		close(r.stop)
	}
	<-r.done
	finished := make(chan struct{})
	go func() {
		r.wg.Wait()
		close(finished)
	}()
	select {
	case <-finished:
		r.cancel()
		return nil
	case <-ctx.Done():
		r.cancel()
		<-finished
		return fmt.Errorf("queue: deliveries aborted at shutdown: %w", ctx.Err())
	}
}

func (r *Runner) loop() {
	defer close(r.done)
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		r.runDue()
		select {
		case <-r.stop:
			return
		case <-r.kick:
		case <-t.C:
		}
	}
}

// maxInFlight bounds the messages being worked on at once; their
// connections are bounded apart (MaxConcurrent, MaxPerHost).
func (r *Runner) maxInFlight() int { return 4 * r.cfg.MaxConcurrent }

// runDue claims due messages and starts an attempt for each.
func (r *Runner) runDue() {
	r.mu.Lock()
	free := r.maxInFlight() - len(r.inflight)
	r.mu.Unlock()
	if free <= 0 {
		return
	}
	ms, err := r.cfg.Store.ClaimQueued(r.ctx, r.cfg.Now(), claimLease, free)
	if err != nil {
		if r.ctx.Err() == nil {
			r.log.Error("claiming due messages", "err", err)
		}
		return
	}
	for _, m := range ms {
		r.mu.Lock()
		busy := r.inflight[m.ID]
		if !busy {
			r.inflight[m.ID] = true
			r.wg.Add(1)
		}
		r.mu.Unlock()
		if busy {
			continue // an attempt of ours outlived its lease
		}
		go func() {
			defer r.wg.Done()
			r.process(m)
			r.mu.Lock()
			delete(r.inflight, m.ID)
			r.mu.Unlock()
			// More may be due than one claim took.
			r.Kick()
		}()
	}
}

// failure is the outcome of an attempt for a recipient that was not
// delivered.
type failure struct {
	perm   bool
	status string // RFC 3463
	text   string
	remote string // host that said so, "" if none
}

func permFailure(status, format string, a ...any) *failure {
	return &failure{perm: true, status: status, text: fmt.Sprintf(format, a...)}
}

func tempFailure(status, format string, a ...any) *failure {
	return &failure{status: status, text: fmt.Sprintf(format, a...)}
}

// outcome is one recipient's result of an attempt: delivered when fail is
// nil.
type outcome struct {
	fail   *failure
	remote string
}

// process makes one attempt at a claimed message and records its outcome.
func (r *Runner) process(m store.QueuedMessage) {
	// Store updates and notifications go on through a shutdown: an
	// outcome must be recorded even when the attempt was aborted.
	bg := context.WithoutCancel(r.ctx)
	log := r.log.With("queue_id", m.ID)

	var pending []string
	var unnotified []store.QueueRecipient
	for _, rc := range m.Recipients {
		switch {
		case rc.State == store.QueuePending:
			pending = append(pending, rc.Address)
		case rc.State == store.QueueFailed && !rc.Notified:
			unnotified = append(unnotified, rc)
		}
	}

	var info *msgInfo
	if len(pending) > 0 || len(unnotified) > 0 {
		var err error
		info, err = inspect(bg, r.cfg.Store, m)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return // deleted meanwhile
			}
			log.Error("reading queued message", "err", err)
			r.reschedule(bg, m.ID, r.cfg.Now().Add(r.cfg.RetryInitial))
			return
		}
	}
	// Failures whose notification a crash or a failed bounce left unsent.
	if len(unnotified) > 0 {
		r.notify(bg, log, m, info, unnotified)
	}
	if len(pending) == 0 {
		r.finish(bg, log, m)
		return
	}

	results := r.attempt(info, m, pending)
	now := r.cfg.Now()
	u := store.QueueUpdate{Attempted: true, At: now}
	var deferred, failed []store.QueueRecipient
	aborted := r.ctx.Err() != nil
	for _, addr := range pending {
		o := results[addr]
		rc := store.QueueRecipient{Address: addr, RemoteMTA: o.remote}
		ev := Event{QueueID: m.ID, From: m.From, To: addr, MessageID: info.messageID, Size: m.Size, Remote: o.remote}
		switch {
		case o.fail == nil:
			rc.State, rc.Status = store.QueueDelivered, "2.0.0"
			ev.Kind, ev.Status = "forwarded", "2.0.0"
			log.Info("delivered", "rcpt", addr, "remote", o.remote)
		case o.fail.perm:
			rc.State, rc.Status, rc.LastError = store.QueueFailed, o.fail.status, o.fail.text
			failed = append(failed, rc)
			ev.Kind, ev.Status, ev.Detail = "bounced", o.fail.status, o.fail.text
			log.Warn("delivery failed", "rcpt", addr, "status", o.fail.status, "err", o.fail.text)
		default:
			rc.State, rc.Status, rc.LastError = store.QueuePending, o.fail.status, o.fail.text
			deferred = append(deferred, rc)
			ev.Kind, ev.Status, ev.Detail = "deferred", o.fail.status, o.fail.text
			log.Info("delivery deferred", "rcpt", addr, "status", o.fail.status, "err", o.fail.text)
		}
		u.Recipients = append(u.Recipients, rc)
		if r.cfg.OnEvent != nil {
			r.cfg.OnEvent(ev)
		}
	}

	deadline := m.CreatedAt.Add(r.cfg.MaxLifetime)
	if len(deferred) > 0 {
		next, ok := NextAttempt(now, deadline, m.Attempts+1, r.cfg.RetryInitial, r.cfg.RetryMax)
		switch {
		case aborted:
			// Interrupted by a shutdown: try again as soon as we start.
			u.NextAttempt = now
		case ok:
			u.NextAttempt = next
			if r.cfg.DelayWarning > 0 && !m.Warned && m.From != "" && now.Sub(m.CreatedAt) >= r.cfg.DelayWarning {
				u.Warned = r.warn(bg, log, m, info, deferred, now)
			}
		default:
			// The lifetime is over (RFC 5321 section 4.5.4.1: give up and
			// return the message). RFC 3463 section 3.5: X.4.7 delivery
			// time expired.
			for i, rc := range u.Recipients {
				if rc.State != store.QueuePending {
					continue
				}
				rc.State, rc.Status = store.QueueFailed, "4.4.7"
				rc.LastError = fmt.Sprintf("delivery time expired after %s and %d attempts; last error: %s",
					r.cfg.MaxLifetime, m.Attempts+1, rc.LastError)
				u.Recipients[i] = rc
				failed = append(failed, rc)
				log.Warn("delivery expired", "rcpt", rc.Address, "err", rc.LastError)
				if r.cfg.OnEvent != nil {
					r.cfg.OnEvent(Event{Kind: "bounced", QueueID: m.ID, From: m.From, To: rc.Address, MessageID: info.messageID,
						Size: m.Size, Remote: rc.RemoteMTA, Status: rc.Status, Detail: rc.LastError})
				}
			}
		}
	}
	if len(failed) > 0 && m.From == "" {
		// RFC 5321 section 4.5.5 and RFC 3464 section 2: never a
		// notification to the null sender (a bounce that bounces); the
		// failure is logged.
		for i := range u.Recipients {
			if u.Recipients[i].State == store.QueueFailed {
				u.Recipients[i].Notified = true
			}
		}
		log.Warn("undeliverable message from the null sender dropped", "failed", len(failed))
		failed = nil
	}
	if len(failed) > 0 {
		// Until the notification is sent and recorded, the message comes
		// back after the usual interval for it.
		if u.NextAttempt.IsZero() {
			u.NextAttempt = now.Add(r.cfg.RetryInitial)
		}
	}
	if err := r.cfg.Store.UpdateQueued(bg, m.ID, u); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			log.Info("message left the queue during the attempt")
		} else {
			log.Error("recording the attempt", "err", err)
		}
		return
	}
	if len(failed) > 0 {
		r.notify(bg, log, m, info, failed)
	}
	r.finish(bg, log, m)
}

// finish removes the message once every recipient is delivered, or failed
// with its sender told.
func (r *Runner) finish(ctx context.Context, log *slog.Logger, m store.QueuedMessage) {
	cur, err := r.cfg.Store.QueuedMessage(ctx, m.ID)
	if err != nil {
		return // already gone
	}
	for _, rc := range cur.Recipients {
		if rc.State == store.QueuePending || (rc.State == store.QueueFailed && !rc.Notified) {
			return
		}
	}
	if err := r.cfg.Store.DeleteQueued(ctx, m.ID); err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("removing a finished message", "err", err)
		return
	}
	log.Info("message done, removed from the queue")
}

func (r *Runner) reschedule(ctx context.Context, id int64, next time.Time) {
	if err := r.cfg.Store.UpdateQueued(ctx, id, store.QueueUpdate{NextAttempt: next}); err != nil && !errors.Is(err, store.ErrNotFound) {
		r.log.Error("rescheduling", "queue_id", id, "err", err)
	}
}

// attempt delivers to every pending recipient: one SMTP transaction per
// destination (a recipient domain, or a relay or route carrying several),
// the destinations in parallel.
func (r *Runner) attempt(info *msgInfo, m store.QueuedMessage, pending []string) map[string]outcome {
	results := make(map[string]outcome, len(pending))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range r.group(pending) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := r.deliverGroup(r.ctx, info, m.From, g)
			mu.Lock()
			defer mu.Unlock()
			for addr, o := range res {
				results[addr] = o
			}
		}()
	}
	wg.Wait()
	return results
}

// destination is where the mail of a group of recipients goes.
type destination struct {
	key    string // grouping key
	domain string // MX delivery when addr is ""
	addr   string // host:port of a relay or route
	relay  *Relay // credentials, for the relay
	tls    TLSLevel
	err    *failure // a recipient address no destination can be found for
}

type group struct {
	dest  destination
	rcpts []string
}

// destinationOf returns where mail for rcpt goes: a route for its
// domain, else the relay host, else the domain's MX hosts.
func (r *Runner) destinationOf(rcpt string) destination {
	i := strings.LastIndexByte(rcpt, '@')
	if i < 0 || i == len(rcpt)-1 {
		// RFC 3463 section 3.2: X.1.3 bad destination mailbox address syntax.
		return destination{key: "invalid", err: permFailure("5.1.3", "recipient address %q has no domain", rcpt)}
	}
	domain, err := asciiDomain(rcpt[i+1:])
	if err != nil {
		return destination{key: "invalid", err: permFailure("5.1.2", "bad recipient domain: %v", err)}
	}
	if route, ok := r.cfg.Routes[domain]; ok {
		return destination{key: "route " + route, addr: route, tls: r.cfg.TLS}
	}
	if strings.HasPrefix(domain, "[") {
		// An address literal (RFC 5321 section 4.1.3) names the host.
		ip := strings.TrimPrefix(strings.Trim(domain, "[]"), "ipv6:")
		if net.ParseIP(ip) == nil {
			return destination{key: "invalid", err: permFailure("5.1.2", "bad address literal %s", domain)}
		}
		addr := net.JoinHostPort(ip, fmt.Sprint(r.cfg.MXPort))
		if rl := r.cfg.Relay; rl != nil {
			return destination{key: "relay", addr: rl.Addr, relay: rl, tls: rl.TLS}
		}
		return destination{key: "literal " + addr, addr: addr, tls: r.cfg.TLS}
	}
	if rl := r.cfg.Relay; rl != nil {
		return destination{key: "relay", addr: rl.Addr, relay: rl, tls: rl.TLS}
	}
	return destination{key: "mx " + domain, domain: domain, tls: r.cfg.TLS}
}

// group splits recipients by destination, keeping their order.
func (r *Runner) group(rcpts []string) []group {
	var gs []group
	index := map[string]int{}
	for _, rc := range rcpts {
		d := r.destinationOf(rc)
		i, ok := index[d.key]
		if !ok {
			i = len(gs)
			index[d.key] = i
			gs = append(gs, group{dest: d})
		}
		gs[i].rcpts = append(gs[i].rcpts, rc)
	}
	return gs
}

// limiter bounds the connections to each host address.
type limiter struct {
	max   int
	mu    sync.Mutex
	slots map[string]chan struct{}
	users map[string]int
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, slots: map[string]chan struct{}{}, users: map[string]int{}}
}

// acquire waits for a slot for key; release must follow unless it fails.
func (l *limiter) acquire(ctx context.Context, key string) (release func(), err error) {
	l.mu.Lock()
	ch, ok := l.slots[key]
	if !ok {
		ch = make(chan struct{}, l.max)
		l.slots[key] = ch
	}
	l.users[key]++
	l.mu.Unlock()
	done := func() {
		l.mu.Lock()
		l.users[key]--
		if l.users[key] == 0 {
			delete(l.users, key)
			delete(l.slots, key)
		}
		l.mu.Unlock()
	}
	select {
	case ch <- struct{}{}:
		return func() { <-ch; done() }, nil
	case <-ctx.Done():
		done()
		return nil, ctx.Err()
	}
}
