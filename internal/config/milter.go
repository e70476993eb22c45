package config

import (
	"time"

	"github.com/postoffice-mail/postoffice/internal/milter"
)

// Milter is one [[milter]] table: a filter that speaks the milter
// protocol (rspamd's proxy worker, clamav-milter, OpenDKIM, OpenDMARC),
// called on every SMTP session of the services it applies to, in the
// order of the file, as Postfix's smtpd_milters. Its timeouts are
// Postfix's milter_connect_timeout, milter_command_timeout and
// milter_content_timeout, and on_error its milter_default_action.
type Milter struct {
	Name           string   `toml:"name" check:"name" doc:"the milter's name in logs, the journal and /metrics (default: its address)"`
	Address        string   `toml:"address" check:"milteraddr" doc:"where the milter listens: tcp:host:port or unix:/path"`
	Services       []string `toml:"services" default:"smtp, submission" check:"milterservices" doc:"the services whose mail it sees: smtp (port 25), submission (587, 465)"`
	ConnectTimeout Duration `toml:"connect_timeout" default:"30s" check:"positive" doc:"how long connecting and the option negotiation may take"`
	CommandTimeout Duration `toml:"command_timeout" default:"30s" check:"positive" doc:"how long the milter may take to answer each SMTP event (connect, HELO, MAIL, RCPT, DATA)"`
	EndTimeout     Duration `toml:"end_timeout" default:"5m" check:"positive" doc:"how long the milter may take over each step of the message (header, body, end of message)"`
	OnError        string   `toml:"on_error" default:"tempfail" check:"oneof=tempfail|accept" doc:"when the milter is down or fails: tempfail (451 4.7.1, the client retries) or accept (mail goes on unfiltered, logged)"`
}

// MilterConfig is the milter client's view of the entry.
func (m Milter) MilterConfig() milter.Config {
	return milter.Config{
		Name: m.Name, Address: m.Address, Services: m.Services,
		ConnectTimeout: time.Duration(m.ConnectTimeout), CommandTimeout: time.Duration(m.CommandTimeout),
		EndTimeout: time.Duration(m.EndTimeout), OnError: milter.OnError(m.OnError),
	}
}

// Spam is [spam]: how mail that a milter (rspamd) or DMARC marks as spam
// is delivered. POP3 users have no junk folder: it is marked with
// "X-Spam: yes" for their client's filters, and each user may refuse it
// above a score instead (postoffice user set --spam-reject-score).
type Spam struct {
	SubjectTag string `toml:"subject_tag" check:"oneline" doc:"text put before the Subject of mail marked as spam, e.g. [SPAM] (empty: the subject is left alone)"`
}
