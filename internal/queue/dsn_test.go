package queue

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/store"
)

func (h *harness) enqueueEnv(env store.QueueEnvelope, body string) int64 {
	h.t.Helper()
	id, err := h.st.Enqueue(context.Background(), env, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	if now := time.Now().Truncate(time.Second); now.After(h.now) {
		h.now = now
	}
	h.mu.Unlock()
	return id
}

var (
	notifySuccess = dsn.RcptParams{Notify: []string{dsn.NotifySuccess}}
	notifyNever   = dsn.RcptParams{Notify: []string{dsn.NotifyNever}}
)

// A next hop that offers DSN gets RET, ENVID, NOTIFY and ORCPT (RFC 3461
// section 5.2.1) and takes the duty to report over: no notification
// comes from here for a success.
func TestDSNPassedOn(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t, withDSN())
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	id := h.enqueueEnv(store.QueueEnvelope{From: "alice@a.test", To: []string{"bob@b.test", "carol@b.test", "dan@b.test"},
		Ret: dsn.RetHdrs, EnvID: "QQ 314+159",
		DSN: []dsn.RcptParams{
			{Notify: []string{dsn.NotifySuccess, dsn.NotifyFailure}, ORcptType: "rfc822", ORcpt: "bob-orig@b.test"},
			notifyNever, {},
		}}, testMsg)
	h.attempt()
	txns := k.transactions()
	if len(txns) != 1 {
		t.Fatalf("transactions %+v", txns)
	}
	if want := "MAIL FROM:<alice@a.test> SIZE=" + strconv.Itoa(len(testMsg)) + " RET=HDRS ENVID=QQ+20314+2B159"; txns[0].mail != want {
		t.Errorf("MAIL %q, want %q", txns[0].mail, want)
	}
	if want := []string{"RCPT TO:<bob@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob-orig@b.test",
		"RCPT TO:<carol@b.test> NOTIFY=NEVER", "RCPT TO:<dan@b.test>"}; !slices.Equal(txns[0].rcptCmds, want) {
		t.Errorf("RCPT %q, want %q", txns[0].rcptCmds, want)
	}
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued")
	}
	if b := h.bounces.sent(); len(b) != 0 {
		t.Errorf("notifications sent: %+v", b)
	}
}

