package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/control"
	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/dnsrecords"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// fakeCtl is the server as the console sees it.
type fakeCtl struct {
	mu    sync.Mutex
	calls []string
	cfg   config.Config
	certs []control.Certificate
}

func (f *fakeCtl) record(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakeCtl) got() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.calls, "|")
}

func (f *fakeCtl) Status(context.Context) (control.Status, error) {
	return control.Status{Started: time.Now().Add(-time.Hour), Services: []control.ServiceStatus{
		{Name: "pop3", Running: true, Autostart: true, Sessions: 2, Addrs: []string{"pop3 127.0.0.1:110"}, Since: time.Now()},
		{Name: "smtp", Running: false, Autostart: true},
	}, Certificates: f.certs}, nil
}

func (f *fakeCtl) DomainsChanged(context.Context) ([]string, error) {
	f.record("domains")
	return []string{"acme: checking now"}, nil
}

func (f *fakeCtl) ProfileLink(_ context.Context, address string) (string, time.Time, error) {
	if address == "nolink@example.org" {
		return "", time.Time{}, errors.New("no [http] listener")
	}
	return "https://mail.example.test/mail.mobileconfig?t=" + url.QueryEscape(address), time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC), nil
}

func (f *fakeCtl) DomainRecords(_ context.Context, domain string) ([]dnsrecords.Record, error) {
	if domain != "example.com" {
		return nil, fmt.Errorf("%s: %w", domain, store.ErrNotFound)
	}
	return dnsrecords.Records(dnsrecords.Domain{Name: domain, MX: "mail.example.test", Ports: dnsrecords.DefaultPorts})
}

func (f *fakeCtl) CheckDomain(ctx context.Context, domain string) ([]dnsrecords.Finding, error) {
	// Only the MX is published: the rest is missing.
	recs, err := f.DomainRecords(ctx, domain)
	if err != nil {
		return nil, err
	}
	var out []dnsrecords.Finding
	for i, r := range recs {
		st := dnsrecords.Missing
		if i == 0 {
			st = dnsrecords.OK
		}
		out = append(out, dnsrecords.Finding{Record: r, Status: st})
	}
	return out, nil
}

func (f *fakeCtl) StartService(_ context.Context, name string) ([]string, error) {
	f.record("start " + name)
	return []string{name + " started"}, nil
}

func (f *fakeCtl) StopService(_ context.Context, name string, grace time.Duration) ([]string, error) {
	f.record("stop " + name)
	return []string{name + " stopped"}, nil
}

func (f *fakeCtl) Reload(context.Context) ([]string, error) {
	f.record("reload")
	return []string{"certificates reloaded"}, nil
}

func (f *fakeCtl) Config() config.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cfg
}

func (f *fakeCtl) SetConfig(_ context.Context, changes []config.Change) ([]string, error) {
	var notes []string
	for _, c := range changes {
		f.record("set " + c.Key + "=" + c.Value)
		notes = append(notes, c.Key+" changed")
	}
	return notes, nil
}

func (f *fakeCtl) ConfigLayers() (*config.Layers, error) { return nil, errors.New("no files") }

func (f *fakeCtl) Hours(now time.Time, n int) []metrics.Hour {
	out := make([]metrics.Hour, n)
	for i := range out {
		out[i] = metrics.Hour{Start: now.Truncate(time.Hour).Add(time.Duration(i-n+1) * time.Hour), Seen: true, Logins: int64(i)}
	}
	return out
}

func (f *fakeCtl) QueueRetry(_ context.Context, id int64) (int, error) {
	f.record("retry")
	return 1, nil
}

type consoleEnv struct {
	t    *testing.T
	st   *sqlite.Store
	ctl  *fakeCtl
	srv  *httptest.Server
	c    *http.Client
	now  time.Time
	nowM sync.Mutex
}

