// Package config reads postoffice's one TOML file, fills in defaults and
// validates it. With no file, Default() is the whole configuration: data in
// ./data, standard ports.
//
// # Declaring a key
//
// Each key is declared once, on the field that holds it; defaults,
// validation, the errors that name the key, config show, the console's
// Server attributes page and the list of keys are all read from there:
//
//	// Timeout: RFC 5321 section 4.5.3.2.7 asks for at least 5 minutes.
//	Timeout Duration `toml:"timeout" default:"5m" check:"positive" doc:"how long to wait for a command or a piece of data"`
//
// To add a key (or a table, [acme], [[milter]]...):
//
//  1. Add a field to its table's struct; a new table is a struct field of
//     Config (or of a table) with a toml name. Use the type that says what
//     the value is: Duration for every length of time (read as "10m",
//     "36h", "5d" or plain seconds), Size for octets ("50M"), Expire for
//     POP3's expire, string, bool, int, []string for lists,
//     map[string]string for a table of names, []T of a struct T for an
//     array of tables ([[milter]]: T's fields are declared as a table's
//     keys are, and each table gets their defaults and checks). The last
//     two are edited in the file, not with config set.
//  2. Give it its tags (below).
//  3. Checks of several keys together ("set both or neither") go in a
//     check(k keyNames) error method of the table's struct, with a
//     pointer receiver. Errors name keys with k.of(&t.Field) or
//     k.errorf(&t.Field, ...), never with a literal: see TLS.check and
//     Queue.check.
//  4. Add the key with its default to README.md's configuration block
//     (TestREADMEConfiguration holds them together), and read it in the
//     wiring (internal/server). Reload gives new sessions a service's new
//     settings when the values its generation is built from change; a key
//     that needs more (a restart, a new listener) is the wiring's business.
//
// The tags of a key:
//
//   - toml: its name in its table, "max_sessions".
//   - default: written as an operator types it at 'postoffice config set':
//     600, true, 10m, 50M, never, a string without quotes, a list as
//     comma-separated items (":110, :995"). Without it the default is the
//     type's zero value. A table that embeds a struct (Service) may give the
//     struct's keys defaults of its own on the embedding field:
//     default:"max_sessions=1000;max_sessions_per_ip=50".
//   - doc: one line for config show and the console: what the key does,
//     what 0 or "" means.
//   - check: comma-separated checks of the value alone, from the checks map
//     in schema.go: positive, nonneg, min=3s, max=1h, oneof=a|b|c, notblank,
//     oneline, hostname, name, listen, hostport, ipport, port, prefixes,
//     hosts, token68, nodename, routes, nametemplates, email, https. A new
//     kind of value gets a new check there.
//   - path (no value): the key names a file or directory; a relative one is
//     taken from the configuration file's directory (from the data directory
//     in the overlay).
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Config is the whole configuration. Every listener list may be empty to
// switch that listener off.
type Config struct {
	// DataDir, relative, is taken from the configuration file's directory.
	DataDir string `toml:"data_dir" default:"data" path:"" check:"notblank" doc:"directory of the database, message files and the control socket (restart serve to change)"`
	// Hostname defaults to the machine's host name (set by Default).
	Hostname string `toml:"hostname" check:"hostname" doc:"name announced in greetings and trace fields (default: this machine's host name)"`
	// MinFreeSpace: below it deliveries are refused for the time being
	// (SMTP 452 4.3.1, deliver exit 75), so that what frees space still
	// has room to work (a POP3 QUIT's deletions must be committed, which
	// writes). The default leaves room for five messages of the largest
	// default size still arriving when intake stops, and for the
	// database's log while users delete.
	MinFreeSpace Size       `toml:"min_free_space" default:"256M" check:"nonneg" doc:"space that must stay free in data_dir's file system (a size: bytes, or K, M, G); below, deliveries are refused for now (452 4.3.1) so that users can still delete (0: no check)"`
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
	ACME         ACME       `toml:"acme"`
	HTTP         HTTP       `toml:"http"`
	MTASTS       MTASTS     `toml:"mta_sts"`
	AuthChecks   AuthChecks `toml:"auth_checks"`
	Spam         Spam       `toml:"spam"`
	// Milter is the chain of milters, in order.
	Milter []Milter `toml:"milter" doc:"milters (rspamd, clamav-milter, OpenDKIM...), each a [[milter]] table, called in order"`
}

