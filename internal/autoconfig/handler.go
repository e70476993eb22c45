package autoconfig

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The paths the handlers answer.
const (
	// ThunderbirdPath is asked on autoconfig.DOMAIN (with ?emailaddress=).
	ThunderbirdPath = "/mail/config-v1.1.xml"
	// ThunderbirdWellKnownPath is asked on DOMAIN itself.
	ThunderbirdWellKnownPath = "/.well-known/autoconfig/mail/config-v1.1.xml"
	// AutodiscoverPath is POSTed on DOMAIN and autodiscover.DOMAIN (Outlook
	// varies the case; match it case-insensitively).
	AutodiscoverPath = "/autodiscover/autodiscover.xml"
	// ProfilePath serves the Apple profile of a signed link.
	ProfilePath = "/mail.mobileconfig"
)

// MaxRequestBody bounds an autodiscover request; Outlook's is a few
// hundred octets.
const MaxRequestBody = 16 << 10

// Handler serves the documents over HTTP for the local domains only.
type Handler struct {
	Host Host
	// IsLocal reports whether domain (lower case, A-labels) is a local
	// domain; documents for other domains are 404.
	IsLocal func(ctx context.Context, domain string) (bool, error)
	// ProfileKey signs and checks profile links (see ProfileLink); without
	// one (fewer than 32 octets) no profile is served.
	ProfileKey []byte
	Logger     *slog.Logger
	// Now is the clock of link expiry; nil means time.Now.
	Now func() time.Time
}

func (h *Handler) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// local answers 404 or 503 itself and returns false when domain is not to
// be served (or there is nothing to describe).
func (h *Handler) local(w http.ResponseWriter, r *http.Request, domain string) bool {
	if err := h.Host.Check(); err != nil {
		h.log().Warn("autoconfig: nothing to describe", "err", err)
		http.NotFound(w, r)
		return false
	}
	ok, err := h.IsLocal(r.Context(), domain)
	if err != nil {
		h.log().Warn("autoconfig: checking a domain", "domain", domain, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return false
	}
	if !ok {
		http.NotFound(w, r)
	}
	return ok
}

// ServeThunderbird serves GET ThunderbirdPath and ThunderbirdWellKnownPath.
// The domain is that of the emailaddress parameter when given, else the
// request's host without its "autoconfig." label.
func (h *Handler) ServeThunderbird(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var domain string
	if a := r.URL.Query().Get("emailaddress"); a != "" {
		_, d, err := ParseAddress(a)
		if err != nil {
			http.Error(w, "bad emailaddress", http.StatusBadRequest)
			return
		}
		domain = d
	} else {
		domain = strings.TrimPrefix(RequestHost(r), "autoconfig.")
	}
	if !h.local(w, r, domain) {
		return
	}
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Cache-Control", "max-age=3600")
	w.Write(h.Host.Thunderbird(domain))
}

// ServeAutodiscover answers Outlook's POST of a POX autodiscover request
// (an Autodiscover element with Request, EMailAddress and
// AcceptableResponseSchema) with the settings for the address, or a POX
// error: 600 for a request that is not one, 500 for an address outside
// the local domains (with HTTP status 400 and 404, so that a client moves
// on to its next method).
func (h *Handler) ServeAutodiscover(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	reply := func(status int, body []byte) {
		w.Header().Set("Content-Type", "application/xml; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		w.Write(body)
	}
	invalid := func() { reply(http.StatusBadRequest, AutodiscoverError(600, "Invalid Request")) }
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxRequestBody+1))
	if err != nil || len(body) > MaxRequestBody {
		invalid()
		return
	}
	var req struct {
		XMLName xml.Name `xml:"Autodiscover"`
		Request struct {
			EMailAddress             string `xml:"EMailAddress"`
			AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
		} `xml:"Request"`
	}
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	d.CharsetReader = nil // UTF-8 only; an encoding declaration for another charset fails
	if err := d.Decode(&req); err != nil || req.XMLName.Space != AutodiscoverRequestNS {
		invalid()
		return
	}
	if s := strings.TrimSpace(req.Request.AcceptableResponseSchema); s != AutodiscoverOutlookNS {
		// Only Outlook's schema: mobilesync (ActiveSync) is not offered.
		invalid()
		return
	}
	addr, domain, err := ParseAddress(strings.TrimSpace(req.Request.EMailAddress))
	if err != nil {
		invalid()
		return
	}
	if err := h.Host.Check(); err != nil {
		h.log().Warn("autodiscover: nothing to describe", "err", err)
		http.NotFound(w, r)
		return
	}
	ok, err := h.IsLocal(r.Context(), domain)
	if err != nil {
		h.log().Warn("autodiscover: checking a domain", "domain", domain, "err", err)
		http.Error(w, "temporarily unavailable", http.StatusServiceUnavailable)
		return
	}
	if !ok {
		reply(http.StatusNotFound, AutodiscoverError(500, "The e-mail address cannot be found."))
		return
	}
	reply(http.StatusOK, h.Host.Autodiscover(addr))
}