// A next hop without DSN: NOTIFY=SUCCESS gets a "relayed" report (RFC
// 3461 section 5.2.2) with ENVID and ORCPT (RFC 3464 sections 2.2.1 and
// 2.3.1) and the next hop's reply; NOTIFY=NEVER, or a list without
// FAILURE, gets no bounce; the report that cannot be sent yet is sent
// later, and the message stays until it is.
func TestDSNRelayedAndNever(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t, withRcpt(func(to string) string {
		if strings.HasPrefix(to, "gone") {
			return "550 5.1.1 No such user"
		}
		return ""
	}))
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	h.bounces.err = errors.New("store busy")
	id := h.enqueueEnv(store.QueueEnvelope{From: "alice@a.test",
		To:    []string{"bob@b.test", "carol@b.test", "gone1@b.test", "gone2@b.test"},
		DSN:   []dsn.RcptParams{{Notify: []string{dsn.NotifySuccess}, ORcptType: "rfc822", ORcpt: "bob-orig@b.test"}, {}, notifyNever, notifySuccess},
		EnvID: "ENV-7"}, testMsg)
	h.attempt()
	if txns := k.transactions(); len(txns) != 1 || strings.Contains(txns[0].mail, "ENVID") || strings.Contains(strings.Join(txns[0].rcptCmds, " "), "NOTIFY") {
		t.Fatalf("transactions %+v, want one without DSN parameters", txns)
	}
	// The report could not be sent: bob is owed it, the message stays.
	if rc := h.recipient(id, "bob@b.test"); rc.State != store.QueueDelivered || rc.Notified {
		t.Errorf("bob before the report: %+v", rc)
	}
	for _, a := range []string{"carol@b.test", "gone1@b.test", "gone2@b.test"} {
		if rc := h.recipient(id, a); !rc.Notified {
			t.Errorf("%s is owed a notification: %+v", a, rc)
		}
	}
	h.bounces.mu.Lock()
	h.bounces.err = nil
	h.bounces.mu.Unlock()
	h.advance(time.Minute)
	h.attempt()
	if _, ok := h.queued(id); ok {
		t.Errorf("message still queued once the report was sent")
	}
	if len(k.transactions()) != 1 {
		t.Errorf("delivered again")
	}
	b := h.bounces.sent()
	if len(b) != 1 {
		t.Fatalf("%d notifications, want the relayed report alone: %+v", len(b), b)
	}
	msg := b[0].msg
	for _, want := range []string{"Subject: Successful Mail Delivery Report\r\n", "Original-Envelope-Id: ENV-7\r\n",
		"Original-Recipient: rfc822; bob-orig@b.test\r\n", "Final-Recipient: rfc822; bob@b.test\r\n", "Action: relayed\r\n",
		"Status: 2.0.0\r\n", "Remote-MTA: dns; mx.b.test\r\n", "Diagnostic-Code: smtp; 250 2.0.0 ok: queued as 1\r\n"} {
		if !strings.Contains(msg, want) {
			t.Errorf("report lacks %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "carol@b.test") || strings.Contains(msg, "gone") {
		t.Errorf("report names other recipients:\n%s", msg)
	}
}

// RET (RFC 3461 section 4.3): FULL returns the whole message in a bounce,
// HDRS (and no RET) its header section only.
func TestDSNRet(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	k := newSink(t, withRcpt(func(string) string { return "550 5.1.1 No such user" }))
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", k})
	full := h.enqueueEnv(store.QueueEnvelope{From: "full@a.test", To: []string{"x@b.test"}, Ret: dsn.RetFull}, testMsg)
	hdrs := h.enqueueEnv(store.QueueEnvelope{From: "hdrs@a.test", To: []string{"x@b.test"}, Ret: dsn.RetHdrs}, testMsg)
	h.attempt()
	for _, id := range []int64{full, hdrs} {
		if _, ok := h.queued(id); ok {
			t.Errorf("message %d still queued", id)
		}
	}
	got := map[string]string{}
	for _, b := range h.bounces.sent() {
		got[b.to] = b.msg
	}
	if m := got["full@a.test"]; !strings.Contains(m, "Content-Type: message/rfc822\r\n") || !strings.Contains(m, "\r\n\r\nHello.\r\n.leading dot\r\n") {
		t.Errorf("RET=FULL bounce:\n%s", m)
	}
	if m := got["hdrs@a.test"]; !strings.Contains(m, "Content-Type: text/rfc822-headers\r\n") || strings.Contains(m, "Hello.") ||
		!strings.Contains(m, "Subject: hi\r\n") {
		t.Errorf("RET=HDRS bounce:\n%s", m)
	}
}

// The delay warning (RFC 3464 action "delayed") names the recipients
// that did not decline it: NOTIFY without DELAY declines, no NOTIFY does
// not (RFC 3461 section 4.1); when all declined, none is sent.
func TestDSNDelay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, func(c *Config) { c.DelayWarning = 30 * time.Minute; c.RetryInitial = 20 * time.Minute })
	h.mx("b.test", mxHost{"mx.b.test", 10, "127.0.0.2", nil}) // refuses connections
	id := h.enqueueEnv(store.QueueEnvelope{From: "alice@a.test", To: []string{"delay@b.test", "fail@b.test", "plain@b.test"},
		DSN: []dsn.RcptParams{{Notify: []string{dsn.NotifyDelay}}, {Notify: []string{dsn.NotifyFailure}}, {}}}, testMsg)
	declined := h.enqueueEnv(store.QueueEnvelope{From: "bob@a.test", To: []string{"x@b.test"},
		DSN: []dsn.RcptParams{{Notify: []string{dsn.NotifySuccess, dsn.NotifyFailure}}}}, testMsg)
	for range 4 {
		h.attempt()
		h.advance(20 * time.Minute)
	}
	b := h.bounces.sent()
	if len(b) != 1 || b[0].to != "alice@a.test" || field(b[0].msg, "Action") != "delayed" {
		t.Fatalf("notifications %+v, want one delay warning to alice", b)
	}
	if !strings.Contains(b[0].msg, "Final-Recipient: rfc822; delay@b.test") || !strings.Contains(b[0].msg, "Final-Recipient: rfc822; plain@b.test") ||
		strings.Contains(b[0].msg, "fail@b.test") {
		t.Errorf("delay warning:\n%s", b[0].msg)
	}
	for _, id := range []int64{id, declined} {
		if m, ok := h.queued(id); !ok || !m.Warned {
			t.Errorf("message %d: warned %v (queued %v), want the warning done with", id, m.Warned, ok)
		}
	}
}