// SMTP configures the inbound MX service (RFC 5321, port 25).
type SMTP struct {
	Listen         []string `toml:"listen" default:":25" check:"listen" doc:"SMTP (MX) listeners, host:port"`
	MaxMessageSize Size     `toml:"max_message_size" default:"50M" check:"positive" doc:"largest message accepted (a size; SIZE, RFC 1870)"`
	MaxRecipients  int      `toml:"max_recipients" default:"100" check:"positive" doc:"most recipients per message"`
	// Timeout: RFC 5321 section 4.5.3.2.7 asks for at least 5 minutes.
	Timeout Duration `toml:"timeout" default:"5m" check:"positive" doc:"how long to wait for a command or a piece of data"`
	// AllowAuth is off by default, as Postfix's smtpd_sasl_auth_enable:
	// users submit on [submission].
	AllowAuth          bool `toml:"allow_auth" doc:"offer AUTH on the MX listener too (users normally submit on [submission])"`
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth" doc:"allow AUTH without TLS off loopback"`
	// Postfix's smtpd_client_connection_count_limit is 50 too.
	Service `default:"max_sessions=1000;max_sessions_per_ip=50"`
}

// Submission configures message submission for users' mail clients
// (RFC 6409 on 587 with STARTTLS, RFC 8314 implicit TLS on 465). Size and
// recipient limits are those of [smtp].
type Submission struct {
	Listen    []string `toml:"listen" default:":587" check:"listen" doc:"submission listeners with STARTTLS (RFC 6409), host:port"`
	TLSListen []string `toml:"tls_listen" default:":465" check:"listen" doc:"submission over implicit TLS listeners (RFC 8314), host:port"`
	// RequireSenderMatch covers the MX service too when [smtp] allow_auth
	// is on.
	RequireSenderMatch bool     `toml:"require_sender_match" default:"true" doc:"the envelope sender of an authenticated session (submission, or smtp with allow_auth) must be one of the user's addresses"`
	MaxMessageSize     Size     `toml:"max_message_size" check:"nonneg" doc:"largest message accepted (0: that of [smtp])"`
	Timeout            Duration `toml:"timeout" check:"nonneg" doc:"how long to wait for a command or a piece of data (0: that of [smtp])"`
	Service            `default:"max_sessions=1000;max_sessions_per_ip=50"`
}

// POP3 configures the POP3 service (RFC 1939) and its implicit-TLS
// listener (RFC 8314 section 3.3, port 995).
type POP3 struct {
	Listen    []string `toml:"listen" default:":110" check:"listen" doc:"POP3 listeners, host:port (STLS offered)"`
	TLSListen []string `toml:"tls_listen" default:":995" check:"listen" doc:"POP3 over implicit TLS listeners (RFC 8314), host:port"`
	// InactivityTimeout: RFC 1939 section 3, the autologout timer must be
	// at least 10 minutes (shorter loads, with a warning).
	InactivityTimeout  Duration `toml:"inactivity_timeout" default:"10m" check:"positive" doc:"how long an idle session stays open (RFC 1939: at least 10m)"`
	AllowPlaintextAuth bool     `toml:"allow_plaintext_auth" doc:"allow USER/PASS and AUTH without TLS off loopback"`
	// LoginDelay: RFC 2449 section 6.5, CAPA LOGIN-DELAY.
	LoginDelay Duration `toml:"login_delay" check:"nonneg" doc:"shortest time between two logins of one user (RFC 2449 LOGIN-DELAY; 0: none)"`
	// Expire: RFC 2449 section 6.7, CAPA EXPIRE.
	Expire Expire `toml:"expire" default:"never" doc:"days a retrieved message is kept (RFC 2449 EXPIRE): a number, a duration or \"never\""`
	// Room for 10,000 idle pollers; a NATed office stays under the
	// per-address cap.
	Service `default:"max_sessions=20000;max_sessions_per_ip=100"`
}

