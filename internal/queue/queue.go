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

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/mtasts"
	"github.com/postoffice-mail/postoffice/internal/smtpclient"
	"github.com/postoffice-mail/postoffice/internal/store"
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
	User     string // AUTH credentials (RFC 4954), "" for none
	Password string
	TLS      smtpclient.TLSLevel
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
	// Reply is the remote host's reply that decided, as it came; Detail
	// is the reason in our own words when there is none, and any note
	// (an MTA-STS policy in testing mode that would have failed).
	Reply  store.RemoteReply
	Detail string
}

// Config configures a Runner. Zero values take the defaults noted.
type Config struct {
	Hostname string // used in EHLO and in notifications
	Store    store.Queue
	Bounce   Bouncer
	Resolver Resolver // nil: SystemResolver()
	Logger   *slog.Logger

	MXPort int                 // port of MX hosts; 25
	TLS    smtpclient.TLSLevel // for MX hosts and routes; TLSMay
	Relay  *Relay              // nil: deliver to MX hosts
	// Routes sends the mail of a domain (lower case, A-labels) to a
	// host:port instead of its MX hosts or the relay.
	Routes map[string]string

	RetryInitial time.Duration // first retry interval; 1 minute
	RetryMax     time.Duration // longest retry interval; 4 hours
	MaxLifetime  time.Duration // then recipients bounce; 5 days
	// DelayWarning: the sender of a message still waiting this long is
	// warned once, for the recipients that did not decline it (RFC 3461
	// section 4.1, NOTIFY without DELAY); 0 never.
	DelayWarning time.Duration
	PollInterval time.Duration // how often to look for due messages; 5 seconds

	// MaxConcurrent bounds the outbound SMTP connections in all, busy
	// and kept open for reuse: 20. MaxPerHost bounds those to one host
	// address: 5.
	MaxConcurrent int
	MaxPerHost    int
	// ReuseTime is how long a connection carries further messages to its
	// host, one after the other with RSET between (Postfix's
	// smtp_connection_reuse_time_limit): 5 minutes; negative: every
	// message on a connection of its own.
	ReuseTime time.Duration

	ConnectTimeout time.Duration // 30 seconds
	// CommandTimeout bounds the wait for each reply (RFC 5321 section
	// 4.5.3.2: 5 minutes) and DataTimeout the one after the data (10
	// minutes).
	CommandTimeout time.Duration
	DataTimeout    time.Duration

	// MTASTS finds the MTA-STS policies (RFC 8461) of recipient domains
	// for MX delivery (see mtasts.go); nil: none are applied.
	MTASTS *mtasts.Fetcher

	// RootCAs verifies certificates at TLSVerify and under an MTA-STS
	// policy; nil: the system's.
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
	cfg  Config
	log  *slog.Logger
	kick chan struct{}
	// pool keeps the SMTP connections, within MaxConcurrent and
	// MaxPerHost, and carries further messages on them.
	pool *smtpclient.Pool

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
	if cfg.ReuseTime == 0 {
		cfg.ReuseTime = 5 * time.Minute
	}
	if cfg.MXPort == 0 {
		cfg.MXPort = 25
	}
	if cfg.TLS == "" {
		cfg.TLS = smtpclient.TLSMay
	}
	if cfg.Relay != nil && cfg.Relay.TLS == "" {
		cfg.Relay.TLS = smtpclient.TLSMay
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
	ctx, cancel := context.WithCancel(context.Background())
	return &Runner{
		cfg:      cfg,
		log:      cfg.Logger,
		kick:     make(chan struct{}, 1),
		pool:     newPool(cfg),
		ctx:      ctx,
		cancel:   cancel,
		inflight: map[int64]bool{},
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
}

// newPool is the SMTP client's connection pool for cfg.
func newPool(cfg Config) *smtpclient.Pool {
	maxAge := cfg.ReuseTime
	if maxAge < 0 {
		maxAge = time.Nanosecond // closed after its first message
	}
	return smtpclient.NewPool(smtpclient.Config{
		Hostname: cfg.Hostname,
		RootCAs:  cfg.RootCAs,
		Dial:     cfg.Dial,
		Timeouts: smtpclient.Timeouts{
			Connect:  cfg.ConnectTimeout,
			Greeting: cfg.CommandTimeout,
			Command:  cfg.CommandTimeout,
			Mail:     cfg.CommandTimeout,
			Rcpt:     cfg.CommandTimeout,
			DataInit: cfg.CommandTimeout,
			DataTerm: cfg.DataTimeout,
		},
	}, smtpclient.PoolConfig{MaxPerDest: cfg.MaxPerHost, MaxConns: cfg.MaxConcurrent, MaxAge: maxAge})
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
		r.pool.Close()
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
		r.pool.Close()
		return nil
	case <-ctx.Done():
		r.cancel()
		<-finished
		r.pool.Close()
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

// process makes one attempt at a claimed message and records its outcome:
// the notifications a crash or a failed send left owed go first, then the
// pending recipients are tried, the outcome recorded with the next
// attempt, and the notifications the outcome calls for are sent.
func (r *Runner) process(m store.QueuedMessage) {
	// Store updates and notifications go on through a shutdown: an
	// outcome must be recorded even when the attempt was aborted.
	bg := context.WithoutCancel(r.ctx)
	log := r.log.With("queue_id", m.ID)

	var pending []store.QueueRecipient
	owedNow := map[string][]store.QueueRecipient{}
	for _, rc := range m.Recipients {
		if rc.State == store.QueuePending {
			pending = append(pending, rc)
		} else if action := owed(m.From, rc); action != "" {
			owedNow[action] = append(owedNow[action], rc)
		}
	}
	if len(pending) == 0 && len(owedNow) == 0 {
		r.finish(bg, log, m)
		return
	}
	info, err := inspect(bg, r.cfg.Store, m)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return // deleted meanwhile
		}
		log.Error("reading queued message", "err", err)
		r.reschedule(bg, m.ID, r.cfg.Now().Add(r.cfg.RetryInitial))
		return
	}
	for _, action := range []string{dsn.Failed, dsn.Relayed} {
		r.notify(bg, log, m, info, action, owedNow[action])
	}
	if len(pending) > 0 {
		results := r.attempt(info, m, pending)
		now := r.cfg.Now()
		u := r.record(log, m, info, pending, results, now)
		r.schedule(bg, log, m, info, &u, now)
		owedAfter := settle(m, &u)
		if len(owedAfter) > 0 && u.NextAttempt.IsZero() {
			// Until the notifications are sent and recorded, the message
			// comes back after the usual interval for them.
			u.NextAttempt = now.Add(r.cfg.RetryInitial)
		}
		if err := r.cfg.Store.UpdateQueued(bg, m.ID, u); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				log.Info("message left the queue during the attempt")
			} else {
				log.Error("recording the attempt", "err", err)
			}
			return
		}
		for _, action := range []string{dsn.Failed, dsn.Relayed} {
			r.notify(bg, log, m, info, action, owedAfter[action])
		}
	}
	r.finish(bg, log, m)
}

