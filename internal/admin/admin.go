// Package admin is postoffice's web console: server-rendered pages (Go
// templates and a style sheet embedded in the binary) over the store and
// the running server's controls, and the Prometheus /metrics endpoint.
//
// Security: operators sign in with an admin account (argon2id hashes);
// failed sign-ins are slowed and limited per client address; sessions live
// on the server, named by a random cookie that is HttpOnly, SameSite=Strict
// and Secure over TLS; every POST carries the session's CSRF token, and a
// POST from another origin is refused; no secret ever appears in a URL;
// pages forbid framing and foreign scripts (Content-Security-Policy); a
// request whose Host is not one of the console's names is refused (DNS
// rebinding, host.go); /metrics may require a bearer token.
package admin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/postoffice-mail/postoffice/internal/authguard"
	"github.com/postoffice-mail/postoffice/internal/clientinfo"
	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Controller is the running server as the console drives it.
type Controller interface {
	control.Controller
	// Config is the configuration in effect.
	Config() config.Config
	// SetConfig changes keys at run time (config.SetMany) and reloads.
	SetConfig(ctx context.Context, changes []config.Change) ([]string, error)
	// ConfigLayers tells where each key's value comes from.
	ConfigLayers() (*config.Layers, error)
	// Hours is the process's logins and queue sizes per hour
	// (metrics.Hours), the n hours up to the one of now.
	Hours(now time.Time, n int) []metrics.Hour
	// QueueRetry makes a queued message (or all, id 0) due now.
	QueueRetry(ctx context.Context, id int64) (int, error)
	// ProfileLink is a link to the Apple configuration profile of a
	// user's address (.mobileconfig), for the administrator to give the
	// user, and when it stops working; an error says why there is none.
	ProfileLink(ctx context.Context, address string) (string, time.Time, error)
	// DomainRecords are the DNS records a local domain needs.
	DomainRecords(ctx context.Context, domain string) ([]dnsrecords.Record, error)
	// CheckDomain looks them up and says what is published.
	CheckDomain(ctx context.Context, domain string) ([]dnsrecords.Finding, error)
}

// Options configures the console.
type Options struct {
	Store      store.Store
	Controller Controller
	// Metrics serves /metrics; nil: no metrics endpoint.
	Metrics http.Handler
	Logger  *slog.Logger
	// Secure: the console is served over TLS (the session cookie is then
	// Secure).
	Secure  bool
	Version string
	// LoginMetric, if set, counts sign-ins.
	LoginMetric func(ok bool)
	// Now is the clock, for tests.
	Now func() time.Time
	// FailureDelay is waited before answering a failed sign-in; 0 means
	// one second, negative none (tests).
	FailureDelay time.Duration
}

// Session and sign-in limits.
const (
	sessionIdle     = 2 * time.Hour
	sessionLifetime = 12 * time.Hour
	loginWindow     = 10 * time.Minute
	loginFailures   = 5 // failed sign-ins per client address and window
	maxTracked      = 10000
	cookieName      = "po_session"
	loginCookie     = "po_login"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Console is the web console's http.Handler.
type Console struct {
	opt   Options
	st    store.Store
	ctl   Controller
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session
	// guard limits failed sign-ins per client address (and per name),
	// counting each from before its password is checked.
	guard *authguard.Guard
}

// session is one signed-in operator.
type session struct {
	id       string
	admin    string
	csrf     string
	created  time.Time
	lastSeen time.Time
	flashes  []flash
}

type flash struct {
	Kind string // "ok" or "error"
	Text string
}

// New builds the console.
func New(opt Options) (*Console, error) {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.FailureDelay == 0 {
		opt.FailureDelay = time.Second
	}
	c := &Console{opt: opt, st: opt.Store, ctl: opt.Controller, log: opt.Logger, mux: http.NewServeMux(),
		sessions: map[string]*session{},
		// loginFailures failures in loginWindow ban the address for the
		// rest of the window; the console's own FailureDelay is the only
		// delay.
		guard: authguard.New(authguard.Config{Window: loginWindow, IPBanAfter: loginFailures, BanFor: loginWindow,
			MaxEntries: maxTracked, Now: opt.Now})}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	c.routes()
	return c, nil
}

func (c *Console) parseTemplates() error {
	c.pages = map[string]*template.Template{}
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html", n)
		if err != nil {
			return fmt.Errorf("admin template %s: %w", n, err)
		}
		c.pages[base] = t
	}
	return nil
}

