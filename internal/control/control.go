// Package control is the local control channel of a running postoffice: a
// unix socket in the data directory, readable and writable by its owner
// only, over which 'postoffice status', 'start', 'stop' and 'reload' talk
// to 'postoffice serve'.
//
// The protocol is one JSON request per connection, one line, answered by
// one JSON response line:
//
//	{"cmd":"status"}                          -> {"ok":true,"status":{...}}
//	{"cmd":"start","service":"pop3"}          -> {"ok":true,"notes":[...]}
//	{"cmd":"stop","service":"all","grace":"10s"}
//	{"cmd":"reload"}                          -> {"ok":true,"notes":[...]}
//	{"cmd":"domains"}                         -> {"ok":true,"notes":[...]}
//
// A failure is {"ok":false,"error":"..."}.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// SocketName is the control socket's file name in the data directory.
const SocketName = "control.sock"

// SocketPath returns the control socket of a data directory.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// Services are the names start and stop take, besides "all".
var Services = []string{"pop3", "smtp", "submission", "http", "queue"}

// ServiceStatus describes one service.
type ServiceStatus struct {
	Name      string    `json:"name"`
	Running   bool      `json:"running"`
	Autostart bool      `json:"autostart"`
	Since     time.Time `json:"since,omitzero"`
	// Addrs are "label address" pairs: "pop3s 127.0.0.1:995". Bound
	// addresses while running, configured ones otherwise.
	Addrs    []string `json:"addrs,omitempty"`
	Sessions int      `json:"sessions"`
	// Draining counts the older protocol servers still finishing their
	// sessions after a reload.
	Draining int    `json:"draining,omitempty"`
	Error    string `json:"error,omitempty"` // why the last start failed
}

// Status describes the running server.
type Status struct {
	PID        int             `json:"pid"`
	Version    string          `json:"version"`
	Started    time.Time       `json:"started"`
	DataDir    string          `json:"data_dir"`
	ConfigFile string          `json:"config_file,omitempty"`
	Hostname   string          `json:"hostname"`
	Services   []ServiceStatus `json:"services"`
	Queue      QueueStatus     `json:"queue"`
	Console    string          `json:"console,omitempty"` // URL of the web console

	// Store is the backend ("sqlite" or "postgres") and Node this node's
	// name ([store] node_name). On a database several nodes share
	// (postgres), Instance is this process's id, and Instances lists the
	// process holding each node name, alive or gone in the last day.
	Store     string     `json:"store,omitempty"`
	Node      string     `json:"node,omitempty"`
	Instance  string     `json:"instance,omitempty"`
	Instances []Instance `json:"instances,omitempty"`

	// Certificates are the names ACME covers, hostname first, with what
	// is served for each; empty without [acme].
	Certificates []Certificate `json:"certificates,omitempty"`
}

