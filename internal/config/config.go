// Package config reads postoffice's one TOML file, fills in defaults and
// validates it. With no file, Default() is the whole configuration: data in
// ./data, standard ports.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Config is the whole configuration. Every listener list may be empty to
// switch that listener off.
type Config struct {
	DataDir  string `toml:"data_dir"`
	Hostname string `toml:"hostname"`
	// MinFreeSpace is how many octets must stay free in data_dir's file
	// system: below it deliveries are refused for the time being (SMTP
	// 452 4.3.1, deliver exit 75), so that what frees space still has
	// room to work (a POP3 QUIT's deletions must be committed, which
	// writes). 0 switches the check off.
	MinFreeSpace Size       `toml:"min_free_space"`
	POP3         POP3       `toml:"pop3"`
	SMTP         SMTP       `toml:"smtp"`
	Submission   Submission `toml:"submission"`
	TLS          TLS        `toml:"tls"`
	Admin        Admin      `toml:"admin"`
	Journal      Journal    `toml:"journal"`
	Log          Log        `toml:"log"`
	Queue        Queue      `toml:"queue"`
	Store        Store      `toml:"store"`
	Auth         Auth       `toml:"auth"`
}

// SMTP configures the inbound MX service (RFC 5321, port 25).
type SMTP struct {
	Listen         []string `toml:"listen"`
	MaxMessageSize Size     `toml:"max_message_size"` // octets, advertised with SIZE (RFC 1870)
	MaxRecipients  int      `toml:"max_recipients"`
	Timeout        int      `toml:"timeout"` // seconds to wait for a command or a piece of data
	// AllowAuth offers AUTH on the MX listener too (off by default, as
	// Postfix's smtpd_sasl_auth_enable): users submit on [submission].
	AllowAuth          bool `toml:"allow_auth"`
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`
	Service
}

// Submission configures message submission for users' mail clients
// (RFC 6409 on 587 with STARTTLS, RFC 8314 implicit TLS on 465). Size and
// recipient limits are those of [smtp].
type Submission struct {
	Listen    []string `toml:"listen"`
	TLSListen []string `toml:"tls_listen"`
	// RequireSenderMatch: the envelope sender of every authenticated
	// session must be one of the user's addresses (submission, and the
	// MX service when [smtp] allow_auth is on).
	RequireSenderMatch bool `toml:"require_sender_match"`
	// MaxMessageSize and Timeout override those of [smtp] when not 0.
	MaxMessageSize Size `toml:"max_message_size"`
	Timeout        int  `toml:"timeout"`
	Service
}

// POP3 configures the POP3 service (RFC 1939) and its implicit-TLS
// listener (RFC 8314 section 3.3, port 995).
type POP3 struct {
	Listen             []string `toml:"listen"`
	TLSListen          []string `toml:"tls_listen"`
	InactivityTimeout  int      `toml:"inactivity_timeout"` // seconds
	AllowPlaintextAuth bool     `toml:"allow_plaintext_auth"`
	// LoginDelay is the minimum number of seconds between two logins of
	// one user (RFC 2449 section 6.5, CAPA LOGIN-DELAY); 0 for none.
	LoginDelay int `toml:"login_delay"`
	// Expire is how long a retrieved message is kept before it is removed
	// (RFC 2449 section 6.7, CAPA EXPIRE).
	Expire Expire `toml:"expire"`
	Service
}

// TLS names the certificate and key files. When both are empty, serve
// creates a self-signed pair in the data directory.
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// DefaultMinFreeSpace is the default of min_free_space: 256 MiB.
const DefaultMinFreeSpace = 256 << 20

// Default returns the built-in configuration.
func Default() Config {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return Config{
		Auth:     defaultAuth(),
		DataDir:  "data",
		Hostname: host,
		// Room for five messages of the largest default size (50 MiB)
		// still arriving when intake stops, and for the database's
		// log while users delete; small beside a mail server's disk.
		MinFreeSpace: DefaultMinFreeSpace,
		POP3: POP3{
			Listen:    []string{":110"},
			TLSListen: []string{":995"},
			// RFC 1939 section 3: the autologout timer must be at least
			// 10 minutes.
			InactivityTimeout: 600,
			Expire:            Never,
			// Room for 10,000 idle pollers; a NATed office stays under
			// the per-address cap.
			Service: Service{Autostart: true, MaxSessions: 20000, MaxSessionsPerIP: 100},
		},
		SMTP: SMTP{
			Listen:         []string{":25"},
			MaxMessageSize: 50 << 20,
			MaxRecipients:  100,
			Timeout:        300, // RFC 5321 section 4.5.3.2.7: at least 5 minutes
			// Postfix's smtpd_client_connection_count_limit is 50 too.
			Service: Service{Autostart: true, MaxSessions: 1000, MaxSessionsPerIP: 50},
		},
		Submission: Submission{
			Listen:             []string{":587"},
			TLSListen:          []string{":465"},
			RequireSenderMatch: true,
			Service:            Service{Autostart: true, MaxSessions: 1000, MaxSessionsPerIP: 50},
		},
		Journal: Journal{RetentionDays: 90},
		Log:     Log{Format: "text", Level: "info"},
		Queue:   DefaultQueue(),
		Store:   DefaultStore(host),
	}
}

// Parse reads a configuration file's content over the defaults; name is
// used in error messages. Relative paths stay as written: Load resolves
// them against the file's directory.
func Parse(data []byte, name string) (Config, error) {
	cfg := Default()
	if err := decode(&cfg, data, name); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config %s: %w", name, err)
	}
	return cfg, nil
}

// decode reads TOML over cfg: the keys data sets replace those of cfg.
func decode(cfg *Config, data []byte, name string) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	// For Expire and Size, which take a number or a string.
	dec.EnableUnmarshalerInterface()
	if err := dec.Decode(cfg); err != nil {
		var se *sizeError
		if errors.As(err, &se) {
			// go-toml does not add the key to an unmarshaler's error:
			// find the size key whose value does not parse.
			return fmt.Errorf("config %s: %s", name, badSizeKey(data, se))
		}
		return fmt.Errorf("config %s: %s", name, describe(err))
	}
	return nil
}

// describe turns go-toml's errors into one line naming the key.
func describe(err error) string {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		row, _ := e.Position()
		return fmt.Sprintf("line %d: unknown key %q", row, strings.Join(e.Key(), "."))
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		if k := de.Key(); len(k) > 0 {
			return fmt.Sprintf("line %d: key %q: %s", row, strings.Join(k, "."), de.Error())
		}
		return fmt.Sprintf("line %d: %s", row, de.Error())
	}
	return strings.ReplaceAll(err.Error(), "\n", " ")
}

// Validate checks values the TOML types cannot.
func (c Config) Validate() error {
	if err := c.Auth.validate(); err != nil {
		return err
	}
	if strings.TrimSpace(c.DataDir) == "" {
		return errors.New(`key "data_dir": must not be empty`)
	}
	if c.MinFreeSpace < 0 {
		return fmt.Errorf(`key "min_free_space": must be a number of octets, 0 or more, got %d`, c.MinFreeSpace)
	}
	if strings.TrimSpace(c.Hostname) == "" || strings.ContainsAny(c.Hostname, " \t\r\n") {
		return fmt.Errorf(`key "hostname": %q is not a host name`, c.Hostname)
	}
	if err := checkAddrs("pop3.listen", c.POP3.Listen); err != nil {
		return err
	}
	if err := checkAddrs("pop3.tls_listen", c.POP3.TLSListen); err != nil {
		return err
	}
	if c.POP3.InactivityTimeout <= 0 {
		return fmt.Errorf(`key "pop3.inactivity_timeout": must be a positive number of seconds, got %d`, c.POP3.InactivityTimeout)
	}
	for key, addrs := range map[string][]string{
		"smtp.listen": c.SMTP.Listen, "submission.listen": c.Submission.Listen, "submission.tls_listen": c.Submission.TLSListen,
	} {
		if err := checkAddrs(key, addrs); err != nil {
			return err
		}
	}
	if c.SMTP.MaxMessageSize <= 0 {
		return fmt.Errorf(`key "smtp.max_message_size": must be a positive size, got %v`, c.SMTP.MaxMessageSize)
	}
	if c.SMTP.MaxRecipients <= 0 {
		return fmt.Errorf(`key "smtp.max_recipients": must be positive, got %d`, c.SMTP.MaxRecipients)
	}
	if c.SMTP.Timeout <= 0 {
		return fmt.Errorf(`key "smtp.timeout": must be a positive number of seconds, got %d`, c.SMTP.Timeout)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New(`keys "tls.cert_file" and "tls.key_file": set both or neither`)
	}
	if err := c.Queue.validate(); err != nil {
		return err
	}
	if err := c.Store.validate(); err != nil {
		return err
	}
	if err := c.validateProxy(); err != nil {
		return err
	}
	return c.validateOps()
}

func checkAddrs(key string, addrs []string) error {
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("key %q: %q is not host:port (%v)", key, a, err)
		}
		if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
			return fmt.Errorf("key %q: %q has a bad host", key, a)
		}
		if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("key %q: %q has a bad port", key, a)
		}
	}
	return nil
}
