package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// Service holds the settings every network service has. It is embedded in
// [pop3], [smtp] and [submission].
type Service struct {
	// Autostart: serve starts the service; when false it waits for
	// 'postoffice start SERVICE'.
	Autostart bool `toml:"autostart"`
	// Hostname is the name in the service's greeting; "" means the global
	// hostname.
	Hostname string `toml:"hostname"`
	// MaxSessions caps the open sessions of the service (0: no cap);
	// MaxSessionsPerIP caps those of one client address.
	MaxSessions      int `toml:"max_sessions"`
	MaxSessionsPerIP int `toml:"max_sessions_per_ip"`
	// ProxyProtocol: every connection to the service's listeners starts
	// with a PROXY protocol header (HAProxy's, v1 or v2) from one of
	// ProxyTrusted (addresses or prefixes); see proxy.go.
	ProxyProtocol bool     `toml:"proxy_protocol"`
	ProxyTrusted  []string `toml:"proxy_trusted"`
}

// Admin configures the web console and /metrics.
type Admin struct {
	// Listen is the console's host:port; "" switches it off.
	Listen string `toml:"listen"`
	// TLS serves the console over HTTPS with the server certificate.
	TLS bool `toml:"tls"`
	// Hosts are further names the console answers to (in the Host of a
	// request), besides hostname, the host of listen and, when listen is
	// on loopback or every address, localhost; others get 421.
	Hosts []string `toml:"hosts"`
	// MetricsToken, when set, is the bearer token /metrics requires.
	MetricsToken string `toml:"metrics_token"`
}

// Journal configures the mail journal.
type Journal struct {
	// RetentionDays: entries older than this are removed; 0 keeps them
	// forever.
	RetentionDays int `toml:"retention_days"`
}

// Log configures the logs written to standard error.
type Log struct {
	Format string `toml:"format"` // "text" or "json"
	Level  string `toml:"level"`  // "debug", "info", "warn" or "error"
}

// Expire is how long the POP3 server keeps a message after its first
// retrieval (RFC 2449 section 6.7), or never. In TOML it is a number of
// days (30, or 0.5), "never", or a duration with a unit ("36h", "90s").
type Expire struct {
	never bool
	d     time.Duration
}

// Never is the Expire that keeps messages until the client deletes them.
var Never = Expire{never: true}

// ExpireAfter returns the Expire of d (d >= 0).
func ExpireAfter(d time.Duration) Expire { return Expire{d: d} }

// IsNever reports whether messages are never expired.
func (e Expire) IsNever() bool { return e.never }

// Duration is the retention period; negative for never.
func (e Expire) Duration() time.Duration {
	if e.never {
		return -1
	}
	return e.d
}

const day = 24 * time.Hour

// ParseExpire parses "never", a number of days or a duration with a unit.
func ParseExpire(s string) (Expire, error) {
	s = strings.TrimSpace(s)
	if strings.EqualFold(s, "never") {
		return Never, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f < 0 || math.IsNaN(f) || f > 100*365 {
			return Expire{}, fmt.Errorf("%q: days must be between 0 and 36500", s)
		}
		return Expire{d: time.Duration(f * float64(day))}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return Expire{d: time.Duration(n) * day}, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Expire{}, fmt.Errorf(`%q is not "never", a number of days or a duration such as "36h"`, s)
	}
	return Expire{d: d}, nil
}

// String returns "never", a whole number of days, or a duration.
func (e Expire) String() string {
	switch {
	case e.never:
		return "never"
	case e.d%day == 0:
		return strconv.FormatInt(int64(e.d/day), 10)
	default:
		return e.d.String()
	}
}

// Days is the period in whole days, truncated, as CAPA EXPIRE announces it.
func (e Expire) Days() int { return int(e.d / day) }