// profileTokenVersion is in every signed string, so that a signature of
// anything else never passes as a profile link.
const profileTokenVersion = "postoffice-mobileconfig-v1"

// ProfileLink returns the path and query of a link to address's Apple
// profile that works until expires, for the console to show the
// administrator: ProfilePath?t=TOKEN, the token holding the address and
// the expiry, signed with HMAC-SHA256 under key (at least 32 octets,
// kept by the server). Whoever has the link can download the profile, so
// it expires; it holds no password.
func ProfileLink(key []byte, address string, expires time.Time) (string, error) {
	if len(key) < 32 {
		return "", errors.New("autoconfig: a profile key needs at least 32 octets")
	}
	addr, _, err := ParseAddress(address)
	if err != nil {
		return "", fmt.Errorf("autoconfig: %w", err)
	}
	exp := strconv.FormatInt(expires.Unix(), 10)
	enc := base64.RawURLEncoding
	tok := enc.EncodeToString([]byte(addr)) + "." + exp + "." + enc.EncodeToString(profileMAC(key, addr, exp))
	return ProfilePath + "?t=" + tok, nil
}

func profileMAC(key []byte, addr, exp string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(profileTokenVersion + "\x00" + addr + "\x00" + exp))
	return m.Sum(nil)
}

// checkProfileToken returns the address of a valid, unexpired token.
func (h *Handler) checkProfileToken(tok string) (string, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "", errors.New("malformed token")
	}
	enc := base64.RawURLEncoding
	a, err1 := enc.DecodeString(parts[0])
	mac, err2 := enc.DecodeString(parts[2])
	exp, err3 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || strconv.FormatInt(exp, 10) != parts[1] {
		return "", errors.New("malformed token")
	}
	if !hmac.Equal(mac, profileMAC(h.ProfileKey, string(a), parts[1])) {
		return "", errors.New("bad signature")
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	if now().Unix() >= exp {
		return "", errors.New("expired")
	}
	return string(a), nil
}

// ServeProfile serves GET ProfilePath?t=TOKEN: the Apple profile of the
// token's address, as application/x-apple-aspen-config (what iOS and
// macOS install). A missing, forged or expired token is 403 and says no
// more.
func (h *Handler) ServeProfile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if len(h.ProfileKey) < 32 {
		http.NotFound(w, r)
		return
	}
	addr, err := h.checkProfileToken(r.URL.Query().Get("t"))
	if err != nil {
		h.log().Info("mobileconfig: link refused", "err", err, "remote", r.RemoteAddr)
		http.Error(w, "this link is not valid (any more): ask for a new one", http.StatusForbidden)
		return
	}
	addr, domain, err := ParseAddress(addr)
	if err != nil {
		http.Error(w, "this link is not valid", http.StatusForbidden)
		return
	}
	if !h.local(w, r, domain) {
		return
	}
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="mail.mobileconfig"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Write(h.Host.MobileConfig(addr))
}

// RequestHost is the request's host name, lower case, without port or
// final dot.
func RequestHost(r *http.Request) string {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
