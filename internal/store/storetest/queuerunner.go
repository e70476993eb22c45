package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// The methods a queue runner uses: claiming due messages, recording the
// outcome of attempts, holding and retrying.

// queueIDs returns the IDs of ms in order.
func queueIDs(ms []store.QueuedMessage) []int64 {
	var ids []int64
	for _, m := range ms {
		ids = append(ids, m.ID)
	}
	return ids
}

func (e *env) claim(now time.Time, lease time.Duration, max int) []store.QueuedMessage {
	e.t.Helper()
	ms, err := e.s.ClaimQueued(e.ctx, now, lease, max)
	if err != nil {
		e.t.Fatalf("ClaimQueued(%v, %v, %d): %v", now, lease, max, err)
	}
	return ms
}

func (e *env) queued(id int64) store.QueuedMessage {
	e.t.Helper()
	m, err := e.s.QueuedMessage(e.ctx, id)
	if err != nil {
		e.t.Fatalf("QueuedMessage(%d): %v", id, err)
	}
	return m
}

// testQueueClaim: ClaimQueued hands out due, unheld, unclaimed messages,
// earliest first, at most max, and not again until the claim ends.
func testQueueClaim(t *testing.T, e *env) {
	now := time.Now().Add(time.Second) // every entry below is due by then
	if ms := e.claim(now, time.Hour, 10); len(ms) != 0 {
		t.Errorf("ClaimQueued of an empty queue = %+v", ms)
	}
	var ids []int64
	for i := range 4 {
		ids = append(ids, e.enqueue("alice@example.com", []string{fmt.Sprintf("r%d@remote.example", i), "x@other.example"}, "m\r\n"))
	}
	// ids[3] is due later than the others; ids[2] is held.
	later := now.Add(10 * time.Minute)
	e.must(e.s.UpdateQueued(e.ctx, ids[3], store.QueueUpdate{NextAttempt: later}), "UpdateQueued")
	e.must(e.s.HoldQueued(e.ctx, ids[2], true), "HoldQueued")

	got := e.claim(now, time.Hour, 1)
	if !slices.Equal(queueIDs(got), ids[:1]) {
		t.Fatalf("ClaimQueued(max 1) = %v, want %v", queueIDs(got), ids[:1])
	}
	m := got[0]
	if m.From != "alice@example.com" || len(m.Recipients) != 2 || m.Recipients[0].Address != "r0@remote.example" ||
		m.Recipients[1].Address != "x@other.example" || m.Recipients[0].State != store.QueuePending {
		t.Errorf("claimed message = %+v, want its sender and both pending recipients", m)
	}
	if want := now.Add(time.Hour).Truncate(time.Second); m.ClaimedUntil.Before(want) || m.ClaimedUntil.After(want.Add(time.Second)) {
		t.Errorf("ClaimedUntil = %v, want %v", m.ClaimedUntil, want)
	}
	if c := e.queued(ids[0]).ClaimedUntil; !c.Equal(m.ClaimedUntil) {
		t.Errorf("QueuedMessage shows ClaimedUntil %v, ClaimQueued returned %v", c, m.ClaimedUntil)
	}

	// The claimed one is not handed out again; the held one and the one
	// not yet due are not handed out at all.
	if got := e.claim(now, time.Hour, 10); !slices.Equal(queueIDs(got), ids[1:2]) {
		t.Fatalf("second ClaimQueued = %v, want %v", queueIDs(got), ids[1:2])
	}
	if got := e.claim(now, time.Hour, 10); len(got) != 0 {
		t.Errorf("ClaimQueued with every due message claimed = %v", queueIDs(got))
	}

	// UpdateQueued ends a claim.
	e.must(e.s.UpdateQueued(e.ctx, ids[0], store.QueueUpdate{}), "UpdateQueued")
	if c := e.queued(ids[0]).ClaimedUntil; !c.IsZero() {
		t.Errorf("ClaimedUntil after UpdateQueued = %v, want zero", c)
	}
	if got := e.claim(now, time.Hour, 10); !slices.Equal(queueIDs(got), ids[:1]) {
		t.Errorf("ClaimQueued after UpdateQueued = %v, want %v", queueIDs(got), ids[:1])
	}

	// A claim whose lease ran out (its runner died) is handed out again,
	// and so is the message that became due, earliest first.
	after := now.Add(2 * time.Hour)
	if got := e.claim(after, time.Hour, 10); !slices.Equal(queueIDs(got), []int64{ids[0], ids[1], ids[3]}) {
		t.Errorf("ClaimQueued after the leases ran out = %v, want %v", queueIDs(got), []int64{ids[0], ids[1], ids[3]})
	}

	// ReleaseClaims ends every claim at once.
	e.must(e.s.ReleaseClaims(e.ctx), "ReleaseClaims")
	for _, id := range ids {
		if c := e.queued(id).ClaimedUntil; !c.IsZero() {
			t.Errorf("message %d: ClaimedUntil after ReleaseClaims = %v", id, c)
		}
	}
	if got := e.claim(after, time.Minute, 10); len(got) != 3 {
		t.Errorf("ClaimQueued after ReleaseClaims = %v, want 3 messages", queueIDs(got))
	}
	// After a restart, the runner's ReleaseClaims makes what the previous
	// process had claimed due again; the hold stays.
	e.reopen()
	e.must(e.s.ReleaseClaims(e.ctx), "ReleaseClaims after a restart")
	if got := e.claim(after, time.Minute, 10); len(got) != 3 {
		t.Errorf("ClaimQueued after a restart = %v, want 3 messages", queueIDs(got))
	}
	if !e.queued(ids[2]).Held {
		t.Errorf("Held lost in a restart")
	}
	if got := e.claim(after, time.Minute, 0); len(got) != 0 {
		t.Errorf("ClaimQueued(max 0) = %v", queueIDs(got))
	}
}