// MarshalText implements encoding.TextMarshaler.
func (e Expire) MarshalText() ([]byte, error) { return []byte(e.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (e *Expire) UnmarshalText(b []byte) error {
	v, err := ParseExpire(string(b))
	if err != nil {
		return err
	}
	*e = v
	return nil
}

// UnmarshalTOML takes a TOML number of days or a string (go-toml's
// unstable.Unmarshaler, enabled in Parse).
func (e *Expire) UnmarshalTOML(raw []byte) error {
	s := strings.TrimSpace(string(raw))
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		s = s[1 : len(s)-1]
	}
	if err := e.UnmarshalText([]byte(strings.ReplaceAll(s, "_", ""))); err != nil {
		// go-toml does not add the key to an unmarshaler's error; the
		// type serves one key.
		return fmt.Errorf(`key "pop3.expire": %w`, err)
	}
	return nil
}

// ServiceHostname returns the service's own host name, or the global one.
func (c Config) ServiceHostname(s Service) string {
	if s.Hostname != "" {
		return s.Hostname
	}
	return c.Hostname
}

// SubmissionMaxMessageSize is [submission] max_message_size, or [smtp]'s.
func (c Config) SubmissionMaxMessageSize() int64 {
	if c.Submission.MaxMessageSize > 0 {
		return int64(c.Submission.MaxMessageSize)
	}
	return int64(c.SMTP.MaxMessageSize)
}

// SubmissionTimeout is [submission] timeout, or [smtp]'s, in seconds.
func (c Config) SubmissionTimeout() int {
	if c.Submission.Timeout > 0 {
		return c.Submission.Timeout
	}
	return c.SMTP.Timeout
}

func (c Config) validateOps() error {
	if c.POP3.LoginDelay < 0 {
		return fmt.Errorf(`key "pop3.login_delay": must be 0 or a positive number of seconds, got %d`, c.POP3.LoginDelay)
	}
	for name, s := range map[string]Service{"pop3": c.POP3.Service, "smtp": c.SMTP.Service, "submission": c.Submission.Service} {
		if s.MaxSessions < 0 {
			return fmt.Errorf(`key "%s.max_sessions": must be 0 (no limit) or positive, got %d`, name, s.MaxSessions)
		}
		if s.MaxSessionsPerIP < 0 {
			return fmt.Errorf(`key "%s.max_sessions_per_ip": must be 0 (no limit) or positive, got %d`, name, s.MaxSessionsPerIP)
		}
		if strings.ContainsAny(s.Hostname, " \t\r\n") {
			return fmt.Errorf(`key "%s.hostname": %q is not a host name`, name, s.Hostname)
		}
	}
	if c.Submission.MaxMessageSize < 0 {
		return fmt.Errorf(`key "submission.max_message_size": must be 0 (that of [smtp]) or positive, got %v`, c.Submission.MaxMessageSize)
	}
	if c.Submission.Timeout < 0 {
		return fmt.Errorf(`key "submission.timeout": must be 0 (that of [smtp]) or positive, got %d`, c.Submission.Timeout)
	}
	if c.Admin.Listen != "" {
		if err := checkAddrs("admin.listen", []string{c.Admin.Listen}); err != nil {
			return err
		}
	}
	for _, h := range c.Admin.Hosts {
		if h == "" || strings.ContainsAny(h, " \t\r\n/@:") && net.ParseIP(strings.Trim(h, "[]")) == nil {
			return fmt.Errorf(`key "admin.hosts": %q is not a host name or an address (no port)`, h)
		}
	}
	if t := c.Admin.MetricsToken; t != "" && (len(t) < 16 || !isToken68(t)) {
		return errors.New(`key "admin.metrics_token": must be at least 16 characters of letters, digits and -._~+/ (RFC 6750 b64token)`)
	}
	if c.Journal.RetentionDays < 0 {
		return fmt.Errorf(`key "journal.retention_days": must be 0 (keep forever) or positive, got %d`, c.Journal.RetentionDays)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return fmt.Errorf(`key "log.format": %q is not "text" or "json"`, c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf(`key "log.level": %q is not "debug", "info", "warn" or "error"`, c.Log.Level)
	}
	return nil
}

// Warnings lists settings that load but go against a standard or are
// likely mistakes; serve logs them, config set prints them.
func (c Config) Warnings() []string {
	var w []string
	if c.POP3.InactivityTimeout < 600 {
		// RFC 1939 section 3: "Such a timer MUST be of at least 10
		// minutes' duration."
		w = append(w, fmt.Sprintf("warning: pop3.inactivity_timeout = %d: RFC 1939 section 3 asks for at least 600 seconds (10 minutes); clients that pause longer are cut off", c.POP3.InactivityTimeout))
	}
	return w
}

// isToken68 reports whether s is a b64token of RFC 6750 section 2.1:
// letters, digits, "-._~+/", then optional "=" padding.
func isToken68(s string) bool {
	t := strings.TrimRight(s, "=")
	if t == "" {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-._~+/", c)) {
			return false
		}
	}
	return true
}