// Certificate is the state of one name's ACME certificate.
type Certificate struct {
	Name string `json:"name"`
	// NotAfter is zero while no ACME certificate is served for the name
	// (the configured or self-signed one is).
	NotAfter  time.Time `json:"not_after,omitzero"`
	NotBefore time.Time `json:"not_before,omitzero"`
	Issuer    string    `json:"issuer,omitempty"`
	RenewAt   time.Time `json:"renew_at,omitzero"` // when renewal is due
	// LastError is the last failure to obtain it, empty after a success;
	// Failures counts them since the last success.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// Warning says what needs the operator's attention, "" if nothing: no
// certificate, one close to its end, or renewal failing.
func (c Certificate) Warning(now time.Time) string {
	switch {
	case c.NotAfter.IsZero() && c.LastError != "":
		return "not obtained: " + c.LastError
	case c.NotAfter.IsZero():
		return "not obtained yet"
	case !now.Before(c.NotAfter):
		return "expired"
	case c.LastError != "":
		return "renewal failing: " + c.LastError
	case c.NotAfter.Sub(now) < WarnBefore:
		return "expires soon"
	}
	return ""
}

// WarnBefore is how long before its end a certificate is flagged even
// when no renewal failed here (another node may be failing): half of the
// month before its end in which a 90-day certificate is renewed.
const WarnBefore = 14 * 24 * time.Hour

// Instance is the process holding a node name: one at a time.
type Instance struct {
	Node     string    `json:"node"`
	Instance string    `json:"instance"`
	Host     string    `json:"host"`
	PID      int       `json:"pid"`
	Started  time.Time `json:"started"`
	Renewed  time.Time `json:"renewed"`
	// LeaseUntil is the end of its lease unless renewed: once passed
	// (Alive false), its queue claims are void and its node name free.
	LeaseUntil time.Time `json:"lease_until"`
	Alive      bool      `json:"alive"`
}

// QueueStatus summarizes the outbound queue.
type QueueStatus struct {
	Messages int `json:"messages"`
	Held     int `json:"held"`
}

// Controller is what the control socket drives: the server.
type Controller interface {
	Status(ctx context.Context) (Status, error)
	// StartService starts a service, or every stopped one for "all".
	StartService(ctx context.Context, name string) ([]string, error)
	// StopService stops a service (or "all") letting its sessions finish
	// within grace.
	StopService(ctx context.Context, name string, grace time.Duration) ([]string, error)
	// Reload re-reads the configuration and the certificates.
	Reload(ctx context.Context) ([]string, error)
	// DomainsChanged says that domains were added or deleted (by a
	// command that wrote the store): certificates for their names are
	// obtained now.
	DomainsChanged(ctx context.Context) ([]string, error)
}

// Request is one command.
type Request struct {
	Cmd     string `json:"cmd"`
	Service string `json:"service,omitempty"`
	Grace   string `json:"grace,omitempty"` // a time.Duration
}

// Response answers a Request.
type Response struct {
	OK     bool     `json:"ok"`
	Error  string   `json:"error,omitempty"`
	Notes  []string `json:"notes,omitempty"`
	Status *Status  `json:"status,omitempty"`
}

// DefaultGrace is how long a stop lets sessions finish.
const DefaultGrace = 10 * time.Second

// Server serves the control socket.
type Server struct {
	path string
	lock *os.File // path + ".lock", locked
	l    net.Listener
	c    Controller
	log  *slog.Logger
	wg   sync.WaitGroup
}

// ErrRunning: another process serves the data directory.
var ErrRunning = errors.New("another postoffice serve is running on this data directory")

// Listen creates the socket (mode 0600) at path. A socket left by a
// process that died is replaced; one that answers is not (ErrRunning).
// The socket's lock file (path + ".lock"), locked while the Server lives
// and unlocked by the kernel when its process dies, orders processes that
// start at the same moment: only one gets the socket.
func Listen(path string, c Controller, log *slog.Logger) (*Server, error) {
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("control socket lock: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", path, ErrRunning)
		}
		return nil, fmt.Errorf("control socket lock: %w", err)
	}
	s, err := listen(path, c, log)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func listen(path string, c Controller, log *slog.Logger) (*Server, error) {
	if conn, err := net.DialTimeout("unix", path, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrRunning)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	// The socket is created with the umask's mode: make it private from
	// the start rather than chmod it after. The umask is the process's:
	// 077 (not 177) keeps a directory another goroutine creates meanwhile
	// usable by its owner.
	old := syscall.Umask(0o077)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	s := &Server{path: path, l: l, c: c, log: log}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Close stops listening, waits for the commands in progress and removes
// the socket.
func (s *Server) Close() error {
	err := s.l.Close()
	s.wg.Wait()
	s.lock.Close() // after the socket is gone
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(io.LimitReader(c, 64<<10)).ReadBytes('\n')
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		return
	}
	c.SetReadDeadline(time.Time{})
	var req Request
	var resp Response
	if err := json.Unmarshal(line, &req); err != nil {
		resp = Response{Error: "malformed request: " + err.Error()}
	} else {
		resp = s.do(req)
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	b, _ := json.Marshal(resp)
	c.Write(append(b, '\n'))
}

func (s *Server) do(req Request) Response {
	ctx := context.Background()
	var notes []string
	var err error
	s.log.Info("control command", "cmd", req.Cmd, "target", req.Service)
	switch req.Cmd {
	case "status":
		st, err := s.c.Status(ctx)
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Status: &st}
	case "start":
		notes, err = s.c.StartService(ctx, req.Service)
	case "stop":
		grace := DefaultGrace
		if req.Grace != "" {
			if grace, err = time.ParseDuration(req.Grace); err != nil || grace < 0 {
				return Response{Error: fmt.Sprintf("bad grace period %q", req.Grace)}
			}
		}
		notes, err = s.c.StopService(ctx, req.Service, grace)
	case "reload":
		notes, err = s.c.Reload(ctx)
	case "domains":
		notes, err = s.c.DomainsChanged(ctx)
	default:
		return Response{Error: fmt.Sprintf("unknown command %q", req.Cmd)}
	}
	if err != nil {
		return Response{Error: err.Error(), Notes: notes}
	}
	return Response{OK: true, Notes: notes}
}

// ErrNotRunning: nothing listens on the control socket.
var ErrNotRunning = errors.New("postoffice serve is not running (no control socket)")

// Call sends one request to the server at path and returns its response.
// A failed command is returned as an error (with the response, whose
// Notes may say what was done anyway).
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w at %s", ErrNotRunning, path)
		}
		return Response{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return Response{}, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return Response{}, fmt.Errorf("control socket: %w", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return Response{}, fmt.Errorf("control socket: malformed response: %w", err)
	}
	if !resp.OK {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
