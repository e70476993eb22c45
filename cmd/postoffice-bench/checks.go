package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/miekg/dns"
)

// The intake workload with mail authentication (compare --checks): both
// servers sign the mail their users submit, check SPF, DKIM and DMARC of
// the mail other hosts send, and pass every message through one milter
// (--checks-milter): rspamd (Debian's package and default configuration,
// self-scanning, no Redis), or the pass milter (passmilter.go), which
// takes everything and does nearly nothing, to measure the servers'
// milter clients apart from what a scanner costs. postoffice does it all
// itself, with that milter as its [[milter]]; Postfix with the milters
// Debian packages for it: OpenDKIM (signing and verification), OpenDMARC
// (SPF and DMARC), then that milter, as its smtpd_milters.
//
// Half the connections are inbound mail from another domain,
// sender.example, from 127.0.0.2 to the SMTP port, each message DKIM-signed
// by sender.example with an RSA-2048 key (signed before the clock starts),
// whose SPF, DKIM and DMARC (p=reject) records all pass. The other half
// is mail the first user submits: to postoffice's submission port with
// AUTH PLAIN, to Postfix's SMTP port from 127.0.0.1 (its mynetworks and
// OpenDKIM's InternalHosts, the usual way Postfix trusts a local
// submitter); both servers sign it with one RSA-2048 key of the users'
// domain. Every message goes to the local users, so "all retrievable"
// stays the finish line.
//
// The DNS is a small authoritative server of this process on
// checksDNSAddr. Port 53: OpenDMARC and libspf2 read /etc/resolv.conf,
// which names no port; they and OpenDKIM run in a mount namespace of
// their own where /etc/resolv.conf names it. Not a loopback address:
// Debian's OpenDKIM resolves with libunbound, which refuses to ask a
// server on 127.0.0.0/8 (do-not-query-localhost), and its
// ResolverConfiguration, which could allow it, crashes OpenDKIM under
// load (libunbound's configuration parser is not reentrant); so the
// benchmark puts checksDNSAddr on the loopback interface for the run
// (198.18.0.0/15 is the range RFC 2544 reserves for benchmarks).
// libunbound also answers the special-use names .test and .invalid (RFC
// 6761) itself, so the domain whose DKIM keys OpenDKIM looks up is
// sender.example. Negative answers carry the zone's SOA, so that
// caching resolvers (postoffice's, unbound's, rspamd's) may keep them,
// as on the Internet.

// checksDNSAddr is where the zone is served.
const checksDNSAddr = "198.18.0.53:53"

// senderDomain is the domain of the inbound mail; senderIP the address
// it comes from.
const (
	senderDomain = "sender.example"
	senderIP     = "127.0.0.2"
	senderHelo   = "mail.sender.example"
)

// checksEnv is what the checks need running, shared by both servers.
type checksEnv struct {
	dir    string
	domain string // the users' domain, whose mail the servers sign

	senderKey *rsa.PrivateKey
	localKey  *rsa.PrivateKey // the users' domain's key, for OpenDKIM

	dnsServers []*dns.Server
	dnsAddress string  // added to lo by this run, removed at the end
	milter     *daemon // the one milter, nil with none
	opendkim   *daemon
	opendmarc  *daemon
	// Milter addresses, host:port; milterAddr "" with none.
	milterAddr, opendkimAddr, opendmarcAddr string
	// milterKind is one of checksMilters.
	milterKind string
	// rspamdWorkers is how many rspamd processes scan: Debian's
	// configuration has one (its normal worker, behind the milter proxy).
	rspamdWorkers int
}

// checksMilters are the milters --checks-milter can name.
var checksMilters = []string{"rspamd", "pass", "none"}

