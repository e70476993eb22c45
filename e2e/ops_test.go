package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// Operations: the control socket (status, start, stop, reload), SIGHUP,
// server attributes (login_delay, expire, limits), config show/set, the
// mail journal and /metrics, against the real binary.

// opsWait polls cond until it holds (or fails the test after a minute).
func opsWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// statusJSON is what 'postoffice status --json' prints.
type statusJSON struct {
	PID      int `json:"pid"`
	Services []struct {
		Name     string   `json:"name"`
		Running  bool     `json:"running"`
		Addrs    []string `json:"addrs"`
		Sessions int      `json:"sessions"`
	} `json:"services"`
	Queue   struct{ Messages int } `json:"queue"`
	Console string                 `json:"console"`
}

func (in *instance) status() statusJSON {
	in.t.Helper()
	var st statusJSON
	out := in.must("", "status", "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		in.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return st
}

func (in *instance) service(name string) (running bool, sessions int, addrs []string) {
	in.t.Helper()
	for _, s := range in.status().Services {
		if s.Name == name {
			return s.Running, s.Sessions, s.Addrs
		}
	}
	in.t.Fatalf("no service %s in status", name)
	return
}

// refused reports whether a TCP connection to addr is refused.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}

// smtpGreeting connects and returns the greeting line (the connection
// stays open until the test ends).
func smtpGreeting(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	l, _ := bufio.NewReader(c).ReadString('\n')
	return c, strings.TrimSpace(l)
}

// TestControlStopStart: stop pop3 while smtp keeps accepting; a session
// in progress finishes and its QUIT applies; start brings pop3 back on
// the same address; status counts the sessions.
func TestControlStopStart(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("op@example.org", "pw")
	in.deliver("op@example.org", msg)
	in.deliver("op@example.org", msg)
	in.start()
	pop3Addr, smtpAddr := in.addr("pop3"), in.addr("smtp")

	running, _, addrs := in.service("pop3")
	if !running || len(addrs) != 2 || !strings.Contains(strings.Join(addrs, " "), pop3Addr) {
		t.Fatalf("pop3 status: running %v, addrs %v", running, addrs)
	}
	text := in.must("", "status")
	for _, want := range []string{"SERVICE", "pop3", "running", "smtp", "submission", "queue:", "web console: http://"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}

	// Two sessions: one POP3 (logged in, one deletion pending), one SMTP.
	p := dialPOP(t, pop3Addr)
	p.login("op@example.org", "pw")
	if r := p.cmd("DELE 1"); !strings.HasPrefix(r, "+OK") {
		t.Fatal(r)
	}
	_, g := smtpGreeting(t, smtpAddr)
	if !strings.HasPrefix(g, "220 ") {
		t.Fatalf("smtp greeting %q", g)
	}
	opsWait(t, "status to count both sessions", func() bool {
		_, np, _ := in.service("pop3")
		_, ns, _ := in.service("smtp")
		return np == 1 && ns == 1
	})

	stopped := make(chan result, 1)
	go func() { stopped <- in.run("", "stop", "pop3", "--grace", "60s") }()
	opsWait(t, "pop3 to refuse connections", func() bool { return refused(pop3Addr) })
	if running, _, _ := in.service("pop3"); running {
		t.Error("status says pop3 runs after stop")
	}
	// smtp keeps accepting while pop3 is stopped.
	if _, g := smtpGreeting(t, smtpAddr); !strings.HasPrefix(g, "220 ") {
		t.Errorf("smtp during pop3 stop: %q", g)
	}
	// The POP3 session in progress goes on and ends normally.
	if r := p.cmd("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Errorf("STAT in the draining session: %q", r)
	}
	p.quit()
	r := <-stopped
	if r.code != 0 || !strings.Contains(r.stdout, "pop3 stopped") {
		t.Fatalf("stop pop3: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if r := in.run("", "stop", "pop3"); r.code == 0 || !strings.Contains(r.stderr, "not running") {
		t.Errorf("second stop: %+v", r)
	}

	if out := in.must("", "start", "pop3"); !strings.Contains(out, "pop3 started") {
		t.Errorf("start: %q", out)
	}
	if got := in.addr("pop3"); got != pop3Addr {
		t.Errorf("pop3 restarted on %s, want %s", got, pop3Addr)
	}
	p = dialPOP(t, pop3Addr)
	p.login("op@example.org", "pw")
	if r := p.cmd("STAT"); !strings.HasPrefix(r, "+OK 1 ") {
		t.Errorf("after restart STAT %q, want 1 message (the QUIT during stop applied)", r)
	}
	p.quit()

	// stop all / start all, and bad arguments.
	in.must("", "stop", "all", "--grace", "1s")
	for _, s := range in.status().Services {
		if s.Running {
			t.Errorf("%s runs after stop all", s.Name)
		}
	}
	opsWait(t, "smtp to refuse connections", func() bool { return refused(smtpAddr) })
	in.must("", "start", "all")
	if refused(smtpAddr) || refused(pop3Addr) {
		t.Error("start all did not bring the listeners back")
	}
	if r := in.run("", "start", "imap"); r.code != 64 {
		t.Errorf("start imap: exit %d, want 64", r.code)
	}
}

// TestControlWithoutServer: the control commands say clearly that no
// server runs (exit 75).
func TestControlWithoutServer(t *testing.T) {
	in := newInstance(t, "")
	for _, args := range [][]string{{"status"}, {"stop", "pop3"}, {"reload"}} {
		r := in.run("", args...)
		if r.code != 75 || !strings.Contains(r.stderr, "not running") {
			t.Errorf("%v without serve: exit %d, %q", args, r.code, r.stderr)
		}
	}
	// The control socket is private to its owner.
	in.start()
	fi, err := os.Stat(filepath.Join(in.dir, "data", "control.sock"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: %v, %v; want mode 0600", fi, err)
	}
	// A second serve on the same data directory is refused.
	r := in.run("", "serve")
	if r.code == 0 || !strings.Contains(r.stderr, "another postoffice serve is running") {
		t.Errorf("second serve: exit %d, %q", r.code, r.stderr)
	}
}

// serial returns the serial number of the certificate served at addr.
func serial(t *testing.T, addr string) int64 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestSIGHUPReloadsCertificate: SIGHUP makes serve read its certificate
// again; a session open across the reload is not dropped.
func TestSIGHUPReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeCert(t, dir, "mail.test", 1001)
	in := newInstance(t, "")
	in.addUser("tls@example.org", "pw")
	// [tls] goes at the end of the file.
	f, err := os.OpenFile(in.cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[tls]\ncert_file = %q\nkey_file = %q\n", cert, key)
	f.Close()
	in.start()
	if s := serial(t, in.addr("pop3s")); s != 1001 {
		t.Fatalf("serial %d, want 1001", s)
	}
	p := dialPOP(t, in.addr("pop3"))
	p.login("tls@example.org", "pw")

	writeCert(t, dir, "mail.test", 2002)
	in.mu.Lock()
	in.cmd.Process.Signal(syscall.SIGHUP)
	in.mu.Unlock()
	opsWait(t, "the reload", func() bool { return strings.Contains(in.logText(), "configuration reloaded") })
	if s := serial(t, in.addr("pop3s")); s != 2002 {
		t.Errorf("after SIGHUP serial %d, want 2002", s)
	}
	if r := p.cmd("NOOP"); r != "+OK" {
		t.Errorf("the session across the reload: %q", r)
	}
	p.quit()
	// And the control command does the same.
	writeCert(t, dir, "mail.test", 3003)
	if out := in.must("", "reload"); !strings.Contains(out, "certificate reloaded: new certificate in use") {
		t.Errorf("reload: %q", out)
	}
	if s := serial(t, in.addr("pop3s")); s != 3003 {
		t.Errorf("after reload serial %d, want 3003", s)
	}
}

func capaOf(p *popConn) []string { return p.multi("CAPA") }

func hasLine(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

// TestLoginDelay: RFC 2449 section 6.5. LOGIN-DELAY is announced (with
// USER before login, since users may have their own value), a second login
// within the delay is refused with [LOGIN-DELAY], and a user's own value
// overrides the server's.
func TestLoginDelay(t *testing.T) {
	in := newInstance(t, "login_delay = 600")
	in.addUser("ld@example.org", "pw")
	in.addUser("free@example.org", "pw")
	in.must("", "user", "set", "free@example.org", "--login-delay", "0")
	in.start()
	addr := in.addr("pop3")

	p := dialPOP(t, addr)
	if c := capaOf(p); !hasLine(c, "LOGIN-DELAY 600 USER") {
		t.Errorf("CAPA before login: %q", c)
	}
	p.login("ld@example.org", "pw")
	if c := capaOf(p); !hasLine(c, "LOGIN-DELAY 600") {
		t.Errorf("CAPA after login: %q", c)
	}
	p.quit()

	p = dialPOP(t, addr)
	p.cmd("USER ld@example.org")
	if r := p.cmd("PASS wrong"); r != "-ERR [AUTH] Authentication failed." {
		t.Errorf("wrong password during the delay: %q", r)
	}
	p.cmd("USER ld@example.org")
	if r := p.cmd("PASS pw"); r != "-ERR [LOGIN-DELAY] Logged in too recently, try again later." {
		t.Errorf("second login within the delay: %q", r)
	}
	p.quit()

	// A user whose own delay is 0 logs in twice in a row.
	for range 2 {
		p = dialPOP(t, addr)
		p.login("free@example.org", "pw")
		if c := capaOf(p); hasLine(c, "LOGIN-DELAY 600") {
			t.Errorf("CAPA of a user without delay: %q", c)
		}
		p.quit()
	}
	// Back to the server's value: refused again.
	in.must("", "user", "set", "free@example.org", "--login-delay", "default")
	p = dialPOP(t, addr)
	p.cmd("USER free@example.org")
	if r := p.cmd("PASS pw"); !strings.HasPrefix(r, "-ERR [LOGIN-DELAY]") {
		t.Errorf("after --login-delay default: %q", r)
	}
}

// TestExpire: RFC 2449 section 6.7. EXPIRE is announced; a message
// retrieved more than the retention period ago is removed (here the period
// is one second, given as a duration), one never retrieved is kept, and the
// journal records the expiry.
func TestExpire(t *testing.T) {
	in := newInstance(t, `expire = "1s"`)
	in.addUser("ex@example.org", "pw")
	in.addUser("keep@example.org", "pw")
	in.must("", "user", "set", "keep@example.org", "--expire", "never")
	for _, u := range []string{"ex@example.org", "keep@example.org"} {
		in.deliver(u, "Subject: read me\r\n\r\nfirst\r\n")
		in.deliver(u, "Subject: not yet\r\n\r\nsecond\r\n")
	}
	in.start()
	addr := in.addr("pop3")
	for _, u := range []string{"ex@example.org", "keep@example.org"} {
		p := dialPOP(t, addr)
		if c := capaOf(p); !hasLine(c, "EXPIRE 0 USER") {
			t.Errorf("CAPA before login: %q", c)
		}
		p.login(u, "pw")
		want := "EXPIRE 0"
		if u == "keep@example.org" {
			want = "EXPIRE NEVER"
		}
		if c := capaOf(p); !hasLine(c, want) {
			t.Errorf("%s: CAPA after login %q, want %s", u, c, want)
		}
		p.multi("RETR 1")
		p.quit()
	}
	// Let more than the retention period pass since the retrieval.
	time.Sleep(2100 * time.Millisecond)
	for u, want := range map[string]string{"ex@example.org": "+OK 1 ", "keep@example.org": "+OK 2 "} {
		p := dialPOP(t, addr)
		p.login(u, "pw")
		if r := p.cmd("STAT"); !strings.HasPrefix(r, want) {
			t.Errorf("%s: STAT %q, want %q...", u, r, want)
		}
		if u == "ex@example.org" {
			if top := p.multi("TOP 1 0"); !hasLine(top, "Subject: not yet") {
				t.Errorf("the message kept is not the unread one: %q", top)
			}
		}
		p.quit()
	}
	opsWait(t, "the expiry in the journal", func() bool {
		return strings.Contains(in.must("", "journal", "--user", "ex@example.org", "--event", "expired"), "expired")
	})
}

// TestConfigShowSet: config show prints the effective settings, config set
// changes one at run time in DATA_DIR/settings.toml (the configuration
// file stays as it is, and may be read-only, as under systemd's
// ProtectSystem=strict), the running server applies it at once and says
// so, and the change outlives a restart.
func TestConfigShowSet(t *testing.T) {
	in := newInstance(t, "# the POP3 service\ninactivity_timeout = 900")
	orig, _ := os.ReadFile(in.cfgPath)
	os.Chmod(in.cfgPath, 0o400)
	overlay := filepath.Join(in.dir, "data", "settings.toml")
	out := in.must("", "config", "show")
	for _, want := range []string{"[pop3]", `inactivity_timeout = "15m"`, `login_delay = "0s"`, `expire = "never"`, "[admin]", "autostart = true"} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %q", want)
		}
	}
	if v := strings.TrimSpace(in.must("", "config", "show", "pop3.inactivity_timeout")); v != `"15m"` {
		t.Errorf("config show KEY = %q", v)
	}
	// Without a running server the change waits for the next start.
	if out := in.must("", "config", "set", "pop3.login_delay", "45"); !strings.Contains(out, `pop3.login_delay: "0s" -> "45s"`) || !strings.Contains(out, "not running") {
		t.Errorf("config set offline: %q", out)
	}
	in.start()
	p := dialPOP(t, in.addr("pop3"))
	if !hasLine(capaOf(p), "LOGIN-DELAY 45 USER") {
		t.Error("the setting made offline is not in effect")
	}
	out = in.must("", "config", "set", "pop3.login_delay", "120")
	if !strings.Contains(out, `pop3.login_delay: "45s" -> "2m"`) || !strings.Contains(out, "pop3: new settings apply to new sessions") {
		t.Errorf("config set online: %q", out)
	}
	// The open session keeps its settings; a new one has the new value.
	if !hasLine(capaOf(p), "LOGIN-DELAY 45 USER") {
		t.Error("the open session's settings changed")
	}
	if c := capaOf(dialPOP(t, in.addr("pop3"))); !hasLine(c, "LOGIN-DELAY 120 USER") {
		t.Errorf("new session CAPA %q", c)
	}
	if v := strings.TrimSpace(in.must("", "config", "show", "pop3.login_delay")); v != `"2m"` {
		t.Errorf("config show after set: %q", v)
	}
	if data, _ := os.ReadFile(in.cfgPath); string(data) != string(orig) {
		t.Errorf("config set wrote the configuration file:\n%s", data)
	}
	if data, _ := os.ReadFile(overlay); strings.Count(string(data), "login_delay") != 1 || !strings.Contains(string(data), `login_delay = "2m"`) {
		t.Errorf("the overlay after set:\n%s", data)
	}
	// config show says where each value comes from.
	out = in.must("", "config", "show")
	for _, want := range []string{"# configuration file: " + in.cfgPath, "# settings changed at run time: " + overlay,
		`login_delay = "2m"  # set at run time;`, `inactivity_timeout = "15m"  # from the file;`, "max_recipients = 100  # most"} {
		if !strings.Contains(out, want) {
			t.Errorf("config show lacks %q:\n%s", want, out)
		}
	}
	// A listener moved by config set: the service follows at once.
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	newAddr := free.Addr().String()
	free.Close()
	if out := in.must("", "config", "set", "smtp.listen", newAddr); !strings.Contains(out, "smtp: now listening on smtp "+newAddr) {
		t.Errorf("moving smtp: %q", out)
	}
	if _, g := smtpGreeting(t, newAddr); !strings.HasPrefix(g, "220 ") {
		t.Errorf("smtp on its new address: %q", g)
	}
	// Bad values are refused with the key named, and change nothing.
	for _, bad := range [][]string{{"pop3.login_delay", "-5"}, {"pop3.expire", "soon"}, {"nosuch.key", "1"}, {"smtp.listen", "nohostport"}} {
		r := in.run("", append([]string{"config", "set"}, bad...)...)
		if r.code == 0 || !strings.Contains(r.stderr, bad[0]) {
			t.Errorf("config set %v: exit %d %q", bad, r.code, r.stderr)
		}
	}
	if after, _ := os.ReadFile(overlay); !strings.Contains(string(after), `login_delay = "2m"`) {
		t.Errorf("a refused set changed the overlay:\n%s", after)
	}
	// The change outlives a restart.
	in.stop()
	in.start()
	if c := capaOf(dialPOP(t, in.addr("pop3"))); !hasLine(c, "LOGIN-DELAY 120 USER") {
		t.Errorf("after a restart CAPA %q", c)
	}
}

var metricRE = regexp.MustCompile(`(?m)^(postoffice_[a-z_]+(?:\{[^}]*\})?) ([0-9.e+]+)$`)

// metrics scrapes /metrics from the admin listener.
func (in *instance) metrics() map[string]float64 {
	in.t.Helper()
	resp, err := http.Get("http://" + in.addr("admin") + "/metrics")
	if err != nil {
		in.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, m := range metricRE.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

// TestMetricsAndJournal: after a message comes in by SMTP and is
// retrieved and deleted over POP3, /metrics counts it all and the journal
// has received, delivered, retrieved and deleted entries for it.
func TestMetricsAndJournal(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("mj@example.org", "pw")
	in.start()
	before := in.metrics()
	if before[`postoffice_service_up{service="pop3"}`] != 1 || before[`postoffice_messages_total{event="received"}`] != 0 {
		t.Fatalf("metrics at start: %v", before)
	}
	body := "From: s@example.net\r\nTo: mj@example.org\r\nMessage-ID: <metrics-1@example.net>\r\nSubject: counted\r\n\r\nhello\r\n"
	if err := sendPlain(in.addr("smtp"), "s@example.net", "mj@example.org", body); err != nil {
		t.Fatal(err)
	}
	p := dialPOP(t, in.addr("pop3"))
	p.cmd("USER mj@example.org")
	p.cmd("PASS wrong")
	p.login("mj@example.org", "pw")
	p.multi("RETR 1")
	p.cmd("DELE 1")
	p.quit()

	var after map[string]float64
	opsWait(t, "the metrics to count the session", func() bool {
		after = in.metrics()
		return after[`postoffice_messages_total{event="deleted"}`] == 1
	})
	for name, want := range map[string]float64{
		`postoffice_messages_total{event="received"}`:              1,
		`postoffice_messages_total{event="delivered"}`:             1,
		`postoffice_messages_total{event="retrieved"}`:             1,
		`postoffice_logins_total{protocol="pop3",result="ok"}`:     1,
		`postoffice_logins_total{protocol="pop3",result="failed"}`: 1,
		`postoffice_sessions_total{protocol="pop3"}`:               1,
		`postoffice_sessions_total{protocol="smtp"}`:               1,
		`postoffice_queue_messages`:                                0,
	} {
		if after[name] != want {
			t.Errorf("%s = %v, want %v", name, after[name], want)
		}
	}
	if after["postoffice_received_bytes_total"] < float64(len(body)) || after["postoffice_retrieved_bytes_total"] <= 0 {
		t.Errorf("bytes: received %v, retrieved %v", after["postoffice_received_bytes_total"], after["postoffice_retrieved_bytes_total"])
	}
	if after[`postoffice_delivery_duration_seconds_count{kind="local"}`] != 1 {
		t.Errorf("delivery latency histogram count = %v", after[`postoffice_delivery_duration_seconds_count{kind="local"}`])
	}

	var lines string
	opsWait(t, "the journal entries", func() bool {
		lines = in.must("", "journal", "--user", "mj@example.org", "--since", "1h")
		return strings.Contains(lines, "deleted")
	})
	events := regexp.MustCompile(`(?m)^\S+ \S+\s+(\w+)`).FindAllStringSubmatch(lines, -1)
	var got []string
	for _, m := range events {
		got = append(got, m[1])
	}
	if strings.Join(got, " ") != "deleted retrieved delivered received" {
		t.Errorf("journal events %v, want deleted retrieved delivered received (newest first):\n%s", got, lines)
	}
	if !strings.Contains(lines, "<metrics-1@example.net>") || !strings.Contains(lines, "s@example.net") {
		t.Errorf("journal lacks the message id or the sender:\n%s", lines)
	}
	if out := in.must("", "journal", "--event", "retrieved", "--json"); !strings.Contains(out, `"Event":"retrieved"`) {
		t.Errorf("journal --json: %q", out)
	}
	if r := in.run("", "journal", "--since", "yesterday-ish"); r.code != 64 {
		t.Errorf("journal with a bad --since: exit %d", r.code)
	}
}

// TestSessionLimitE2E: max_sessions_per_ip refuses the extra connection
// with a clear reply.
func TestSessionLimitE2E(t *testing.T) {
	in := newInstanceWith(t, map[string]string{"smtp": "max_sessions_per_ip = 1"})
	in.start()
	if _, g := smtpGreeting(t, in.addr("smtp")); !strings.HasPrefix(g, "220 ") {
		t.Fatalf("first: %q", g)
	}
	if _, g := smtpGreeting(t, in.addr("smtp")); !strings.HasPrefix(g, "421 4.7.0 ") {
		t.Errorf("second connection from one address: %q, want 421", g)
	}
}

// TestVersionAndHelp: every command explains itself.
func TestVersionAndHelp(t *testing.T) {
	in := newInstance(t, "")
	if out := in.must("", "version"); !strings.HasPrefix(out, "postoffice ") {
		t.Errorf("version: %q", out)
	}
	for _, c := range [][]string{{"status"}, {"start"}, {"stop"}, {"reload"}, {"config", "show"}, {"config", "set"},
		{"admin", "add"}, {"journal"}, {"user", "set"}, {"serve"}} {
		out := in.must("", append([]string{"help"}, c...)...)
		if !strings.Contains(out, "Usage: postoffice") || len(out) < 200 {
			t.Errorf("help %v: %q", c, out)
		}
	}
}

// writeCert writes a self-signed certificate for name (and 127.0.0.1) with
// the serial number given, and its key, to dir (as a renewal does).
func writeCert(t *testing.T, dir, name string, serial int64) (certFile, keyFile string) {
	t.Helper()
	c, err := testlib.SelfSigned(testlib.CertOptions{Names: []string{name, "127.0.0.1"}, Serial: serial})
	if err != nil {
		t.Fatal(err)
	}
	return testlib.WriteCert(t, dir, c)
}
