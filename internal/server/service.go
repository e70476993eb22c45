package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
)

// protoServer is what pop3.Server and smtpd.Server have in common.
// ServeConn runs a session on the calling goroutine; it returns an error,
// leaving the connection to the caller, only when the server no longer
// takes sessions.
type protoServer interface {
	ServeConn(net.Conn) error
	Shutdown(context.Context) error
	Close() error
}

// runner is a service without listeners: the outbound queue.
type runner interface {
	Start() error
	Shutdown(context.Context) error
}

// listenSpec is one configured listener of a service.
type listenSpec struct {
	label string // the name logged with its address: "pop3s"
	addr  string
	tls   bool // implicit TLS (RFC 8314 section 3.3)
}

// serviceDef describes a service: its listeners and protocol server, or
// its runner, as functions of the configuration.
type serviceDef struct {
	name      string
	autostart func(config.Config) bool
	// settings is compared at reload: when it changes, a new protocol
	// server (or runner) takes over.
	settings func(config.Config) any

	// Listener services.
	listeners func(config.Config) []listenSpec
	limits    func(config.Config) config.Service
	busy      func(config.Config) string // the reply to a connection over a limit
	newProto  func(config.Config) protoServer

	// Runner services.
	newRunner func(config.Config) runner
}

// service is one service that can be started and stopped on its own.
type service struct {
	serviceDef
	srv *Server
	op  sync.Mutex // serializes start, stop and reload

	mu       sync.Mutex
	running  bool
	since    time.Time
	limit    config.Service
	busyLine string
	current  any // settings of the running generation
	bound    []*boundListener
	gen      *generation
	draining map[*generation]struct{}
	sessions int
	perIP    map[string]int
	runner   runner
	lastErr  string

	lastAddr map[string]string // label+spec -> bound address, under op
	// pending: connections whose PROXY header is awaited (closed by
	// stop); admitting counts the connections not yet handed to a
	// protocol server (PROXY header, limits, refusal).
	pending   map[net.Conn]struct{}
	admitting sync.WaitGroup
}

var (
	errNotRunning     = errors.New("not running")
	errAlreadyRunning = errors.New("already running")
)

func newService(s *Server, def serviceDef) *service {
	return &service{serviceDef: def, srv: s, draining: map[*generation]struct{}{}, perIP: map[string]int{}, lastAddr: map[string]string{},
		pending: map[net.Conn]struct{}{}}
}

// generation is one protocol server of a service. A reload starts a new
// generation and lets the old one finish its sessions.
type generation struct {
	proto protoServer

	ctx   context.Context // cancelled to cut the sessions short
	abort context.CancelFunc
	once  sync.Once
	done  chan struct{}
	err   error
}

func (svc *service) newGeneration(cfg config.Config) *generation {
	g := &generation{proto: svc.newProto(cfg), done: make(chan struct{})}
	g.ctx, g.abort = context.WithCancel(context.Background())
	return g
}

// beginShutdown stops the generation from taking sessions and lets the
// open ones finish, in the background.
func (g *generation) beginShutdown() {
	g.once.Do(func() {
		go func() {
			g.err = g.proto.Shutdown(g.ctx)
			close(g.done)
		}()
	})
}

// shutdown lets sessions finish until ctx is done, then closes them
// (a POP3 session closed so applies none of its deletions).
func (g *generation) shutdown(ctx context.Context) error {
	g.beginShutdown()
	select {
	case <-g.done:
		return g.err
	case <-ctx.Done():
		g.abort()
		<-g.done
		return ctx.Err()
	}
}

func (svc *service) isRunning() bool {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.running
}

