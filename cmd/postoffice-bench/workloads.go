package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// loadOpts says what load to put on a server.
type loadOpts struct {
	Addr        string
	Users       []account
	Concurrency int
	// Duration bounds the run (0: no bound); Count bounds the number of
	// operations (sessions, or messages for SMTP; 0: the workload's
	// default). The run ends at whichever comes first.
	Duration time.Duration
	Count    int

	// SMTP only.
	Sizes   sizeDist
	PerConn int    // messages per SMTP connection
	From    string // envelope sender
	// AuthPassword, when set, logs in as From with AUTH PLAIN (RFC 4616)
	// before sending: intake over submission, as an authenticated user.
	AuthPassword string
	// Streams, when set, replace Addr, From and AuthPassword: the
	// connections take them in turn.
	Streams []intakeStream
	// waitDone, if set, is called after the last message was accepted and
	// must return once every message is retrievable (the intake
	// workload's finish line); its time is part of the run.
	waitDone func(ctx context.Context) error

	// Download only: Rate, when set, paces the RETRs at this many per
	// second across all clients (an open loop, see pacer) instead of each
	// client sending the next as soon as the last was answered.
	Rate float64

	// Idle only: how long the sessions are held open once all are logged
	// in, and what to do meanwhile (measure the server's memory).
	Hold    time.Duration
	measure func(c *collector)
}

// workloads lists the workloads by name, with what they do.
var workloads = []struct{ name, doc string }{
	{"poll", "POP3: connect, USER/PASS, STAT, UIDL, QUIT (leave-on-server clients)"},
	{"download", "POP3: connect, USER/PASS, STAT, RETR and DELE every message, QUIT"},
	{"bigmbox", "POP3: one client: connect, USER/PASS, UIDL, LIST, QUIT of a big mailbox"},
	{"intake", "SMTP: deliver messages to the users, until all are retrievable"},
	{"idle", "POP3: open sessions, log in, STAT, hold them open idle"},
}

func runWorkload(ctx context.Context, name string, o loadOpts) (Result, error) {
	if len(o.Users) == 0 {
		return Result{}, fmt.Errorf("no users")
	}
	o.Concurrency = max(o.Concurrency, 1)
	var res Result
	switch name {
	case "poll":
		res = runPOP3Sessions(ctx, name, o, pollSession)
	case "download":
		if o.Count == 0 {
			o.Count = len(o.Users) // each mailbox is emptied once
		}
		if o.Rate > 0 {
			res = runPOP3Sessions(ctx, "download-paced", o, downloadSession(newPacer(o.Rate)))
			break
		}
		res = runPOP3Sessions(ctx, name, o, downloadSession(nil))
	case "bigmbox":
		if o.Count == 0 {
			o.Count = 1
		}
		o.Concurrency = 1
		res = runPOP3Sessions(ctx, name, o, bigMailboxSession)
	case "intake":
		res = runIntake(ctx, o)
	case "idle":
		res = runIdle(ctx, o)
	default:
		return Result{}, fmt.Errorf("unknown workload %q", name)
	}
	res.Addr = o.Addr
	return res, nil
}

// budget hands out operation numbers until Count is reached (no limit if
// Count is 0) or ctx is done.
type budget struct {
	next  atomic.Int64
	limit int64
}

// take returns the next operation number (from 1), or false when done.
func (b *budget) take(ctx context.Context) (int64, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	n := b.next.Add(1)
	return n, b.limit <= 0 || n <= b.limit
}

type sessionFunc func(ctx context.Context, c *collector, addr string, u account) error