// owed is the notification the sender is still owed about a recipient
// in a final state, "" for none: a bounce (dsn.Failed) for a failure,
// unless NOTIFY declined it (RFC 3461 section 4.1); a "relayed" report
// (dsn.Relayed) for a delivery to a next hop without DSN that
// NOTIFY=SUCCESS asked about (section 5.2.2); nothing for the null
// sender (RFC 5321 section 4.5.5), or once sent.
func owed(from string, rc store.QueueRecipient) string {
	if rc.Notified || from == "" {
		return ""
	}
	switch {
	case rc.State == store.QueueFailed && rc.DSN.Wants(dsn.NotifyFailure):
		return dsn.Failed
	case rc.State == store.QueueDelivered && rc.DSN.Wants(dsn.NotifySuccess):
		return dsn.Relayed
	}
	return ""
}

// record turns the outcome of an attempt into the update of each pending
// recipient, reporting each one's result in the log and as an Event.
func (r *Runner) record(log *slog.Logger, m store.QueuedMessage, info *msgInfo, pending []store.QueueRecipient,
	results map[string]outcome, now time.Time) store.QueueUpdate {
	u := store.QueueUpdate{Attempted: true, At: now}
	for _, p := range pending {
		o := results[p.Address]
		rc := store.QueueRecipient{Address: p.Address, DSN: p.DSN, RemoteMTA: o.remote, Remote: o.reply, Status: o.status, LastError: o.text}
		ev := Event{QueueID: m.ID, From: m.From, To: p.Address, MessageID: info.messageID, Size: m.Size,
			Remote: o.remote, Status: o.status, Reply: o.reply, Detail: o.words()}
		switch {
		case o.delivered:
			rc.State = store.QueueDelivered
			// A next hop that offers DSN took NOTIFY over (RFC 3461
			// section 5.2.1): nothing more is owed from here.
			rc.Notified = o.dsnPassed
			ev.Kind = "forwarded"
			log.Info("delivered", "rcpt", p.Address, "remote", o.remote, "reply", o.reply.String(), "note", o.note)
		case o.perm:
			rc.State = store.QueueFailed
			ev.Kind = "bounced"
			log.Warn("delivery failed", "rcpt", p.Address, "status", o.status, "err", o.detail())
		default:
			rc.State = store.QueuePending
			ev.Kind = "deferred"
			log.Info("delivery deferred", "rcpt", p.Address, "status", o.status, "err", o.detail())
		}
		u.Recipients = append(u.Recipients, rc)
		r.event(ev)
	}
	return u
}

