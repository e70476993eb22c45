package control

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeController records the commands it gets.
type fakeController struct {
	mu    sync.Mutex
	calls []string
	fail  error
}

func (f *fakeController) record(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	return f.fail
}

func (f *fakeController) Status(context.Context) (Status, error) {
	return Status{PID: 42, Services: []ServiceStatus{{Name: "pop3", Running: true, Sessions: 3, Addrs: []string{"pop3 127.0.0.1:110"}}}}, f.record("status")
}

func (f *fakeController) StartService(_ context.Context, name string) ([]string, error) {
	return []string{name + " started"}, f.record("start " + name)
}

func (f *fakeController) StopService(_ context.Context, name string, grace time.Duration) ([]string, error) {
	return []string{name + " stopped"}, f.record("stop " + name + " " + grace.String())
}

func (f *fakeController) Reload(context.Context) ([]string, error) {
	return []string{"reloaded"}, f.record("reload")
}

func (f *fakeController) DomainsChanged(context.Context) ([]string, error) {
	return []string{"checking certificates"}, f.record("domains")
}

func socket(t *testing.T) string {
	// Unix socket paths are short (108 bytes): not under t.TempDir's long
	// names.
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, SocketName)
}

func TestRoundTrip(t *testing.T) {
	path := socket(t)
	fc := &fakeController{}
	srv, err := Listen(path, fc, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}

	ctx := t.Context()
	resp, err := Call(ctx, path, Request{Cmd: "status"})
	if err != nil || resp.Status == nil || resp.Status.PID != 42 || resp.Status.Services[0].Sessions != 3 {
		t.Fatalf("status: %+v, %v", resp, err)
	}
	if resp, err = Call(ctx, path, Request{Cmd: "stop", Service: "pop3", Grace: "3s"}); err != nil || resp.Notes[0] != "pop3 stopped" {
		t.Errorf("stop: %+v, %v", resp, err)
	}
	Call(ctx, path, Request{Cmd: "stop", Service: "smtp"})
	Call(ctx, path, Request{Cmd: "start", Service: "all"})
	Call(ctx, path, Request{Cmd: "reload"})
	if resp, err = Call(ctx, path, Request{Cmd: "domains"}); err != nil || resp.Notes[0] != "checking certificates" {
		t.Errorf("domains: %+v, %v", resp, err)
	}
	want := "status|stop pop3 3s|stop smtp 10s|start all|reload|domains"
	if got := strings.Join(fc.calls, "|"); got != want {
		t.Errorf("calls %q, want %q", got, want)
	}

	for _, req := range []Request{{Cmd: "launch"}, {Cmd: "stop", Service: "pop3", Grace: "soon"}} {
		if _, err := Call(ctx, path, req); err == nil {
			t.Errorf("%+v accepted", req)
		}
	}
	fc.fail = errors.New("pop3: cannot listen on 127.0.0.1:110: bind: address already in use")
	resp, err = Call(ctx, path, Request{Cmd: "start", Service: "pop3"})
	if err == nil || err.Error() != fc.fail.Error() || len(resp.Notes) != 1 {
		t.Errorf("failed start: %+v, %v; want the error and the notes", resp, err)
	}
	// A malformed request gets an answer, not a hang.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("{nope\n"))
	buf := make([]byte, 200)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.Contains(string(buf[:n]), `"ok":false`) {
		t.Errorf("malformed request answered %q", buf[:n])
	}
}

func TestSecondServerRefused(t *testing.T) {
	path := socket(t)
	srv, err := Listen(path, &fakeController{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, &fakeController{}, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrRunning) {
		t.Errorf("second Listen: %v, want ErrRunning", err)
	}
	srv.Close()
	if _, err := Call(t.Context(), path, Request{Cmd: "status"}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Call after Close: %v, want ErrNotRunning", err)
	}
	// A socket file left by a crash is replaced.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	srv, err = Listen(path, &fakeController{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv.Close()
}

// TestSecondServerRefusedRace: of serve processes starting on one data
// directory at the same moment, exactly one gets the control socket; the
// others are refused, none runs without it.
func TestSecondServerRefusedRace(t *testing.T) {
	for round := range 50 {
		path := filepath.Join(t.TempDir(), "c.sock")
		var mu sync.Mutex
		var won []*Server
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() {
				srv, err := Listen(path, &fakeController{}, slog.New(slog.DiscardHandler))
				if err == nil {
					mu.Lock()
					won = append(won, srv)
					mu.Unlock()
				} else if !errors.Is(err, ErrRunning) {
					t.Errorf("round %d: Listen: %v, want ErrRunning", round, err)
				}
			})
		}
		wg.Wait()
		for _, srv := range won {
			srv.Close()
		}
		if len(won) != 1 {
			t.Fatalf("round %d: %d of 4 simultaneous Listens on one path succeeded, want 1", round, len(won))
		}
	}
}

func TestCertificateWarning(t *testing.T) {
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		c    Certificate
		want string
	}{
		{Certificate{NotAfter: now.Add(60 * 24 * time.Hour)}, ""},
		{Certificate{NotAfter: now.Add(10 * 24 * time.Hour)}, "expires soon"},
		{Certificate{NotAfter: now.Add(-time.Hour)}, "expired"},
		{Certificate{NotAfter: now.Add(25 * 24 * time.Hour), LastError: "connection refused"}, "renewal failing: connection refused"},
		{Certificate{}, "not obtained yet"},
		{Certificate{LastError: "403 unauthorized"}, "not obtained: 403 unauthorized"},
	} {
		if got := tc.c.Warning(now); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.c, got, tc.want)
		}
	}
}