// count counts a new connection against the limits and returns it
// tracked (its slot is released when it closes), with the generation that
// is to serve it; nil when it is refused (answered with the busy line) or
// the service is stopping.
func (svc *service) count(bl *boundListener, c net.Conn) (*trackedConn, *generation) {
	ip := clientIP(c.RemoteAddr())
	svc.mu.Lock()
	g, lim, busy := svc.gen, svc.limit, svc.busyLine
	refused := ""
	switch {
	case g == nil:
		svc.mu.Unlock()
		c.Close()
		return nil, nil
	case lim.MaxSessions > 0 && svc.sessions >= lim.MaxSessions:
		refused = "total"
	case lim.MaxSessionsPerIP > 0 && svc.perIP[ip] >= lim.MaxSessionsPerIP:
		refused = "per_ip"
	default:
		svc.sessions++
		svc.perIP[ip]++
	}
	svc.mu.Unlock()
	if refused != "" {
		svc.srv.metrics.SessionRefused(svc.name, refused)
		svc.srv.log.Info("connection refused: session limit", "service", bl.label, "remote", c.RemoteAddr().String(), "limit", refused)
		svc.refuse(bl, c, busy)
		return nil, nil
	}
	done := svc.srv.metrics.SessionOpened(svc.name)
	return &trackedConn{Conn: c, release: func() {
		done()
		svc.mu.Lock()
		svc.sessions--
		if svc.perIP[ip]--; svc.perIP[ip] <= 0 {
			delete(svc.perIP, ip)
		}
		svc.mu.Unlock()
	}}, g
}

// listen binds one listener. A port 0 is bound again to the port it got
// last time, so that a service that is stopped and started keeps its
// address.
func (svc *service) listen(sp listenSpec, key string) (net.Listener, error) {
	if _, port, err := net.SplitHostPort(sp.addr); err == nil && port == "0" {
		if prev := svc.lastAddr[key]; prev != "" {
			if l, err := net.Listen("tcp", prev); err == nil {
				return l, nil
			}
		}
	}
	l, err := net.Listen("tcp", sp.addr)
	if err == nil {
		svc.lastAddr[key] = l.Addr().String()
	}
	return l, err
}

// bind returns the listeners of cfg, reusing those of current that are
// still configured; fresh lists the new ones. On failure nothing new stays
// bound.
func (svc *service) bind(cfg config.Config, current []*boundListener) (all, fresh []*boundListener, err error) {
	seen := map[string]int{}
	for _, sp := range svc.listeners(cfg) {
		// The same address may be listed twice (port 0): each has its own
		// remembered port.
		key := fmt.Sprintf("%s %s #%d", sp.label, sp.addr, seen[sp.label+" "+sp.addr])
		seen[sp.label+" "+sp.addr]++
		i := slices.IndexFunc(current, func(bl *boundListener) bool {
			return bl.label == sp.label && bl.spec == sp.addr && bl.tls == sp.tls && !slices.Contains(all, bl)
		})
		if i >= 0 {
			svc.setProxy(current[i], cfg)
			all = append(all, current[i])
			continue
		}
		l, err := svc.listen(sp, key)
		if err != nil {
			for _, bl := range fresh {
				bl.l.Close()
			}
			return nil, nil, fmt.Errorf("%s: cannot listen on %s: %w", sp.label, sp.addr, unwrapSyscall(err))
		}
		bl := &boundListener{label: sp.label, spec: sp.addr, tls: sp.tls, l: l, done: make(chan struct{})}
		svc.setProxy(bl, cfg)
		all, fresh = append(all, bl), append(fresh, bl)
	}
	return all, fresh, nil
}

// prepare binds the listeners of a service about to start, so that
// Server.Start can fail as a whole before anything serves.
func (svc *service) prepare(cfg config.Config) ([]*boundListener, error) {
	if svc.newRunner != nil {
		return nil, nil
	}
	all, _, err := svc.bind(cfg, nil)
	return all, err
}