// runPOP3Sessions runs sessions from Concurrency workers. Worker w uses the
// users whose index is w modulo Concurrency, in turn, so that no two
// sessions of one user overlap (a POP3 maildrop is locked per session).
// With a Count, each worker runs its share of it: a Count of one per user
// (the default) logs every user in exactly once.
func runPOP3Sessions(ctx context.Context, name string, o loadOpts, fn sessionFunc) Result {
	conc := min(o.Concurrency, len(o.Users))
	var end time.Time
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
		end, _ = ctx.Deadline()
	}
	if o.Count == 0 && o.Duration == 0 {
		o.Count = len(o.Users)
	}
	c := newCollector()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		// The worker's own users: w, w+conc, w+2*conc...
		mine := (len(o.Users) - w + conc - 1) / conc
		quota := -1 // no limit but the duration
		if o.Count > 0 {
			quota = o.Count / conc
			if w < o.Count%conc {
				quota++
			}
		}
		wg.Go(func() {
			for k := 0; k != quota && ctx.Err() == nil; k++ {
				idx := w + (k%mine)*conc
				t := time.Now()
				if err := fn(ctx, c, o.Addr, o.Users[idx]); err != nil {
					// Cut off by the end of the run: the dialer may see
					// the deadline pass a moment before ctx reports it.
					if o.Duration > 0 && (ctx.Err() != nil || !time.Now().Before(end)) {
						return
					}
					c.fail("session", err)
					continue
				}
				c.rec("session").add(time.Since(t), 0)
			}
		})
	}
	wg.Wait()
	return c.result(name, time.Since(start))
}

// login connects and logs in, recording the time to "login".
func login(ctx context.Context, c *collector, addr string, u account) (*pop3Client, error) {
	t := time.Now()
	p, err := dialPOP3(ctx, addr)
	if err != nil {
		return nil, err
	}
	if err := p.login(u.Name, u.Password); err != nil {
		p.Close()
		return nil, fmt.Errorf("%s: %w", u.Name, err)
	}
	c.rec("login").add(time.Since(t), 0)
	return p, nil
}

// pollSession is a leave-on-server client checking for new mail.
func pollSession(ctx context.Context, c *collector, addr string, u account) error {
	p, err := login(ctx, c, addr, u)
	if err != nil {
		return err
	}
	defer p.Close()
	if _, _, err := p.stat(); err != nil {
		return err
	}
	t := time.Now()
	n, err := p.multi("UIDL", nil)
	if err != nil {
		return err
	}
	c.rec("uidl").add(time.Since(t), n)
	if err := p.quit(); err != nil {
		return err
	}
	c.rec("session-bytes").add(0, p.read)
	return nil
}

// pacer is the schedule of an open loop: the k-th operation is due at
// start + k/rate, whichever client runs it. A closed loop (each client
// sending its next command when the last is answered) lets a faster server
// take more load, so its latencies are those of a busier machine; paced,
// both servers get the same load and their latencies can be compared.
// Latency counts from when the operation was due, not from when it was
// sent: a server that falls behind shows its backlog in the figures rather
// than slowing the clients down (the "coordinated omission" of closed-loop
// generators).
type pacer struct {
	start time.Time
	every time.Duration
	next  atomic.Int64
}

func newPacer(rate float64) *pacer {
	return &pacer{start: time.Now(), every: time.Duration(float64(time.Second) / rate)}
}

// wait takes the next slot of the schedule and sleeps until it is due;
// it returns when it was due.
func (p *pacer) wait(ctx context.Context) (time.Time, error) {
	due := p.start.Add(time.Duration(p.next.Add(1)-1) * p.every)
	if d := time.Until(due); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return due, ctx.Err()
		}
	}
	return due, nil
}

