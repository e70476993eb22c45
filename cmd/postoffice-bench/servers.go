package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// mailUID and mailGID own the Dovecot and Postfix mailboxes: neither
// delivers or serves mail as root.
const (
	mailUID = 5000
	mailGID = 5000
)

// instance is one throwaway server under test.
type instance interface {
	Name() string
	POP3Addr() string
	SMTPAddr() string
	Start(ctx context.Context) error
	Stop() error
	// Memory returns the memory of the server's processes.
	Memory() (memStats, error)
	// PID is the server's main process, the root of its process tree.
	PID() (int, error)
}

// tmplData is what the config templates in bench/ are filled with.
type tmplData struct {
	Dir          string // the instance's directory
	Host         string // 127.0.0.1
	POP3Port     int
	SMTPPort     int
	Domain       string
	UID, GID     int
	AuthCache    bool
	ProcessLimit int
	ClientLimit  int

	// compare --checks (checks.go).
	Checks         bool   // postoffice: [auth_checks], dns_server, the milter
	DNSServer      string // host:port
	Milter         string // postoffice's milter, host:port
	MilterName     string // its name (checksMilters)
	SubmissionPort int    // postoffice's submission listener (0: none)
	MyNetworks     string // Postfix: the trusted submitters
	Milters        string // Postfix: smtpd_milters
}

