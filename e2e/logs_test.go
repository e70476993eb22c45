package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestJSONLogs: with [log] format = "json" every line serve writes is one
// JSON object, from every part of the process: the store's background work
// (here removing an orphaned message file), the protocol sessions,
// net/http's own messages for the console (a failed TLS handshake), a
// reload and the shutdown. Messages do not repeat the service attribute.
func TestJSONLogs(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "postoffice.toml")
	cfg := fmt.Sprintf(`data_dir = %q
hostname = "mail.test"
[pop3]
listen = ["127.0.0.1:0"]
tls_listen = ["127.0.0.1:0"]
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
tls_listen = []
[admin]
listen = "127.0.0.1:0"
tls = true
[queue]
dns_server = "127.0.0.1:9"
[log]
format = "json"
level = "debug"
`, data)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cli := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(binary, append(args, "--config", cfgPath)...)
		cmd.Stdin = strings.NewReader(stdin)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("postoffice %v: %v: %s", args, err, stderr.String())
		}
		return stderr.String()
	}
	cli("pw\n", "user", "add", "a@mail.test", "--password-stdin")
	// A message file no message refers to, older than the sweep's grace:
	// opening the store removes it, and says so.
	orphan := filepath.Join(data, "blobs", "ab", "ab"+strings.Repeat("0", 30))
	if err := os.WriteFile(orphan, []byte("lost"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(orphan, old, old)

	cmd := exec.Command(binary, "serve", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		lines []string
	)
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			lines = append(lines, sc.Text())
			mu.Unlock()
		}
		io.Copy(io.Discard, stderr)
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		cmd.Wait()
	})
	// find waits for a line whose JSON has all of attrs.
	find := func(attrs map[string]string) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			seen := append([]string(nil), lines...)
			mu.Unlock()
		next:
			for _, l := range seen {
				var m map[string]any
				if json.Unmarshal([]byte(l), &m) != nil {
					continue
				}
				for k, v := range attrs {
					if fmt.Sprint(m[k]) != v {
						continue next
					}
				}
				return m
			}
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("no log line with %v in:\n%s", attrs, strings.Join(lines, "\n"))
		return nil
	}
	find(map[string]string{"msg": "postoffice ready"})
	addr := func(service string) string {
		return fmt.Sprint(find(map[string]string{"msg": "listening", "service": service})["addr"])
	}

	// A failed POP3 login, an SMTP session, a POP3S and a console
	// connection that are no TLS.
	p := dialPOP(t, addr("pop3"))
	p.cmd("USER a@mail.test")
	if r := p.cmd("PASS wrong"); !strings.HasPrefix(r, "-ERR") {
		t.Errorf("PASS wrong: %q", r)
	}
	p.cmd("QUIT")
	s := dialSMTP(t, addr("smtp"))
	fmt.Fprintf(s.c, "EHLO client.test\r\n")
	s.expect(250, "")
	fmt.Fprintf(s.c, "QUIT\r\n")
	s.expect(221, "")
	for _, svc := range []string{"pop3s", "admin"} {
		c, err := net.Dial("tcp", addr(svc))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("no TLS here, sorry\r\n\r\n"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		io.Copy(io.Discard, c)
		c.Close()
	}
	find(map[string]string{"msg": "authentication failed", "service": "pop3", "login": "a@mail.test"})
	find(map[string]string{"msg": "removed orphaned message files", "count": "1"})
	tlsErr := find(map[string]string{"service": "admin", "level": "WARN"})
	if !strings.Contains(fmt.Sprint(tlsErr["msg"]), "TLS handshake error") {
		t.Errorf("the console's warning: %v", tlsErr)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	find(map[string]string{"msg": "configuration reloaded"})
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit on SIGTERM")
	}

	mu.Lock()
	defer mu.Unlock()
	if len(lines) < 10 {
		t.Fatalf("only %d log lines:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for i, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("line %d is not JSON (%v): %s", i+1, err, l)
			continue
		}
		if m["time"] == nil || m["level"] == nil || m["msg"] == nil {
			t.Errorf("line %d lacks time, level or msg: %s", i+1, l)
		}
		// The SMTP engine's messages are rewritten with the engine
		// (issue 17); every other service's already do without.
		if svc, ok := m["service"].(string); ok && svc != "smtp" && svc != "submission" && strings.HasPrefix(fmt.Sprint(m["msg"]), svc+": ") {
			t.Errorf("line %d repeats its service in the message: %s", i+1, l)
		}
	}
}
