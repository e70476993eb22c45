package config

// Queue configures the outbound queue: delivery of mail for remote
// recipients by SMTP to the recipient domains' MX hosts (RFC 5321 section
// 5), or to a relay host, with retries and bounces.
type Queue struct {
	// Autostart false: the queue only fills until 'postoffice start queue'.
	Autostart bool   `toml:"autostart" default:"true" doc:"start delivering with serve"`
	DNSServer string `toml:"dns_server" check:"ipport" doc:"DNS server for MX lookups and the checks of incoming mail (SPF, DKIM, DMARC), ip:port; its answers are cached for their TTL, at most an hour (empty: the system resolver, which postoffice does not cache: run a caching resolver on the host)"`
	// MXPort is 25; tests point it elsewhere.
	MXPort int `toml:"mx_port" default:"25" check:"port" doc:"port of the MX hosts delivered to"`
	// TLS is the STARTTLS policy (RFC 3207) towards MX hosts and routes:
	// "may" uses it whenever offered with the certificate unchecked,
	// "encrypt" requires it unchecked, "verify" requires and checks it.
	TLS           string `toml:"tls" default:"may" check:"oneof=none|may|encrypt|verify" doc:"STARTTLS towards MX hosts and routes: none, may, encrypt or verify"`
	RelayHost     string `toml:"relay_host" check:"hostport" doc:"smart host taking all remote mail, host:port (empty: MX delivery)"`
	RelayUser     string `toml:"relay_user" doc:"user name for AUTH PLAIN at the relay host (sent only over TLS)"`
	RelayPassword string `toml:"relay_password" doc:"password for AUTH PLAIN at the relay host"`
	RelayTLS      string `toml:"relay_tls" default:"may" check:"oneof=none|may|encrypt|verify" doc:"STARTTLS towards the relay host: none, may, encrypt or verify"`
	// Routes send a domain's mail to a host:port of its own, also when a
	// relay host is set.
	Routes map[string]string `toml:"routes" check:"routes" doc:"per-domain next hops: \"example.org\" = \"host:port\""`
	// MTASTS applies the MTA-STS policies (RFC 8461) recipient domains
	// publish to MX delivery: "enforce" allows only the policy's MX
	// hosts over verified TLS; routes and the relay host are not MX
	// delivery.
	MTASTS bool `toml:"mta_sts" default:"true" doc:"apply recipient domains' MTA-STS policies (RFC 8461) to MX delivery: enforce means only the policy's MX hosts, over verified TLS"`

	RetryInitial  Duration `toml:"retry_initial" default:"1m" check:"positive" doc:"time before the first retry (doubling after each failure)"`
	RetryMax      Duration `toml:"retry_max" default:"4h" check:"positive" doc:"longest interval between retries"`
	MaxLifetime   Duration `toml:"max_lifetime" default:"5d" check:"positive" doc:"time after which an undeliverable message is bounced"`
	DelayWarning  Duration `toml:"delay_warning" default:"4h" check:"nonneg" doc:"time after which the sender is warned of a delay, once, unless NOTIFY declined it (0: never)"`
	MaxConcurrent int      `toml:"max_concurrent" default:"20" check:"positive" doc:"most outbound SMTP connections"`
	MaxPerHost    int      `toml:"max_per_host" default:"5" check:"positive" doc:"most outbound SMTP connections to one host"`
	PollInterval  Duration `toml:"poll_interval" default:"5s" check:"positive" doc:"time between looks for due messages (queue retry takes effect within it)"`
}

func (q *Queue) check(k keyNames) error {
	switch {
	case q.RelayUser != "" && q.RelayHost == "":
		return k.errorf(&q.RelayUser, "set without %q", k.of(&q.RelayHost))
	case q.RelayPassword != "" && q.RelayUser == "":
		return k.errorf(&q.RelayPassword, "set without %q", k.of(&q.RelayUser))
	case q.RelayUser != "" && q.RelayTLS == "none":
		return k.errorf(&q.RelayTLS, `"none" with %q set: credentials are sent only over TLS`, k.of(&q.RelayUser))
	case q.RetryMax < q.RetryInitial:
		return k.errorf(&q.RetryMax, "%s is less than %q (%s)", q.RetryMax, k.of(&q.RetryInitial), q.RetryInitial)
	}
	return nil
}