func renderTemplate(benchDir, name, dst string, data tmplData) error {
	t, err := template.ParseFiles(filepath.Join(benchDir, name))
	if err != nil {
		return fmt.Errorf("config template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return fmt.Errorf("config template %s: %w", name, err)
	}
	return os.WriteFile(dst, b.Bytes(), 0o644)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitListening waits until addr accepts connections.
func waitListening(ctx context.Context, addr string, within time.Duration, exited <-chan struct{}) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v: %w", addr, within, err)
		}
		select {
		case <-exited:
			return fmt.Errorf("server exited before listening on %s", addr)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// daemon is a foreground child process with its output in a log file.
type daemon struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	group  bool // stop signals the whole process group
}

func startDaemon(log string, name string, args ...string) (*daemon, error) {
	f, err := os.OpenFile(log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Its own process group: a Ctrl-C of the benchmark reaches the
	// benchmark, which then stops the server itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	d := &daemon{cmd: cmd, exited: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		f.Close()
		close(d.exited)
	}()
	return d, nil
}

// stop sends SIGTERM and waits; SIGKILL after the grace period. The
// signals go to the daemon's process group when it has children of its
// own that the main process does not stop (group: rspamd's workers).
func (d *daemon) stop(grace time.Duration) error {
	if d == nil {
		return nil
	}
	select {
	case <-d.exited:
		return nil
	default:
	}
	pid := d.cmd.Process.Pid
	if d.group {
		pid = -pid
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-d.exited:
		return nil
	case <-time.After(grace):
		syscall.Kill(pid, syscall.SIGKILL)
		<-d.exited
		return fmt.Errorf("%s did not stop within %v: killed", filepath.Base(d.cmd.Path), grace)
	}
}

// postoffice is an instance of the binary under test.
type postoffice struct {
	bin, benchDir, dir string
	pop3, smtp         int
	submission         int // 0: no submission listener
	d                  *daemon
	// profile, when set, is the path prefix of a CPU profile and an
	// allocation profile per start (PREFIX-N.pprof, PREFIX-N.allocs.pprof).
	profile string
	starts  int
}

// newPostoffice prepares an instance; chk, when set, configures it for
// the intake with checks (a submission listener, the checks, rspamd).
func newPostoffice(bin, benchDir, dir string, chk *checksEnv) (*postoffice, error) {
	p := &postoffice{bin: bin, benchDir: benchDir, dir: dir}
	var err error
	if p.pop3, err = freePort(); err != nil {
		return nil, err
	}
	if p.smtp, err = freePort(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	data := tmplData{Dir: dir, Host: "127.0.0.1", POP3Port: p.pop3, SMTPPort: p.smtp}
	if chk != nil {
		if p.submission, err = freePort(); err != nil {
			return nil, err
		}
		data.Checks, data.DNSServer, data.Milter, data.MilterName, data.SubmissionPort = true, checksDNSAddr, chk.milterAddr, chk.milterKind, p.submission
	}
	if err := renderTemplate(benchDir, "postoffice.toml.tmpl", p.config(), data); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *postoffice) Name() string     { return "postoffice" }
func (p *postoffice) POP3Addr() string { return "127.0.0.1:" + strconv.Itoa(p.pop3) }
func (p *postoffice) SMTPAddr() string { return "127.0.0.1:" + strconv.Itoa(p.smtp) }
func (p *postoffice) config() string   { return filepath.Join(p.dir, "postoffice.toml") }

// SubmissionAddr is the submission listener's address, "" without one.
func (p *postoffice) SubmissionAddr() string {
	if p.submission == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(p.submission)
}
func (p *postoffice) dataDir() string { return filepath.Join(p.dir, "data") }

func (p *postoffice) Start(ctx context.Context) error {
	args := []string{"serve", "--config", p.config()}
	if p.profile != "" {
		p.starts++
		args = append(args, "--cpuprofile", fmt.Sprintf("%s-%d.pprof", p.profile, p.starts),
			"--allocprofile", fmt.Sprintf("%s-%d.allocs.pprof", p.profile, p.starts))
	}
	d, err := startDaemon(filepath.Join(p.dir, "postoffice.log"), p.bin, args...)
	if err != nil {
		return err
	}
	p.d = d
	for _, a := range []string{p.POP3Addr(), p.SMTPAddr(), p.SubmissionAddr()} {
		if a == "" {
			continue
		}
		if err := waitListening(ctx, a, 30*time.Second, d.exited); err != nil {
			p.Stop()
			return fmt.Errorf("postoffice: %w (see %s)", err, filepath.Join(p.dir, "postoffice.log"))
		}
	}
	return nil
}

func (p *postoffice) Stop() error {
	err := p.d.stop(30 * time.Second)
	p.d = nil
	return err
}

func (p *postoffice) Memory() (memStats, error) {
	if p.d == nil {
		return memStats{}, errors.New("not running")
	}
	return treeMemory(p.d.cmd.Process.Pid)
}

func (p *postoffice) PID() (int, error) {
	if p.d == nil {
		return 0, errors.New("not running")
	}
	return p.d.cmd.Process.Pid, nil
}

// dovecot is a throwaway Dovecot serving POP3 from maildirs.
type dovecot struct {
	benchDir, dir string
	pop3          int
	data          tmplData
	d             *daemon
}

func newDovecot(benchDir, dir string, authCache bool, sessions int) (*dovecot, error) {
	v := &dovecot{benchDir: benchDir, dir: dir}
	var err error
	if v.pop3, err = freePort(); err != nil {
		return nil, err
	}
	for _, sub := range []string{"run", "state", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(filepath.Join(dir, "mail"), mailUID, mailGID); err != nil {
		return nil, err
	}
	v.data = tmplData{Dir: dir, Host: "127.0.0.1", POP3Port: v.pop3, UID: mailUID, GID: mailGID,
		AuthCache: authCache, ProcessLimit: max(sessions+100, 1024), ClientLimit: max(2*sessions+100, 1000)}
	if err := renderTemplate(benchDir, "dovecot.conf.tmpl", v.config(), v.data); err != nil {
		return nil, err
	}
	return v, nil
}

func (v *dovecot) Name() string     { return "dovecot" }
func (v *dovecot) POP3Addr() string { return "127.0.0.1:" + strconv.Itoa(v.pop3) }
func (v *dovecot) SMTPAddr() string { return "" }
func (v *dovecot) config() string   { return filepath.Join(v.dir, "dovecot.conf") }

// maildir is where a user's maildir is, as the template's userdb says:
// mail/DOMAIN/LOCAL/Maildir.
func (v *dovecot) maildir(user string) string {
	local, domain, _ := strings.Cut(user, "@")
	return filepath.Join(v.dir, "mail", domain, local, "Maildir")
}

// writePasswd writes the passdb: every user with the given hash.
func (v *dovecot) writePasswd(users []account, hash string) error {
	var b bytes.Buffer
	for _, u := range users {
		fmt.Fprintf(&b, "%s:{ARGON2ID}%s\n", u.Name, hash)
	}
	return os.WriteFile(filepath.Join(v.dir, "passwd"), b.Bytes(), 0o644)
}

func (v *dovecot) Start(ctx context.Context) error {
	d, err := startDaemon(filepath.Join(v.dir, "dovecot.out"), "dovecot", "-F", "-c", v.config())
	if err != nil {
		return err
	}
	v.d = d
	if err := waitListening(ctx, v.POP3Addr(), 30*time.Second, d.exited); err != nil {
		v.Stop()
		return fmt.Errorf("dovecot: %w (see %s/dovecot.log and dovecot.out)", err, v.dir)
	}
	return nil
}

func (v *dovecot) Stop() error {
	err := v.d.stop(30 * time.Second)
	v.d = nil
	return err
}

func (v *dovecot) Memory() (memStats, error) {
	if v.d == nil {
		return memStats{}, errors.New("not running")
	}
	return treeMemory(v.d.cmd.Process.Pid)
}

func (v *dovecot) PID() (int, error) {
	if v.d == nil {
		return 0, errors.New("not running")
	}
	return v.d.cmd.Process.Pid, nil
}

// postfix is a private Postfix instance delivering to maildirs with its
// virtual(8) delivery agent.
type postfix struct {
	benchDir, dir string
	smtp          int
	domain        string
}

// newPostfix prepares an instance; chk, when set, configures it for the
// intake with checks (OpenDKIM, OpenDMARC and rspamd as milters, only
// 127.0.0.1 trusted as a submitter).
func newPostfix(benchDir, dir, domain string, users []account, chk *checksEnv) (*postfix, error) {
	x := &postfix{benchDir: benchDir, dir: dir, domain: domain}
	var err error
	if x.smtp, err = freePort(); err != nil {
		return nil, err
	}
	for _, sub := range []string{"etc", "spool", "data", "vmail"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chown(filepath.Join(dir, "vmail"), mailUID, mailGID); err != nil {
		return nil, err
	}
	// data_directory belongs to the mail_owner (master's lock file).
	owner, err := user.Lookup("postfix")
	if err != nil {
		return nil, fmt.Errorf("postfix: %w", err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	gid, _ := strconv.Atoi(owner.Gid)
	if err := os.Chown(filepath.Join(dir, "data"), uid, gid); err != nil {
		return nil, err
	}
	data := tmplData{Dir: dir, Host: "127.0.0.1", SMTPPort: x.smtp, Domain: domain, UID: mailUID, GID: mailGID,
		MyNetworks: "127.0.0.0/8"}
	if chk != nil {
		data.MyNetworks = "127.0.0.1/32"
		data.Milters = "inet:" + chk.opendkimAddr + ", inet:" + chk.opendmarcAddr
		if chk.milterAddr != "" {
			data.Milters += ", inet:" + chk.milterAddr
		}
	}
	if err := renderTemplate(benchDir, "postfix-main.cf.tmpl", filepath.Join(dir, "etc", "main.cf"), data); err != nil {
		return nil, err
	}
	if err := renderTemplate(benchDir, "postfix-master.cf.tmpl", filepath.Join(dir, "etc", "master.cf"), data); err != nil {
		return nil, err
	}
	// virtual_mailbox_maps: address -> maildir (a trailing / means
	// maildir), relative to virtual_mailbox_base.
	var b bytes.Buffer
	for _, u := range users {
		local, dom, _ := strings.Cut(u.Name, "@")
		fmt.Fprintf(&b, "%s %s/%s/\n", u.Name, dom, local)
	}
	if err := os.WriteFile(filepath.Join(dir, "etc", "vmailbox"), b.Bytes(), 0o644); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *postfix) Name() string     { return "postfix" }
func (x *postfix) POP3Addr() string { return "" }
func (x *postfix) SMTPAddr() string { return "127.0.0.1:" + strconv.Itoa(x.smtp) }
func (x *postfix) etc() string      { return filepath.Join(x.dir, "etc") }

// maildirNew is where virtual(8) puts new mail for user.
func (x *postfix) maildirNew(user string) string {
	local, dom, _ := strings.Cut(user, "@")
	return filepath.Join(x.dir, "vmail", dom, local, "new")
}

func (x *postfix) run(args ...string) error {
	out, err := exec.Command("postfix", append([]string{"-c", x.etc()}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("postfix %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (x *postfix) Start(ctx context.Context) error {
	// check creates the queue directories with their owners and modes.
	if err := x.run("check"); err != nil {
		return err
	}
	if err := x.run("start"); err != nil {
		return err
	}
	if err := waitListening(ctx, x.SMTPAddr(), 30*time.Second, nil); err != nil {
		x.Stop()
		return fmt.Errorf("postfix: %w (see %s/postfix.log)", err, x.dir)
	}
	return nil
}

func (x *postfix) Stop() error {
	if _, err := x.masterPID(); err != nil {
		return nil // not running
	}
	return x.run("stop")
}

func (x *postfix) masterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(x.dir, "spool", "pid", "master.pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, err
	}
	if syscall.Kill(pid, 0) != nil {
		return 0, fmt.Errorf("master %d not running", pid)
	}
	return pid, nil
}

func (x *postfix) PID() (int, error) { return x.masterPID() }

func (x *postfix) Memory() (memStats, error) {
	pid, err := x.masterPID()
	if err != nil {
		return memStats{}, err
	}
	return treeMemory(pid)
}

// countFiles counts the entries of the given directories (absent ones
// count 0).
func countFiles(dirs []string) (int, error) {
	n := 0
	for _, d := range dirs {
		f, err := os.Open(d)
		if errors.Is(err, os.ErrNotExist) {
			continue
		} else if err != nil {
			return 0, err
		}
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return 0, err
		}
		n += len(names)
	}
	return n, nil
}
