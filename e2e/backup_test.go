package e2e

import (
	"bufio"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
)

// popMessage is what POP3 shows of one message.
type popMessage struct {
	size int
	body string
}

// popMailbox reads a mailbox over POP3 without deleting anything: UIDL ->
// LIST size and RETR octets.
func popMailbox(t *testing.T, addr, user, pass string) map[string]popMessage {
	t.Helper()
	p := dialPOP(t, addr)
	p.login(user, pass)
	uidls := p.uidls()
	list := p.multi("LIST")
	if len(list) != len(uidls) {
		t.Fatalf("%s: %d UIDL lines, %d LIST lines", user, len(uidls), len(list))
	}
	out := map[string]popMessage{}
	for i, u := range uidls {
		var n, size int
		fmt.Sscanf(list[i], "%d %d", &n, &size)
		fmt.Fprintf(p.c, "RETR %d\r\n", i+1)
		if st := p.line(); !strings.HasPrefix(st, "+OK") {
			t.Fatalf("RETR %d: %s", i+1, st)
		}
		var b strings.Builder
		for {
			l, err := p.r.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == ".\r\n" {
				break
			}
			b.WriteString(strings.TrimPrefix(l, "."))
		}
		out[u] = popMessage{size: size, body: b.String()}
	}
	p.quit()
	return out
}

// loadMessage is the message of id; every fifth is bigger than the
// embedded store keeps inline (a file of its own).
func loadMessage(id string, n int) string {
	lines := 40
	if n%5 == 0 {
		lines = 4000
	}
	return "From: load@example.net\r\nSubject: crash-" + id + "\r\n\r\n" + strings.Repeat("payload of "+id+"\r\n", lines)
}

var receivedRE = regexp.MustCompile(`(?s)^.*?\r\n\r\n`)

