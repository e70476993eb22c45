package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

func sameDuration(a, b *time.Duration) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func fmtDuration(d *time.Duration) string {
	if d == nil {
		return "<default>"
	}
	return d.String()
}

func dur(d time.Duration) *time.Duration { return &d }

// testUserPolicy: the per-user POP3 policies (RFC 2449 LOGIN-DELAY and
// EXPIRE) are stored by AddUser and UpdateUser; "default" is nil, "never"
// a negative Expire; LastLogin is set only by RecordLogin.
func testUserPolicy(t *testing.T, e *env) {
	u, err := e.s.AddUser(e.ctx, store.User{Address: "pol@example.com", Enabled: true,
		LoginDelay: dur(5 * time.Minute), Expire: dur(-1)})
	e.must(err, "AddUser with policies")
	got, err := e.s.UserByID(e.ctx, u.ID)
	e.must(err, "UserByID")
	if !sameDuration(got.LoginDelay, dur(5*time.Minute)) || got.Expire == nil || *got.Expire >= 0 {
		t.Errorf("after AddUser: LoginDelay %s Expire %s, want 5m0s and negative (never)", fmtDuration(got.LoginDelay), fmtDuration(got.Expire))
	}
	if !got.LastLogin.IsZero() {
		t.Errorf("LastLogin of a new user = %v, want zero", got.LastLogin)
	}

	got.LoginDelay, got.Expire = nil, dur(30*24*time.Hour)
	e.must(e.s.UpdateUser(e.ctx, got), "UpdateUser")
	again, err := e.s.UserByAddress(e.ctx, "pol@example.com")
	e.must(err, "UserByAddress")
	if again.LoginDelay != nil || !sameDuration(again.Expire, dur(30*24*time.Hour)) {
		t.Errorf("after UpdateUser: LoginDelay %s Expire %s, want default and 720h", fmtDuration(again.LoginDelay), fmtDuration(again.Expire))
	}

	at := time.Unix(1700000000, 0)
	e.must(e.s.RecordLogin(e.ctx, u.ID, at), "RecordLogin")
	e.reopen()
	again, err = e.s.UserByID(e.ctx, u.ID)
	e.must(err, "UserByID after reopen")
	if !again.LastLogin.Equal(at) {
		t.Errorf("LastLogin = %v, want %v (durable)", again.LastLogin, at)
	}
	again.LastLogin = time.Time{}
	e.must(e.s.UpdateUser(e.ctx, again), "UpdateUser")
	if again, _ = e.s.UserByID(e.ctx, u.ID); !again.LastLogin.Equal(at) {
		t.Errorf("UpdateUser changed LastLogin to %v", again.LastLogin)
	}
	wantErr(t, e.s.RecordLogin(e.ctx, u.ID+1000, at), store.ErrNotFound, "RecordLogin of an unknown user")
	again.LoginDelay = dur(-time.Second)
	wantErr(t, e.s.UpdateUser(e.ctx, again), store.ErrInvalid, "UpdateUser with a negative login delay")
}

func score(f float64) *float64 { return &f }

func sameScore(a, b *float64) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func fmtScore(f *float64) string {
	if f == nil {
		return "<none>"
	}
	return strconv.FormatFloat(*f, 'g', -1, 64)
}

// testUserSpamScore (issue 18 spam threshold): a user's SpamRejectScore
// is stored by AddUser and UpdateUser, nil (never refuse) included,
// negative and fractional scores kept exactly, NaN and infinities
// refused.
func testUserSpamScore(t *testing.T, e *env) {
	u, err := e.s.AddUser(e.ctx, store.User{Address: "spam@example.com", Enabled: true, SpamRejectScore: score(7.5)})
	e.must(err, "AddUser with a spam score")
	got, err := e.s.UserByAddress(e.ctx, "spam@example.com")
	e.must(err, "UserByAddress")
	if !sameScore(got.SpamRejectScore, score(7.5)) {
		t.Errorf("after AddUser: SpamRejectScore %s, want 7.5", fmtScore(got.SpamRejectScore))
	}
	plain := e.addUser("nospam@example.com", 0)
	if p, _ := e.s.UserByID(e.ctx, plain.ID); p.SpamRejectScore != nil {
		t.Errorf("a user added without one has SpamRejectScore %s", fmtScore(p.SpamRejectScore))
	}
	got.SpamRejectScore = score(-2.25)
	e.must(e.s.UpdateUser(e.ctx, got), "UpdateUser")
	e.reopen()
	list, err := e.s.ListUsers(e.ctx)
	e.must(err, "ListUsers")
	for _, l := range list {
		if l.ID == u.ID && !sameScore(l.SpamRejectScore, score(-2.25)) {
			t.Errorf("after UpdateUser and reopen: SpamRejectScore %s, want -2.25", fmtScore(l.SpamRejectScore))
		}
	}
	got.SpamRejectScore = nil
	e.must(e.s.UpdateUser(e.ctx, got), "UpdateUser to none")
	if again, _ := e.s.UserByID(e.ctx, u.ID); again.SpamRejectScore != nil {
		t.Errorf("after UpdateUser to nil: SpamRejectScore %s", fmtScore(again.SpamRejectScore))
	}
	got.SpamRejectScore = score(math.NaN())
	wantErr(t, e.s.UpdateUser(e.ctx, got), store.ErrInvalid, "UpdateUser with a NaN spam score")
	_, err = e.s.AddUser(e.ctx, store.User{Address: "inf@example.com", SpamRejectScore: score(math.Inf(1))})
	wantErr(t, err, store.ErrInvalid, "AddUser with an infinite spam score")
}