// start starts the service on listeners bound by prepare (or binds them).
func (svc *service) start(cfg config.Config, bound []*boundListener) error {
	svc.op.Lock()
	defer svc.op.Unlock()
	if svc.isRunning() {
		for _, bl := range bound {
			bl.l.Close()
		}
		return fmt.Errorf("%s is %w", svc.name, errAlreadyRunning)
	}
	if svc.newRunner != nil {
		r := svc.newRunner(cfg)
		if err := r.Start(); err != nil {
			svc.setErr(err)
			return fmt.Errorf("%s: %w", svc.name, err)
		}
		settings := svc.settings(cfg)
		svc.mu.Lock()
		svc.running, svc.since, svc.runner, svc.current, svc.lastErr = true, time.Now(), r, settings, ""
		svc.mu.Unlock()
		svc.srv.metrics.ServiceUp(svc.name, true)
		svc.srv.log.Info("service started", "service", svc.name)
		return nil
	}
	if bound == nil {
		var err error
		if bound, _, err = svc.bind(cfg, nil); err != nil {
			svc.setErr(err)
			return err
		}
	}
	g := svc.newGeneration(cfg)
	// Outside svc.mu: the http service's settings ask the services for
	// their addresses.
	settings := svc.settings(cfg)
	svc.mu.Lock()
	svc.running, svc.since, svc.bound, svc.gen, svc.lastErr = true, time.Now(), bound, g, ""
	svc.limit, svc.busyLine, svc.current = svc.limits(cfg), svc.busy(cfg), settings
	svc.mu.Unlock()
	for _, bl := range bound {
		svc.srv.log.Info("listening", "service", bl.label, "addr", bl.l.Addr().String())
		go svc.acceptLoop(bl)
	}
	svc.srv.metrics.ServiceUp(svc.name, true)
	return nil
}

func (svc *service) setErr(err error) {
	svc.mu.Lock()
	svc.lastErr = err.Error()
	svc.mu.Unlock()
}

// stop stops accepting, lets the sessions finish until ctx is done, then
// closes them.
func (svc *service) stop(ctx context.Context) error {
	svc.op.Lock()
	defer svc.op.Unlock()
	svc.mu.Lock()
	if !svc.running {
		svc.mu.Unlock()
		return errNotRunning
	}
	bound, gen, r := svc.bound, svc.gen, svc.runner
	gens := []*generation{}
	if gen != nil {
		gens = append(gens, gen)
	}
	for g := range svc.draining {
		gens = append(gens, g)
	}
	svc.running, svc.bound, svc.gen, svc.runner = false, nil, nil, nil
	svc.mu.Unlock()

	var errs []error
	if r != nil {
		errs = append(errs, r.Shutdown(ctx))
	}
	for _, bl := range bound {
		bl.l.Close()
	}
	for _, bl := range bound {
		<-bl.done
	}
	// No connection is accepted any more: those still waiting for their
	// PROXY header are closed, and the others are handed to a generation
	// (shut down below) or closed.
	svc.mu.Lock()
	for c := range svc.pending {
		c.Close()
	}
	svc.mu.Unlock()
	svc.admitting.Wait()
	var wg sync.WaitGroup
	gerrs := make([]error, len(gens))
	for i, g := range gens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			gerrs[i] = g.shutdown(ctx)
		}()
	}
	wg.Wait()
	svc.mu.Lock()
	clear(svc.draining)
	svc.mu.Unlock()
	svc.srv.metrics.ServiceUp(svc.name, false)
	svc.srv.log.Info("service stopped", "service", svc.name)
	return errors.Join(append(errs, gerrs...)...)
}