// TestBackupUnderLoad is the proof for backup and restore, with
// the embedded store and with PostgreSQL: postoffice backup runs while
// SMTP clients deliver (small and big messages) and a POP3 client
// retrieves and deletes; the backup verifies; it is restored into a new
// data directory and into an empty PostgreSQL database, and served from
// there: every message acknowledged before the backup began (to a mailbox
// nobody drains) is there with the UIDL, size and octets the running
// server shows; every message of the drained mailbox is whole and was
// acknowledged; restore refuses a target that is not empty; backup
// --verify finds a changed and a missing message file.
func TestBackupUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a load and restores twice")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var in *instance
			if backend == "postgres" {
				_, dsn := pgtest.Schema(t)
				in = newNode(t, dsn, "backup-src", "")
			} else {
				in = newInstance(t, "")
			}
			const keep, drain = "keep@example.org", "drain@example.org"
			in.addUser(keep, "pw")
			in.addUser(drain, "pw")
			in.start()
			smtpAddr, popAddr := in.addr("smtp"), in.addr("pop3")

			led := &crashLedger{acked: map[string]bool{}, deleted: map[string]bool{}, uncertain: map[string]bool{}}
			rcptOf := map[string]string{}
			send := func(id string, n int) {
				rcpt := []string{keep, drain}[n%2]
				if err := sendPlain(smtpAddr, "load@example.net", rcpt, loadMessage(id, n)); err == nil {
					led.mu.Lock()
					led.acked[id], rcptOf[id] = true, rcpt
					led.mu.Unlock()
				}
			}
			for n := range 40 {
				send(fmt.Sprintf("0-%d", n), n)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for w := 1; w <= 2; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for n := 0; ; n++ {
						select {
						case <-stop:
							return
						default:
						}
						send(fmt.Sprintf("%d-%d", w, n), n)
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					popDrain(popAddr, drain, led)
					time.Sleep(20 * time.Millisecond)
				}
			}()
			time.Sleep(500 * time.Millisecond)
			led.mu.Lock()
			before := maps.Clone(led.acked)
			led.mu.Unlock()
			dir := filepath.Join(t.TempDir(), "backup")
			out := in.must("", "backup", dir)
			time.Sleep(200 * time.Millisecond)
			close(stop)
			wg.Wait()
			t.Logf("%s", strings.TrimSpace(out))
			if v := in.run("", "backup", dir, "--verify"); v.code != 0 || !strings.Contains(v.stdout, "checksums match") {
				t.Fatalf("backup --verify: exit %d\n%s%s", v.code, v.stdout, v.stderr)
			}
			live := popMailbox(t, popAddr, keep, "pw")

			targets := map[string]*instance{"data directory": newInstance(t, "")}
			if _, dsn := pgtestSchemaIfAny(t); dsn != "" {
				targets["PostgreSQL"] = newNode(t, dsn, "backup-dst", "")
			}
			for name, dst := range targets {
				r := dst.run("", "restore", dir)
				if r.code != 0 {
					t.Fatalf("restore into a new %s: exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
				}
				again := dst.run("", "restore", dir)
				if again.code != 64 || !strings.Contains(again.stderr, "not empty") {
					t.Errorf("restore into the %s a second time: exit %d, %s", name, again.code, again.stderr)
				}
				dst.start()
				got := popMailbox(t, dst.addr("pop3"), keep, "pw")
				byID := map[string]string{}
				for uidl, m := range got {
					want, ok := live[uidl]
					switch {
					case !ok:
						t.Errorf("%s: %s %s is not on the running server", name, keep, uidl)
					case want.size != m.size || want.body != m.body:
						t.Errorf("%s: %s %s differs: %d octets, %d on the running server", name, keep, uidl, m.size, want.size)
					}
					if sm := idRE.FindStringSubmatch(m.body); sm != nil {
						byID[sm[1]+"-"+sm[2]] = uidl
					}
				}
				for id := range before {
					if rcptOf[id] == keep && byID[id] == "" {
						t.Errorf("%s: message %s, acknowledged before the backup began, is missing", name, id)
					}
				}
				for uidl, m := range popMailbox(t, dst.addr("pop3"), drain, "pw") {
					sm := idRE.FindStringSubmatch(m.body)
					if sm == nil {
						t.Errorf("%s: %s %s has no load subject", name, drain, uidl)
						continue
					}
					id := sm[1] + "-" + sm[2]
					var n int
					fmt.Sscanf(sm[2], "%d", &n)
					if !led.acked[id] {
						t.Errorf("%s: %s %s (%s) was never acknowledged", name, drain, uidl, id)
					}
					if !strings.HasSuffix(m.body, receivedRE.ReplaceAllString(loadMessage(id, n), "")) || len(m.body) != m.size {
						t.Errorf("%s: %s %s (%s) is not whole: %d octets, LIST %d", name, drain, uidl, id, len(m.body), m.size)
					}
				}
				t.Logf("%s: %d of %d messages acknowledged before the backup; %d in the restored mailbox of %s", name, len(before), len(led.acked), len(got), keep)
				dst.stop()
			}

			// Damage: one message file changed, another removed.
			var files []string
			filepath.WalkDir(filepath.Join(dir, "store", "blobs"), func(p string, d os.DirEntry, err error) error {
				if err == nil && !d.IsDir() && len(d.Name()) == 32 {
					files = append(files, p)
				}
				return nil
			})
			if len(files) < 2 {
				t.Fatalf("%d message files in the backup: want big messages in it", len(files))
			}
			data, err := os.ReadFile(files[0])
			if err != nil {
				t.Fatal(err)
			}
			data[100] ^= 0x20
			os.WriteFile(files[0], data, 0o600)
			os.Remove(files[1])
			v := in.run("", "backup", dir, "--verify")
			if v.code != 1 || !strings.Contains(v.stdout, filepath.Base(files[0])+": checksum") || !strings.Contains(v.stdout, filepath.Base(files[1])) {
				t.Errorf("backup --verify of a damaged backup: exit %d\n%s%s", v.code, v.stdout, v.stderr)
			}
		})
	}
}

// pgtestSchemaIfAny is pgtest.Schema when PostgreSQL tests run, and
// nothing otherwise (the caller then skips that target, not the test).
func pgtestSchemaIfAny(t *testing.T) (string, string) {
	if os.Getenv(pgtest.EnvVar) == "" {
		t.Logf("restore into PostgreSQL skipped: %s is not set", pgtest.EnvVar)
		return "", ""
	}
	return pgtest.Schema(t)
}

