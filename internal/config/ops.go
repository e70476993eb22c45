package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Service holds the settings every network service has. It is embedded in
// [pop3], [smtp] and [submission], each giving the session limits its own
// defaults.
type Service struct {
	// Autostart false: the service waits for 'postoffice start SERVICE'.
	Autostart        bool   `toml:"autostart" default:"true" doc:"start the service with serve"`
	Hostname         string `toml:"hostname" check:"name" doc:"name in the service's greeting (empty: the global hostname)"`
	MaxSessions      int    `toml:"max_sessions" check:"nonneg" doc:"most open sessions (0: no limit)"`
	MaxSessionsPerIP int    `toml:"max_sessions_per_ip" check:"nonneg" doc:"most open sessions from one client address (0: no limit)"`
	// ProxyProtocol: every connection to the service's listeners starts
	// with a PROXY protocol header (HAProxy's, v1 or v2) from one of
	// ProxyTrusted.
	ProxyProtocol bool     `toml:"proxy_protocol" doc:"connections start with a PROXY protocol header (v1 or v2) from a load balancer"`
	ProxyTrusted  []string `toml:"proxy_trusted" check:"prefixes" doc:"addresses or prefixes of the load balancers allowed to send PROXY headers"`
}

// check: a service that expects PROXY protocol headers must say whose,
// since a header from anyone else could claim any address.
func (s *Service) check(k keyNames) error {
	if s.ProxyProtocol && len(s.ProxyTrusted) == 0 {
		return k.errorf(&s.ProxyTrusted, "must list the load balancers' addresses when %s is true", k.of(&s.ProxyProtocol))
	}
	return nil
}

// Admin configures the web console and /metrics.
type Admin struct {
	Listen string `toml:"listen" check:"listen" doc:"web console and /metrics, host:port (empty: off)"`
	TLS    bool   `toml:"tls" doc:"serve the console over HTTPS with the server certificate"`
	// Hosts: a request for another host (in its Host) gets 421.
	Hosts        []string `toml:"hosts" check:"hosts" doc:"further host names the console answers to (besides hostname, the listen host and, on loopback, localhost); others get 421"`
	MetricsToken string   `toml:"metrics_token" check:"token68" doc:"bearer token /metrics requires (Authorization: Bearer ...); empty: /metrics is open"`
}

// Journal configures the mail journal.
type Journal struct {
	RetentionDays int `toml:"retention_days" default:"90" check:"nonneg" doc:"days mail journal entries are kept (0: forever)"`
}

// Log configures the logs written to standard error.
type Log struct {
	Format string `toml:"format" default:"text" check:"oneof=text|json" doc:"log format: text or json (restart serve to change)"`
	Level  string `toml:"level" default:"info" check:"oneof=debug|info|warn|error" doc:"log level: debug, info, warn or error (restart serve to change)"`
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
// unstable.Unmarshaler, enabled in decode).
func (e *Expire) UnmarshalTOML(raw []byte) error {
	if err := e.UnmarshalText([]byte(strings.ReplaceAll(unquoteRaw(raw), "_", ""))); err != nil {
		return &valueError{err}
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

// SubmissionTimeout is [submission] timeout, or [smtp]'s.
func (c Config) SubmissionTimeout() time.Duration {
	if c.Submission.Timeout > 0 {
		return time.Duration(c.Submission.Timeout)
	}
	return time.Duration(c.SMTP.Timeout)
}

// minInactivityTimeout is RFC 1939 section 3's: "Such a timer MUST be of at
// least 10 minutes' duration."
const minInactivityTimeout = Duration(10 * time.Minute)

// Warnings lists settings that load but go against a standard or are
// likely mistakes; serve logs them, config set prints them.
func (c Config) Warnings() []string {
	var w []string
	if t := c.POP3.InactivityTimeout; t < minInactivityTimeout {
		w = append(w, fmt.Sprintf("warning: %s = %s: RFC 1939 section 3 asks for at least 600 seconds (10 minutes); clients that pause longer are cut off",
			c.keyOf(&c.POP3.InactivityTimeout), t))
	}
	return append(w, c.acmeWarnings()...)
}