func newConsole(t *testing.T, secure bool) *consoleEnv {
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := &consoleEnv{t: t, st: st, ctl: &fakeCtl{cfg: config.Default()}, now: time.Now()}
	hash, _ := directory.HashPassword("right horse")
	if err := st.AddAdmin(context.Background(), store.Admin{Name: "ops", PasswordHash: hash}); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Store: st, Controller: e.ctl, Secure: secure, Version: "test", FailureDelay: -1,
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "postoffice_up 1\n") }),
		Now:     func() time.Time { e.nowM.Lock(); defer e.nowM.Unlock(); return e.now }})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(c)
	t.Cleanup(e.srv.Close)
	e.c = e.client()
	return e
}

func (e *consoleEnv) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *consoleEnv) get(c *http.Client, path string) (int, string, http.Header) {
	e.t.Helper()
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (e *consoleEnv) post(c *http.Client, path string, form url.Values, header ...string) (int, string, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var hiddenRE = regexp.MustCompile(`name="(token|csrf)" value="([^"]+)"`)

func hidden(body, name string) string {
	for _, m := range hiddenRE.FindAllStringSubmatch(body, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	return ""
}

// signIn signs c in and returns the session's CSRF token.
func (e *consoleEnv) signIn(c *http.Client, name, pw string) (int, string) {
	e.t.Helper()
	_, body, _ := e.get(c, "/login")
	code, body, hdr := e.post(c, "/login", url.Values{"token": {hidden(body, "token")}, "name": {name}, "password": {pw}, "next": {"/users"}})
	if code != http.StatusSeeOther {
		return code, body
	}
	if loc := hdr.Get("Location"); loc != "/users" {
		e.t.Errorf("signed in to %q, want /users (next)", loc)
	}
	_, body, _ = e.get(c, "/")
	return code, hidden(body, "csrf")
}

func TestSignIn(t *testing.T) {
	e := newConsole(t, false)
	if code, _, hdr := e.get(e.c, "/users?q=x"); code != http.StatusSeeOther || hdr.Get("Location") != "/login?next=%2Fusers%3Fq%3Dx" {
		t.Errorf("GET /users signed out: %d %q", code, hdr.Get("Location"))
	}
	code, body := e.signIn(e.c, "ops", "wrong")
	if code != http.StatusUnauthorized || !strings.Contains(body, "Wrong name or password.") {
		t.Errorf("wrong password: %d", code)
	}
	if code, body := e.signIn(e.c, "nobody", "right horse"); code != http.StatusUnauthorized || !strings.Contains(body, "Wrong name or password.") {
		t.Errorf("unknown name: %d %s", code, body)
	}
	code, csrf := e.signIn(e.c, "ops", "right horse")
	if code != http.StatusSeeOther || csrf == "" {
		t.Fatalf("sign in: %d, csrf %q", code, csrf)
	}
	u, _ := url.Parse(e.srv.URL)
	var session *http.Cookie
	for _, ck := range e.c.Jar.Cookies(u) {
		if ck.Name == cookieName {
			session = ck
		}
	}
	if session == nil {
		t.Fatal("no session cookie")
	}
	code, body, hdr := e.get(e.c, "/")
	if code != 200 || !strings.Contains(body, "Signed in as <strong>ops</strong>") {
		t.Fatalf("dashboard: %d", code)
	}
	for k, want := range map[string]string{"Content-Security-Policy": "frame-ancestors 'none'", "X-Frame-Options": "DENY",
		"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"} {
		if !strings.Contains(hdr.Get(k), want) {
			t.Errorf("header %s = %q, want %q", k, hdr.Get(k), want)
		}
	}
	// Sign out ends the session for good.
	if code, _, _ := e.post(e.c, "/logout", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Errorf("logout: %d", code)
	}
	other := e.client()
	other.Jar.SetCookies(u, []*http.Cookie{session})
	if code, _, _ := e.get(other, "/"); code != http.StatusSeeOther {
		t.Errorf("old session cookie after logout: %d, want a redirect to sign in", code)
	}
}

func TestCookieFlags(t *testing.T) {
	for _, secure := range []bool{false, true} {
		e := newConsole(t, secure)
		_, body, _ := e.get(e.c, "/login")
		_, _, hdr := e.post(e.c, "/login", url.Values{"token": {hidden(body, "token")}, "name": {"ops"}, "password": {"right horse"}})
		var set string
		for _, v := range hdr.Values("Set-Cookie") {
			if strings.HasPrefix(v, cookieName+"=") {
				set = v
			}
		}
		if !strings.Contains(set, "HttpOnly") || !strings.Contains(set, "SameSite=Strict") || strings.Contains(set, "Secure") != secure {
			t.Errorf("secure=%v: Set-Cookie %q", secure, set)
		}
	}
}

func TestSignInRateLimit(t *testing.T) {
	e := newConsole(t, false)
	for i := range loginFailures {
		if code, _ := e.signIn(e.c, "ops", "guess"); code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	code, body := e.signIn(e.c, "ops", "right horse")
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many failed sign-ins") {
		t.Fatalf("after %d failures: %d, want 429 even with the right password", loginFailures, code)
	}
	e.nowM.Lock()
	e.now = e.now.Add(loginWindow + time.Second)
	e.nowM.Unlock()
	if code, _ := e.signIn(e.c, "ops", "right horse"); code != http.StatusSeeOther {
		t.Errorf("after the window: %d", code)
	}
}

// Sign-ins sent at once from one address count from before their
// password is checked: at most loginFailures of them are checked, the
// others are refused (429) without looking at the password.
func TestSignInRateLimitParallel(t *testing.T) {
	e := newConsole(t, false)
	const n = 30
	codes := make([]int, n)
	clients := make([]*http.Client, n)
	tokens := make([]string, n)
	for i := range n {
		clients[i] = e.client()
		_, body, _ := e.get(clients[i], "/login")
		tokens[i] = hidden(body, "token")
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			resp, err := clients[i].PostForm(e.srv.URL+"/login", url.Values{"token": {tokens[i]}, "name": {"ops"}, "password": {"guess"}})
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	checked, refused := 0, 0
	for _, c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
			refused++
		default:
			t.Errorf("status %d", c)
		}
	}
	if checked > loginFailures || checked+refused != n {
		t.Fatalf("%d passwords checked, %d refused; at most %d may be checked", checked, refused, loginFailures)
	}
}

func TestCSRF(t *testing.T) {
	e := newConsole(t, false)
	_, csrf := e.signIn(e.c, "ops", "right horse")
	form := url.Values{"address": {"eve@example.com"}, "password": {"x"}, "password2": {"x"}}
	if code, body, _ := e.post(e.c, "/users", form); code != http.StatusForbidden || !strings.Contains(body, "CSRF check failed") {
		t.Errorf("POST without token: %d", code)
	}
	form.Set("csrf", csrf+"x")
	if code, _, _ := e.post(e.c, "/users", form); code != http.StatusForbidden {
		t.Errorf("POST with a wrong token: %d", code)
	}
	form.Set("csrf", csrf)
	if code, _, _ := e.post(e.c, "/users", form, "Origin", "http://evil.example"); code != http.StatusForbidden {
		t.Errorf("POST from another origin: %d", code)
	}
	if code, _, _ := e.post(e.c, "/users", form, "Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("POST marked cross-site: %d", code)
	}
	if _, err := e.st.UserByAddress(context.Background(), "eve@example.com"); err == nil {
		t.Fatal("a refused POST added the user")
	}
	if code, _, _ := e.post(e.c, "/users", form, "Origin", e.srv.URL); code != http.StatusSeeOther {
		t.Errorf("POST with the token from the same origin: %d", code)
	}
	// The login form has its own token (login CSRF).
	if code, body, _ := e.post(e.client(), "/login", url.Values{"name": {"ops"}, "password": {"right horse"}}); code != http.StatusForbidden || !strings.Contains(body, "stale") {
		t.Errorf("login without its token: %d", code)
	}
}

func TestUsersPages(t *testing.T) {
	e := newConsole(t, false)
	_, csrf := e.signIn(e.c, "ops", "right horse")
	add := func(addr, pw, pw2, quota string) (int, string) {
		code, body, _ := e.post(e.c, "/users", url.Values{"csrf": {csrf}, "address": {addr}, "name": {"Ann"}, "password": {pw}, "password2": {pw2}, "quota": {quota}})
		return code, body
	}
	if code, _ := add("Ann@Example.org", "pw", "pw", "10M"); code != http.StatusSeeOther {
		t.Fatalf("add: %d", code)
	}
	u, err := e.st.UserByAddress(context.Background(), "ann@example.org")
	if err != nil || u.QuotaBytes != 10<<20 || u.DisplayName != "Ann" {
		t.Fatalf("added user %+v, %v", u, err)
	}
	if ok, _ := directory.VerifyPassword(u.PasswordHash, "pw"); !ok {
		t.Error("password not set")
	}
	for _, tc := range []struct{ addr, pw, pw2, quota, want string }{
		{"not an address", "pw", "pw", "", "is not a valid address"},
		{"b@example.org", "pw", "other", "", "the two passwords differ"},
		{"b@example.org", "", "", "", "must not be empty"},
		{"b@example.org", "pw", "pw", "lots", "is not a size"},
		{"ann@example.org", "pw", "pw", "", "already exists"},
	} {
		code, body := add(tc.addr, tc.pw, tc.pw2, tc.quota)
		if code != http.StatusUnprocessableEntity || !strings.Contains(body, tc.want) {
			t.Errorf("add %+v: %d, want 422 with %q", tc, code, tc.want)
		}
		if tc.addr == "not an address" && !strings.Contains(body, `value="not an address"`) {
			t.Errorf("the form lost what was typed")
		}
	}
	_, body, _ := e.get(e.c, "/users?q=ANN")
	if !strings.Contains(body, `href="/users/ann@example.org"`) {
		t.Errorf("search did not find ann")
	}
	if _, body, _ = e.get(e.c, "/users?q=zzz"); !strings.Contains(body, "No user matches") {
		t.Errorf("search for nothing")
	}
	if code, body, _ := e.get(e.c, "/users/ann@example.org"); code != 200 || !strings.Contains(body, "POP3 policy") {
		t.Errorf("user page: %d", code)
	}

	post := func(action string, v url.Values) int {
		v.Set("csrf", csrf)
		code, _, _ := e.post(e.c, "/users/ann@example.org/"+action, v)
		return code
	}
	if code := post("policy", url.Values{"delay_mode": {"custom"}, "delay": {"120"}, "expire_mode": {"custom"}, "expire": {"7"}}); code != http.StatusSeeOther {
		t.Errorf("policy: %d", code)
	}
	u, _ = e.st.UserByAddress(context.Background(), "ann@example.org")
	if u.LoginDelay == nil || *u.LoginDelay != 2*time.Minute || u.Expire == nil || *u.Expire != 7*24*time.Hour {
		t.Errorf("policy not saved: %v %v", u.LoginDelay, u.Expire)
	}
	post("policy", url.Values{"delay_mode": {"default"}, "expire_mode": {"never"}})
	u, _ = e.st.UserByAddress(context.Background(), "ann@example.org")
	if u.LoginDelay != nil || u.Expire == nil || *u.Expire >= 0 {
		t.Errorf("policy default/never not saved: %v %v", u.LoginDelay, u.Expire)
	}
	if code := post("policy", url.Values{"delay_mode": {"custom"}, "delay": {"-3"}}); code != http.StatusUnprocessableEntity {
		t.Errorf("negative delay: %d", code)
	}
	// Issue 18: the spam score above which mail is refused.
	if code := post("spam", url.Values{"spam_reject_score": {"12.5"}}); code != http.StatusSeeOther {
		t.Errorf("spam: %d", code)
	}
	if u, _ = e.st.UserByAddress(context.Background(), "ann@example.org"); u.SpamRejectScore == nil || *u.SpamRejectScore != 12.5 {
		t.Errorf("spam score not saved: %v", u.SpamRejectScore)
	}
	if _, body, _ := e.get(e.c, "/users/ann@example.org"); !strings.Contains(body, `name="spam_reject_score" inputmode="decimal" value="12.5"`) {
		t.Errorf("the user page does not show the spam score")
	}
	if code := post("spam", url.Values{"spam_reject_score": {"lots"}}); code != http.StatusUnprocessableEntity {
		t.Errorf("spam score lots: %d", code)
	}
	post("spam", url.Values{"spam_reject_score": {""}})
	if u, _ = e.st.UserByAddress(context.Background(), "ann@example.org"); u.SpamRejectScore != nil {
		t.Errorf("spam score not cleared: %v", *u.SpamRejectScore)
	}
	post("disable", url.Values{"back": {"/users"}})
	if u, _ = e.st.UserByAddress(context.Background(), "ann@example.org"); u.Enabled {
		t.Error("disable did nothing")
	}
	post("password", url.Values{"password": {"new pw"}, "password2": {"new pw"}})
	u, _ = e.st.UserByAddress(context.Background(), "ann@example.org")
	if ok, _ := directory.VerifyPassword(u.PasswordHash, "new pw"); !ok {
		t.Error("password not changed")
	}
	post("address-add", url.Values{"extra": {"ann.other@example.org"}})
	if as, _ := e.st.ListAddresses(context.Background(), u.ID); len(as) != 1 {
		t.Errorf("extra addresses %v", as)
	}
	if code := post("delete", url.Values{}); code != http.StatusUnprocessableEntity {
		t.Errorf("delete without confirmation: %d", code)
	}
	if code := post("delete", url.Values{"confirm": {"on"}}); code != http.StatusSeeOther {
		t.Errorf("delete: %d", code)
	}
	if _, err := e.st.UserByAddress(context.Background(), "ann@example.org"); err == nil {
		t.Error("user not deleted")
	}
}

func TestServicesAndSettings(t *testing.T) {
	e := newConsole(t, false)
	_, csrf := e.signIn(e.c, "ops", "right horse")
	_, body, _ := e.get(e.c, "/")
	for _, want := range []string{`id="service-pop3"`, `action="/services/pop3/stop"`, `action="/services/smtp/start"`, "Received today"} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
	e.post(e.c, "/services/pop3/stop", url.Values{"csrf": {csrf}})
	e.post(e.c, "/services/smtp/start", url.Values{"csrf": {csrf}})
	e.post(e.c, "/reload", url.Values{"csrf": {csrf}, "back": {"/settings"}})
	// One section is saved at once; only the keys whose value changed are
	// set, an empty password keeps the one set.
	e.post(e.c, "/settings", url.Values{"csrf": {csrf}, "section": {"pop3"}, "v:pop3.login_delay": {"60"},
		"v:pop3.inactivity_timeout": {"600"}, "v:smtp.timeout": {"1"}})
	e.post(e.c, "/settings", url.Values{"csrf": {csrf}, "section": {"queue"}, "v:queue.relay_password": {""}, "v:queue.mx_port": {"25"}})
	e.post(e.c, "/queue/0/retry", url.Values{"csrf": {csrf}})
	if got, want := e.ctl.got(), "stop pop3|start smtp|reload|set pop3.login_delay=60|retry"; got != want {
		t.Errorf("controller calls %q, want %q", got, want)
	}
	// The outcome shows on the next page, once.
	_, body, _ = e.get(e.c, "/settings")
	if !strings.Contains(body, "pop3.login_delay changed") {
		t.Errorf("settings page lacks the flash")
	}
	if _, body, _ = e.get(e.c, "/settings"); strings.Contains(body, "pop3.login_delay changed") {
		t.Errorf("flash shown twice")
	}
	for _, p := range []string{"/aliases", "/domains", "/queue", "/journal", "/journal?event=received&since=24h", "/settings"} {
		if code, _, _ := e.get(e.c, p); code != 200 {
			t.Errorf("GET %s: %d", p, code)
		}
	}
	if code, _, _ := e.get(e.c, "/journal?event=nonsense"); code != http.StatusBadRequest {
		t.Errorf("bad event filter: %d", code)
	}
	if code, body, _ := e.get(e.client(), "/metrics"); code != 200 || !strings.Contains(body, "postoffice_up") {
		t.Errorf("/metrics: %d", code)
	}
}

func TestAliasesAndDomains(t *testing.T) {
	e := newConsole(t, false)
	_, csrf := e.signIn(e.c, "ops", "right horse")
	if code, _, _ := e.post(e.c, "/aliases", url.Values{"csrf": {csrf}, "address": {"team@example.org"}, "targets": {"a@example.org\nb@example.net"}}); code != http.StatusSeeOther {
		t.Errorf("set alias: %d", code)
	}
	a, err := e.st.Alias(context.Background(), "team@example.org")
	if err != nil || len(a.Targets) != 2 {
		t.Errorf("alias %+v, %v", a, err)
	}
	if code, body, _ := e.post(e.c, "/aliases", url.Values{"csrf": {csrf}, "address": {"x@example.org"}, "targets": {""}}); code != http.StatusUnprocessableEntity || !strings.Contains(body, "at least one target") {
		t.Errorf("alias without targets: %d", code)
	}
	e.post(e.c, "/domains", url.Values{"csrf": {csrf}, "name": {"Example.COM"}})
	if ok, _ := e.st.HasDomain(context.Background(), "example.com"); !ok {
		t.Error("domain not added")
	}
	// A domain in use is not deleted, and the page says why.
	e.post(e.c, "/domains/delete", url.Values{"csrf": {csrf}, "name": {"example.org"}})
	if _, body, _ := e.get(e.c, "/domains"); !strings.Contains(body, "example.org is still in use by") {
		t.Errorf("no reason shown for a refused domain deletion")
	}
	e.post(e.c, "/aliases/delete", url.Values{"csrf": {csrf}, "address": {"team@example.org"}})
	if _, err := e.st.Alias(context.Background(), "team@example.org"); err == nil {
		t.Error("alias not deleted")
	}
}

// TestParseQuota: the console reads quotas with the one size parser
// (config.ParseSize); empty is unlimited.
func TestParseQuota(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "0": 0, "1024": 1024, "500M": 500 << 20, "2g": 2 << 30, "1.5K": 1536, "10 MiB": 10 << 20} {
		if got, err := parseQuota(in); err != nil || got != want {
			t.Errorf("parseQuota(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "lots", "1X"} {
		if _, err := parseQuota(bad); err == nil || !strings.Contains(err.Error(), "500M") {
			t.Errorf("parseQuota(%q): %v", bad, err)
		}
	}
}

// hostStatus requests path with the given Host header.
func (e *consoleEnv) hostStatus(host, path string, header http.Header) int {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Host = host
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := e.client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The console answers only to its own names (DNS rebinding): those of
// [admin] hosts, hostname, the listen host, and loopback names when it
// listens on loopback or everywhere; anything else gets 421.
func TestHostHeader(t *testing.T) {
	e := newConsole(t, false)
	e.ctl.mu.Lock()
	e.ctl.cfg.Hostname = "mail.example.org"
	e.ctl.cfg.Admin.Listen = "127.0.0.1:8080"
	e.ctl.cfg.Admin.Hosts = []string{"Console.Example.ORG."}
	e.ctl.mu.Unlock()
	for _, tc := range []struct {
		host string
		want int
	}{
		{"127.0.0.1:8080", http.StatusSeeOther}, // to /login
		{"localhost:8080", http.StatusSeeOther},
		{"[::1]:8080", http.StatusSeeOther},
		{"mail.example.org", http.StatusSeeOther},
		{"console.example.org:8080", http.StatusSeeOther},
		{"attacker.example:8080", http.StatusMisdirectedRequest},
		{"192.0.2.1:8080", http.StatusMisdirectedRequest},
		{"mail.example.org.attacker.example", http.StatusMisdirectedRequest},
	} {
		if got := e.hostStatus(tc.host, "/", nil); got != tc.want {
			t.Errorf("Host %q: %d, want %d", tc.host, got, tc.want)
		}
	}
	if got := e.hostStatus("attacker.example", "/metrics", nil); got != http.StatusMisdirectedRequest {
		t.Errorf("/metrics for another host: %d", got)
	}

	// On a public address: that address, the configured names, not
	// localhost (the console cannot be reached there).
	e.ctl.mu.Lock()
	e.ctl.cfg.Admin.Listen = "192.0.2.10:8080"
	e.ctl.mu.Unlock()
	for host, want := range map[string]int{"192.0.2.10:8080": http.StatusSeeOther, "localhost": http.StatusMisdirectedRequest,
		"mail.example.org": http.StatusSeeOther, "192.0.2.11": http.StatusMisdirectedRequest} {
		if got := e.hostStatus(host, "/", nil); got != want {
			t.Errorf("listening on 192.0.2.10, Host %q: %d, want %d", host, got, want)
		}
	}
	// On every address: any address, and loopback names.
	e.ctl.mu.Lock()
	e.ctl.cfg.Admin.Listen = ":8080"
	e.ctl.mu.Unlock()
	for host, want := range map[string]int{"192.0.2.11:8080": http.StatusSeeOther, "localhost": http.StatusSeeOther,
		"[2001:db8::1]:8080": http.StatusSeeOther, "attacker.example": http.StatusMisdirectedRequest} {
		if got := e.hostStatus(host, "/", nil); got != want {
			t.Errorf("listening on :8080, Host %q: %d, want %d", host, got, want)
		}
	}
}

// [admin] metrics_token: /metrics needs "Authorization: Bearer TOKEN".
func TestMetricsToken(t *testing.T) {
	e := newConsole(t, false)
	host := strings.TrimPrefix(e.srv.URL, "http://")
	if got := e.hostStatus(host, "/metrics", nil); got != http.StatusOK {
		t.Fatalf("/metrics without a token configured: %d", got)
	}
	e.ctl.mu.Lock()
	e.ctl.cfg.Admin.MetricsToken = "s3cret-token-0123456789"
	e.ctl.mu.Unlock()
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"Basic czNjcmV0LXRva2VuLTAxMjM0NTY3ODk=", http.StatusUnauthorized},
		{"Bearer s3cret-token-0123456789", http.StatusOK},
	} {
		h := http.Header{}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		if got := e.hostStatus(host, "/metrics", h); got != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, got, tc.want)
		}
	}
}