// startChecks starts the DNS zone, OpenDKIM and OpenDMARC, and the milter
// of milterKind: rspamd with rspamdWorkers scanning processes, the pass
// milter, or none (the checks and signing alone, to tell their cost from
// the milter's).
func startChecks(ctx context.Context, dir, domain, milterKind string, rspamdWorkers int) (_ *checksEnv, err error) {
	if !slices.Contains(checksMilters, milterKind) {
		return nil, fmt.Errorf("milter %q: want one of %s", milterKind, strings.Join(checksMilters, ", "))
	}
	for _, tool := range []struct{ bin, pkg string }{{"rspamd", "rspamd"}, {"opendkim", "opendkim"}, {"opendmarc", "opendmarc"}, {"unshare", "util-linux"}, {"ip", "iproute2"}} {
		if tool.bin == "rspamd" && milterKind != "rspamd" {
			continue
		}
		if _, err := exec.LookPath(tool.bin); err != nil {
			return nil, fmt.Errorf("--checks needs %s (Debian package %s)", tool.bin, tool.pkg)
		}
	}
	e := &checksEnv{dir: dir, domain: domain, milterKind: milterKind, rspamdWorkers: rspamdWorkers}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if e.senderKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if e.localKey, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		return nil, err
	}
	if err := e.startDNS(); err != nil {
		return nil, err
	}
	addrs := []*string{&e.opendkimAddr, &e.opendmarcAddr}
	if milterKind != "none" {
		addrs = append(addrs, &e.milterAddr)
	}
	for _, p := range addrs {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		*p = "127.0.0.1:" + strconv.Itoa(port)
	}
	switch milterKind {
	case "rspamd":
		err = e.startRspamd(ctx)
	case "pass":
		err = e.startPassMilter(ctx)
	}
	if err != nil {
		return nil, err
	}
	if err := e.startOpenDKIM(ctx); err != nil {
		return nil, err
	}
	if err := e.startOpenDMARC(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

func (e *checksEnv) stop() {
	for _, d := range []*daemon{e.opendmarc, e.opendkim, e.milter} {
		d.stop(30 * time.Second)
	}
	for _, s := range e.dnsServers {
		s.Shutdown()
	}
	if e.dnsAddress != "" {
		exec.Command("ip", "address", "del", e.dnsAddress+"/32", "dev", "lo").Run()
	}
}

// filterCPU is the CPU time the filters have used so far: all of them
// (the milter's, OpenDKIM's and OpenDMARC's processes), and the milter's
// alone, the one filter both servers use.
func (e *checksEnv) filterCPU() (all, milter float64, err error) {
	for _, d := range []*daemon{e.milter, e.opendkim, e.opendmarc} {
		if d == nil {
			continue
		}
		c, err := treeCPU(d.cmd.Process.Pid)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", filepath.Base(d.cmd.Path), err)
		}
		all += c
		if d == e.milter {
			milter = c
		}
	}
	return all, milter, nil
}

// zone is the DNS data: sender.example with its mail host, SPF, DKIM and
// DMARC records; the users' domain with its SPF, DMARC and OpenDKIM's
// key (postoffice's keys are its own business: nothing here verifies
// what the servers sign). TTLs are an hour, negative answers 5 minutes.
func (e *checksEnv) zone() ([]dns.RR, error) {
	sender, err := dkimRecord(&e.senderKey.PublicKey)
	if err != nil {
		return nil, err
	}
	local, err := dkimRecord(&e.localKey.PublicKey)
	if err != nil {
		return nil, err
	}
	spf := `"v=spf1 ip4:127.0.0.0/8 -all"`
	lines := []string{
		senderDomain + `. 3600 IN SOA ns.` + senderDomain + `. hostmaster.` + senderDomain + `. 1 7200 900 1209600 300`,
		senderDomain + `. 3600 IN TXT ` + spf,
		senderDomain + `. 3600 IN MX 10 ` + senderHelo + `.`,
		senderHelo + `. 3600 IN A ` + senderIP,
		senderHelo + `. 3600 IN TXT ` + spf,
		`_dmarc.` + senderDomain + `. 3600 IN TXT "v=DMARC1; p=reject"`,
		`ext._domainkey.` + senderDomain + `. 3600 IN TXT ` + sender,
		e.domain + `. 3600 IN SOA ns.` + e.domain + `. hostmaster.` + e.domain + `. 1 7200 900 1209600 300`,
		e.domain + `. 3600 IN TXT ` + spf,
		e.domain + `. 3600 IN MX 10 bench.invalid.`,
		`_dmarc.` + e.domain + `. 3600 IN TXT "v=DMARC1; p=none"`,
		`bench._domainkey.` + e.domain + `. 3600 IN TXT ` + local,
		`bench.invalid. 3600 IN SOA ns.bench.invalid. hostmaster.bench.invalid. 1 7200 900 1209600 300`,
		`bench.invalid. 3600 IN A 127.0.0.1`,
		`bench.invalid. 3600 IN TXT ` + spf,
	}
	var rrs []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			return nil, fmt.Errorf("zone %q: %w", l, err)
		}
		rrs = append(rrs, rr)
	}
	return rrs, nil
}