// testQueueUpdate: UpdateQueued records per-recipient results, attempts
// and the schedule; final states are never undone.
func testQueueUpdate(t *testing.T, e *env) {
	rcpts := []string{"a@remote.example", "b@remote.example", "c@other.example", "d@other.example"}
	id := e.enqueue("alice@example.com", rcpts, "m\r\n")
	other := e.enqueue("alice@example.com", []string{"a@remote.example"}, "other\r\n")
	at := time.Now().Truncate(time.Second).Add(-time.Minute)
	next := at.Add(5 * time.Minute)
	e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{
		Recipients: []store.QueueRecipient{
			{Address: "a@remote.example", State: store.QueueDelivered, Status: "2.0.0", RemoteMTA: "mx.remote.example"},
			{Address: "b@remote.example", State: store.QueueFailed, Status: "5.1.1", RemoteMTA: "mx.remote.example",
				LastError: "550 5.1.1 no such user"},
			{Address: "c@other.example", State: store.QueuePending, Status: "4.4.1", LastError: "connection refused"},
			// Notified on a pending recipient is not recorded.
			{Address: "d@other.example", State: store.QueuePending, Status: "4.2.0", LastError: "greylisted", Notified: true},
		},
		Attempted:   true,
		At:          at,
		NextAttempt: next,
	}), "UpdateQueued")
	want := []store.QueueRecipient{
		{Address: "a@remote.example", State: store.QueueDelivered, Status: "2.0.0", RemoteMTA: "mx.remote.example"},
		{Address: "b@remote.example", State: store.QueueFailed, Status: "5.1.1", RemoteMTA: "mx.remote.example", LastError: "550 5.1.1 no such user"},
		{Address: "c@other.example", State: store.QueuePending, Status: "4.4.1", LastError: "connection refused"},
		{Address: "d@other.example", State: store.QueuePending, Status: "4.2.0", LastError: "greylisted"},
	}
	check := func(what string, attempts int, warned bool) {
		t.Helper()
		m := e.queued(id)
		if !reflect.DeepEqual(m.Recipients, want) {
			t.Errorf("%s: recipients\n got %+v\nwant %+v", what, m.Recipients, want)
		}
		if m.Attempts != attempts || !m.LastAttempt.Equal(at) || !m.NextAttempt.Equal(next) || m.Warned != warned {
			t.Errorf("%s: Attempts %d, LastAttempt %v, NextAttempt %v, Warned %v; want %d, %v, %v, %v",
				what, m.Attempts, m.LastAttempt, m.NextAttempt, m.Warned, attempts, at, next, warned)
		}
	}
	check("after the first attempt", 1, false)

	// A final state is never undone; the bounce of b is recorded;
	// Notified is never cleared; the warning is recorded. A zero
	// NextAttempt keeps the schedule; no attempt keeps the count.
	e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{
		Recipients: []store.QueueRecipient{
			{Address: "a@remote.example", State: store.QueueFailed, LastError: "late failure", Notified: true},
			{Address: "b@remote.example", State: store.QueuePending, LastError: "ignored", Notified: true},
		},
		Warned: true,
	}), "UpdateQueued")
	// A delivered recipient is notified too (a success notification,
	// RFC 3461 section 4.1).
	want[0].Notified = true
	want[1].Notified = true
	check("after the notification", 1, true)
	e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{
		Recipients: []store.QueueRecipient{{Address: "b@remote.example", State: store.QueueFailed}},
	}), "UpdateQueued")
	check("after a repeated update", 1, true)

	// The second attempt: c is delivered, d expires and is failed and
	// notified in one update.
	at2 := at.Add(30 * time.Second)
	e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{
		Recipients: []store.QueueRecipient{
			{Address: "c@other.example", State: store.QueueDelivered, Status: "2.0.0", RemoteMTA: "mx.other.example"},
			{Address: "d@other.example", State: store.QueueFailed, Status: "4.4.7", LastError: "expired", Notified: true},
		},
		Attempted: true, At: at2,
	}), "UpdateQueued")
	want[2] = store.QueueRecipient{Address: "c@other.example", State: store.QueueDelivered, Status: "2.0.0", RemoteMTA: "mx.other.example"}
	want[3] = store.QueueRecipient{Address: "d@other.example", State: store.QueueFailed, Status: "4.4.7", LastError: "expired", Notified: true}
	at = at2
	check("after the second attempt", 2, true)

	// Everything survives a restart.
	e.reopen()
	check("after a restart", 2, true)

	// Refusals change nothing.
	wantErr(t, e.s.UpdateQueued(e.ctx, id+other+1000, store.QueueUpdate{Attempted: true, At: at}), store.ErrNotFound, "UpdateQueued of an absent message")
	wantErr(t, e.s.UpdateQueued(e.ctx, other, store.QueueUpdate{
		Recipients: []store.QueueRecipient{
			{Address: "a@remote.example", State: store.QueueDelivered},
			{Address: "b@remote.example", State: store.QueueDelivered},
		},
		Attempted: true, At: at,
	}), store.ErrInvalid, "UpdateQueued naming an address that is not a recipient")
	wantErr(t, e.s.UpdateQueued(e.ctx, other, store.QueueUpdate{
		Recipients: []store.QueueRecipient{{Address: "a@remote.example", State: "bounced"}},
	}), store.ErrInvalid, "UpdateQueued with an unknown state")
	if m := e.queued(other); m.Attempts != 0 || m.Recipients[0].State != store.QueuePending {
		t.Errorf("refused updates changed the message: %+v", m)
	}
	check("after refused updates of another message", 2, true)
}

