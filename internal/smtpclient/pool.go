package smtpclient

import (
	"context"
	"errors"
	"sync"
	"time"
)

// PoolConfig bounds a Pool. Zero values take the defaults noted.
type PoolConfig struct {
	// MaxPerDest bounds the connections to one destination (a
	// Target: host[ip]:port), busy and idle together: 5.
	MaxPerDest int
	// MaxConns bounds the connections to all destinations together,
	// busy and idle: 0 for no bound. At the bound, a message for a
	// destination without a free connection closes the longest idle
	// one of another destination, or waits for one to be released.
	MaxConns int
	// IdleTimeout closes a connection (with QUIT) that no message used
	// for this long: 10 seconds. Peers drop idle clients themselves
	// (RFC 5321 section 4.5.3.2.7 gives them 5 minutes; Postfix keeps a
	// connection cached for 2 seconds).
	IdleTimeout time.Duration
	// MaxAge stops reusing a connection this old: 5 minutes (as
	// Postfix's smtp_connection_reuse_time_limit).
	MaxAge time.Duration
}

// Pool keeps connections open between messages to the same destination
// and reuses one when its TLS state satisfies the next message's policy
// and it was authenticated as the next message needs.
type Pool struct {
	cfg Config
	pc  PoolConfig

	mu     sync.Mutex
	dests  map[string]*dest
	open   int           // connections counted against MaxConns
	wake   chan struct{} // closed when a connection is released or idles
	closed bool
	dials  int
}

type dest struct {
	open int // connections counted against MaxPerDest: busy, idle or being dialed
	idle []*idleConn
}

type idleConn struct {
	c     *Conn
	timer *time.Timer
	since time.Time
}

// NewPool returns an empty pool.
func NewPool(cfg Config, pc PoolConfig) *Pool {
	if pc.MaxPerDest <= 0 {
		pc.MaxPerDest = 5
	}
	if pc.IdleTimeout <= 0 {
		pc.IdleTimeout = 10 * time.Second
	}
	if pc.MaxAge <= 0 {
		pc.MaxAge = 5 * time.Minute
	}
	return &Pool{cfg: cfg.withDefaults(), pc: pc, dests: map[string]*dest{}, wake: make(chan struct{})}
}

// ErrPoolClosed is returned by Send after Close.
var ErrPoolClosed = errors.New("smtpclient: pool closed")

// Send delivers m to t on a connection of the pool: an idle one that
// fits opts, or a new one when the destination has fewer than
// MaxPerDest, waiting for one otherwise. A reused connection that fails
// before the peer decided anything (it had closed meanwhile, or answers
// RSET with 421) is replaced by a new one, once. The Result and error
// are Conn.Send's, or Dial's when no connection could be set up.
func (p *Pool) Send(ctx context.Context, t Target, opts Options, m *Message) (*Result, error) {
	if opts.TLS == "" {
		opts.TLS = TLSMay
	}
	prep := &prepared{}
	fresh := false
	for {
		c, reused, err := p.get(ctx, t, opts, fresh)
		if err != nil {
			res := &Result{Rcpts: make([]RcptResult, len(m.Rcpts))}
			e, ok := AsError(err)
			for i, rc := range m.Rcpts {
				res.Rcpts[i].Addr = rc.Addr
				if ok {
					res.Rcpts[i].Err = e
				}
			}
			return res, err
		}
		res, e, retry := c.transact(ctx, m, prep)
		p.put(c)
		if e != nil && retry && reused && !fresh {
			fresh = true
			continue
		}
		if e != nil {
			return res, e
		}
		return res, nil
	}
}

// Dials counts the connections the pool opened.
func (p *Pool) Dials() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dials
}

func (p *Pool) dest(key string) *dest {
	d := p.dests[key]
	if d == nil {
		d = &dest{}
		p.dests[key] = d
	}
	return d
}

// fits reports whether an idle connection may carry a message sent with
// opts.
func (p *Pool) fits(c *Conn, opts Options) bool {
	if !c.Usable() || time.Since(c.created) > p.pc.MaxAge || !c.tls.Satisfies(opts.TLS) {
		return false
	}
	if (c.opts.Auth == nil) != (opts.Auth == nil) {
		return false
	}
	return opts.Auth == nil || *c.opts.Auth == *opts.Auth
}