// testRetention: a message's first retrieval is recorded, and
// ExpireRetrieved removes exactly the messages retrieved before the cut,
// with the counters and other mailboxes' copies intact.
func testRetention(t *testing.T, e *env) {
	a := e.addUser("ret-a@example.com", 0)
	b := e.addUser("ret-b@example.com", 0)
	shared := e.deliver("Subject: shared\r\n\r\nboth\r\n", a.ID, b.ID)
	one := e.deliver("Subject: one\r\n\r\n1\r\n", a.ID)[0]
	two := e.deliver("Subject: two\r\n\r\n22\r\n", a.ID)[0]
	list := e.list(a.ID)

	t0 := time.Unix(1700000000, 0)
	e.must(e.s.MarkRetrieved(e.ctx, a.ID, []uint64{shared[0], one}, t0), "MarkRetrieved")
	// A second retrieval does not move the first one's time.
	e.must(e.s.MarkRetrieved(e.ctx, a.ID, []uint64{one, 99999}, t0.Add(48*time.Hour)), "MarkRetrieved again")
	e.must(e.s.MarkRetrieved(e.ctx, b.ID, []uint64{shared[1]}, t0.Add(48*time.Hour)), "MarkRetrieved of b")

	// Nothing retrieved before t0.
	gone, err := e.s.ExpireRetrieved(e.ctx, a.ID, t0)
	e.must(err, "ExpireRetrieved before anything")
	if len(gone) != 0 {
		t.Errorf("ExpireRetrieved(before t0) removed %v", gone)
	}
	e.reopen()
	gone, err = e.s.ExpireRetrieved(e.ctx, a.ID, t0.Add(time.Hour))
	e.must(err, "ExpireRetrieved")
	if w := []uint64{shared[0], one}; !slices.Equal(uids(gone), w) {
		t.Fatalf("ExpireRetrieved removed %v, want %v (the two retrieved at t0)", uids(gone), w)
	}
	if gone[0].Size != list[0].Size || gone[1].Size != list[1].Size {
		t.Errorf("ExpireRetrieved sizes %v, want those of List %v", gone, list[:2])
	}
	if l := e.list(a.ID); !slices.Equal(uids(l), []uint64{two}) {
		t.Errorf("after expiry a has %v, want [%d]", uids(l), two)
	}
	e.wantUsage(a.ID, 1, list[2].Size)
	// b's copy of the shared body was retrieved later: it stays, readable.
	if got := string(e.read(b.ID, shared[1])); got != "Subject: shared\r\n\r\nboth\r\n" {
		t.Errorf("b's copy after a's expiry = %q", got)
	}
	gone, err = e.s.ExpireRetrieved(e.ctx, b.ID, t0.Add(time.Hour))
	e.must(err, "ExpireRetrieved of b")
	if len(gone) != 0 {
		t.Errorf("b: removed %v, want nothing (retrieved after the cut)", uids(gone))
	}
	_, err = e.s.ExpireRetrieved(e.ctx, a.ID+1000, t0)
	wantErr(t, err, store.ErrNotFound, "ExpireRetrieved of an unknown user")
}

func entry(ev store.JournalEvent, at time.Time, user, detail string) store.JournalEntry {
	return store.JournalEntry{Event: ev, Time: at, User: user, Detail: detail}
}