// testQueueHoldRetry: HoldQueued and RetryQueued.
func testQueueHoldRetry(t *testing.T, e *env) {
	a := e.enqueue("", []string{"a@remote.example"}, "a\r\n")
	b := e.enqueue("", []string{"b@remote.example"}, "b\r\n")
	now := time.Now().Truncate(time.Second)
	later := now.Add(time.Hour)
	for _, id := range []int64{a, b} {
		e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{Attempted: true, At: now, NextAttempt: later}), "UpdateQueued")
	}
	if got := e.claim(now.Add(time.Second), time.Hour, 10); len(got) != 0 {
		t.Fatalf("ClaimQueued before the next attempt = %v", queueIDs(got))
	}

	// Retry of one message makes it due at the given time.
	n, err := e.s.RetryQueued(e.ctx, a, now)
	e.must(err, "RetryQueued")
	if n != 1 || !e.queued(a).NextAttempt.Equal(now) || !e.queued(b).NextAttempt.Equal(later) {
		t.Errorf("RetryQueued(a) = %d; NextAttempt a %v, b %v; want 1, %v, %v", n, e.queued(a).NextAttempt, e.queued(b).NextAttempt, now, later)
	}
	// A held message is not claimed even when due; the hold survives a
	// retry and a restart.
	e.must(e.s.HoldQueued(e.ctx, a, true), "HoldQueued")
	n, err = e.s.RetryQueued(e.ctx, 0, now)
	e.must(err, "RetryQueued(all)")
	if n != 2 {
		t.Errorf("RetryQueued(0) = %d, want 2", n)
	}
	e.reopen()
	if m := e.queued(a); !m.Held {
		t.Errorf("Held = false after HoldQueued, a retry and a restart")
	}
	if got := e.claim(now.Add(time.Second), time.Hour, 10); !slices.Equal(queueIDs(got), []int64{b}) {
		t.Errorf("ClaimQueued with a held = %v, want only %d", queueIDs(got), b)
	}
	e.must(e.s.HoldQueued(e.ctx, a, true), "HoldQueued twice")
	e.must(e.s.HoldQueued(e.ctx, a, false), "HoldQueued(release)")
	if m := e.queued(a); m.Held {
		t.Errorf("Held = true after the release")
	}
	if got := e.claim(now.Add(time.Second), time.Hour, 10); !slices.Equal(queueIDs(got), []int64{a}) {
		t.Errorf("ClaimQueued after the release = %v, want %d", queueIDs(got), a)
	}

	wantErr(t, e.s.HoldQueued(e.ctx, b+1000, true), store.ErrNotFound, "HoldQueued of an absent message")
	_, err = e.s.RetryQueued(e.ctx, b+1000, now)
	wantErr(t, err, store.ErrNotFound, "RetryQueued of an absent message")
	e.must(e.s.DeleteQueued(e.ctx, a), "DeleteQueued")
	e.must(e.s.DeleteQueued(e.ctx, b), "DeleteQueued")
	if n, err := e.s.RetryQueued(e.ctx, 0, now); err != nil || n != 0 {
		t.Errorf("RetryQueued(0) of an empty queue = %d, %v; want 0, nil", n, err)
	}
}