// dkimRecord is the TXT record data of an RSA key (RFC 6376 section
// 3.6.1), in strings of at most 255 octets.
func dkimRecord(pub *rsa.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	v := "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	var parts []string
	for len(v) > 0 {
		n := min(len(v), 250)
		parts = append(parts, `"`+v[:n]+`"`)
		v = v[n:]
	}
	return strings.Join(parts, " "), nil
}

// startDNS serves the zone over UDP and TCP on checksDNSAddr, which it
// adds to the loopback interface.
func (e *checksEnv) startDNS() error {
	rrs, err := e.zone()
	if err != nil {
		return err
	}
	h := zoneHandler(rrs)
	host, _, _ := net.SplitHostPort(checksDNSAddr)
	// An address that was there already (a run that was killed) stays.
	switch out, err := exec.Command("ip", "address", "add", host+"/32", "dev", "lo").CombinedOutput(); {
	case err == nil:
		e.dnsAddress = host
	case !strings.Contains(string(out), "File exists"):
		return fmt.Errorf("ip address add %s dev lo: %v: %s", host, err, out)
	}
	pc, err := net.ListenPacket("udp", checksDNSAddr)
	if err != nil {
		return fmt.Errorf("DNS for --checks: %w (run as root; nothing else may serve %s)", err, checksDNSAddr)
	}
	l, err := net.Listen("tcp", checksDNSAddr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("DNS for --checks: %w", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		e.dnsServers = append(e.dnsServers, s)
		go s.ActivateAndServe()
	}
	return nil
}

// zoneHandler answers from rrs as an authoritative server: the records
// of the name and type asked, NXDOMAIN for a name without records, NODATA
// for one without records of the type; negative answers carry the SOA of
// the closest enclosing zone (RFC 2308 section 3).
func zoneHandler(rrs []dns.RR) dns.HandlerFunc {
	return func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		exists := false
		var soa dns.RR
		for _, rr := range rrs {
			h := rr.Header()
			if h.Rrtype == dns.TypeSOA && dns.IsSubDomain(h.Name, q.Name) {
				soa = rr
			}
			if !strings.EqualFold(h.Name, q.Name) {
				continue
			}
			exists = true
			if h.Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
		if len(m.Answer) == 0 {
			if !exists {
				m.Rcode = dns.RcodeNameError
			}
			if soa != nil {
				m.Ns = []dns.RR{soa}
			}
		}
		w.WriteMsg(m)
	}
}

// signedBy DKIM-signs msg as sender.example (relaxed/relaxed, SHA-256,
// RSA-2048, selector ext), returning the signed message.
func (e *checksEnv) signedBy(msg []byte) ([]byte, error) {
	var out bytes.Buffer
	err := dkim.Sign(&out, bytes.NewReader(msg), &dkim.SignOptions{
		Domain: senderDomain, Selector: "ext", Signer: e.senderKey, Hash: crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed,
	})
	return out.Bytes(), err
}

// localKeyPEM is the users' domain's private key for OpenDKIM.
func (e *checksEnv) localKeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(e.localKey)})
}

// inNamespace runs name in a mount namespace of its own where
// /etc/resolv.conf names the zone's server.
func (e *checksEnv) inNamespace(log, name string, args ...string) (*daemon, error) {
	host, _, _ := net.SplitHostPort(checksDNSAddr)
	rc := filepath.Join(e.dir, "resolv.conf")
	if err := os.WriteFile(rc, []byte("nameserver "+host+"\n"), 0o644); err != nil {
		return nil, err
	}
	script := `mount --bind "$0" /etc/resolv.conf && exec "$@"`
	return startDaemon(log, "unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", script, rc, name}, args...)...)
}

const checksRspamdConf = `.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "warning"; }
worker "rspamd_proxy" {
    bind_socket = "%s";
    milter = yes;
    upstream "local" { default = yes; self_scan = yes; }
    count = %d;
    timeout = 60s;
}
`

