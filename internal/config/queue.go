package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Queue configures the outbound queue: delivery of mail for remote
// recipients by SMTP to the recipient domains' MX hosts (RFC 5321 section
// 5), or to a relay host, with retries and bounces.
type Queue struct {
	// Autostart: serve starts delivering; when false the queue only
	// fills until 'postoffice start queue'.
	Autostart bool `toml:"autostart"`
	// DNSServer is a DNS server (ip:port) to ask for MX and address
	// records; empty uses the system's resolver.
	DNSServer string `toml:"dns_server"`
	// MXPort is the port of MX hosts (25; tests point it elsewhere).
	MXPort int `toml:"mx_port"`
	// TLS is the STARTTLS policy (RFC 3207) towards MX hosts and routes:
	// "none", "may" (whenever offered, certificate unchecked), "encrypt"
	// (required, unchecked) or "verify" (required and checked).
	TLS string `toml:"tls"`
	// RelayHost (host:port) takes all remote mail instead of the MX
	// hosts, except the domains of Routes.
	RelayHost     string `toml:"relay_host"`
	RelayUser     string `toml:"relay_user"`     // AUTH PLAIN, only over TLS
	RelayPassword string `toml:"relay_password"` // keep the file private
	RelayTLS      string `toml:"relay_tls"`      // as TLS, for the relay host
	// Routes sends a domain's mail to a host:port of its own.
	Routes map[string]string `toml:"routes"`
	// MTASTS applies the MTA-STS policies (RFC 8461) recipient domains
	// publish to MX delivery: "enforce" allows only the policy's MX
	// hosts over verified TLS; routes and the relay host are not MX
	// delivery.
	MTASTS bool `toml:"mta_sts"`

	RetryInitial  int `toml:"retry_initial"`  // seconds before the first retry
	RetryMax      int `toml:"retry_max"`      // longest interval between retries, seconds
	MaxLifetime   int `toml:"max_lifetime"`   // seconds before giving up and bouncing
	DelayWarning  int `toml:"delay_warning"`  // seconds before warning the sender once (RFC 3461 NOTIFY=DELAY); 0 never
	MaxConcurrent int `toml:"max_concurrent"` // outbound SMTP connections in all
	MaxPerHost    int `toml:"max_per_host"`   // outbound SMTP connections to one host address
	PollInterval  int `toml:"poll_interval"`  // seconds between looks for due messages
}

// DefaultQueue is the built-in [queue] section.
func DefaultQueue() Queue {
	return Queue{
		Autostart:     true,
		MXPort:        25,
		MTASTS:        true,
		TLS:           "may",
		RelayTLS:      "may",
		RetryInitial:  60,
		RetryMax:      4 * 3600,
		MaxLifetime:   5 * 86400,
		DelayWarning:  4 * 3600,
		MaxConcurrent: 20,
		MaxPerHost:    5,
		PollInterval:  5,
	}
}

func init() {
	for k, v := range map[string]string{
		"queue.dns_server":     "DNS server for MX lookups, ip:port (empty: the system resolver)",
		"queue.mx_port":        "port of the MX hosts delivered to",
		"queue.tls":            "STARTTLS towards MX hosts and routes: none, may, encrypt or verify",
		"queue.relay_host":     "smart host taking all remote mail, host:port (empty: MX delivery)",
		"queue.relay_user":     "user name for AUTH PLAIN at the relay host (sent only over TLS)",
		"queue.relay_password": "password for AUTH PLAIN at the relay host",
		"queue.relay_tls":      "STARTTLS towards the relay host: none, may, encrypt or verify",
		"queue.routes":         "per-domain next hops: \"example.org\" = \"host:port\"",
		"queue.mta_sts":        "apply recipient domains' MTA-STS policies (RFC 8461) to MX delivery: enforce means only the policy's MX hosts, over verified TLS",
		"queue.retry_initial":  "seconds before the first retry (doubling after each failure)",
		"queue.retry_max":      "longest interval between retries, seconds",
		"queue.max_lifetime":   "seconds before an undeliverable message is bounced",
		"queue.delay_warning":  "seconds before the sender is warned once of a delay, unless NOTIFY declined it (0: never)",
		"queue.max_concurrent": "most outbound SMTP connections",
		"queue.max_per_host":   "most outbound SMTP connections to one host",
		"queue.poll_interval":  "seconds between looks for due messages (queue retry takes effect within it)",
	} {
		docs[k] = v
	}
}

// validate checks the [queue] section; errors name the key.
func (q Queue) validate() error {
	if q.DNSServer != "" {
		host, port, err := net.SplitHostPort(q.DNSServer)
		if err != nil || net.ParseIP(host) == nil || !validPort(port) {
			return fmt.Errorf(`key "queue.dns_server": %q is not ip:port`, q.DNSServer)
		}
	}
	if q.MXPort <= 0 || q.MXPort > 65535 {
		return fmt.Errorf(`key "queue.mx_port": %d is not a port`, q.MXPort)
	}
	for key, level := range map[string]string{"queue.tls": q.TLS, "queue.relay_tls": q.RelayTLS} {
		switch level {
		case "none", "may", "encrypt", "verify":
		default:
			return fmt.Errorf(`key %q: %q is not one of none, may, encrypt, verify`, key, level)
		}
	}
	if q.RelayHost != "" {
		if err := checkHostPort("queue.relay_host", q.RelayHost); err != nil {
			return err
		}
	}
	if q.RelayUser != "" && q.RelayHost == "" {
		return fmt.Errorf(`key "queue.relay_user": set without "queue.relay_host"`)
	}
	if q.RelayPassword != "" && q.RelayUser == "" {
		return fmt.Errorf(`key "queue.relay_password": set without "queue.relay_user"`)
	}
	if q.RelayUser != "" && q.RelayTLS == "none" {
		return fmt.Errorf(`key "queue.relay_tls": "none" with "queue.relay_user" set: credentials are sent only over TLS`)
	}
	for domain, hop := range q.Routes {
		key := "queue.routes." + domain
		if d := strings.TrimSuffix(domain, "."); d == "" || strings.ContainsAny(d, "@ \t/") {
			return fmt.Errorf("key %q: %q is not a domain", key, domain)
		}
		if err := checkHostPort(key, hop); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		key string
		v   int
	}{
		{"queue.retry_initial", q.RetryInitial}, {"queue.retry_max", q.RetryMax}, {"queue.max_lifetime", q.MaxLifetime},
		{"queue.max_concurrent", q.MaxConcurrent}, {"queue.max_per_host", q.MaxPerHost}, {"queue.poll_interval", q.PollInterval},
	} {
		if c.v <= 0 {
			return fmt.Errorf("key %q: must be positive, got %d", c.key, c.v)
		}
	}
	if q.RetryMax < q.RetryInitial {
		return fmt.Errorf(`key "queue.retry_max": %d is less than "queue.retry_initial" (%d)`, q.RetryMax, q.RetryInitial)
	}
	if q.DelayWarning < 0 {
		return fmt.Errorf(`key "queue.delay_warning": must be 0 (off) or positive, got %d`, q.DelayWarning)
	}
	return nil
}

// checkHostPort checks a next hop: a host name or IP and a port.
func checkHostPort(key, hp string) error {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return fmt.Errorf("key %q: %q is not host:port (%v)", key, hp, err)
	}
	if host == "" || strings.ContainsAny(host, " /@") {
		return fmt.Errorf("key %q: %q has a bad host", key, hp)
	}
	if !validPort(port) {
		return fmt.Errorf("key %q: %q has a bad port", key, hp)
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n <= 65535
}
