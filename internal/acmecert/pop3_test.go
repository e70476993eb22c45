package acmecert_test

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/pop3"
)

// noUsers is a POP3 backend where every login fails: the test is about
// the TLS layer in front of it.
type noUsers struct{}

func (noUsers) Authenticate(context.Context, string, string) (string, error) {
	return "", pop3.ErrAuthFailed
}

func (noUsers) OpenMaildrop(context.Context, string) (pop3.Maildrop, error) {
	return nil, pop3.ErrAuthFailed
}

// TestPebblePOP3 serves the certificate pebble issued on the POP3 engine,
// with STLS (RFC 2595) on one listener and implicit TLS (RFC 8314) on
// another, and checks it with openssl s_client, a real TLS client that
// verifies it against pebble's root from the management interface.
func TestPebblePOP3(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed (Debian package openssl)")
	}
	e := newEnv(t, 0)
	m := e.manager(func(c *acmecert.Config) { c.Templates = []string{} })
	e.server.Store(m)
	if err := m.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv := pop3.NewServer(pop3.Config{
		Hostname:  host,
		Backend:   noUsers{},
		TLSConfig: m.TLSConfig(nil),
		Logger:    slog.New(slog.DiscardHandler),
	})
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	implicit, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(plain)
	go srv.Serve(tls.NewListener(implicit, m.TLSConfig(nil)))
	t.Cleanup(func() { srv.Close() })

	// pebble's root, as a file for openssl.
	rootFile := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(rootFile, e.pebble.RootsPEM(t), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"STLS on the POP3 port": {"-starttls", "pop3", "-connect", plain.Addr().String()},
		"POP3S":                 {"-connect", implicit.Addr().String()},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, openssl, append([]string{"s_client", "-servername", host,
			"-verify_hostname", host, "-CAfile", rootFile, "-verify_return_error", "-brief", "-ign_eof"}, args...)...)
		cmd.Stdin = strings.NewReader("QUIT\r\n")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("%s: openssl s_client: %v\n%s", name, err, out)
		}
		// -brief prints the verification result and the peer's names.
		if !strings.Contains(string(out), "Verification: OK") {
			t.Errorf("%s: not verified:\n%s", name, out)
		}
		if !regexp.MustCompile(`(?m)^Peer certificate: .*` + regexp.QuoteMeta(host)).Match(out) {
			t.Errorf("%s: peer certificate not for %s:\n%s", name, host, out)
		}
		if !strings.Contains(string(out), "+OK") {
			t.Errorf("%s: no POP3 greeting or answer through TLS:\n%s", name, out)
		}
	}
	// And the issuer, from openssl's own parse of the served chain.
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, openssl, "s_client", "-servername", host, "-connect", implicit.Addr().String(), "-showcerts", "-ign_eof")
	cmd.Stdin = strings.NewReader("QUIT\r\n")
	out, _ := cmd.CombinedOutput()
	if !regexp.MustCompile(`i:.*CN ?= ?Pebble Intermediate CA`).Match(out) {
		t.Errorf("issuer is not pebble's intermediate:\n%s", out)
	}
}