// reload applies cfg to a running service: new listeners are bound and old
// ones closed, new settings give a new generation for new sessions while
// the open ones finish on the old one, limits apply at once.
func (svc *service) reload(cfg config.Config) (notes []string, err error) {
	svc.op.Lock()
	defer svc.op.Unlock()
	svc.mu.Lock()
	running, current := svc.running, svc.current
	svc.mu.Unlock()
	if !running {
		return nil, nil
	}
	settings := svc.settings(cfg)
	if svc.newRunner != nil {
		if reflect.DeepEqual(settings, current) {
			return nil, nil
		}
		svc.mu.Lock()
		old := svc.runner
		svc.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := old.Shutdown(ctx)
		cancel()
		if err != nil {
			svc.srv.log.Warn("stopping the old runner", "service", svc.name, "err", err)
		}
		r := svc.newRunner(cfg)
		if err := r.Start(); err != nil {
			svc.mu.Lock()
			svc.running, svc.runner = false, nil
			svc.mu.Unlock()
			svc.setErr(err)
			svc.srv.metrics.ServiceUp(svc.name, false)
			return nil, fmt.Errorf("%s: restarting with the new settings: %w", svc.name, err)
		}
		svc.mu.Lock()
		svc.runner, svc.current = r, settings
		svc.mu.Unlock()
		return []string{svc.name + ": restarted with the new settings"}, nil
	}

	svc.mu.Lock()
	oldLimit := svc.limit
	svc.limit, svc.busyLine = svc.limits(cfg), svc.busy(cfg)
	oldBound := svc.bound
	svc.mu.Unlock()
	if lim := svc.limits(cfg); lim.MaxSessions != oldLimit.MaxSessions || lim.MaxSessionsPerIP != oldLimit.MaxSessionsPerIP {
		notes = append(notes, fmt.Sprintf("%s: session limits now %s", svc.name, limitText(lim)))
	}
	all, fresh, err := svc.bind(cfg, oldBound)
	if err != nil {
		return notes, fmt.Errorf("%s (still on its old addresses)", err)
	}
	moved := len(fresh) > 0 || len(all) != len(oldBound)
	if !moved && reflect.DeepEqual(settings, current) {
		return notes, nil
	}
	g := svc.newGeneration(cfg)
	svc.mu.Lock()
	old := svc.gen
	svc.gen, svc.bound, svc.current = g, all, settings
	svc.draining[old] = struct{}{}
	open := svc.sessions
	svc.mu.Unlock()
	for _, bl := range fresh {
		svc.srv.log.Info("listening", "service", bl.label, "addr", bl.l.Addr().String())
		go svc.acceptLoop(bl)
	}
	for _, bl := range oldBound {
		if !slices.Contains(all, bl) {
			bl.l.Close()
			<-bl.done
			svc.srv.log.Info("stopped listening", "service", bl.label, "addr", bl.l.Addr().String())
		}
	}
	old.beginShutdown()
	go func() {
		<-old.done
		svc.mu.Lock()
		delete(svc.draining, old)
		svc.mu.Unlock()
	}()
	if moved {
		var addrs []string
		for _, bl := range all {
			addrs = append(addrs, bl.label+" "+bl.l.Addr().String())
		}
		notes = append(notes, fmt.Sprintf("%s: now listening on %s", svc.name, strings.Join(addrs, ", ")))
	}
	if !reflect.DeepEqual(settings, current) {
		notes = append(notes, fmt.Sprintf("%s: new settings apply to new sessions (%d open sessions finish as they are)", svc.name, open))
	}
	return notes, nil
}

func limitText(l config.Service) string {
	f := func(n int) string {
		if n == 0 {
			return "unlimited"
		}
		return fmt.Sprint(n)
	}
	return fmt.Sprintf("%s in all, %s per client address", f(l.MaxSessions), f(l.MaxSessionsPerIP))
}

// status reports the service for 'postoffice status' and the console.
func (svc *service) status(cfg config.Config) control.ServiceStatus {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	st := control.ServiceStatus{
		Name: svc.name, Running: svc.running, Autostart: svc.autostart(cfg),
		Sessions: svc.sessions, Error: svc.lastErr,
	}
	if svc.running {
		st.Since = svc.since
		for _, bl := range svc.bound {
			st.Addrs = append(st.Addrs, bl.label+" "+bl.l.Addr().String())
		}
	} else if svc.listeners != nil {
		for _, sp := range svc.listeners(cfg) {
			st.Addrs = append(st.Addrs, sp.label+" "+sp.addr)
		}
	}
	st.Draining = len(svc.draining)
	return st
}

// addrs returns the bound addresses of one listener label.
func (svc *service) addrs(label string) []net.Addr {
	svc.mu.Lock()
	defer svc.mu.Unlock()
	var out []net.Addr
	for _, bl := range svc.bound {
		if bl.label == label {
			out = append(out, bl.l.Addr())
		}
	}
	return out
}