func (r *Runner) event(ev Event) {
	if r.cfg.OnEvent != nil {
		r.cfg.OnEvent(ev)
	}
}

// schedule sets when the recipients still pending are tried again: after
// the backoff, at once after a shutdown interrupted the attempt; once the
// message's lifetime is over they fail (RFC 5321 section 4.5.4.1). A
// message waiting longer than DelayWarning has its sender warned once.
func (r *Runner) schedule(ctx context.Context, log *slog.Logger, m store.QueuedMessage, info *msgInfo, u *store.QueueUpdate, now time.Time) {
	var deferred []store.QueueRecipient
	for _, rc := range u.Recipients {
		if rc.State == store.QueuePending {
			deferred = append(deferred, rc)
		}
	}
	if len(deferred) == 0 {
		return
	}
	next, ok := NextAttempt(now, m.CreatedAt.Add(r.cfg.MaxLifetime), m.Attempts+1, r.cfg.RetryInitial, r.cfg.RetryMax)
	switch {
	case r.ctx.Err() != nil:
		// Interrupted by a shutdown: try again as soon as we start.
		u.NextAttempt = now
	case ok:
		u.NextAttempt = next
		if r.cfg.DelayWarning > 0 && !m.Warned && m.From != "" && now.Sub(m.CreatedAt) >= r.cfg.DelayWarning {
			u.Warned = r.warn(ctx, log, m, info, deferred, now)
		}
	default:
		r.expire(log, m, info, u)
	}
}

// expire fails the recipients still pending once the message's lifetime
// is over (RFC 5321 section 4.5.4.1: give up and return the message),
// with their last result. RFC 3463 section 3.5: X.4.7 delivery time
// expired.
func (r *Runner) expire(log *slog.Logger, m store.QueuedMessage, info *msgInfo, u *store.QueueUpdate) {
	for i, rc := range u.Recipients {
		if rc.State != store.QueuePending {
			continue
		}
		rc.State, rc.Status = store.QueueFailed, "4.4.7"
		reason := fmt.Sprintf("delivery time expired after %s and %d attempts", r.cfg.MaxLifetime, m.Attempts+1)
		if rc.LastError != "" {
			reason += "; last error: " + rc.LastError
		}
		rc.LastError = reason
		u.Recipients[i] = rc
		log.Warn("delivery expired", "rcpt", rc.Address, "err", reason, "reply", rc.Remote.String())
		r.event(Event{Kind: "bounced", QueueID: m.ID, From: m.From, To: rc.Address, MessageID: info.messageID,
			Size: m.Size, Remote: rc.RemoteMTA, Status: rc.Status, Reply: rc.Remote, Detail: rc.LastError})
	}
}

// settle marks the recipients of u in a final state that are owed no
// notification as notified, and returns the others by the notification
// they are owed.
func settle(m store.QueuedMessage, u *store.QueueUpdate) map[string][]store.QueueRecipient {
	out := map[string][]store.QueueRecipient{}
	for i, rc := range u.Recipients {
		if rc.State == store.QueuePending {
			continue
		}
		if action := owed(m.From, rc); action != "" {
			out[action] = append(out[action], rc)
		} else {
			u.Recipients[i].Notified = true
		}
	}
	return out
}

// finish removes the message once every recipient is delivered or
// failed, and owed no notification.
func (r *Runner) finish(ctx context.Context, log *slog.Logger, m store.QueuedMessage) {
	cur, err := r.cfg.Store.QueuedMessage(ctx, m.ID)
	if err != nil {
		return // already gone
	}
	for _, rc := range cur.Recipients {
		if rc.State == store.QueuePending || owed(cur.From, rc) != "" {
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
func (r *Runner) attempt(info *msgInfo, m store.QueuedMessage, pending []store.QueueRecipient) map[string]outcome {
	results := make(map[string]outcome, len(pending))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, g := range r.group(pending) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := r.deliverGroup(r.ctx, info, m, g)
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
	tls    smtpclient.TLSLevel
	err    *outcome // a recipient address no destination can be found for
}

type group struct {
	dest  destination
	rcpts []store.QueueRecipient
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
func (r *Runner) group(rcpts []store.QueueRecipient) []group {
	var gs []group
	index := map[string]int{}
	for _, rc := range rcpts {
		d := r.destinationOf(rc.Address)
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