// testJournal: entries are stored in order with every field, survive a
// restart, are counted per event and pruned by age.
func testJournal(t *testing.T, e *env) {
	t0 := time.UnixMilli(1700000000123)
	full := store.JournalEntry{
		Time: t0, Event: store.EventReceived, MessageID: "<m1@example.org>", TxID: "tx1",
		From: "s@example.org", To: []string{"a@example.com", "b@example.net"}, Size: 1234,
		Client: "192.0.2.1:4321", Detail: "smtp",
	}
	e.must(e.s.AppendJournal(e.ctx, []store.JournalEntry{
		full,
		{Time: t0.Add(time.Second), Event: store.EventDelivered, TxID: "tx1", User: "A@Example.com", Size: 1300},
		{Time: t0.Add(2 * time.Second), Event: store.EventQueued, TxID: "tx1", To: []string{"b@example.net"}},
	}), "AppendJournal")
	e.must(e.s.AppendJournal(e.ctx, nil), "AppendJournal of nothing")
	wantErr(t, e.s.AppendJournal(e.ctx, []store.JournalEntry{{Time: t0}}), store.ErrInvalid, "AppendJournal without event")
	e.reopen()

	got, err := e.s.QueryJournal(e.ctx, store.JournalQuery{})
	e.must(err, "QueryJournal")
	if len(got) != 3 {
		t.Fatalf("QueryJournal returned %d entries, want 3", len(got))
	}
	if got[0].Event != store.EventQueued || got[2].Event != store.EventReceived || !(got[0].ID > got[1].ID && got[1].ID > got[2].ID) {
		t.Errorf("QueryJournal order: %v %v %v, want newest first with decreasing IDs", got[0].Event, got[1].Event, got[2].Event)
	}
	r := got[2]
	if !r.Time.Equal(t0) {
		t.Errorf("Time %v, want %v (milliseconds kept)", r.Time, t0)
	}
	r.Time, r.ID = full.Time, 0
	if fmt.Sprint(r) != fmt.Sprint(full) {
		t.Errorf("received entry read back as\n%+v\nwant\n%+v", r, full)
	}
	if got[1].User != "a@example.com" {
		t.Errorf("User %q, want it lower case", got[1].User)
	}

	// An entry without a time gets the current one.
	before := time.Now().Add(-time.Second)
	e.must(e.s.AppendJournal(e.ctx, []store.JournalEntry{{Event: store.EventRetrieved, User: "a@example.com"}}), "AppendJournal now")
	latest, err := e.s.QueryJournal(e.ctx, store.JournalQuery{Limit: 1})
	e.must(err, "QueryJournal limit 1")
	if len(latest) != 1 || latest[0].Event != store.EventRetrieved || latest[0].Time.Before(before) {
		t.Errorf("latest = %+v, want the retrieved entry stamped now", latest)
	}

	counts, err := e.s.CountJournal(e.ctx, t0.Add(time.Second))
	e.must(err, "CountJournal")
	if counts[store.EventReceived] != 0 || counts[store.EventDelivered] != 1 || counts[store.EventQueued] != 1 || counts[store.EventRetrieved] != 1 {
		t.Errorf("CountJournal = %v", counts)
	}
	// Per period: t0 is in the first of 2 periods of 1s from t0, the
	// entries at t0+1s and t0+2s (the queued one, 2s later) in the second
	// and outside; the one stamped now in none.
	h, err := e.s.JournalHistogram(e.ctx, t0, time.Second, 2)
	e.must(err, "JournalHistogram")
	if fmt.Sprint(h[store.EventReceived]) != "[1 0]" || fmt.Sprint(h[store.EventDelivered]) != "[0 1]" || h[store.EventRetrieved] != nil || h[store.EventQueued] != nil {
		t.Errorf("JournalHistogram(t0, 1s, 2) = %v", h)
	}
	if _, err := e.s.JournalHistogram(e.ctx, t0, 0, 2); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("JournalHistogram with step 0: %v", err)
	}
	n, err := e.s.PruneJournal(e.ctx, t0.Add(1500*time.Millisecond))
	e.must(err, "PruneJournal")
	if n != 2 {
		t.Errorf("PruneJournal removed %d, want 2", n)
	}
	if left, _ := e.s.QueryJournal(e.ctx, store.JournalQuery{}); len(left) != 2 {
		t.Errorf("%d entries left after pruning, want 2", len(left))
	}
}