func (e *checksEnv) startRspamd(ctx context.Context) error {
	dir := filepath.Join(e.dir, "rspamd")
	for _, sub := range []string{"local.d", "db", "run", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		"rspamd.conf":         fmt.Sprintf(checksRspamdConf, e.milterAddr, e.rspamdWorkers),
		"local.d/options.inc": fmt.Sprintf("dns { nameserver = [%q]; timeout = 1s; retransmits = 1; }\n", checksDNSAddr),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	d, err := startDaemon(filepath.Join(dir, "rspamd.out"), "rspamd", "-f", "-i", "-c", filepath.Join(dir, "rspamd.conf"),
		"--var", "LOCAL_CONFDIR="+dir, "--var", "DBDIR="+filepath.Join(dir, "db"),
		"--var", "RUNDIR="+filepath.Join(dir, "run"), "--var", "LOGDIR="+filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	d.group = true // its workers
	e.milter = d
	// rspamd compiles its rules at the first start: minutes on 2 cores.
	if err := waitListening(ctx, e.milterAddr, 5*time.Minute, d.exited); err != nil {
		return fmt.Errorf("rspamd: %w (see %s/log/rspamd.log)", err, dir)
	}
	return nil
}

// startPassMilter runs the pass milter: this program, as a process of its
// own (`postoffice-bench milter-pass`).
func (e *checksEnv) startPassMilter(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	log := filepath.Join(e.dir, "milter-pass.out")
	d, err := startDaemon(log, self, "milter-pass", "--listen", e.milterAddr)
	if err != nil {
		return err
	}
	e.milter = d
	if err := waitListening(ctx, e.milterAddr, time.Minute, d.exited); err != nil {
		return fmt.Errorf("pass milter: %w (see %s)", err, log)
	}
	return nil
}

func (e *checksEnv) startOpenDKIM(ctx context.Context) error {
	dir := filepath.Join(e.dir, "opendkim")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	key := filepath.Join(dir, "bench.private")
	if err := os.WriteFile(key, e.localKeyPEM(), 0o600); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(e.opendkimAddr)
	dnsHost, _, _ := net.SplitHostPort(checksDNSAddr)
	// As Debian's /etc/opendkim.conf, with the domain's key and the
	// zone's server: sign mail from InternalHosts (127.0.0.1) whose From
	// is in Domain, verify the rest (Mode sv).
	conf := strings.Join([]string{
		"Syslog no",
		"Background no",
		"Mode sv",
		"Canonicalization relaxed/relaxed",
		"Domain " + e.domain,
		"Selector bench",
		"KeyFile " + key,
		"InternalHosts 127.0.0.1",
		"Nameservers " + dnsHost,
		"Socket inet:" + port + "@" + host,
		"PidFile " + filepath.Join(dir, "opendkim.pid"),
		"UserID root",
		"RequireSafeKeys no",
		"",
	}, "\n")
	cf := filepath.Join(dir, "opendkim.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return err
	}
	d, err := e.inNamespace(filepath.Join(dir, "opendkim.out"), "opendkim", "-f", "-x", cf)
	if err != nil {
		return err
	}
	e.opendkim = d
	if err := waitListening(ctx, e.opendkimAddr, 30*time.Second, d.exited); err != nil {
		return fmt.Errorf("opendkim: %w (see %s)", err, filepath.Join(dir, "opendkim.out"))
	}
	return nil
}

func (e *checksEnv) startOpenDMARC(ctx context.Context) error {
	dir := filepath.Join(e.dir, "opendmarc")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	host, port, _ := net.SplitHostPort(e.opendmarcAddr)
	// SPF checked by OpenDMARC itself (SPFSelfValidate: Postfix has no SPF
	// check of its own), DKIM results from OpenDKIM's
	// Authentication-Results (TrustedAuthservIDs defaults to the MTA's
	// name, which OpenDKIM's AuthservID defaults to as well), failures
	// of a p=reject domain rejected, as postoffice does by default. Mail
	// from 127.0.0.1 (the submitter) is not checked (IgnoreHosts'
	// default).
	conf := strings.Join([]string{
		"Syslog false",
		"Background false",
		"Socket inet:" + port + "@" + host,
		"PidFile " + filepath.Join(dir, "opendmarc.pid"),
		"SPFSelfValidate true",
		"RejectFailures true",
		"UserID root",
		"",
	}, "\n")
	cf := filepath.Join(dir, "opendmarc.conf")
	if err := os.WriteFile(cf, []byte(conf), 0o644); err != nil {
		return err
	}
	d, err := e.inNamespace(filepath.Join(dir, "opendmarc.out"), "opendmarc", "-f", "-c", cf)
	if err != nil {
		return err
	}
	e.opendmarc = d
	if err := waitListening(ctx, e.opendmarcAddr, 30*time.Second, d.exited); err != nil {
		return fmt.Errorf("opendmarc: %w (see %s)", err, filepath.Join(dir, "opendmarc.out"))
	}
	return nil
}
