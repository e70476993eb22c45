package smtpd

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// hookBackend is the fake backend with session hooks (SessionOpener).
type hookBackend struct {
	*fakeBackend
	h *fakeHooks
}

func (b hookBackend) OpenSession(_ context.Context, c ConnInfo) SessionHooks {
	b.h.mu.Lock()
	b.h.calls = append(b.h.calls, "open "+c.Hostname)
	b.h.mu.Unlock()
	return b.h
}

// fakeHooks records the calls and refuses as refuse says.
type fakeHooks struct {
	mu     sync.Mutex
	calls  []string
	refuse func(call string) *smtpreply.Reply
}

func (h *fakeHooks) call(s string) *smtpreply.Reply {
	h.mu.Lock()
	h.calls = append(h.calls, s)
	f := h.refuse
	h.mu.Unlock()
	if f != nil {
		return f(s)
	}
	return nil
}

func (h *fakeHooks) Calls() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.calls, "|")
}

func (h *fakeHooks) Connect(context.Context) *smtpreply.Reply          { return h.call("connect") }
func (h *fakeHooks) Helo(_ context.Context, n string) *smtpreply.Reply { return h.call("helo " + n) }
func (h *fakeHooks) TLS(tls.ConnectionState)                           { h.call("tls") }
func (h *fakeHooks) Auth(mech, user string)                            { h.call("auth " + mech + " " + user) }
func (h *fakeHooks) Mail(_ context.Context, env *Envelope, params []string) *smtpreply.Reply {
	if env.Hooks != h {
		return h.call("mail without Envelope.Hooks")
	}
	return h.call("mail " + env.From + " " + strings.Join(params, ","))
}
func (h *fakeHooks) Rcpt(_ context.Context, _ *Envelope, rcpt string, params []string) *smtpreply.Reply {
	return h.call("rcpt " + rcpt + " " + strings.Join(params, ","))
}
func (h *fakeHooks) Data(context.Context, *Envelope) *smtpreply.Reply { return h.call("data") }
func (h *fakeHooks) Reset(context.Context)                            { h.call("reset") }
func (h *fakeHooks) Close()                                           { h.call("close") }

func hookHarness(t *testing.T, refuse func(string) *smtpreply.Reply) (*harness, *fakeHooks) {
	hooks := &fakeHooks{refuse: refuse}
	h := newHarness(t, harnessOpt{cfg: func(c *Config) {
		c.Backend = hookBackend{c.Backend.(*fakeBackend), hooks}
		c.MaxErrors = 1000
	}})
	return h, hooks
}

func reply(code int, status, text string) *smtpreply.Reply {
	r := smtpreply.New(code, status, text)
	return &r
}

// The hooks see the conversation in order, with the MAIL and RCPT
// parameters as the client wrote them and the Envelope carrying them; a
// refused recipient is not added, a refusal at DATA ends the
// transaction (and, for BDAT, its chunk is read and dropped first), RSET
// and the end of the session reset the transaction.
func TestSessionHooks(t *testing.T) {
	h, hooks := hookHarness(t, func(call string) *smtpreply.Reply {
		switch {
		case strings.HasPrefix(call, "rcpt no@"):
			return reply(550, "5.7.1", "Not this one, says the filter")
		case call == "data":
			return reply(451, "4.7.1", "Later, says the filter")
		}
		return nil
	})
	c := h.dial()
	run(t, c, []step{
		{send: "EHLO client.test", want: "250-mx.test Hello client.test\n*"},
		{send: "MAIL FROM:<a@sender.test> BODY=8BITMIME", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<no@example.org>", want: "550 5.7.1 Not this one, says the filter"},
		{send: "RCPT TO:<b@example.org> NOTIFY=NEVER", want: "250 2.1.5 Ok"},
		{send: "DATA", want: "451 4.7.1 Later, says the filter"},
		{send: "RCPT TO:<b@example.org>", want: "503 5.5.1 Need MAIL command first"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "BDAT 3 LAST\r\nabc", raw: true, want: "451 4.7.1 Later, says the filter"},
		{send: "NOOP", want: "250 2.0.0 Ok"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RSET", want: "250 2.0.0 Ok"},
		{send: "QUIT", want: "221 2.0.0 Bye"},
	})
	h.srv.Close()
	want := "open mx.test|connect|helo client.test|mail a@sender.test BODY=8BITMIME|rcpt no@example.org |" +
		"rcpt b@example.org NOTIFY=NEVER|data|reset|mail a@sender.test |rcpt b@example.org |data|reset|" +
		"mail a@sender.test |reset|close"
	if got := hooks.Calls(); got != want {
		t.Errorf("calls\n%s, want\n%s", got, want)
	}
	if n := len(h.be.deliveries()); n != 0 {
		t.Errorf("%d deliveries after refusals", n)
	}
}

// A refusal at connect or HELO is the reply to every MAIL of the
// session (as Postfix gives a milter's), and the backend is not asked.
func TestSessionHooksRefuseSession(t *testing.T) {
	for _, at := range []string{"connect", "helo client.test"} {
		t.Run(at, func(t *testing.T) {
			h, _ := hookHarness(t, func(call string) *smtpreply.Reply {
				if call == at {
					return reply(554, "5.7.1", "Go away, says the filter")
				}
				return nil
			})
			c := h.dial()
			run(t, c, []step{
				{send: "EHLO client.test", want: "250-mx.test Hello client.test\n*"},
				{send: "MAIL FROM:<a@sender.test>", want: "554 5.7.1 Go away, says the filter"},
				{send: "MAIL FROM:<a@sender.test>", want: "554 5.7.1 Go away, says the filter"},
				{send: "QUIT", want: "221 2.0.0 Bye"},
			})
			if h.be.sawSender("a@sender.test") {
				t.Errorf("the backend was asked about a sender of a refused session")
			}
		})
	}
}

// Deliver finds the hooks in the envelope, and the transaction it ends
// is not reset after it.
func TestSessionHooksDeliver(t *testing.T) {
	h, hooks := hookHarness(t, nil)
	var seen SessionHooks
	h.be.deliverErr = func(env *Envelope, _ []byte) error {
		seen = env.Hooks
		return nil
	}
	c := h.dial()
	run(t, c, []step{
		{send: "EHLO client.test", want: "250-mx.test Hello client.test\n*"},
		{send: "MAIL FROM:<a@sender.test>", want: "250 2.1.0 Ok"},
		{send: "RCPT TO:<b@example.org>", want: "250 2.1.5 Ok"},
		{send: "DATA", want: "354 *"},
		{send: "Subject: x\r\n\r\nhi\r\n.", want: "250 2.0.0 Ok: queued as *"},
	})
	if seen != hooks {
		t.Errorf("Deliver saw Envelope.Hooks %v, want the session's", seen)
	}
	if got := hooks.Calls(); !strings.HasSuffix(got, "|mail a@sender.test |rcpt b@example.org |data|reset") {
		t.Errorf("calls %s", got)
	}
}