// get returns a connection to t: an idle one that fits (unless fresh),
// else a new one.
func (p *Pool) get(ctx context.Context, t Target, opts Options, fresh bool) (c *Conn, reused bool, err error) {
	key := t.String()
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, false, ErrPoolClosed
		}
		d := p.dest(key)
		if !fresh {
			// The most recently used first: the likeliest to be alive.
			for i := len(d.idle) - 1; i >= 0; i-- {
				ic := d.idle[i]
				if !p.fits(ic.c, opts) || !ic.timer.Stop() {
					continue // another policy's, or expiring right now
				}
				d.idle = append(d.idle[:i], d.idle[i+1:]...)
				p.mu.Unlock()
				return ic.c, true, nil
			}
		}
		var evict *Conn
		full := p.pc.MaxConns > 0 && p.open >= p.pc.MaxConns
		if d.open < p.pc.MaxPerDest && full {
			// The pool is full, perhaps partly of idle connections to
			// other destinations: the longest idle one gives its slot.
			if evict = p.takeIdle(); evict != nil {
				d.open++
			}
		}
		switch {
		case evict != nil:
		case d.open < p.pc.MaxPerDest && !full:
			d.open++
			p.open++
		case len(d.idle) > 0:
			// All slots are taken, some by idle connections that do not
			// fit: close the oldest and take its slot.
			ic := d.idle[0]
			ic.timer.Stop()
			d.idle = d.idle[1:]
			evict = ic.c
		default:
			w := p.wake
			p.mu.Unlock()
			select {
			case <-w:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		p.dials++
		p.mu.Unlock()
		if evict != nil {
			evict.Close()
		}
		c, err := Dial(ctx, p.cfg, t, opts)
		if err != nil {
			p.mu.Lock()
			d.open--
			p.open--
			p.signal()
			p.mu.Unlock()
			return nil, false, err
		}
		return c, false, nil
	}
}

// put returns a connection after a transaction: idle for the next one
// when it is still usable, closed otherwise.
func (p *Pool) put(c *Conn) {
	key := c.target.String()
	p.mu.Lock()
	d := p.dest(key)
	if p.closed || !c.Usable() || time.Since(c.created) > p.pc.MaxAge {
		d.open--
		p.open--
		p.signal()
		p.mu.Unlock()
		c.Close()
		return
	}
	ic := &idleConn{c: c, since: time.Now()}
	ic.timer = time.AfterFunc(p.pc.IdleTimeout, func() { p.expire(key, ic) })
	d.idle = append(d.idle, ic)
	p.signal()
	p.mu.Unlock()
}

// expire closes a connection that stayed idle for IdleTimeout.
func (p *Pool) expire(key string, ic *idleConn) {
	p.mu.Lock()
	d := p.dests[key]
	found := false
	if d != nil {
		for i, x := range d.idle {
			if x == ic {
				d.idle = append(d.idle[:i], d.idle[i+1:]...)
				d.open--
				p.open--
				found = true
				p.signal()
				break
			}
		}
		if d.open == 0 && len(d.idle) == 0 {
			delete(p.dests, key)
		}
	}
	p.mu.Unlock()
	if found {
		ic.c.Close()
	}
}

// signal wakes those waiting for a slot; p.mu is held.
func (p *Pool) signal() {
	close(p.wake)
	p.wake = make(chan struct{})
}

// takeIdle takes the connection idle the longest, of any destination, out
// of the pool, its slot in MaxConns kept for the caller, who closes it;
// nil when none is idle. p.mu is held.
func (p *Pool) takeIdle() *Conn {
	var od *dest
	oi := -1
	for _, d := range p.dests {
		for i, ic := range d.idle {
			if oi < 0 || ic.since.Before(od.idle[oi].since) {
				od, oi = d, i
			}
		}
	}
	if oi < 0 {
		return nil
	}
	ic := od.idle[oi]
	if !ic.timer.Stop() {
		return nil // expiring right now: its slot is about to be free
	}
	od.idle = append(od.idle[:oi], od.idle[oi+1:]...)
	od.open--
	return ic.c
}

// Close ends the idle connections with QUIT; busy ones are closed when
// their transaction ends. Send fails after Close.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	p.signal()
	var idle []*Conn
	for key, d := range p.dests {
		for _, ic := range d.idle {
			ic.timer.Stop()
			idle = append(idle, ic.c)
			d.open--
			p.open--
		}
		d.idle = nil
		if d.open == 0 {
			delete(p.dests, key)
		}
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range idle {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
	return nil
}