// downloadSession retrieves and deletes every message. With a pacer p,
// each RETR waits for its slot in p's schedule, "retr" is its latency from
// the slot and "retr-sent" from its sending; without, "retr" is from the
// sending.
func downloadSession(p *pacer) sessionFunc {
	return func(ctx context.Context, c *collector, addr string, u account) error {
		cl, err := login(ctx, c, addr, u)
		if err != nil {
			return err
		}
		defer cl.Close()
		n, _, err := cl.stat()
		if err != nil {
			return err
		}
		retr := c.rec("retr")
		for i := 1; i <= n; i++ {
			var due time.Time
			if p != nil {
				if due, err = p.wait(ctx); err != nil {
					return err
				}
			}
			t := time.Now()
			size, err := cl.retr(i, nil)
			if err != nil {
				return err
			}
			done := time.Now()
			if p != nil {
				retr.add(done.Sub(due), size)
				c.rec("retr-sent").add(done.Sub(t), 0)
			} else {
				retr.add(done.Sub(t), size)
			}
			if _, err := cl.cmd(fmt.Sprintf("DELE %d", i)); err != nil {
				return err
			}
		}
		t := time.Now()
		if err := cl.quit(); err != nil {
			return err
		}
		c.rec("quit").add(time.Since(t), 0)
		return nil
	}
}

// bigMailboxSession lists a big mailbox: UIDL, then LIST.
func bigMailboxSession(ctx context.Context, c *collector, addr string, u account) error {
	p, err := login(ctx, c, addr, u)
	if err != nil {
		return err
	}
	defer p.Close()
	for _, cmd := range []string{"UIDL", "LIST"} {
		t := time.Now()
		n, err := p.multi(cmd, nil)
		if err != nil {
			return err
		}
		c.rec(map[string]string{"UIDL": "uidl", "LIST": "list"}[cmd]).add(time.Since(t), n)
	}
	return p.quit()
}

// intakeStream is one kind of SMTP client of the intake workload.
type intakeStream struct {
	Addr    string
	LocalIP string // "": the system's choice
	Helo    string // "": bench.invalid
	From    string // envelope sender
	// AuthUser and AuthPassword, when set, log in with AUTH PLAIN (RFC
	// 4616) before sending: submission, as an authenticated user.
	AuthUser, AuthPassword string
	// FromField is the messages' From field ("": the generated default).
	FromField string
	// Sign, when set, is applied to every generated message (DKIM).
	Sign func([]byte) ([]byte, error)

	msgs [][]byte
}

// runIntake sends Count messages over SMTP from Concurrency connections,
// PerConn messages per connection, to the users in turn.
func runIntake(ctx context.Context, o loadOpts) Result {
	if o.Count == 0 {
		o.Count = 1000
	}
	if o.PerConn <= 0 {
		o.PerConn = 1
	}
	if o.Sizes.median == 0 {
		o.Sizes = sizeDist{min: 20 * 1024, max: 20 * 1024, median: 20 * 1024}
	}
	streams := o.Streams
	if len(streams) == 0 {
		from := o.From
		if from == "" {
			from = "sender@bench.invalid"
		}
		st := intakeStream{Addr: o.Addr, From: from}
		if o.AuthPassword != "" {
			st.AuthUser, st.AuthPassword = from, o.AuthPassword
		}
		streams = []intakeStream{st}
	}
	// Messages are made (and signed) before the clock starts: the client
	// shares the machine with the server and should cost it little.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range streams {
		st := &streams[i]
		st.msgs = make([][]byte, max(min(o.Count, 256)/len(streams), 1))
		for j := range st.msgs {
			seq := j*len(streams) + i
			msg := generateMessageFrom(st.FromField, o.Users[seq%len(o.Users)].Name, seq, o.Sizes.draw(r))
			if st.Sign != nil {
				var err error
				if msg, err = st.Sign(msg); err != nil {
					c := newCollector()
					c.fail("message", fmt.Errorf("signing: %w", err))
					return c.result("intake", 0)
				}
			}
			st.msgs[j] = msg
		}
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	c := newCollector()
	b := &budget{limit: int64(o.Count)}
	var conns atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range o.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				st := &streams[int(conns.Add(1)-1)%len(streams)]
				if !intakeConnection(ctx, c, o, st, b) {
					return
				}
			}
		})
	}
	wg.Wait()
	acked := time.Since(start)
	c.set("ack_seconds", acked.Seconds())
	if o.waitDone != nil {
		if err := o.waitDone(ctx); err != nil {
			c.fail("retrievable", err)
		}
	}
	return c.result("intake", time.Since(start))
}

