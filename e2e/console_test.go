package e2e

import (
	"context"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// The web console, driven by a real headless Chromium.

// chromium returns the browser to drive, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium is not installed (install it, e.g. apt-get install chromium, or run .ci/run)")
	return ""
}

// screenshotDir is where the console tests leave a screenshot of each
// page: $POSTOFFICE_SCREENSHOTS, or postoffice-console-screenshots in the
// temporary directory.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("POSTOFFICE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "postoffice-console-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one headless Chromium tab on a console.
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string
}

func newBrowser(t *testing.T, base string) *browser {
	t.Helper()
	exe := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelB := chromedp.NewContext(actx)
	ctx, cancelC := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelC(); cancelB(); cancelA() })
	// Accept the confirmation questions of app.js.
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	b := &browser{t: t, ctx: ctx, base: strings.TrimSuffix(base, "/"), shot: screenshotDir(t)}
	b.do(chromedp.EmulateViewport(1366, 900))
	return b
}

func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, steps...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) open(path string) {
	b.t.Helper()
	b.do(chromedp.Navigate(b.base+path), chromedp.WaitReady(chromedp.CSS("main")))
}

func (b *browser) location() string {
	b.t.Helper()
	l, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		b.t.Fatal(err)
	}
	return strings.TrimPrefix(l, b.base)
}

// submit runs steps that submit a form (a click, an Enter) and waits
// until the next page is loaded: the current one is marked first.
func (b *browser) submit(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	b.do(chromedp.Evaluate[chromedp.Void](`document.body.dataset.stale = "1"`))
	b.do(steps...)
	b.do(chromedp.WaitReady(chromedp.CSS("body:not([data-stale])")), chromedp.WaitReady(chromedp.CSS("main")))
}

// screenshot saves the whole page as name.png.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(b.shot, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot %s", path)
}

