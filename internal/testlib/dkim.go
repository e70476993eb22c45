package testlib

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// dkimverifyScript runs python3-dkim's dkimverify (its own main, so the
// verdict is the tool's) with dnspython's default resolver pointed at
// one DNS server: the tool has no option for that.
const dkimverifyScript = `
import sys
import dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = [sys.argv[1]]
r.port = int(sys.argv[2])
dns.resolver.default_resolver = r
from dkim import dkimverify
sys.argv = ["dkimverify", "--index", sys.argv[3]]
dkimverify.main()
`

// DKIMVerify verifies the DKIM signature number index (0 is the topmost
// DKIM-Signature field) of msg with python3-dkim's dkimverify, an
// independent verifier, which looks the key record up at the DNS server
// dnsAddr (e.g. a DNS from StartDNS). It returns the verifier's verdict
// and output; the test skips, naming the Debian package, when
// python3-dkim is absent.
func DKIMVerify(t testing.TB, dnsAddr string, msg []byte, index int) (ok bool, output string) {
	t.Helper()
	tool, err := exec.LookPath("dkimverify")
	if err != nil {
		t.Skip("dkimverify not installed (Debian package python3-dkim)")
	}
	// The Python that has the dkim module: the one dkimverify runs with
	// (its #! line), not whichever python3 comes first on PATH.
	python := "python3"
	if head, err := os.ReadFile(tool); err == nil {
		line, _, _ := strings.Cut(string(head), "\n")
		if interp, ok := strings.CutPrefix(line, "#!"); ok && !strings.ContainsAny(strings.TrimSpace(interp), " \t") {
			python = strings.TrimSpace(interp)
		}
	}
	host, port, err := net.SplitHostPort(dnsAddr)
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "dkimverify.py")
	if err := os.WriteFile(script, []byte(dkimverifyScript), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, script, host, port, strconv.Itoa(index))
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	output = strings.TrimSpace(string(out))
	var exit *exec.ExitError
	switch {
	case err == nil:
		return output == "signature ok", output
	case errors.As(err, &exit):
		return false, output
	}
	t.Fatalf("dkimverify: %v: %s", err, out)
	return false, output
}
