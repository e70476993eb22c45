package router_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/router"
)

// notifications returns the notifications in a mailbox, by their Action
// fields joined ("failed", "delivered", "failed,delivered").
func notifications(msgs []string) map[string]string {
	out := map[string]string{}
	for _, m := range msgs {
		var actions []string
		for _, l := range strings.Split(m, "\r\n") {
			if a, ok := strings.CutPrefix(l, "Action: "); ok {
				actions = append(actions, a)
			}
		}
		if len(actions) > 0 {
			out[strings.Join(actions, ",")] = m
		}
	}
	return out
}

// DSN for local delivery (RFC 3461 sections 4 and 5.2.3): NOTIFY decides
// which notifications the sender gets (none with NEVER; failures, not
// successes, without NOTIFY); a success report says "delivered"; ENVID
// and ORCPT come back; RET=FULL returns the whole message, and without
// it only the header section comes back.
func TestDSNLocalDelivery(t *testing.T) {
	f, r := newFixture(t)
	f.user("s@local.test", 0)
	f.user("a@local.test", 0)
	// The alias's second target does not exist: it fails after the
	// message is accepted for the first.
	f.alias("list@local.test", "a@local.test", "ghost@local.test")
	ctx := context.Background()
	route := func(ret, envid string, p dsn.RcptParams) map[string]string {
		t.Helper()
		before := len(f.mailbox("s@local.test"))
		env := mx("s@local.test", "list@local.test")
		env.Ret, env.EnvID, env.DSN = ret, envid, []dsn.RcptParams{p}
		if err := r.Route(ctx, env, strings.NewReader(body)); err != nil {
			t.Fatal(err)
		}
		return notifications(f.mailbox("s@local.test")[before:])
	}

	got := route(dsn.RetFull, "ENV-1", dsn.RcptParams{Notify: []string{dsn.NotifySuccess, dsn.NotifyFailure}, ORcptType: "rfc822", ORcpt: "orig@elsewhere.test"})
	if len(got) != 2 || got["failed"] == "" || got["delivered"] == "" {
		t.Fatalf("SUCCESS,FAILURE: notifications %v", reflect.ValueOf(got).MapKeys())
	}
	for _, want := range []string{"Original-Envelope-Id: ENV-1\r\n", "Original-Recipient: rfc822; orig@elsewhere.test\r\n",
		"Final-Recipient: rfc822; ghost@local.test\r\n", "Content-Type: message/rfc822\r\n", "\r\n\r\nhello\r\n"} {
		if !strings.Contains(got["failed"], want) {
			t.Errorf("bounce has no %q:\n%s", want, got["failed"])
		}
	}
	for _, want := range []string{"Subject: Successful Mail Delivery Report\r\n", "Original-Envelope-Id: ENV-1\r\n",
		"Final-Recipient: rfc822; a@local.test\r\n", "Status: 2.0.0\r\n", "Content-Type: text/rfc822-headers\r\n"} {
		if !strings.Contains(got["delivered"], want) {
			t.Errorf("success report has no %q:\n%s", want, got["delivered"])
		}
	}

	if got := route("", "", dsn.RcptParams{Notify: []string{dsn.NotifyNever}}); len(got) != 0 {
		t.Errorf("NOTIFY=NEVER: notifications %v", reflect.ValueOf(got).MapKeys())
	}
	if got := route("", "", dsn.RcptParams{Notify: []string{dsn.NotifySuccess}}); len(got) != 1 || got["delivered"] == "" {
		t.Errorf("NOTIFY=SUCCESS: notifications %v", reflect.ValueOf(got).MapKeys())
	}
	got = route(dsn.RetHdrs, "", dsn.RcptParams{})
	if len(got) != 1 || got["failed"] == "" {
		t.Fatalf("no NOTIFY: notifications %v", reflect.ValueOf(got).MapKeys())
	}
	if b := got["failed"]; !strings.Contains(b, "Content-Type: text/rfc822-headers\r\n") || strings.Contains(b, "hello") ||
		strings.Contains(b, "Original-Envelope-Id") || !strings.Contains(b, "Original-Recipient: rfc822; list@local.test\r\n") {
		t.Errorf("RET=HDRS bounce:\n%s", b)
	}
}

// The queue keeps RET, ENVID, NOTIFY and ORCPT for the next hop (RFC
// 3461 section 5.2.1); where an alias changed the address, the address
// the sender used becomes the ORCPT (section 4.2).
func TestDSNQueued(t *testing.T) {
	f, r := newFixture(t)
	f.user("s@local.test", 0)
	f.alias("fwd@local.test", "x@remote.test")
	env := mx("s@local.test", "y@remote.test", "fwd@local.test")
	env.AuthUser = "s@local.test"
	env.Ret, env.EnvID = dsn.RetHdrs, "ENV-2"
	env.DSN = []dsn.RcptParams{
		{Notify: []string{dsn.NotifyDelay}, ORcptType: "rfc822", ORcpt: "y-orig@remote.test"},
		{Notify: []string{dsn.NotifyNever}},
	}
	if err := r.Route(context.Background(), env, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	q := f.queue()
	if len(q) != 1 || q[0].Ret != dsn.RetHdrs || q[0].EnvID != "ENV-2" || len(q[0].Recipients) != 2 {
		t.Fatalf("queue: %+v", q)
	}
	want := map[string]dsn.RcptParams{
		"y@remote.test": {Notify: []string{dsn.NotifyDelay}, ORcptType: "rfc822", ORcpt: "y-orig@remote.test"},
		"x@remote.test": {Notify: []string{dsn.NotifyNever}, ORcptType: "rfc822", ORcpt: "fwd@local.test"},
	}
	for _, rc := range q[0].Recipients {
		if !reflect.DeepEqual(rc.DSN, want[rc.Address]) {
			t.Errorf("%s: DSN %+v, want %+v", rc.Address, rc.DSN, want[rc.Address])
		}
	}
	_ = router.ErrLoop
}
