package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/postgres"
	"github.com/postoffice-mail/postoffice/internal/store/postgres/pgtest"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPostgres(t *testing.T) *postgres.Store {
	t.Helper()
	_, dsn := pgtest.Schema(t)
	s, err := postgres.Open(t.Context(), dsn, "migrate-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// populate fills st with a bit of everything: users with policies and
// extra addresses, aliases, operators, messages shared between mailboxes
// with their own headers, UID gaps from deletions, retrieved messages,
// queue entries in several states, journal entries.
func populate(t *testing.T, st Store) {
	t.Helper()
	ctx := t.Context()
	must(t, st.AddDomain(ctx, "empty.example"), "AddDomain")
	var ids []int64
	for i := range 4 {
		delay := time.Duration(i) * time.Minute
		u, err := st.AddUser(ctx, store.User{
			Address: fmt.Sprintf("user%d@example.com", i), DisplayName: fmt.Sprintf("User %d", i),
			PasswordHash: fmt.Sprintf("$argon2id$v=19$m=8,t=1,p=1$salt%d$hash", i), Enabled: i != 2,
			QuotaBytes: int64(i) * 1000000, LoginDelay: &delay,
		})
		must(t, err, "AddUser")
		ids = append(ids, u.ID)
	}
	// A deleted user: IDs and UID validities have gaps.
	gone, err := st.AddUser(ctx, store.User{Address: "gone@example.org", Enabled: true})
	must(t, err, "AddUser")
	must(t, st.DeleteUser(ctx, gone.ID), "DeleteUser")
	must(t, st.RecordLogin(ctx, ids[0], time.Unix(1700000000, 0)), "RecordLogin")
	must(t, st.AddAddress(ctx, ids[0], "alias0@other.example"), "AddAddress")
	must(t, st.AddAddress(ctx, ids[1], "b1@example.com"), "AddAddress")
	must(t, st.SetAlias(ctx, store.Alias{Address: "team@example.com", Targets: []string{"user0@example.com", "x@remote.example"}}), "SetAlias")
	must(t, st.SetAlias(ctx, store.Alias{Address: "@catch.example", Targets: []string{"user3@example.com"}}), "SetAlias")
	must(t, st.AddAdmin(ctx, store.Admin{Name: "root", PasswordHash: "$argon2id$root"}), "AddAdmin")
	// A certificate of ACME and a secret.
	must(t, st.ACMEStorage().Put(ctx, "acme/ca/cert/mail.example.com", []byte("-----BEGIN PRIVATE KEY-----\n\x00\xff")), "ACME Put")
	_, err = st.Secret(ctx, "profile-link")
	must(t, err, "Secret")
	// DKIM keys: one active, one retired.
	for i, sel := range []string{"old", "new"} {
		k, err := mailauth.GenerateKey("example.com", sel, mailauth.Ed25519, time.Unix(1700000000+int64(i)*86400, 0))
		must(t, err, "GenerateKey")
		must(t, st.AddDKIMKey(ctx, k), "AddDKIMKey")
	}
	must(t, st.RetireDKIMKey(ctx, "example.com", "old", time.Unix(1700100000, 0)), "RetireDKIMKey")

	for i := range 12 {
		body := fmt.Sprintf("Subject: %d\r\n\r\n%s\r\n", i, strings.Repeat("x", i*37))
		var rcpts []store.Delivery
		for j, id := range ids {
			if (i+j)%3 != 0 {
				rcpts = append(rcpts, store.Delivery{UserID: id, Header: []byte(fmt.Sprintf("Delivered-To: user%d@example.com\r\n", j))})
			}
		}
		_, err := st.Deliver(ctx, strings.NewReader(body), rcpts)
		must(t, err, "Deliver")
	}
	// A body larger than any chunk or buffer, binary.
	big := strings.Repeat("0123456789\r\n\xff\x00", 40000)
	_, err = st.Deliver(ctx, strings.NewReader(big), []store.Delivery{{UserID: ids[3]}})
	must(t, err, "Deliver big")
	for _, id := range ids[:2] {
		l, err := st.List(ctx, id, 0)
		must(t, err, "List")
		must(t, st.Delete(ctx, id, []uint64{l[0].UID, l[len(l)-1].UID}), "Delete")
		must(t, st.MarkRetrieved(ctx, id, []uint64{l[1].UID}, time.Unix(1700001000, 0)), "MarkRetrieved")
	}

	q1, err := st.Enqueue(ctx, store.QueueEnvelope{From: "user0@example.com", To: []string{"a@remote.example", "B@Remote.example"},
		DSN: []dsn.RcptParams{{Notify: []string{dsn.NotifySuccess}, ORcptType: "rfc822", ORcpt: "orig@example.com"}, {}},
		Ret: dsn.RetHdrs, EnvID: "env-1"}, strings.NewReader("queued 1\r\n"))
	must(t, err, "Enqueue")
	q2, err := st.Enqueue(ctx, store.QueueEnvelope{From: "", To: []string{"c@remote.example"}}, strings.NewReader("queued 2\r\n"))
	must(t, err, "Enqueue")
	q3, err := st.Enqueue(ctx, store.QueueEnvelope{From: "user1@example.com", To: []string{"d@remote.example"}}, strings.NewReader("queued 3\r\n"))
	must(t, err, "Enqueue")
	must(t, st.DeleteQueued(ctx, q3), "DeleteQueued")
	must(t, st.UpdateQueued(ctx, q1, store.QueueUpdate{
		Recipients: []store.QueueRecipient{
			{Address: "a@remote.example", State: store.QueueDelivered, Status: "2.0.0", RemoteMTA: "mx.remote.example"},
			{Address: "B@Remote.example", State: store.QueueFailed, Status: "5.1.1", Notified: true,
				Remote: store.RemoteReply{Reply: smtpreply.New(550, "5.1.1", "no", "such user"), Command: "RCPT TO", Host: "mx.remote.example[192.0.2.1]:25"}},
		},
		Attempted: true, At: time.Unix(1700002000, 0), NextAttempt: time.Unix(1700003000, 0), Warned: true,
	}), "UpdateQueued")
	must(t, st.HoldQueued(ctx, q2, true), "HoldQueued")

	var es []store.JournalEntry
	for i := range 25 {
		es = append(es, store.JournalEntry{Time: time.UnixMilli(1700000000000 + int64(i)*1001), Event: store.JournalEvents[i%len(store.JournalEvents)],
			MessageID: fmt.Sprintf("<%d@example.com>", i), TxID: fmt.Sprintf("tx%d", i), From: "s@example.org",
			To: []string{"user0@example.com", "x@remote.example"}[:1+i%2], User: "user0@example.com", Size: int64(i), Client: "192.0.2.1:25", Detail: "d"})
	}
	must(t, st.AppendJournal(ctx, es), "AppendJournal")
	must(t, st.AppendJournal(ctx, []store.JournalEntry{{Time: time.UnixMilli(1700000100000), Event: store.EventReceived}}), "AppendJournal")
}

func readAll(t *testing.T, rc io.ReadCloser, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// same checks that b holds what a does, identities included.
func same(t *testing.T, a, b Store) {
	t.Helper()
	ctx := t.Context()
	ca, err := Count(ctx, a)
	must(t, err, "Count")
	cb, err := Count(ctx, b)
	must(t, err, "Count")
	if ca != cb {
		t.Errorf("counts differ:\n%+v\n%+v", ca, cb)
	}

	da, _ := a.ListDomains(ctx)
	db, _ := b.ListDomains(ctx)
	if !slices.EqualFunc(da, db, func(x, y store.Domain) bool { return x.Name == y.Name && x.CreatedAt.Equal(y.CreatedAt) }) {
		t.Errorf("domains differ: %v, %v", da, db)
	}
	ua, _ := a.ListUsers(ctx)
	ub, _ := b.ListUsers(ctx)
	if len(ua) != len(ub) {
		t.Fatalf("%d users, %d users", len(ua), len(ub))
	}
	for i := range ua {
		x, y := ua[i], ub[i]
		if x.ID != y.ID || x.UIDValidity != y.UIDValidity || !x.CreatedAt.Equal(y.CreatedAt) || !x.LastLogin.Equal(y.LastLogin) ||
			x.PasswordHash != y.PasswordHash || x.Enabled != y.Enabled || x.QuotaBytes != y.QuotaBytes ||
			x.DisplayName != y.DisplayName || fmt.Sprint(x.LoginDelay == nil, x.Expire == nil) != fmt.Sprint(y.LoginDelay == nil, y.Expire == nil) ||
			(x.LoginDelay != nil && *x.LoginDelay != *y.LoginDelay) {
			t.Errorf("user differs:\n%+v\n%+v", x, y)
		}
		na, _ := a.NextUID(ctx, x.ID)
		nb, _ := b.NextUID(ctx, y.ID)
		if na != nb {
			t.Errorf("%s: next UID %d, %d", x.Address, na, nb)
		}
		aa, _ := a.ListAddresses(ctx, x.ID)
		ab, _ := b.ListAddresses(ctx, y.ID)
		if !slices.Equal(aa, ab) {
			t.Errorf("%s: addresses %v, %v", x.Address, aa, ab)
		}
		la, _ := a.List(ctx, x.ID, 0)
		lb, _ := b.List(ctx, y.ID, 0)
		if !slices.Equal(la, lb) {
			t.Errorf("%s: messages %v, %v", x.Address, la, lb)
		}
		for _, m := range la {
			ra, errA := a.Open(ctx, x.ID, m.UID)
			rb, errB := b.Open(ctx, y.ID, m.UID)
			if readAll(t, ra, errA) != readAll(t, rb, errB) {
				t.Errorf("%s: message %d differs", x.Address, m.UID)
			}
		}
	}
	ala, _ := a.ListAliases(ctx)
	alb, _ := b.ListAliases(ctx)
	if fmt.Sprint(ala) != fmt.Sprint(alb) {
		t.Errorf("aliases %v, %v", ala, alb)
	}
	ada, _ := a.ListAdmins(ctx)
	adb, _ := b.ListAdmins(ctx)
	if fmt.Sprint(ada) != fmt.Sprint(adb) {
		t.Errorf("operators %v, %v", ada, adb)
	}
	sa, errA := a.ExportShared(ctx)
	sb, errB := b.ExportShared(ctx)
	if errA != nil || errB != nil || len(sa) != 2 || fmt.Sprint(sa) != fmt.Sprint(sb) {
		t.Errorf("certificates and secrets %v, %v (%v, %v)", sa, sb, errA, errB)
	}

	ka, errA := a.ExportDKIMKeys(ctx)
	kb, errB := b.ExportDKIMKeys(ctx)
	if errA != nil || errB != nil || len(ka) != 2 || ka[0].Retired.IsZero() || fmt.Sprint(ka) != fmt.Sprint(kb) {
		t.Errorf("DKIM keys %v, %v (%v, %v); want the same two, the first retired", ka, kb, errA, errB)
	}

	// Bodies shared between mailboxes stay shared; retrieval times stay.
	ea := exportAll(t, a)
	eb := exportAll(t, b)
	if len(ea) != len(eb) {
		t.Errorf("%d bodies, %d bodies", len(ea), len(eb))
	} else {
		for i := range ea {
			ea[i].Key, eb[i].Key = "", ""
			if fmt.Sprint(ea[i]) != fmt.Sprint(eb[i]) {
				t.Errorf("body %d:\n%+v\n%+v", i, ea[i], eb[i])
			}
		}
	}

	qa, _ := a.ListQueue(ctx)
	qb, _ := b.ListQueue(ctx)
	if len(qa) != len(qb) {
		t.Fatalf("%d queued, %d queued", len(qa), len(qb))
	}
	for i := range qa {
		if fmt.Sprint(qa[i]) != fmt.Sprint(qb[i]) {
			t.Errorf("queued message:\n%+v\n%+v", qa[i], qb[i])
		}
		ra, errA := a.OpenQueued(ctx, qa[i].ID)
		rb, errB := b.OpenQueued(ctx, qb[i].ID)
		if readAll(t, ra, errA) != readAll(t, rb, errB) {
			t.Errorf("queued message %d: bodies differ", qa[i].ID)
		}
	}
	ja, _ := a.QueryJournal(ctx, store.JournalQuery{Limit: 1000})
	jb, _ := b.QueryJournal(ctx, store.JournalQuery{Limit: 1000})
	if fmt.Sprint(ja) != fmt.Sprint(jb) {
		t.Errorf("journals differ:\n%v\n%v", ja, jb)
	}
}

// exportAll lists the bodies and copies of st in pages of 2.
func exportAll(t *testing.T, st Store) []store.ExportedBody {
	t.Helper()
	var all []store.ExportedBody
	after := ""
	for {
		page, err := st.ExportBodies(t.Context(), after, 2)
		must(t, err, "ExportBodies")
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Key
	}
	// By first copy: the order of keys is each store's own.
	slices.SortFunc(all, func(x, y store.ExportedBody) int {
		if c := int(x.Copies[0].UserID - y.Copies[0].UserID); c != 0 {
			return c
		}
		return int(x.Copies[0].UID) - int(y.Copies[0].UID)
	})
	return all
}

func copyAndCheck(t *testing.T, from, to Store) Stats {
	t.Helper()
	st, err := Copy(t.Context(), from, to, Options{PageSize: 3})
	if err != nil {
		t.Fatalf("Copy: %v", err)
	}
	same(t, from, to)
	return st
}

// afterwards checks that the target goes on where the source left off:
// new UIDs above the copied ones, new IDs and UID validities never seen.
func afterwards(t *testing.T, from, to Store) {
	t.Helper()
	ctx := t.Context()
	users, _ := from.ListUsers(ctx)
	for _, u := range users {
		next, _ := from.NextUID(ctx, u.ID)
		uids, err := to.Deliver(ctx, strings.NewReader("after\r\n"), []store.Delivery{{UserID: u.ID}})
		if err != nil {
			if errors.Is(err, store.ErrQuota) {
				continue
			}
			t.Fatalf("Deliver after the copy: %v", err)
		}
		if uids[0] < next {
			t.Errorf("%s: UID %d after the copy, the source's next was %d", u.Address, uids[0], next)
		}
	}
	nu, err := to.AddUser(ctx, store.User{Address: "new@example.com", Enabled: true})
	must(t, err, "AddUser after the copy")
	for _, u := range users {
		if nu.ID <= u.ID || nu.UIDValidity <= u.UIDValidity {
			t.Errorf("new user ID %d, UID validity %d; copied user %s has %d, %d", nu.ID, nu.UIDValidity, u.Address, u.ID, u.UIDValidity)
		}
	}
	qid, err := to.Enqueue(ctx, store.QueueEnvelope{From: "", To: []string{"z@remote.example"}}, strings.NewReader("z\r\n"))
	must(t, err, "Enqueue after the copy")
	q, _ := from.ListQueue(ctx)
	for _, m := range q {
		if qid <= m.ID {
			t.Errorf("new queue ID %d not above copied %d", qid, m.ID)
		}
	}
}

func TestSQLiteToSQLite(t *testing.T) {
	from, to := openSQLite(t), openSQLite(t)
	populate(t, from)
	st := copyAndCheck(t, from, to)
	if st.Users != 4 || st.Messages == 0 || st.Bodies >= st.Messages || st.Queue != 2 || st.Journal != 26 {
		t.Errorf("stats %+v: want 4 users, bodies fewer than messages (shared), 2 queued, 26 journal entries", st)
	}
	// A second run copies nothing and changes nothing.
	again := copyAndCheck(t, from, to)
	if again != (Stats{}) {
		t.Errorf("second run copied %+v, want nothing", again)
	}
	afterwards(t, from, to)
}

// failingImporter fails after n messages, like a copy interrupted midway.
type failingImporter struct {
	Store
	n int
}

var errInterrupted = errors.New("interrupted")

func (f *failingImporter) ImportMessage(ctx context.Context, open func() (io.ReadCloser, error), copies []store.MessageCopy) (int, error) {
	if f.n <= 0 {
		return 0, errInterrupted
	}
	f.n--
	return f.Store.ImportMessage(ctx, open, copies)
}

func TestResume(t *testing.T) {
	from, to := openSQLite(t), openSQLite(t)
	populate(t, from)
	if _, err := Copy(t.Context(), from, &failingImporter{Store: to, n: 4}, Options{PageSize: 3}); !errors.Is(err, errInterrupted) {
		t.Fatalf("interrupted Copy: %v", err)
	}
	ca, _ := Count(t.Context(), from)
	cb, _ := Count(t.Context(), to)
	if cb.Messages == 0 || cb.Messages >= ca.Messages {
		t.Fatalf("after the interruption the target has %d of %d messages", cb.Messages, ca.Messages)
	}
	st := copyAndCheck(t, from, to)
	if st.Users != 0 || int64(st.Messages) != ca.Messages-cb.Messages {
		t.Errorf("resumed run copied %+v; want no users and the %d missing messages", st, ca.Messages-cb.Messages)
	}
}

// TestBothWays: embedded -> PostgreSQL -> embedded gives back the same
// store, and each copy goes on where its source left off.
func TestBothWays(t *testing.T) {
	pgtest.BaseDSN(t)
	from := openSQLite(t)
	populate(t, from)
	pg := openPostgres(t)
	copyAndCheck(t, from, pg)
	back := openSQLite(t)
	copyAndCheck(t, pg, back)
	same(t, from, back)
	afterwards(t, from, pg)
	afterwards(t, from, back)
}

// TestPostgresToPostgres: resuming into PostgreSQL too.
func TestPostgresToPostgres(t *testing.T) {
	from := openPostgres(t)
	populate(t, from)
	to := openPostgres(t)
	if _, err := Copy(t.Context(), from, &failingImporter{Store: to, n: 2}, Options{PageSize: 3}); !errors.Is(err, errInterrupted) {
		t.Fatalf("interrupted Copy: %v", err)
	}
	copyAndCheck(t, from, to)
	afterwards(t, from, to)
}