func (c *Console) routes() {
	static, _ := fs.Sub(staticFS, "static")
	c.mux.Handle("GET /static/", http.StripPrefix("/static/", cacheStatic(http.FileServerFS(static))))
	if c.opt.Metrics != nil {
		c.mux.Handle("GET /metrics", c.metricsAuth(c.opt.Metrics))
	}
	c.mux.HandleFunc("GET /login", c.loginPage)
	c.mux.HandleFunc("POST /login", c.login)
	c.mux.HandleFunc("POST /logout", c.auth(c.logout))

	c.mux.HandleFunc("GET /{$}", c.auth(c.dashboard))
	c.mux.HandleFunc("POST /services/{name}/{action}", c.auth(c.serviceAction))
	c.mux.HandleFunc("POST /reload", c.auth(c.reload))

	c.mux.HandleFunc("GET /users", c.auth(c.users))
	c.mux.HandleFunc("POST /users", c.auth(c.addUser))
	c.mux.HandleFunc("GET /users/{address}", c.auth(c.user))
	c.mux.HandleFunc("POST /users/{address}/{action}", c.auth(c.userAction))

	c.mux.HandleFunc("GET /aliases", c.auth(c.aliases))
	c.mux.HandleFunc("POST /aliases", c.auth(c.setAlias))
	c.mux.HandleFunc("POST /aliases/delete", c.auth(c.deleteAlias))

	c.mux.HandleFunc("GET /domains", c.auth(c.domains))
	c.mux.HandleFunc("POST /domains", c.auth(c.addDomain))
	c.mux.HandleFunc("POST /domains/delete", c.auth(c.deleteDomain))
	c.mux.HandleFunc("GET /domains/{name}", c.auth(c.domain))

	c.mux.HandleFunc("GET /settings", c.auth(c.settings))
	c.mux.HandleFunc("POST /settings", c.auth(c.setSettings))

	c.mux.HandleFunc("GET /queue", c.auth(c.queue))
	c.mux.HandleFunc("POST /queue/{id}/{action}", c.auth(c.queueAction))

	c.mux.HandleFunc("GET /journal", c.auth(c.journal))
}

func cacheStatic(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP implements http.Handler with the security headers every
// response carries.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' data:; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	// Not no-referrer: with it browsers send "Origin: null" on the
	// console's own form posts, which sameOrigin refuses.
	h.Set("Referrer-Policy", "same-origin")
	if c.opt.Secure {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !c.hostAllowed(r) {
		c.misdirected(w, r)
		return
	}
	if r.Method == http.MethodPost && !c.sameOrigin(r) {
		c.forbidden(w, r, "This request did not come from the console's own pages (its Origin is "+r.Header.Get("Origin")+").")
		return
	}
	c.mux.ServeHTTP(w, r)
}

// sameOrigin refuses a POST that a browser marks as coming from another
// origin (a cross-site form): the Origin header, when present, must name
// this host. SameSite=Strict and the CSRF token are the other defences.
func (c *Console) sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == ""
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host == r.Host
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (c *Console) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.opt.Secure, SameSite: http.SameSiteStrictMode,
	})
}

// current returns the request's live session, nil if none.
func (c *Console) current(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	now := c.opt.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[ck.Value]
	if s == nil {
		return nil
	}
	if now.Sub(s.lastSeen) > sessionIdle || now.Sub(s.created) > sessionLifetime {
		delete(c.sessions, s.id)
		return nil
	}
	s.lastSeen = now
	return s
}

// auth requires a session, and for a POST its CSRF token.
func (c *Console) auth(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.current(r)
		if s != nil {
			// An account deleted meanwhile signs its sessions out.
			if _, err := c.st.AdminByName(r.Context(), s.admin); errors.Is(err, store.ErrNotFound) {
				c.mu.Lock()
				delete(c.sessions, s.id)
				c.mu.Unlock()
				s = nil
			}
		}
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			c.forbidden(w, r, "Your session has ended. Sign in again.")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
			if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(s.csrf)) != 1 {
				c.log.Warn("CSRF check failed", "admin", s.admin, "path", r.URL.Path, "remote", r.RemoteAddr)
				c.forbidden(w, r, "The form was stale or did not come from this console (CSRF check failed). Reload the page and try again.")
				return
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		h(w, r, s)
	}
}

func (c *Console) forbidden(w http.ResponseWriter, r *http.Request, msg string) {
	w.Header().Set("Cache-Control", "no-store")
	c.render(w, r, http.StatusForbidden, "error", nil, page{Title: "Forbidden", Error: msg})
}

// addFlash queues a message for the session's next page.
func (c *Console) addFlash(s *session, kind, format string, a ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.flashes = append(s.flashes, flash{Kind: kind, Text: fmt.Sprintf(format, a...)})
}

func (c *Console) takeFlashes(s *session) []flash {
	c.mu.Lock()
	defer c.mu.Unlock()
	f := s.flashes
	s.flashes = nil
	return f
}