// intakeConnection sends up to PerConn messages of one stream on one
// connection; false once the budget is spent.
func intakeConnection(ctx context.Context, c *collector, o loadOpts, st *intakeStream, b *budget) bool {
	var s *smtpClient
	defer func() {
		if s != nil {
			s.quit()
			s.Close()
		}
	}()
	helo := st.Helo
	if helo == "" {
		helo = "bench.invalid"
	}
	for range o.PerConn {
		n, ok := b.take(ctx)
		if !ok {
			return false
		}
		msg := st.msgs[int(n)%len(st.msgs)]
		to := o.Users[int(n)%len(o.Users)].Name
		t := time.Now()
		if s == nil {
			var err error
			if s, err = dialSMTP(ctx, st.LocalIP, st.Addr, helo); err != nil {
				c.fail("message", err)
				return true
			}
			if st.AuthUser != "" {
				if err := s.authPlain(st.AuthUser, st.AuthPassword); err != nil {
					c.fail("message", err)
					s.Close()
					s = nil
					return true
				}
			}
		}
		if err := s.send(st.From, to, msg); err != nil {
			c.fail("message", err)
			s.Close()
			s = nil
			return true
		}
		c.rec("message").add(time.Since(t), int64(len(msg)))
	}
	return true
}

// runIdle logs in one session per user (Concurrency at a time), holds them
// all open, calls measure, then ends them with QUIT.
func runIdle(ctx context.Context, o loadOpts) Result {
	n := len(o.Users)
	if o.Count > 0 {
		n = min(n, o.Count)
	}
	c := newCollector()
	conns := make([]*pop3Client, n)
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(o.Concurrency, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				p, err := login(ctx, c, o.Addr, o.Users[i])
				if err == nil {
					_, _, err = p.stat()
				}
				if err != nil {
					c.fail("session", err)
					if p != nil {
						p.Close()
					}
					continue
				}
				conns[i] = p
			}
		})
	}
	wg.Wait()
	open := 0
	for _, p := range conns {
		if p != nil {
			open++
		}
	}
	c.set("sessions_open", float64(open))
	c.set("login_seconds", time.Since(start).Seconds())
	select {
	case <-time.After(o.Hold):
	case <-ctx.Done():
	}
	if o.measure != nil {
		o.measure(c)
	}
	// Every session must still be there after the hold.
	for _, p := range conns {
		if p == nil {
			continue
		}
		wg.Go(func() {
			defer p.Close()
			t := time.Now()
			if err := p.quit(); err != nil {
				c.fail("session", fmt.Errorf("after holding: %w", err))
				return
			}
			c.rec("session").add(time.Since(t), 0)
		})
	}
	wg.Wait()
	return c.result("idle", time.Since(start))
}

// fetchAll retrieves every message of a user's mailbox without deleting
// anything, each message's content to w (verification).
func fetchAll(ctx context.Context, addr string, u account, w func(i int, size int64, content []byte)) error {
	p, err := dialPOP3(ctx, addr)
	if err != nil {
		return err
	}
	defer p.Close()
	if err := p.login(u.Name, u.Password); err != nil {
		return err
	}
	n, _, err := p.stat()
	if err != nil {
		return err
	}
	for i := 1; i <= n; i++ {
		var buf bytesBuffer
		size, err := p.retr(i, &buf)
		if err != nil {
			return err
		}
		w(i, size, buf.b)
	}
	return p.quit()
}

type bytesBuffer struct{ b []byte }

func (b *bytesBuffer) Write(p []byte) (int, error) {
	b.b = append(b.b, p...)
	return len(p), nil
}

var _ io.Writer = (*bytesBuffer)(nil)