// TestQueueReplies: the queue page renders a remote reply from its parts
// (code, enhanced status, text, host, command), and our own reason
// beside it, each escaped.
func TestQueueReplies(t *testing.T) {
	e := newConsole(t, false)
	e.signIn(e.c, "ops", "right horse")
	ctx := context.Background()
	id, err := e.st.Enqueue(ctx, store.QueueEnvelope{From: "a@example.org", To: []string{"b@remote.test", "c@remote.test"}}, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.UpdateQueued(ctx, id, store.QueueUpdate{Attempted: true, At: time.Now(), Recipients: []store.QueueRecipient{
		{Address: "b@remote.test", State: store.QueuePending, Status: "4.7.1", RemoteMTA: "mx.remote.test",
			Remote: store.RemoteReply{Reply: smtpreply.New(451, "4.7.1", "Greylisted <try later>"), Command: "RCPT TO", Host: "mx.remote.test[192.0.2.1]:25"}},
		{Address: "c@remote.test", State: store.QueuePending, Status: "4.4.1", LastError: "mx.remote.test[192.0.2.1]:25: connection refused (during connect)"},
	}}); err != nil {
		t.Fatal(err)
	}
	_, body, _ := e.get(e.c, "/queue")
	for _, want := range []string{
		`<span class="reply-code">451 4.7.1</span> Greylisted &lt;try later&gt; <span class="muted">from mx.remote.test[192.0.2.1]:25, in reply to RCPT TO</span>`,
		`title="mx.remote.test[192.0.2.1]:25 said: 451 4.7.1 Greylisted &lt;try later&gt; (in reply to RCPT TO)"`,
		`connection refused (during connect)</div>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("queue page lacks %s", want)
		}
	}
}

// TestCertificatesAndDomainPages: the dashboard lists the certificates
// with days left and a warning; the user page gives the profile link; a
// domain's page lists its records and, asked, what DNS has; adding a
// domain or a user makes the server look at the certificates.
func TestCertificatesAndDomainPages(t *testing.T) {
	e := newConsole(t, false)
	_, csrf := e.signIn(e.c, "ops", "right horse")
	now := e.now
	e.ctl.certs = []control.Certificate{
		{Name: "mail.example.test", NotAfter: now.Add(80 * 24 * time.Hour), Issuer: "Pebble Intermediate CA 1"},
		{Name: "mta-sts.example.test", NotAfter: now.Add(20*24*time.Hour + time.Hour), Issuer: "Pebble Intermediate CA 1",
			LastError: "new order: connection refused", LastErrorAt: now.Add(-time.Hour), Failures: 3},
		{Name: "autoconfig.example.test", LastError: "urn:ietf:params:acme:error:dns"},
	}
	_, body, _ := e.get(e.c, "/")
	for _, want := range []string{`id="certificates"`, `id="cert-mail-example-test"`, `<td class="num">80</td>`, `<span class="badge badge-ok">valid</span>`,
		`<td class="num">20</td>`, "renewal failing: new order: connection refused", "3 failures in a row",
		"not obtained: urn:ietf:params:acme:error:dns"} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
	e.ctl.certs = nil
	if _, body, _ = e.get(e.c, "/"); strings.Contains(body, `id="certificates"`) {
		t.Error("a certificates card without ACME")
	}

	for _, addr := range []string{"ann@example.org", "nolink@example.org"} {
		e.post(e.c, "/users", url.Values{"csrf": {csrf}, "address": {addr}, "password": {"pw"}, "password2": {"pw"}})
	}
	_, body, _ = e.get(e.c, "/users/ann@example.org")
	if !strings.Contains(body, `href="https://mail.example.test/mail.mobileconfig?t=ann%40example.org"`) || !strings.Contains(body, "2030-01-02") {
		t.Errorf("user page lacks the profile link:\n%s", body)
	}
	if _, body, _ = e.get(e.c, "/users/nolink@example.org"); !strings.Contains(body, "No profile link: no [http] listener") {
		t.Error("user page does not say why there is no link")
	}

	e.post(e.c, "/domains", url.Values{"csrf": {csrf}, "name": {"example.com"}})
	if got := e.ctl.got(); got != "domains|domains|domains" {
		t.Errorf("controller calls %q: want the server told of each user and domain added", got)
	}
	_, body, _ = e.get(e.c, "/domains")
	if !strings.Contains(body, `href="/domains/example.com"`) || !strings.Contains(body, "acme: checking now") {
		t.Errorf("domains page: no link to the domain's page, or no flash")
	}
	code, body, _ := e.get(e.c, "/domains/example.com")
	for _, want := range []string{`id="record-list"`, "_submissions._tcp.example.com.", "0 1 465 mail.example.test.", `id="zone"`, "example.com.\t3600\tIN\tMX\t10 mail.example.test."} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("domain page (%d) lacks %q", code, want)
		}
	}
	code, body, _ = e.get(e.c, "/domains/example.com?check=1")
	if code != 200 || !strings.Contains(body, `id="findings"`) || !strings.Contains(body, "records missing or wrong") ||
		!strings.Contains(body, `<span class="badge badge-warn">missing</span>`) {
		t.Errorf("domain check (%d):\n%s", code, body)
	}
	if code, _, _ := e.get(e.c, "/domains/nowhere.example"); code != http.StatusNotFound {
		t.Errorf("unknown domain: %d", code)
	}
}