// testJournalQuery: every filter of JournalQuery.
func testJournalQuery(t *testing.T, e *env) {
	t0 := time.Unix(1700000000, 0)
	var es []store.JournalEntry
	for i := range 10 {
		es = append(es, entry(store.EventDelivered, t0.Add(time.Duration(i)*time.Minute), fmt.Sprintf("u%d@example.com", i%2), fmt.Sprintf("uid %d", i)))
	}
	es = append(es, store.JournalEntry{Time: t0.Add(20 * time.Minute), Event: store.EventReceived, From: "U1@example.com",
		To: []string{"x@example.net", "u0@example.com"}, MessageID: "<Special_100%@example.org>"})
	e.must(e.s.AppendJournal(e.ctx, es), "AppendJournal")

	check := func(q store.JournalQuery, want int, what string) []store.JournalEntry {
		t.Helper()
		got, err := e.s.QueryJournal(e.ctx, q)
		e.must(err, what)
		if len(got) != want {
			t.Errorf("%s: %d entries, want %d", what, len(got), want)
		}
		return got
	}
	check(store.JournalQuery{Since: t0.Add(5 * time.Minute)}, 6, "Since")
	check(store.JournalQuery{Until: t0.Add(5 * time.Minute)}, 5, "Until")
	check(store.JournalQuery{Event: store.EventReceived}, 1, "Event")
	// u1 is the mailbox of 5 entries and the sender of the received one.
	check(store.JournalQuery{User: "u1@EXAMPLE.com"}, 6, "User as mailbox and sender")
	// u0 is a mailbox 5 times and one of the recipients once.
	check(store.JournalQuery{User: "u0@example.com"}, 6, "User as mailbox and recipient")
	check(store.JournalQuery{User: "example.com"}, 0, "User matches whole addresses only")
	check(store.JournalQuery{Text: "special_100%"}, 1, "Text with LIKE wildcards")
	check(store.JournalQuery{Text: "special_1000"}, 0, "Text wildcards are literal")
	check(store.JournalQuery{Text: "UID 3"}, 1, "Text in detail, any case")
	page := check(store.JournalQuery{Limit: 4}, 4, "Limit")
	rest := check(store.JournalQuery{BeforeID: page[3].ID}, 7, "BeforeID")
	if len(rest) > 0 && rest[0].ID >= page[3].ID {
		t.Errorf("BeforeID page starts at %d, not below %d", rest[0].ID, page[3].ID)
	}
}

// testAdmins: operator accounts.
func testAdmins(t *testing.T, e *env) {
	e.must(e.s.AddAdmin(e.ctx, store.Admin{Name: "root", PasswordHash: "$argon2id$h1"}), "AddAdmin")
	e.must(e.s.AddAdmin(e.ctx, store.Admin{Name: "alice.ops@example.com", PasswordHash: "$argon2id$h2"}), "AddAdmin")
	wantErr(t, e.s.AddAdmin(e.ctx, store.Admin{Name: "root", PasswordHash: "x"}), store.ErrExists, "AddAdmin twice")
	for _, bad := range []string{"", "has space", "new\nline", string(make([]byte, 65))} {
		wantErr(t, e.s.AddAdmin(e.ctx, store.Admin{Name: bad, PasswordHash: "x"}), store.ErrInvalid, fmt.Sprintf("AddAdmin(%q)", bad))
	}
	e.reopen()
	a, err := e.s.AdminByName(e.ctx, "root")
	e.must(err, "AdminByName")
	if a.PasswordHash != "$argon2id$h1" || a.CreatedAt.IsZero() {
		t.Errorf("AdminByName = %+v", a)
	}
	_, err = e.s.AdminByName(e.ctx, "nobody")
	wantErr(t, err, store.ErrNotFound, "AdminByName of an unknown name")
	e.must(e.s.SetAdminPassword(e.ctx, "root", "$argon2id$h3"), "SetAdminPassword")
	if a, _ = e.s.AdminByName(e.ctx, "root"); a.PasswordHash != "$argon2id$h3" {
		t.Errorf("after SetAdminPassword hash = %q", a.PasswordHash)
	}
	wantErr(t, e.s.SetAdminPassword(e.ctx, "nobody", "x"), store.ErrNotFound, "SetAdminPassword of an unknown name")
	list, err := e.s.ListAdmins(e.ctx)
	e.must(err, "ListAdmins")
	if len(list) != 2 || list[0].Name != "alice.ops@example.com" || list[1].Name != "root" {
		t.Errorf("ListAdmins = %+v, want alice.ops@example.com and root, sorted", list)
	}
	e.must(e.s.DeleteAdmin(e.ctx, "root"), "DeleteAdmin")
	wantErr(t, e.s.DeleteAdmin(e.ctx, "root"), store.ErrNotFound, "DeleteAdmin twice")
	if list, _ = e.s.ListAdmins(e.ctx); len(list) != 1 {
		t.Errorf("ListAdmins after delete = %+v", list)
	}
}
