package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCurl retrieves with curl over pop3:// (plain on loopback, and STLS
// with --ssl-reqd) and pop3s://.
func TestCurl(t *testing.T) {
	need(t, "curl")
	in := newInstance(t, "")
	in.addUser("carol@example.org", "pw-carol")
	for _, m := range testMessages {
		in.deliver("carol@example.org", m.raw)
	}
	in.start()

	for _, tc := range []struct{ name, url string }{
		{"plain", "pop3://" + in.addr("pop3")},
		{"stls", "pop3://" + in.addr("pop3")},
		{"implicit tls", "pop3s://" + in.addr("pop3s")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-sS", "--max-time", "30", "-k", "--user", "carol@example.org:pw-carol"}
			if tc.name == "stls" {
				args = append(args, "--ssl-reqd")
			}
			list, err := runTool(t, "curl", append(args, tc.url+"/")...)
			if err != nil {
				t.Fatalf("curl list: %v: %s", err, list)
			}
			trace := mdaTrace("", "carol@example.org")
			var want strings.Builder
			for i, m := range testMessages {
				fmt.Fprintf(&want, "%d %d\r\n", i+1, len(trace+m.want))
			}
			if list != want.String() {
				t.Errorf("curl LIST = %q, want %q", list, want.String())
			}
			for i, m := range testMessages {
				body, err := runTool(t, "curl", append(args, fmt.Sprintf("%s/%d", tc.url, i+1))...)
				if err != nil {
					t.Fatalf("curl retr %d: %v: %s", i+1, err, body)
				}
				if body != trace+m.want {
					t.Errorf("curl RETR %d = %q, want %q", i+1, body, trace+m.want)
				}
			}
		})
	}
	// A wrong password makes curl fail (login denied, exit 67).
	out, err := runTool(t, "curl", "-sS", "--max-time", "30", "--user", "carol@example.org:nope", "pop3://"+in.addr("pop3")+"/")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 67 {
		t.Errorf("curl with a wrong password: %v %s (want exit 67, login denied)", err, out)
	}
}

// TestMpop downloads and deletes with mpop over STLS, SASL PLAIN, into a
// maildir.
func TestMpop(t *testing.T) {
	need(t, "mpop")
	in := newInstance(t, "")
	in.addUser("dave@example.org", "pw-dave")
	for i := range 3 {
		in.deliver("dave@example.org", fmt.Sprintf("From: x@example.org\r\nSubject: mpop test %d\r\n\r\nbody %d\r\n", i, i))
	}
	in.start()
	md := filepath.Join(in.dir, "Maildir")
	for _, d := range []string{"new", "cur", "tmp"} {
		os.MkdirAll(filepath.Join(md, d), 0o700)
	}
	conf := filepath.Join(in.dir, "mpoprc")
	os.WriteFile(conf, []byte(fmt.Sprintf(`defaults
tls on
tls_starttls on
tls_certcheck off
account test
host 127.0.0.1
port %s
user dave@example.org
password pw-dave
auth plain
delivery maildir %s
keep off
uidls_file %s
`, in.port("pop3"), md, filepath.Join(in.dir, "uidls"))), 0o600)
	out, err := runTool(t, "mpop", "--file="+conf, "-a")
	if err != nil {
		t.Fatalf("mpop: %v\n%s", err, out)
	}
	got := readDir(t, filepath.Join(md, "new"))
	if len(got) != 3 {
		t.Fatalf("mpop delivered %d messages, want 3 (%s)", len(got), out)
	}
	for i := range 3 {
		if !strings.Contains(strings.Join(got, "\n"), fmt.Sprintf("Subject: mpop test %d", i)) {
			t.Errorf("message %d missing from the maildir", i)
		}
	}
	// keep off: the server deleted them at QUIT.
	res := pop(t, in.addr("pop3"), "plain", []any{"user", "dave@example.org"}, []any{"pass_", "pw-dave"}, []any{"stat"})
	if n := int(res[3].([]any)[0].(float64)); n != 0 {
		t.Errorf("%d messages left after mpop with keep off", n)
	}
}

// TestFetchmail downloads over implicit TLS with fetchmail and an MDA.
func TestFetchmail(t *testing.T) {
	need(t, "fetchmail")
	in := newInstance(t, "")
	in.addUser("erin@example.org", "pw-erin")
	for i := range 2 {
		in.deliver("erin@example.org", fmt.Sprintf("From: x@example.org\r\nSubject: fetchmail test %d\r\n\r\nbody\r\n", i))
	}
	in.start()
	out := filepath.Join(in.dir, "fetched")
	rc := filepath.Join(in.dir, "fetchmailrc")
	os.WriteFile(rc, []byte(fmt.Sprintf(`set no syslog
poll 127.0.0.1 with proto POP3 and port %s
  user "erin@example.org" there with password "pw-erin" is root here
  options ssl no sslcertck nokeep
  mda "/bin/sh -c 'cat >> %s'"
`, in.port("pop3s"), out)), 0o600)
	cmd := exec.Command("fetchmail", "-f", rc, "--nodetach", "-v")
	cmd.Env = append(os.Environ(), "FETCHMAILHOME="+in.dir, "HOME="+in.dir)
	log, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fetchmail: %v\n%s", err, log)
	}
	data, _ := os.ReadFile(out)
	for i := range 2 {
		if !bytes.Contains(data, []byte(fmt.Sprintf("Subject: fetchmail test %d", i))) {
			t.Errorf("message %d not fetched:\n%s\n%s", i, data, log)
		}
	}
	res := pop(t, in.addr("pop3"), "plain", []any{"user", "erin@example.org"}, []any{"pass_", "pw-erin"}, []any{"stat"})
	if n := int(res[3].([]any)[0].(float64)); n != 0 {
		t.Errorf("%d messages left after fetchmail nokeep", n)
	}
}

func readDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}