// redirect answers a successful POST (Post/Redirect/Get).
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// page is what every template gets.
type page struct {
	Title   string
	Nav     string
	Admin   string
	CSRF    string
	Flashes []flash
	Error   string // an error to show above the page's forms
	Version string
	Host    string
	Data    any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, p page) {
	t := c.pages[name]
	if t == nil {
		http.Error(w, "no template "+name, http.StatusInternalServerError)
		return
	}
	if s != nil {
		p.Admin, p.CSRF = s.admin, s.csrf
		p.Flashes = append(c.takeFlashes(s), p.Flashes...)
	}
	p.Version = c.opt.Version
	if c.ctl != nil {
		p.Host = c.ctl.Config().Hostname
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Error("rendering", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(b.String()))
}

// serverError logs err and shows a generic page.
func (c *Console) serverError(w http.ResponseWriter, r *http.Request, s *session, err error) {
	c.log.Error("request failed", "path", r.URL.Path, "err", err)
	c.render(w, r, http.StatusInternalServerError, "error", s, page{Title: "Error", Error: "Something went wrong: " + err.Error()})
}

// clientAddr is the address sign-in failures are counted by.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

type loginData struct {
	Name, Next, Token string
	NoAdmins          bool
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if s := c.current(r); s != nil {
		redirect(w, r, "/")
		return
	}
	c.showLogin(w, r, http.StatusOK, "", "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, status int, name, msg string) {
	token := randomToken()
	c.setCookie(w, loginCookie, token, 3600)
	w.Header().Set("Cache-Control", "no-store")
	admins, _ := c.st.ListAdmins(r.Context())
	c.render(w, r, status, "login", nil, page{Title: "Sign in", Error: msg,
		Data: loginData{Name: name, Next: safeNext(r.FormValue("next")), Token: token, NoAdmins: len(admins) == 0}})
}

// safeNext keeps only a local path to return to after signing in.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, "\\") {
		return "/"
	}
	return next
}

func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	name := strings.TrimSpace(r.PostFormValue("name"))
	ck, err := r.Cookie(loginCookie)
	if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(r.PostFormValue("token"))) != 1 {
		c.showLogin(w, r, http.StatusForbidden, name, "The sign-in form was stale (or cookies are off). Please try again.")
		return
	}
	addr := clientAddr(r)
	attempt, err := c.guard.Begin(r.Context(), addr, name)
	if err != nil {
		var banned *authguard.BannedError
		if !errors.As(err, &banned) {
			return // the client went away while waiting for a slot
		}
		c.log.Warn("sign-in refused, too many failures", "remote", addr)
		c.showLogin(w, r, http.StatusTooManyRequests, name,
			fmt.Sprintf("Too many failed sign-ins from your address. Try again in %d minutes.", int(banned.Until.Sub(c.opt.Now()).Minutes())+1))
		return
	}
	password := r.PostFormValue("password")
	ok := false
	if a, err := c.st.AdminByName(r.Context(), name); err == nil {
		ok, _ = directory.VerifyPassword(a.PasswordHash, password)
	} else if !errors.Is(err, store.ErrNotFound) {
		attempt.Cancel()
		c.serverError(w, r, nil, err)
		return
	}
	if c.opt.LoginMetric != nil {
		c.opt.LoginMetric(ok)
	}
	if !ok {
		attempt.Failed()
		c.log.Info("sign-in failed", "login", clientinfo.Clip(name), "remote", addr)
		if c.opt.FailureDelay > 0 {
			select {
			case <-time.After(c.opt.FailureDelay):
			case <-r.Context().Done():
			}
		}
		c.showLogin(w, r, http.StatusUnauthorized, name, "Wrong name or password.")
		return
	}
	now := c.opt.Now()
	s := &session{id: randomToken(), admin: name, csrf: randomToken(), created: now, lastSeen: now}
	attempt.Succeeded()
	c.mu.Lock()
	c.sessions[s.id] = s
	for id, old := range c.sessions { // forget the expired
		if now.Sub(old.lastSeen) > sessionIdle || now.Sub(old.created) > sessionLifetime {
			delete(c.sessions, id)
		}
	}
	c.mu.Unlock()
	c.setCookie(w, cookieName, s.id, int(sessionLifetime/time.Second))
	c.setCookie(w, loginCookie, "", -1)
	c.log.Info("signed in", "admin", name, "remote", addr)
	redirect(w, r, safeNext(r.PostFormValue("next")))
}

func (c *Console) logout(w http.ResponseWriter, r *http.Request, s *session) {
	c.mu.Lock()
	delete(c.sessions, s.id)
	c.mu.Unlock()
	c.setCookie(w, cookieName, "", -1)
	c.log.Info("signed out", "admin", s.admin)
	redirect(w, r, "/login")
}