// TestExportMaildirToDovecot: postoffice export maildir writes maildirs
// that Dovecot (Debian's dovecot-pop3d), started on them, serves with the
// UIDLs, sizes and octets postoffice served.
func TestExportMaildirToDovecot(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("ann@example.org", "pw")
	in.addUser("bob@example.com", "pw")
	for i := range 8 {
		in.deliver("ann@example.org", loadMessage(fmt.Sprintf("9-%d", i), i))
		if i%2 == 0 {
			in.deliver("bob@example.com", loadMessage(fmt.Sprintf("8-%d", i), i))
		}
	}
	in.start()
	// A deletion: UIDs have a gap.
	p := dialPOP(t, in.addr("pop3"))
	p.login("ann@example.org", "pw")
	p.cmd("DELE 2")
	p.quit()
	want := map[string]map[string]popMessage{}
	for _, u := range []string{"ann@example.org", "bob@example.com"} {
		want[u] = popMailbox(t, in.addr("pop3"), u, "pw")
	}
	root := filepath.Join(t.TempDir(), "export")
	out := in.must("", "export", "maildir", root)
	if !strings.Contains(out, "exported 2 users, 11 messages") {
		t.Errorf("export: %s", out)
	}
	if r := in.run("", "export", "maildir", root, "--user", "ann@example.org"); r.code == 0 {
		t.Error("a second export into the same maildir was not refused")
	}

	// The uidlist names every file with its UID and P (UIDL).
	for u, msgs := range want {
		local, domain, _ := strings.Cut(u, "@")
		f, err := os.Open(filepath.Join(root, domain, local, "dovecot-uidlist"))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan()
		n := 0
		for sc.Scan() {
			fields, name, _ := strings.Cut(sc.Text(), " :")
			var uidl string
			for _, x := range strings.Fields(fields)[1:] {
				if strings.HasPrefix(x, "P") {
					uidl = x[1:]
				}
			}
			data, err := os.ReadFile(filepath.Join(root, domain, local, "cur", name+":2,"))
			if err != nil {
				t.Errorf("%s: %v", u, err)
			} else if m, ok := msgs[uidl]; !ok || m.body != string(data) {
				t.Errorf("%s: %s (P%s) is not the message postoffice serves under that UIDL", u, name, uidl)
			}
			n++
		}
		f.Close()
		if n != len(msgs) {
			t.Errorf("%s: %d messages in dovecot-uidlist, %d served", u, n, len(msgs))
		}
	}

	// Dovecot on the export, with the pop3_uidl_format of its example
	// configuration (UID first), which would make other UIDLs than
	// postoffice's: the P fields of dovecot-uidlist take precedence.
	needFrom(t, "dovecot-pop3d", "dovecot")
	if _, err := os.Stat("/usr/lib/dovecot/pop3"); err != nil {
		t.Skip("Dovecot's POP3 server is not installed (apt-get install dovecot-pop3d)")
	}
	if os.Geteuid() != 0 {
		t.Skip("Dovecot is started as root by this test (it switches to the maildirs' owner)")
	}
	in.stop()
	port := freePort(t)
	dovecotDir := t.TempDir()
	os.Chmod(dovecotDir, 0o755)
	for d := root; d != "/"; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o005 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o055)
		}
	}
	// nobody owns the maildirs: Dovecot serves no mail as root.
	exec.Command("chown", "-R", "65534:65534", root).Run()
	passwd := "ann@example.org:{PLAIN}pw\nbob@example.com:{PLAIN}pw\n"
	os.WriteFile(filepath.Join(dovecotDir, "passwd"), []byte(passwd), 0o644)
	conf := fmt.Sprintf(`protocols = pop3
listen = 127.0.0.1
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = export-%[2]d
log_path = %[1]s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
passdb {
  driver = passwd-file
  args = %[1]s/passwd
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=%[3]s/%%d/%%n
}
mail_location = maildir:%[3]s/%%d/%%n
first_valid_uid = 65534
first_valid_gid = 65534
pop3_uidl_format = %%08Xu%%08Xv
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap-login {
  inet_listener imap {
    port = 0
  }
  inet_listener imaps {
    port = 0
  }
}
`, dovecotDir, port, root)
	cfg := filepath.Join(dovecotDir, "dovecot.conf")
	os.WriteFile(cfg, []byte(conf), 0o644)
	cmd := exec.Command("dovecot", "-F", "-c", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(20 * time.Second)
	for !popAnswers(addr) {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dovecotDir, "dovecot.log"))
			t.Fatalf("Dovecot does not answer on %s:\n%s", addr, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for u, msgs := range want {
		got := popMailbox(t, addr, u, "pw")
		if len(got) != len(msgs) {
			t.Errorf("Dovecot shows %s %d messages, postoffice %d", u, len(got), len(msgs))
		}
		for uidl, m := range msgs {
			g, ok := got[uidl]
			switch {
			case !ok:
				t.Errorf("Dovecot has no message with postoffice's UIDL %s for %s (it shows %v)", uidl, u, slicesOfKeys(got))
			case g.size != m.size || g.body != m.body:
				t.Errorf("%s %s: Dovecot serves %d octets (LIST %d), postoffice %d (LIST %d)", u, uidl, len(g.body), g.size, len(m.body), m.size)
			}
		}
	}
	if t.Failed() {
		log, _ := os.ReadFile(filepath.Join(dovecotDir, "dovecot.log"))
		t.Logf("dovecot.log:\n%s", log)
	}
}

func slicesOfKeys(m map[string]popMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// popAnswers reports whether a POP3 server greets on addr.
func popAnswers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	l, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(l, "+OK")
}