// testQueueDSN: the DSN parameters given to Enqueue (RFC 3461 section 4)
// and a remote reply given to UpdateQueued come back as they were, after
// a restart too; a delivered recipient can be notified.
func testQueueDSN(t *testing.T, e *env) {
	env := store.QueueEnvelope{
		From: "alice@example.com",
		To:   []string{"a@remote.example", "b@remote.example", "c@remote.example", "d@remote.example"},
		DSN: []dsn.RcptParams{
			{Notify: []string{dsn.NotifySuccess, dsn.NotifyDelay}, ORcptType: "rfc822", ORcpt: "list@example.com"},
			{Notify: []string{dsn.NotifyNever}},
			{},
			{ORcptType: "utf-8", ORcpt: "j\u00f6rg@example.com"},
		},
		Ret: dsn.RetHdrs, EnvID: "QQ314159 +x=y",
	}
	id, err := e.s.Enqueue(e.ctx, env, strings.NewReader("m\r\n"))
	e.must(err, "Enqueue with DSN parameters")
	plain := e.enqueue("", []string{"x@remote.example"}, "n\r\n")
	want := store.QueuedMessage{ID: id, From: env.From, Size: 3, Ret: dsn.RetHdrs, EnvID: "QQ314159 +x=y"}
	for i, a := range env.To {
		want.Recipients = append(want.Recipients, store.QueueRecipient{Address: a, State: store.QueuePending, DSN: env.DSN[i]})
	}
	want.Recipients[2].DSN = dsn.RcptParams{}
	got := e.queued(id)
	sameQueued(t, got, want, got.CreatedAt, got.CreatedAt, "QueuedMessage with DSN parameters")
	if p := e.queued(plain); p.Ret != "" || p.EnvID != "" || !reflect.DeepEqual(p.Recipients[0].DSN, dsn.RcptParams{}) {
		t.Errorf("a message without DSN parameters has %+v", p)
	}

	// The remote replies are kept structured: several lines, an
	// enhanced status, the command and the host.
	rcptReply := store.RemoteReply{Reply: smtpreply.Reply{Code: 550, Status: smtpreply.Status{Class: 5, Subject: 1, Detail: 1},
		Text: []string{"No such user", "see https://example.net/550"}}, Command: "RCPT TO", Host: "mx.remote.example[192.0.2.1]:25"}
	final := store.RemoteReply{Reply: smtpreply.New(250, "2.0.0", "Ok: queued as 4Xyz"), Command: "end of data", Host: "mx.remote.example[192.0.2.1]:25"}
	noStatus := store.RemoteReply{Reply: smtpreply.Reply{Code: 451, Text: []string{""}}, Command: "MAIL FROM", Host: "mx2.remote.example[192.0.2.2]:25"}
	e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{
		Recipients: []store.QueueRecipient{
			{Address: "a@remote.example", State: store.QueueDelivered, Status: "2.0.0", RemoteMTA: "mx.remote.example", Remote: final},
			{Address: "b@remote.example", State: store.QueueFailed, Status: "5.1.1", RemoteMTA: "mx.remote.example", Remote: rcptReply, Notified: true},
			{Address: "c@remote.example", State: store.QueuePending, Status: "4.0.0", RemoteMTA: "mx2.remote.example", Remote: noStatus},
			{Address: "d@remote.example", State: store.QueuePending, Status: "4.4.1", LastError: "connection refused"},
		},
		Attempted: true, At: time.Now(),
	}), "UpdateQueued with remote replies")
	want.Attempts = 1
	want.Recipients[0].State, want.Recipients[0].Status, want.Recipients[0].RemoteMTA, want.Recipients[0].Remote = store.QueueDelivered, "2.0.0", "mx.remote.example", final
	want.Recipients[1].State, want.Recipients[1].Status, want.Recipients[1].RemoteMTA, want.Recipients[1].Remote = store.QueueFailed, "5.1.1", "mx.remote.example", rcptReply
	want.Recipients[1].Notified = true
	want.Recipients[2].Status, want.Recipients[2].RemoteMTA, want.Recipients[2].Remote = "4.0.0", "mx2.remote.example", noStatus
	want.Recipients[3].Status, want.Recipients[3].LastError = "4.4.1", "connection refused"
	check := func(what string) {
		t.Helper()
		m := e.queued(id)
		if !reflect.DeepEqual(m.Recipients, want.Recipients) || m.Ret != want.Ret || m.EnvID != want.EnvID {
			t.Errorf("%s:\n got %+v\nwant %+v", what, m, want)
		}
	}
	check("after UpdateQueued")
	if got := e.queued(id).Recipients[1].Remote.String(); got != "mx.remote.example[192.0.2.1]:25 said: 550 5.1.1 No such user see https://example.net/550 (in reply to RCPT TO)" {
		t.Errorf("RemoteReply.String() = %q", got)
	}

	// The success notification of a delivered recipient is recorded; a
	// later reply does not replace a final state's.
	e.must(e.s.UpdateQueued(e.ctx, id, store.QueueUpdate{
		Recipients: []store.QueueRecipient{{Address: "a@remote.example", State: store.QueueDelivered, Remote: rcptReply, Notified: true}},
	}), "UpdateQueued notifying a delivered recipient")
	want.Recipients[0].Notified = true
	check("after the success notification")
	e.reopen()
	check("after a restart")
}