// submitQueued sends a message for a remote address through submission,
// authenticated (allowed in clear on loopback), so that it is queued.
func submitQueued(t *testing.T, addr, user, pass, to string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	steps := []func() error{
		func() error { return c.Hello("console.test") },
		func() error { return c.Auth(smtp.PlainAuth("", user, pass, "127.0.0.1")) },
		func() error { return c.Mail(user) },
		func() error { return c.Rcpt(to) },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			t.Fatal(err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, "From: %s\r\nTo: %s\r\nSubject: for the queue\r\nMessage-ID: <console-q@example.org>\r\n\r\nhello\r\n", user, to)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	c.Quit()
}

// TestConsole drives the console as an operator would: a wrong password is
// refused with a clear message; signed in (by keyboard), the dashboard
// stops and starts POP3; a user is added and found in the list; a queued
// message is retried; a POST without the CSRF token is refused. Each page
// is saved as a screenshot.
func TestConsole(t *testing.T) {
	chromium(t)
	in := newInstanceWith(t, map[string]string{"queue": "retry_initial = 3600"})
	in.must("correct horse\n", "admin", "add", "ops", "--password-stdin")
	in.addUser("alice@example.org", "pw")
	in.deliver("alice@example.org", "Message-ID: <c1@example.org>\r\nSubject: hello\r\n\r\nhi\r\n")
	in.start()
	submitQueued(t, in.addr("submission"), "alice@example.org", "pw", "friend@remote.test")
	b := newBrowser(t, "http://"+in.addr("admin"))

	// Signed out, the console sends us to sign in.
	b.open("/users")
	if loc := b.location(); !strings.HasPrefix(loc, "/login") {
		t.Fatalf("signed out, / is at %q", loc)
	}
	b.screenshot("login")
	b.submit(chromedp.SendKeys(chromedp.CSS("#name"), "ops"), chromedp.SendKeys(chromedp.CSS("#password"), "wrong\n"))
	if msg := b.text("#login-error"); msg != "Wrong name or password." {
		t.Errorf("wrong password: %q", msg)
	}
	b.screenshot("login-error")
	// Keyboard only: the name is kept, Enter submits.
	b.submit(chromedp.SendKeys(chromedp.CSS("#password"), "correct horse\n"))
	if loc := b.location(); loc != "/users" {
		t.Errorf("after sign-in at %q, want /users (where we were going)", loc)
	}

	// Dashboard: stop and start POP3.
	b.open("/")
	b.do(chromedp.WaitVisible(chromedp.CSS("#service-pop3")))
	if got := b.text("#service-pop3 .badge"); got != "running" {
		t.Errorf("pop3 badge %q", got)
	}
	if got := b.text("#stat-received"); got != "2" {
		t.Errorf("received today %q, want 2 (deliver and submission)", got)
	}
	b.screenshot("dashboard")
	pop3Addr := in.addr("pop3")
	b.submit(chromedp.Click(chromedp.CSS(`#service-pop3 button`)))
	if got := b.text(".flash-ok"); got != "pop3 stopped" {
		t.Errorf("flash after stop: %q", got)
	}
	if got := b.text("#service-pop3 .badge"); got != "stopped" {
		t.Errorf("pop3 badge after stop %q", got)
	}
	if !refused(pop3Addr) {
		t.Error("pop3 accepts connections after the console stopped it")
	}
	if running, _, _ := in.service("smtp"); !running {
		t.Error("smtp stopped too")
	}
	b.screenshot("dashboard-pop3-stopped")
	b.submit(chromedp.Click(chromedp.CSS(`#service-pop3 button`)))
	if got := b.text("#service-pop3 .badge"); got != "running" {
		t.Errorf("pop3 badge after start %q", got)
	}
	p := dialPOP(t, pop3Addr)
	p.login("alice@example.org", "pw")
	p.quit()

	// Users: add one, see it in the list, find it by search. The form's
	// fields come in pairs on one line (the password and its repetition
	// never split), at the console's usual widths.
	for _, width := range []int64{1024, 1280, 1366} {
		b.do(chromedp.EmulateViewport(width, 900))
		b.open("/users")
		var tops map[string]float64
		b.eval(`Object.fromEntries(["address","name","password","password2"].map(id => [id, document.getElementById(id).getBoundingClientRect().top]))`, &tops)
		if tops["address"] != tops["name"] || tops["password"] != tops["password2"] || tops["password"] <= tops["address"] {
			t.Errorf("at %d px the add-user fields are not in pairs: %v", width, tops)
		}
	}
	b.do(chromedp.EmulateViewport(1366, 900))
	b.open("/users")
	b.do(
		chromedp.SendKeys(chromedp.CSS("#address"), "bob@example.org"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Bob Builder"),
		chromedp.SendKeys(chromedp.CSS("#password"), "bob pw"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "bob pw"),
		chromedp.SendKeys(chromedp.CSS("#quota"), "50M"),
	)
	b.submit(chromedp.Click(chromedp.CSS("#add-user button")))
	if got := b.text(".flash-ok"); got != "Added user bob@example.org." {
		t.Errorf("flash after add: %q", got)
	}
	if list := b.text("#users"); !strings.Contains(list, "bob@example.org") || !strings.Contains(list, "Bob Builder") {
		t.Errorf("users list lacks bob:\n%s", list)
	}
	b.screenshot("users")
	b.submit(chromedp.SendKeys(chromedp.CSS("#q"), "BUILDER\n"))
	if list := b.text("#users"); !strings.Contains(list, "bob@example.org") || strings.Contains(list, "alice@example.org") {
		t.Errorf("search for BUILDER:\n%s", list)
	}
	// The new user is real: it logs in over POP3.
	p = dialPOP(t, pop3Addr)
	p.login("bob@example.org", "bob pw")
	p.quit()
	// A bad address is refused with the reason, and the form keeps the rest
	// (the browser's own check of type=email is switched off to reach the
	// server's).
	b.open("/users")
	b.do(
		chromedp.Evaluate[chromedp.Void](`document.getElementById("address").type = "text"`),
		chromedp.SendKeys(chromedp.CSS("#address"), "not-an-address"),
		chromedp.SendKeys(chromedp.CSS("#name"), "Nobody"),
		chromedp.SendKeys(chromedp.CSS("#password"), "x"),
		chromedp.SendKeys(chromedp.CSS("#password2"), "x"),
	)
	b.submit(chromedp.Click(chromedp.CSS("#add-user button")))
	if got := b.text("#form-error"); !strings.Contains(got, `"not-an-address" is not a valid address`) {
		t.Errorf("bad address error: %q", got)
	}
	if v, _ := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS("#name"))); v != "Nobody" {
		t.Errorf("the form lost the name: %q", v)
	}
	b.screenshot("users-error")

	// User page.
	b.open("/users/alice@example.org")
	b.do(chromedp.WaitVisible(chromedp.CSS("h1")))
	b.screenshot("user")

	// The queue: retry the message, and the attempt counter moves.
	b.open("/queue")
	b.do(chromedp.WaitVisible(chromedp.CSS("#queue")))
	attempts := func() int {
		s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("#queue tbody tr td:nth-child(6)")))
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimSpace(s))
		return n
	}
	opsWait(t, "the first delivery attempt", func() bool { b.open("/queue"); return attempts() >= 1 })
	before := attempts()
	b.screenshot("queue")
	b.submit(chromedp.Click(chromedp.CSS(`#queue form[action$="/retry"] button`)))
	if got := b.text(".flash-ok"); !strings.Contains(got, "will be tried again now") {
		t.Errorf("flash after retry: %q", got)
	}
	opsWait(t, "the retried attempt", func() bool { b.open("/queue"); return attempts() > before })
	// A long error (the failed DNS lookup) takes at most two lines, here
	// and in the dashboard's recent mail; the whole text is its title.
	maxLines := func(sel string) {
		t.Helper()
		var r struct {
			N     int
			Lines float64
			Title string
		}
		b.eval(`(() => { const es = [...document.querySelectorAll(`+"`"+sel+"`"+`)];
			const lines = Math.max(0, ...es.map(e => e.getBoundingClientRect().height / parseFloat(getComputedStyle(e).lineHeight)));
			return {N: es.length, Lines: lines, Title: es.length ? es[0].title : ""}; })()`, &r)
		if r.N == 0 || r.Lines > 2.05 || !strings.Contains(r.Title, "remote.test") {
			t.Errorf("%s: %d elements, up to %.1f lines, title %q: want the error clamped to 2 lines", sel, r.N, r.Lines, r.Title)
		}
	}
	maxLines("#queue .error-text")
	b.open("/")
	maxLines(".table-journal .clamp")
	b.open("/queue")

	// The other pages render; a domain's page has its DKIM key's record
	// (made with the CLI while serve runs) and DMARC.
	in.must("", "dkim", "keygen", "example.org", "--algorithm", "ed25519", "--selector", "console")
	for _, pg := range []struct{ path, shot, want string }{
		{"/aliases", "aliases", "Add or replace an alias"},
		{"/domains", "domains", "example.org"},
		{"/domains/example.org", "domain-dkim", "console._domainkey.example.org"},
		{"/domains/example.org", "domain-dkim", "_dmarc.example.org"},
		{"/settings", "settings", "[pop3]"},
		{"/journal?user=alice%40example.org", "journal", "delivered"},
	} {
		b.open(pg.path)
		if body := b.text("main"); !strings.Contains(body, pg.want) {
			t.Errorf("%s lacks %q", pg.path, pg.want)
		}
		b.screenshot(pg.shot)
	}

	// The alias form: its labels on one line, its placeholder whole.
	b.open("/aliases")
	var alias struct{ A, T, Text, Field float64 }
	b.eval(`(() => { const i = document.getElementById("address"); const c = document.createElement("canvas").getContext("2d");
		c.font = getComputedStyle(i).font;
		return {A: document.querySelector("label[for=address]").getBoundingClientRect().top,
			T: document.querySelector("label[for=targets]").getBoundingClientRect().top,
			Text: c.measureText(i.placeholder).width, Field: i.clientWidth - parseFloat(getComputedStyle(i).paddingLeft) - parseFloat(getComputedStyle(i).paddingRight)}; })()`, &alias)
	if alias.A != alias.T || alias.Text > alias.Field {
		t.Errorf("alias form: labels at %v and %v, placeholder %.0f px in %.0f px", alias.A, alias.T, alias.Text, alias.Field)
	}

	// Server attributes: one form and one Save button per section, folded
	// (a short page); a section saved changes its keys at run time, and
	// each key says where its value comes from.
	b.open("/settings")
	var settings struct{ Sections, Saves, Height int }
	b.eval(`({Sections: document.querySelectorAll("details.settings-section").length,
		Saves: document.querySelectorAll("details.settings-section button").length,
		Height: document.documentElement.scrollHeight})`, &settings)
	if settings.Sections < 10 || settings.Saves != settings.Sections || settings.Height > 2000 {
		t.Errorf("settings page: %+v; want a Save per section and a page under 2000 px", settings)
	}
	b.open("/settings?open=pop3#section-pop3")
	b.do(chromedp.WaitVisible(chromedp.CSS("#v-pop3-login_delay")))
	if src := b.text("#pop3-login_delay .source"); src != "default" {
		t.Errorf("pop3.login_delay's source before: %q", src)
	}
	b.screenshot("settings-pop3")
	b.do(chromedp.SetValue(chromedp.CSS("#v-pop3-login_delay"), "30"))
	b.submit(chromedp.Click(chromedp.CSS("#section-pop3 .settings-save button")))
	if got := b.text(".flash-ok"); !strings.Contains(got, `pop3.login_delay: "0s" -> "30s" (written to `+filepath.Join(in.dir, "data", "settings.toml")+")") {
		t.Errorf("flash after saving [pop3]: %q", got)
	}
	if src := b.text("#pop3-login_delay .source"); src != "run time" {
		t.Errorf("pop3.login_delay's source after saving: %q", src)
	}
	if v := strings.TrimSpace(in.must("", "config", "show", "pop3.login_delay")); v != `"30s"` {
		t.Errorf("config show after the console saved 30: %q", v)
	}

	// CSRF: the same signed-in browser posting a form without the token
	// (as a forged form would) is refused.
	b.submit(chromedp.Evaluate[chromedp.Void](`(() => {
		const f = document.createElement("form");
		f.method = "post"; f.action = "/users";
		for (const [k, v] of Object.entries({address: "mallory@example.org", password: "x", password2: "x"})) {
			const i = document.createElement("input"); i.name = k; i.value = v; f.appendChild(i);
		}
		document.body.appendChild(f); f.submit();
	})()`))
	if got := b.text("main"); !strings.Contains(got, "CSRF check failed") {
		t.Errorf("POST without the CSRF token answered:\n%s", got)
	}
	b.screenshot("csrf-refused")
	if r := in.run("", "user", "list"); strings.Contains(r.stdout, "mallory") {
		t.Error("the POST without token added a user")
	}
	// Signing out ends the session.
	b.open("/")
	b.submit(chromedp.Click(chromedp.CSS(".who button")))
	b.open("/users")
	if loc := b.location(); !strings.HasPrefix(loc, "/login") {
		t.Errorf("after sign-out /users is at %q", loc)
	}
}