// TLS names the certificate and key files. When both are empty, serve
// creates a self-signed pair in the data directory.
type TLS struct {
	CertFile string `toml:"cert_file" path:"" doc:"certificate chain, PEM (empty with key_file: self-signed in data_dir/tls)"`
	KeyFile  string `toml:"key_file" path:"" doc:"private key, PEM"`
}

func (t *TLS) check(k keyNames) error {
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("keys %q and %q: set both or neither", k.of(&t.CertFile), k.of(&t.KeyFile))
	}
	return nil
}

// Default returns the built-in configuration: the declared defaults, and
// this machine's host name.
func Default() Config {
	var c Config
	if err := decode(&c, schemaOf().defaultsTOML(), "(defaults)"); err != nil {
		panic(err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	c.Hostname, c.Store.NodeName = host, host
	return c
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
	if err := schemaOf().decode(reflect.ValueOf(cfg), data); err != nil {
		return fmt.Errorf("config %s: %s", name, err)
	}
	return nil
}

// decode reads TOML over the value ptr points to, of s's root type; its
// errors name the key.
func (s *schema) decode(ptr reflect.Value, data []byte) error {
	if err := decodeInto(ptr.Interface(), data); err != nil {
		var ve *valueError
		if errors.As(err, &ve) {
			// go-toml does not add the key to an unmarshaler's error:
			// find the key whose value does not parse.
			var doc map[string]any
			if toml.Unmarshal(data, &doc) == nil {
				if msg := s.badValue(doc); msg != "" {
					return errors.New(msg)
				}
			}
			return ve
		}
		return errors.New(describe(err))
	}
	return s.fillTables(ptr.Elem(), data)
}

func decodeInto(v any, data []byte) error {
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	// For Duration, Expire and Size, which take a number or a string.
	dec.EnableUnmarshalerInterface()
	return dec.Decode(v)
}

// fillTables gives the tables of each array of tables that data sets
// ([[milter]]) the declared defaults of the keys they leave out: go-toml
// starts each from the zero value.
func (s *schema) fillTables(v reflect.Value, data []byte) error {
	var doc map[string]any
	for _, d := range s.keys {
		if d.elem == nil {
			continue
		}
		if doc == nil {
			if err := toml.Unmarshal(data, &doc); err != nil {
				return err
			}
		}
		items, _ := lookupDoc(doc, strings.TrimPrefix(d.key, s.prefix))
		list, _ := items.([]any)
		slice := v.FieldByIndex(d.index)
		if len(list) != slice.Len() {
			continue // not set by data
		}
		for i, item := range list {
			own, err := toml.Marshal(item)
			if err != nil {
				return err
			}
			e := reflect.New(slice.Type().Elem())
			if err := decodeInto(e.Interface(), d.elem.defaultsTOML()); err != nil {
				return err
			}
			if err := d.elem.decode(e, own); err != nil {
				return err
			}
			slice.Index(i).Set(e.Elem())
		}
	}
	return nil
}

// valueError is a value that Duration, Size or Expire refuses.
type valueError struct{ error }

func (e *valueError) Unwrap() error { return e.error }

// badValue names the first key of a decoded TOML document whose value
// does not parse, with the problem; "" if none.
func (s *schema) badValue(doc map[string]any) string {
	for _, d := range s.keys {
		v, ok := lookupDoc(doc, strings.TrimPrefix(d.key, s.prefix))
		if !ok {
			continue
		}
		if d.elem != nil {
			items, _ := v.([]any)
			for _, item := range items {
				if m, ok := item.(map[string]any); ok {
					if msg := d.elem.badValue(m); msg != "" {
						return msg
					}
				}
			}
			continue
		}
		u, isValue := reflect.New(d.typ).Interface().(unstable.Unmarshaler)
		if !isValue {
			continue
		}
		raw := fmt.Sprint(v)
		if s, ok := v.(string); ok {
			raw = quote(s)
		}
		if err := u.UnmarshalTOML([]byte(raw)); err != nil {
			return fmt.Sprintf("key %q: %v", d.key, errors.Unwrap(err))
		}
	}
	return ""
}

// lookupDoc finds a dotted key in a decoded TOML document.
func lookupDoc(doc map[string]any, key string) (any, bool) {
	var cur any = doc
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
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
