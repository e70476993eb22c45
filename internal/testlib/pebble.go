package testlib

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// PebbleOptions configures StartPebble.
type PebbleOptions struct {
	// DNS is the DNS server (host:port) pebble resolves the names it
	// validates with, e.g. StartDNS's Addr.
	DNS string
	// HTTPPort and TLSPort are where pebble connects for HTTP-01 and
	// TLS-ALPN-01 validation (on the address the name resolves to).
	HTTPPort, TLSPort int
	// Validity, if set, is the lifetime of the certificates pebble issues
	// (its "certificateValidityPeriod", whole seconds); default 5 years.
	Validity time.Duration
}

// Pebble is a running pebble, the ACME test server of Let's Encrypt
// (Debian package pebble), on loopback.
type Pebble struct {
	// DirectoryURL is the ACME directory (https).
	DirectoryURL string
	// CAFile is a PEM file with the certificate of pebble's HTTPS listener,
	// for an ACME client's trusted roots.
	CAFile string
	// Management is the base URL of pebble's management interface.
	Management string

	cmd  *exec.Cmd
	out  *SyncBuffer
	stop sync.Once
	done chan struct{}
}

// StartPebble starts pebble with validation sleeps off and no rejected
// nonces, or skips the test when pebble is not installed. It stops at the
// end of the test.
func StartPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	bin, err := exec.LookPath("pebble")
	if err != nil {
		t.Skip("pebble not installed (Debian package pebble)")
	}
	dir := t.TempDir()
	// pebble's own HTTPS listeners.
	certFile, keyFile := WriteCert(t, dir, Cert(t, "localhost", "127.0.0.1"))
	var lastErr error
	for try := 0; try < 5; try++ {
		p, err := startPebble(t, bin, dir, certFile, keyFile, o)
		if err == nil {
			t.Cleanup(func() {
				p.Stop()
				if t.Failed() {
					t.Logf("pebble output:\n%s", p.out.String())
				}
			})
			return p
		}
		lastErr = err // most likely a port taken between choosing and binding
	}
	t.Fatalf("starting pebble: %v", lastErr)
	return nil
}

func startPebble(t testing.TB, bin, dir, certFile, keyFile string, o PebbleOptions) (*Pebble, error) {
	listen, mgmt := freePort(t), freePort(t)
	cfg := map[string]any{
		"listenAddress":                  listen,
		"managementListenAddress":        mgmt,
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       o.HTTPPort,
		"tlsPort":                        o.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
	}
	if o.Validity > 0 {
		cfg["certificateValidityPeriod"] = int(o.Validity / time.Second)
	}
	js, _ := json.Marshal(map[string]any{"pebble": cfg})
	cfgFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, js, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-config", cfgFile}
	if o.DNS != "" {
		args = append(args, "-dnsserver", o.DNS)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Pebble{
		DirectoryURL: "https://" + listen + "/dir",
		CAFile:       certFile,
		Management:   "https://" + mgmt,
		cmd:          cmd,
		out:          out,
		done:         make(chan struct{}),
	}
	go func() { cmd.Wait(); close(p.done) }()
	client := p.client(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-p.done:
			return nil, fmt.Errorf("pebble exited: %s", out.String())
		default:
		}
		res, err := client.Get(p.DirectoryURL)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				// The management interface starts first in pebble, but
				// check it too.
				if _, err := p.get(t, "/roots/0"); err == nil {
					return p, nil
				}
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("pebble not answering on %s: %v\n%s", p.DirectoryURL, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop stops pebble (e.g. to show what happens when the CA is away).
func (p *Pebble) Stop() {
	p.stop.Do(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
}

// RootsPEM returns pebble's root certificate in PEM (it changes at every
// start), from its management interface: what a client trusts to verify
// the certificates pebble issued.
func (p *Pebble) RootsPEM(t testing.TB) []byte {
	t.Helper()
	b, err := p.get(t, "/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Roots returns RootsPEM as a pool.
func (p *Pebble) Roots(t testing.TB) *x509.CertPool {
	t.Helper()
	b := p.RootsPEM(t)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's /roots/0 holds no PEM certificate: %q", b)
	}
	return pool
}

// Output is what pebble printed so far.
func (p *Pebble) Output() string { return p.out.String() }

func (p *Pebble) client(t testing.TB) *http.Client {
	pem, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (p *Pebble) get(t testing.TB, path string) ([]byte, error) {
	res, err := p.client(t).Get(p.Management + path)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return nil, err
	}
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return b, nil
}

// freePort returns a loopback address with a port that was free a moment
// ago.
func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
