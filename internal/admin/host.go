package admin

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/clientinfo"
)

// hostAllowed reports whether the Host of a request names this console:
// a name in [admin] hosts, the server's hostname, the host of [admin]
// listen, and, when the console can be reached on loopback (listening on
// loopback or on every address), "localhost" and the loopback addresses.
// Listening on every address, any IP address is accepted as well: a
// browser sends an address only when it was given that address.
//
// This defeats DNS rebinding: a page of another site whose name an
// attacker points at the console's address reaches the console with that
// name in Host, and is refused before any cookie or form is looked at.
func (c *Console) hostAllowed(r *http.Request) bool {
	if c.ctl == nil {
		return true
	}
	cfg := c.ctl.Config()
	host := canonicalHost(r.Host)
	if host == "" {
		return false
	}
	for _, h := range cfg.Admin.Hosts {
		if canonicalHost(h) == host {
			return true
		}
	}
	if host == canonicalHost(cfg.Hostname) {
		return true
	}
	listen, _, err := net.SplitHostPort(cfg.Admin.Listen)
	if err != nil {
		listen = ""
	}
	listen = canonicalHost(listen)
	if listen != "" && host == listen {
		return true
	}
	ip := net.ParseIP(host)
	lip := net.ParseIP(listen)
	wildcard := listen == "" || lip != nil && lip.IsUnspecified()
	loopback := wildcard || listen == "localhost" || lip != nil && lip.IsLoopback()
	switch {
	case loopback && (host == "localhost" || ip != nil && ip.IsLoopback()):
		return true
	case wildcard && ip != nil:
		return true
	}
	return false
}

// canonicalHost is the host of a Host header or a configured name: no
// port, no IPv6 brackets, lower case, no trailing dot.
func canonicalHost(h string) string {
	h = strings.TrimSpace(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	h = strings.TrimSuffix(strings.Trim(h, "[]"), ".")
	return strings.ToLower(h)
}

// misdirected answers a request for a host the console does not serve:
// 421 Misdirected Request (RFC 9110 section 15.5.20).
func (c *Console) misdirected(w http.ResponseWriter, r *http.Request) {
	c.log.Info("request for another host refused", "host", clientinfo.Clip(r.Host), "remote", r.RemoteAddr, "path", clientinfo.Clip(r.URL.Path))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusMisdirectedRequest)
	w.Write([]byte("421 Misdirected Request: this console does not answer to the host " + clientinfo.Clip(r.Host) +
		"; an operator can add it to [admin] hosts.\n"))
}

// metricsAuth requires "Authorization: Bearer TOKEN" (RFC 6750 section
// 2.1) on /metrics when [admin] metrics_token is set; without it /metrics
// is open, like the rest of the listener's address.
func (c *Console) metricsAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := ""
		if c.ctl != nil {
			token = c.ctl.Config().Admin.MetricsToken
		}
		if token != "" {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(token)) != 1 {
				// RFC 6750 section 3: the challenge names the scheme.
				w.Header().Set("WWW-Authenticate", `Bearer realm="postoffice metrics"`)
				w.Header().Set("Cache-Control", "no-store")
				http.Error(w, "401 Unauthorized: /metrics needs the bearer token of [admin] metrics_token", http.StatusUnauthorized)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
