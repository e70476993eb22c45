package config

import (
	"fmt"
	"strings"
)

// ACME configures certificates obtained and renewed by ACME (RFC 8555)
// for the hostname and the names of each local domain, kept in the store
// so that every node of a cluster serves what one obtained; the
// certificate of [tls] (or the self-signed one) serves the names ACME has
// not covered (yet). Setting it up agrees to the CA's terms of service.
type ACME struct {
	Enabled bool `toml:"enabled" doc:"obtain and renew certificates by ACME for the hostname and each domain's names (the CA must reach [http] listen on port 80 for http-01, or tls_listen on 443 for tls-alpn-01)"`
	// Email: RFC 8555 section 7.3, the account's contact.
	Email        string `toml:"email" check:"email" doc:"contact address of the ACME account, where the CA warns of certificates about to expire (empty: none)"`
	DirectoryURL string `toml:"directory_url" default:"https://acme-v02.api.letsencrypt.org/directory" check:"https" doc:"the CA's ACME directory (Let's Encrypt's by default; its staging one: https://acme-staging-v02.api.letsencrypt.org/directory)"`
	CAFile       string `toml:"ca_file" path:"" doc:"PEM roots trusted, besides the system's, for the CA's HTTPS (a private ACME server; empty: the system's only)"`
	// Challenge: RFC 8555 section 8.3 (http-01), RFC 8737 (tls-alpn-01).
	Challenge string   `toml:"challenge" default:"http-01" check:"oneof=http-01|tls-alpn-01" doc:"how the CA checks control of a name: http-01 (port 80, [http] listen) or tls-alpn-01 (port 443, [http] tls_listen)"`
	Names     []string `toml:"names" default:"autoconfig.{domain}, autodiscover.{domain}, mta-sts.{domain}" check:"nametemplates" doc:"names covered for each local domain besides the hostname, {domain} standing for the domain (empty: the hostname only)"`
}

// HTTP configures the HTTP listener of the mail host: what mail clients
// and other servers ask of it over HTTP(S).
type HTTP struct {
	Listen    []string `toml:"listen" check:"listen" doc:"HTTP listeners, host:port (port 80): ACME http-01, autoconfig, autodiscover, the MTA-STS policy, / redirected to the web console (empty: off)"`
	TLSListen []string `toml:"tls_listen" check:"listen" doc:"HTTPS listeners, host:port (port 443): the same over TLS, and ACME tls-alpn-01 (empty: off)"`
}

// MTASTS configures the MTA-STS policy (RFC 8461) published for every
// local domain at https://mta-sts.DOMAIN/.well-known/mta-sts.txt, which
// tells other servers to deliver to this host only over verified TLS.
type MTASTS struct {
	// Mode: RFC 8461 section 5; none withdraws a policy (section 8.3).
	Mode string   `toml:"mode" default:"testing" check:"oneof=off|testing|enforce|none" doc:"policy mode: testing (senders report TLS failures and deliver anyway; start here), enforce, none (withdraws a published policy) or off (no policy, no records)"`
	MX   []string `toml:"mx" check:"hosts" doc:"MX names the policy allows, *.example.com for any one label (empty: the hostname)"`
	// MaxAge: RFC 8461 section 3.2, at most 31557600 seconds.
	MaxAge Duration `toml:"max_age" default:"7d" check:"min=1s,max=8766h" doc:"how long senders keep the policy"`
}

func (m *MTASTS) check(k keyNames) error {
	// RFC 8461 section 3.2: a wildcard only as the leftmost label.
	for _, mx := range m.MX {
		if rest := strings.TrimPrefix(mx, "*."); rest == "" || strings.Contains(rest, "*") {
			return k.errorf(&m.MX, "%q: a wildcard is a whole first label (*.example.com)", mx)
		}
	}
	return nil
}

// acmeWarnings: an ACME setup the CA cannot complete.
func (c Config) acmeWarnings() []string {
	if !c.ACME.Enabled {
		return nil
	}
	switch {
	case c.ACME.Challenge == "http-01" && len(c.HTTP.Listen) == 0:
		return []string{fmt.Sprintf("warning: %s = http-01 but %s is empty: the CA validates on port 80, which nothing here answers (unless a proxy forwards /.well-known/acme-challenge/)",
			c.keyOf(&c.ACME.Challenge), c.keyOf(&c.HTTP.Listen))}
	case c.ACME.Challenge == "tls-alpn-01" && len(c.HTTP.TLSListen) == 0:
		return []string{fmt.Sprintf("warning: %s = tls-alpn-01 but %s is empty: the CA validates on port 443, which nothing here answers",
			c.keyOf(&c.ACME.Challenge), c.keyOf(&c.HTTP.TLSListen))}
	}
	return nil
}
