// Package storetest is the conformance suite of store.Store: every backend
// runs it from its own tests, so that each behaviour is specified once.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/acmecert/storagetest"
	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// OpenFunc opens the store whose data is kept under dir, a directory the
// suite created for one test. The first call for a dir must give an empty
// store; a later call for the same dir, after the suite has closed the
// previous store, must give back the same data, as after a restart. A
// backend that keeps its data elsewhere (a database server) uses dir as the
// key that names it, e.g. to derive a schema name. The suite closes every
// store it opens; open reports its own failures with t.Fatal.
type OpenFunc func(t *testing.T, dir string) store.Store

// Run runs the whole suite against the backend that open opens.
func Run(t *testing.T, open OpenFunc) {
	tests := []struct {
		name string
		f    func(*testing.T, *env)
	}{
		{"Domains", testDomains},
		{"DeleteDomainInUse", testDeleteDomainInUse},
		{"Users", testUsers},
		{"UpdateUser", testUpdateUser},
		{"DeleteUser", testDeleteUser},
		{"Addresses", testAddresses},
		{"AddressConflicts", testAddressConflicts},
		{"Aliases", testAliases},
		{"DeliverOne", testDeliverOne},
		{"DeliverMany", testDeliverMany},
		{"DeliverRefused", testDeliverRefused},
		{"UIDsNeverReused", testUIDsNeverReused},
		{"Restart", testRestart},
		{"ListOrder", testListOrder},
		{"Snapshot", testSnapshot},
		{"OpenMissing", testOpenMissing},
		{"Delete", testDelete},
		{"Quota", testQuota},
		{"Lock", testLock},
		{"ConcurrentDeliver", testConcurrentDeliver},
		{"Bodies", testBodies},
		{"DeliverHeaders", testDeliverHeaders},
		{"HeaderQuota", testHeaderQuota},
		{"Queue", testQueue},
		{"QueueOrder", testQueueOrder},
		{"QueueRestart", testQueueRestart},
		{"QueueRefused", testQueueRefused},
		{"QueueDSN", testQueueDSN},
		{"QueueClaim", testQueueClaim},
		{"QueueUpdate", testQueueUpdate},
		{"QueueHoldRetry", testQueueHoldRetry},
		{"UserPolicy", testUserPolicy},
		{"UserSpamScore", testUserSpamScore},
		{"Retention", testRetention},
		{"Journal", testJournal},
		{"JournalQuery", testJournalQuery},
		{"Admins", testAdmins},
		{"ACMEStorageRestart", testACMEStorageRestart},
		{"Secret", testSecret},
		{"DKIMKeys", testDKIMKeys},
		{"ImportedUIDL", testImportedUIDL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{t: t, dir: t.TempDir(), open: open, ctx: t.Context()}
			e.s = e.openStore()
			tc.f(t, e)
		})
	}
	// The conformance suite of acmecert.Storage, each of its tests on a
	// store of its own.
	t.Run("ACMEStorage", func(t *testing.T) {
		t.Parallel()
		storagetest.Run(t, func(t *testing.T) acmecert.Storage {
			e := &env{t: t, dir: t.TempDir(), open: open, ctx: t.Context()}
			e.s = e.openStore()
			return e.s.ACMEStorage()
		})
	})
}

// env is one test's store, which it can restart.
type env struct {
	t    *testing.T
	dir  string
	open OpenFunc
	ctx  context.Context
	s    store.Store
	// closeCurrent closes s without closing it again at cleanup.
	closeCurrent func()
}

func (e *env) openStore() store.Store {
	s := e.open(e.t, e.dir)
	closed := false
	e.t.Cleanup(func() {
		if !closed {
			if err := s.Close(); err != nil {
				e.t.Errorf("Close: %v", err)
			}
		}
	})
	e.closeCurrent = func() {
		closed = true
		if err := s.Close(); err != nil {
			e.t.Fatalf("Close: %v", err)
		}
	}
	return s
}

// reopen closes the store and opens the same data again.
func (e *env) reopen() {
	e.t.Helper()
	e.closeCurrent()
	e.s = e.openStore()
}

func (e *env) addUser(addr string, quota int64) store.User {
	e.t.Helper()
	u, err := e.s.AddUser(e.ctx, store.User{
		Address:      addr,
		DisplayName:  "User " + addr,
		PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		Enabled:      true,
		QuotaBytes:   quota,
	})
	if err != nil {
		e.t.Fatalf("AddUser(%s): %v", addr, err)
	}
	return u
}

func (e *env) deliver(body string, ids ...int64) []uint64 {
	e.t.Helper()
	uids, err := e.s.Deliver(e.ctx, strings.NewReader(body), to(ids...))
	if err != nil {
		e.t.Fatalf("Deliver to %v: %v", ids, err)
	}
	if len(uids) != len(ids) {
		e.t.Fatalf("Deliver to %v returned %d UIDs", ids, len(uids))
	}
	return uids
}

// to lists deliveries without headers to the given users.
func to(ids ...int64) []store.Delivery {
	ds := make([]store.Delivery, len(ids))
	for i, id := range ids {
		ds[i].UserID = id
	}
	return ds
}

func (e *env) read(id int64, uid uint64) []byte {
	e.t.Helper()
	rc, err := e.s.Open(e.ctx, id, uid)
	if err != nil {
		e.t.Fatalf("Open(%d, %d): %v", id, uid, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatalf("reading message %d of user %d: %v", uid, id, err)
	}
	return b
}

func (e *env) list(id int64) []store.MessageInfo {
	e.t.Helper()
	l, err := e.s.List(e.ctx, id, 0)
	if err != nil {
		e.t.Fatalf("List(%d): %v", id, err)
	}
	return l
}

func (e *env) wantUsage(id int64, count int, size int64) {
	e.t.Helper()
	c, b, err := e.s.Usage(e.ctx, id)
	if err != nil || c != count || b != size {
		e.t.Errorf("Usage(%d) = %d, %d, %v; want %d, %d", id, c, b, err, count, size)
	}
}

func (e *env) del(id int64, uids ...uint64) {
	e.t.Helper()
	if err := e.s.Delete(e.ctx, id, uids); err != nil {
		e.t.Fatalf("Delete(%d, %v): %v", id, uids, err)
	}
}

func (e *env) must(err error, what string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// wantErr checks that err matches target with errors.Is.
func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: error %v, want %v", what, err, target)
	}
}

func sameUser(t *testing.T, got, want store.User, what string) {
	t.Helper()
	if !got.CreatedAt.Equal(want.CreatedAt) {
		t.Errorf("%s: CreatedAt %v, want %v", what, got.CreatedAt, want.CreatedAt)
	}
	got.CreatedAt = want.CreatedAt
	if !sameDuration(got.LoginDelay, want.LoginDelay) || !sameDuration(got.Expire, want.Expire) {
		t.Errorf("%s: LoginDelay %v Expire %v, want %v %v", what,
			fmtDuration(got.LoginDelay), fmtDuration(got.Expire), fmtDuration(want.LoginDelay), fmtDuration(want.Expire))
	}
	got.LoginDelay, got.Expire = want.LoginDelay, want.Expire
	if !sameScore(got.SpamRejectScore, want.SpamRejectScore) {
		t.Errorf("%s: SpamRejectScore %s, want %s", what, fmtScore(got.SpamRejectScore), fmtScore(want.SpamRejectScore))
	}
	got.SpamRejectScore = want.SpamRejectScore
	if !got.LastLogin.Equal(want.LastLogin) {
		t.Errorf("%s: LastLogin %v, want %v", what, got.LastLogin, want.LastLogin)
	}
	got.LastLogin = want.LastLogin
	if got != want {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func uids(l []store.MessageInfo) []uint64 {
	var u []uint64
	for _, m := range l {
		u = append(u, m.UID)
	}
	return u
}

func testDomains(t *testing.T, e *env) {
	e.must(e.s.AddDomain(e.ctx, "Example.ORG"), "AddDomain")
	e.must(e.s.AddDomain(e.ctx, "b.example"), "AddDomain")
	e.must(e.s.AddDomain(e.ctx, "a.example"), "AddDomain")
	wantErr(t, e.s.AddDomain(e.ctx, "example.org"), store.ErrExists, "AddDomain of an existing domain")
	for _, bad := range []string{"", "trailing.dot.", "double..dot", "with space.example", "@example.org"} {
		wantErr(t, e.s.AddDomain(e.ctx, bad), store.ErrInvalid, fmt.Sprintf("AddDomain(%q)", bad))
	}

	for name, want := range map[string]bool{"example.org": true, "EXAMPLE.org": true, "example.net": false} {
		if got, err := e.s.HasDomain(e.ctx, name); err != nil || got != want {
			t.Errorf("HasDomain(%s) = %v, %v; want %v", name, got, err, want)
		}
	}

	ds, err := e.s.ListDomains(e.ctx)
	e.must(err, "ListDomains")
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
		if d.CreatedAt.IsZero() {
			t.Errorf("domain %s has no CreatedAt", d.Name)
		}
	}
	if want := []string{"a.example", "b.example", "example.org"}; !slices.Equal(names, want) {
		t.Errorf("ListDomains = %v, want %v (sorted)", names, want)
	}

	e.must(e.s.DeleteDomain(e.ctx, "B.example"), "DeleteDomain")
	if ok, err := e.s.HasDomain(e.ctx, "b.example"); err != nil || ok {
		t.Errorf("HasDomain after DeleteDomain = %v, %v", ok, err)
	}
	wantErr(t, e.s.DeleteDomain(e.ctx, "b.example"), store.ErrNotFound, "DeleteDomain of a deleted domain")
}

func testDeleteDomainInUse(t *testing.T, e *env) {
	u := e.addUser("alice@users.example", 0)
	owner := e.addUser("bob@other.example", 0)
	e.must(e.s.AddAddress(e.ctx, owner.ID, "bob@extra.example"), "AddAddress")
	e.must(e.s.SetAlias(e.ctx, store.Alias{Address: "list@aliases.example", Targets: []string{"x@remote.example"}}), "SetAlias")

	for _, d := range []string{"users.example", "extra.example", "aliases.example"} {
		if ok, err := e.s.HasDomain(e.ctx, d); err != nil || !ok {
			t.Errorf("HasDomain(%s) = %v, %v: adding a user, an address or an alias adds its domain", d, ok, err)
		}
		wantErr(t, e.s.DeleteDomain(e.ctx, d), store.ErrExists, "DeleteDomain of a domain in use: "+d)
	}
	// The refusal says what is left, in words a person reads.
	e.must(e.s.SetAlias(e.ctx, store.Alias{Address: "a1@users.example", Targets: []string{"x@remote.example"}}), "SetAlias")
	var inUse *store.DomainInUseError
	if err := e.s.DeleteDomain(e.ctx, "users.example"); !errors.As(err, &inUse) || inUse.Users != 1 || inUse.Aliases != 1 ||
		err.Error() != "domain users.example is still in use by 1 user and 1 alias: delete those first" {
		t.Errorf("DeleteDomain of a domain in use: %v", err)
	}
	e.must(e.s.DeleteAlias(e.ctx, "a1@users.example"), "DeleteAlias")

	e.must(e.s.DeleteUser(e.ctx, u.ID), "DeleteUser")
	e.must(e.s.DeleteAddress(e.ctx, "bob@extra.example"), "DeleteAddress")
	e.must(e.s.DeleteAlias(e.ctx, "list@aliases.example"), "DeleteAlias")
	for _, d := range []string{"users.example", "extra.example", "aliases.example"} {
		e.must(e.s.DeleteDomain(e.ctx, d), "DeleteDomain once unused: "+d)
	}
}

func testUsers(t *testing.T, e *env) {
	in := store.User{
		Address:      " Alice@Example.COM ",
		DisplayName:  "Alice Liddell",
		PasswordHash: "$2b$10$abcdefghijklmnopqrstuu5Ep8m8JYCtcyJAGA8vStW5GZJp8sJ9.",
		Enabled:      true,
		QuotaBytes:   1 << 20,
	}
	alice, err := e.s.AddUser(e.ctx, in)
	e.must(err, "AddUser")
	if alice.ID == 0 || alice.CreatedAt.IsZero() || alice.UIDValidity == 0 {
		t.Errorf("AddUser returned %+v: ID, CreatedAt and UIDValidity must be set", alice)
	}
	want := in
	want.Address = "alice@example.com"
	want.ID, want.CreatedAt, want.UIDValidity = alice.ID, alice.CreatedAt, alice.UIDValidity
	sameUser(t, alice, want, "AddUser")
	if ok, err := e.s.HasDomain(e.ctx, "example.com"); err != nil || !ok {
		t.Errorf("HasDomain after AddUser = %v, %v; AddUser adds the domain", ok, err)
	}

	got, err := e.s.UserByAddress(e.ctx, "ALICE@example.Com")
	e.must(err, "UserByAddress")
	sameUser(t, got, want, "UserByAddress")
	got, err = e.s.UserByID(e.ctx, alice.ID)
	e.must(err, "UserByID")
	sameUser(t, got, want, "UserByID")

	_, err = e.s.AddUser(e.ctx, store.User{Address: "alice@EXAMPLE.com"})
	wantErr(t, err, store.ErrExists, "AddUser of a taken address")
	for _, bad := range []store.User{{Address: "no-at-sign"}, {Address: "a@b@example.com"}, {Address: "x@example.com.", Enabled: true}, {Address: "neg@example.com", QuotaBytes: -1}} {
		_, err = e.s.AddUser(e.ctx, bad)
		wantErr(t, err, store.ErrInvalid, fmt.Sprintf("AddUser(%+v)", bad))
	}
	_, err = e.s.UserByAddress(e.ctx, "nobody@example.com")
	wantErr(t, err, store.ErrNotFound, "UserByAddress of an unknown address")
	_, err = e.s.UserByID(e.ctx, alice.ID+1000)
	wantErr(t, err, store.ErrNotFound, "UserByID of an unknown ID")

	bob := e.addUser("bob@example.com", 0)
	aaron := e.addUser("aaron@example.net", 0)
	if bob.ID == alice.ID || aaron.ID == bob.ID {
		t.Errorf("IDs not distinct: %d %d %d", alice.ID, bob.ID, aaron.ID)
	}
	users, err := e.s.ListUsers(e.ctx)
	e.must(err, "ListUsers")
	var addrs []string
	for _, u := range users {
		addrs = append(addrs, u.Address)
		if u.Address == "alice@example.com" {
			sameUser(t, u, want, "ListUsers")
		}
	}
	if w := []string{"aaron@example.net", "alice@example.com", "bob@example.com"}; !slices.Equal(addrs, w) {
		t.Errorf("ListUsers = %v, want %v (sorted by address)", addrs, w)
	}
}

func testUpdateUser(t *testing.T, e *env) {
	u := e.addUser("carol@example.com", 0)
	want := u
	want.DisplayName = "Carol"
	want.PasswordHash = "$argon2id$new"
	want.Enabled = false
	want.QuotaBytes = 5000
	upd := want
	upd.Address = "other@example.com" // not changeable by UpdateUser
	upd.UIDValidity++
	e.must(e.s.UpdateUser(e.ctx, upd), "UpdateUser")
	got, err := e.s.UserByID(e.ctx, u.ID)
	e.must(err, "UserByID")
	sameUser(t, got, want, "after UpdateUser (which changes only DisplayName, PasswordHash, Enabled, QuotaBytes)")

	upd.ID += 1000
	wantErr(t, e.s.UpdateUser(e.ctx, upd), store.ErrNotFound, "UpdateUser of an unknown ID")
	upd.ID, upd.QuotaBytes = u.ID, -5
	wantErr(t, e.s.UpdateUser(e.ctx, upd), store.ErrInvalid, "UpdateUser with a negative quota")
}

func testDeleteUser(t *testing.T, e *env) {
	dave := e.addUser("dave@example.com", 0)
	erin := e.addUser("erin@example.com", 0)
	e.must(e.s.AddAddress(e.ctx, dave.ID, "d@example.com"), "AddAddress")
	shared := e.deliver("Subject: shared\r\n\r\nhello\r\n", dave.ID, erin.ID)
	e.deliver("Subject: own\r\n\r\nmine\r\n", dave.ID)

	e.must(e.s.DeleteUser(e.ctx, dave.ID), "DeleteUser")
	_, err := e.s.UserByID(e.ctx, dave.ID)
	wantErr(t, err, store.ErrNotFound, "UserByID of a deleted user")
	for _, a := range []string{"dave@example.com", "d@example.com"} {
		_, err = e.s.UserByAddress(e.ctx, a)
		wantErr(t, err, store.ErrNotFound, "UserByAddress of a deleted user's address "+a)
	}
	_, err = e.s.List(e.ctx, dave.ID, 0)
	wantErr(t, err, store.ErrNotFound, "List of a deleted user")
	_, _, err = e.s.Usage(e.ctx, dave.ID)
	wantErr(t, err, store.ErrNotFound, "Usage of a deleted user")
	_, err = e.s.Open(e.ctx, dave.ID, shared[0])
	wantErr(t, err, store.ErrNotFound, "Open in a deleted user's mailbox")
	wantErr(t, e.s.DeleteUser(e.ctx, dave.ID), store.ErrNotFound, "DeleteUser twice")

	if got := string(e.read(erin.ID, shared[1])); got != "Subject: shared\r\n\r\nhello\r\n" {
		t.Errorf("the other recipient's copy after DeleteUser = %q", got)
	}

	// Both addresses are free again; the new mailbox is empty and
	// distinguishable from the old one.
	again := e.addUser("dave@example.com", 0)
	e.must(e.s.AddAddress(e.ctx, erin.ID, "d@example.com"), "AddAddress of a deleted user's extra address")
	if again.ID == dave.ID || again.UIDValidity == dave.UIDValidity {
		t.Errorf("re-created user has ID %d, UIDValidity %d; the deleted one had %d, %d: both must differ",
			again.ID, again.UIDValidity, dave.ID, dave.UIDValidity)
	}
	if l := e.list(again.ID); len(l) != 0 {
		t.Errorf("re-created user's mailbox = %v, want empty", l)
	}
}

func testAddresses(t *testing.T, e *env) {
	alice := e.addUser("alice@example.com", 0)
	e.must(e.s.AddAddress(e.ctx, alice.ID, "Liddell@Example.com"), "AddAddress")
	e.must(e.s.AddAddress(e.ctx, alice.ID, "al@wonderland.example"), "AddAddress")
	if ok, err := e.s.HasDomain(e.ctx, "wonderland.example"); err != nil || !ok {
		t.Errorf("HasDomain after AddAddress = %v, %v; AddAddress adds the domain", ok, err)
	}
	for _, a := range []string{"LIDDELL@example.com", "al@wonderland.example"} {
		u, err := e.s.UserByAddress(e.ctx, a)
		if err != nil || u.ID != alice.ID || u.Address != "alice@example.com" {
			t.Errorf("UserByAddress(%s) = %+v, %v; want alice", a, u, err)
		}
	}
	got, err := e.s.ListAddresses(e.ctx, alice.ID)
	e.must(err, "ListAddresses")
	if want := []string{"al@wonderland.example", "liddell@example.com"}; !slices.Equal(got, want) {
		t.Errorf("ListAddresses = %v, want %v (extra ones only, sorted)", got, want)
	}

	wantErr(t, e.s.AddAddress(e.ctx, alice.ID+1000, "x@example.com"), store.ErrNotFound, "AddAddress to an unknown user")
	wantErr(t, e.s.AddAddress(e.ctx, alice.ID, "bad address@example.com"), store.ErrInvalid, "AddAddress of a malformed address")
	_, err = e.s.ListAddresses(e.ctx, alice.ID+1000)
	wantErr(t, err, store.ErrNotFound, "ListAddresses of an unknown user")

	e.must(e.s.DeleteAddress(e.ctx, "Liddell@example.com"), "DeleteAddress")
	_, err = e.s.UserByAddress(e.ctx, "liddell@example.com")
	wantErr(t, err, store.ErrNotFound, "UserByAddress of a deleted address")
	wantErr(t, e.s.DeleteAddress(e.ctx, "liddell@example.com"), store.ErrNotFound, "DeleteAddress twice")
	got, err = e.s.ListAddresses(e.ctx, alice.ID)
	if err != nil || !slices.Equal(got, []string{"al@wonderland.example"}) {
		t.Errorf("ListAddresses after DeleteAddress = %v, %v", got, err)
	}
}

// testAddressConflicts: users' primary addresses, extra addresses and
// aliases share one namespace.
func testAddressConflicts(t *testing.T, e *env) {
	alice := e.addUser("alice@example.com", 0)
	bob := e.addUser("bob@example.com", 0)
	e.must(e.s.AddAddress(e.ctx, alice.ID, "extra@example.com"), "AddAddress")
	e.must(e.s.SetAlias(e.ctx, store.Alias{Address: "alias@example.com", Targets: []string{"alice@example.com"}}), "SetAlias")

	for _, a := range []string{"Bob@example.com", "extra@example.com", "alias@example.com"} {
		wantErr(t, e.s.AddAddress(e.ctx, bob.ID, a), store.ErrExists, "AddAddress of taken "+a)
		wantErr(t, e.s.AddAddress(e.ctx, alice.ID, a), store.ErrExists, "AddAddress of taken "+a)
		_, err := e.s.AddUser(e.ctx, store.User{Address: a})
		wantErr(t, err, store.ErrExists, "AddUser of taken "+a)
	}
	for _, a := range []string{"alice@example.com", "EXTRA@example.com"} {
		err := e.s.SetAlias(e.ctx, store.Alias{Address: a, Targets: []string{"x@remote.example"}})
		wantErr(t, err, store.ErrExists, "SetAlias on taken "+a)
	}
	wantErr(t, e.s.AddAddress(e.ctx, alice.ID, "alice@example.com"), store.ErrExists, "AddAddress of the user's own primary address")
}

func testAliases(t *testing.T, e *env) {
	_, err := e.s.Alias(e.ctx, "postmaster@example.com")
	wantErr(t, err, store.ErrNotFound, "Alias of an unknown address")

	e.must(e.s.SetAlias(e.ctx, store.Alias{
		Address: "Postmaster@Example.com",
		Targets: []string{"Zed@remote.example", "alice@example.com", "zed@REMOTE.example"},
	}), "SetAlias")
	if ok, err := e.s.HasDomain(e.ctx, "example.com"); err != nil || !ok {
		t.Errorf("HasDomain after SetAlias = %v, %v; SetAlias adds the domain", ok, err)
	}
	a, err := e.s.Alias(e.ctx, "postmaster@EXAMPLE.com")
	e.must(err, "Alias")
	want := store.Alias{Address: "postmaster@example.com", Targets: []string{"alice@example.com", "zed@remote.example"}}
	if a.Address != want.Address || !slices.Equal(a.Targets, want.Targets) {
		t.Errorf("Alias = %+v, want %+v (lower case, targets sorted without duplicates)", a, want)
	}

	// Replace.
	e.must(e.s.SetAlias(e.ctx, store.Alias{Address: "postmaster@example.com", Targets: []string{"bob@example.com"}}), "SetAlias replacing")
	a, err = e.s.Alias(e.ctx, "postmaster@example.com")
	if err != nil || !slices.Equal(a.Targets, []string{"bob@example.com"}) {
		t.Errorf("Alias after replacing = %+v, %v; want only bob@example.com", a, err)
	}

	e.must(e.s.SetAlias(e.ctx, store.Alias{Address: "abuse@example.com", Targets: []string{"postmaster@example.com"}}), "SetAlias")
	all, err := e.s.ListAliases(e.ctx)
	e.must(err, "ListAliases")
	wantAll := []store.Alias{
		{Address: "abuse@example.com", Targets: []string{"postmaster@example.com"}},
		{Address: "postmaster@example.com", Targets: []string{"bob@example.com"}},
	}
	if !slices.EqualFunc(all, wantAll, func(x, y store.Alias) bool {
		return x.Address == y.Address && slices.Equal(x.Targets, y.Targets)
	}) {
		t.Errorf("ListAliases = %+v, want %+v", all, wantAll)
	}

	for _, bad := range []store.Alias{
		{Address: "empty@example.com"},
		{Address: "badtarget@example.com", Targets: []string{"not an address"}},
		{Address: "no-domain", Targets: []string{"x@example.com"}},
	} {
		wantErr(t, e.s.SetAlias(e.ctx, bad), store.ErrInvalid, fmt.Sprintf("SetAlias(%+v)", bad))
	}

	e.must(e.s.DeleteAlias(e.ctx, "Abuse@example.com"), "DeleteAlias")
	_, err = e.s.Alias(e.ctx, "abuse@example.com")
	wantErr(t, err, store.ErrNotFound, "Alias after DeleteAlias")
	wantErr(t, e.s.DeleteAlias(e.ctx, "abuse@example.com"), store.ErrNotFound, "DeleteAlias twice")
}

func testDeliverOne(t *testing.T, e *env) {
	u := e.addUser("alice@example.com", 0)
	e.wantUsage(u.ID, 0, 0)
	if l := e.list(u.ID); len(l) != 0 {
		t.Errorf("new mailbox lists %v", l)
	}
	body := "From: bob@example.com\r\nSubject: hi\r\n\r\nHello, Alice.\r\n"
	uid := e.deliver(body, u.ID)[0]
	if uid == 0 {
		t.Errorf("UID 0 assigned")
	}
	if l := e.list(u.ID); !slices.Equal(l, []store.MessageInfo{{UID: uid, Size: int64(len(body))}}) {
		t.Errorf("List = %v, want [{%d %d}]", l, uid, len(body))
	}
	if got := string(e.read(u.ID, uid)); got != body {
		t.Errorf("Open = %q, want %q", got, body)
	}
	e.wantUsage(u.ID, 1, int64(len(body)))
}

func testDeliverMany(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	c := e.addUser("carol@example.com", 0)
	e.deliver("Subject: first for bob\r\n\r\n.\r\n", b.ID) // so that UIDs differ between mailboxes
	body := "Subject: to all\r\n\r\nbody\r\n"
	ids := []int64{c.ID, a.ID, b.ID}
	got := e.deliver(body, ids...)
	for i, id := range ids {
		l := e.list(id)
		if len(l) == 0 {
			t.Fatalf("user %d has an empty mailbox after Deliver", id)
		}
		last := l[len(l)-1]
		if last.UID != got[i] || last.Size != int64(len(body)) {
			t.Errorf("user %d: last message %+v, want UID %d (Deliver's UIDs follow userIDs' order), size %d", id, last, got[i], len(body))
		}
		if r := string(e.read(id, got[i])); r != body {
			t.Errorf("user %d reads %q, want %q", id, r, body)
		}
	}
	// Each copy is independent of the others.
	e.del(a.ID, got[1])
	if r := string(e.read(c.ID, got[0])); r != body {
		t.Errorf("after deleting alice's copy, carol reads %q", r)
	}
	e.del(c.ID, got[0])
	e.del(b.ID, got[2])
	if r := string(e.read(b.ID, e.list(b.ID)[0].UID)); r != "Subject: first for bob\r\n\r\n.\r\n" {
		t.Errorf("bob's other message reads %q", r)
	}
}

// testDeliverRefused: a Deliver that fails stores nothing anywhere.
func testDeliverRefused(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	_, err := e.s.Deliver(e.ctx, strings.NewReader("x\r\n"), nil)
	wantErr(t, err, store.ErrInvalid, "Deliver to nobody")
	_, err = e.s.Deliver(e.ctx, strings.NewReader("x\r\n"), to(a.ID, b.ID, a.ID))
	wantErr(t, err, store.ErrInvalid, "Deliver to a repeated user")
	_, err = e.s.Deliver(e.ctx, strings.NewReader("x\r\n"), to(a.ID, b.ID+1000, b.ID))
	wantErr(t, err, store.ErrNotFound, "Deliver to an unknown user")

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err = e.s.Deliver(ctx, strings.NewReader("x\r\n"), to(a.ID)); err == nil {
		t.Errorf("Deliver with a cancelled context succeeded")
	}
	_, err = e.s.Deliver(e.ctx, io.MultiReader(strings.NewReader("partial"), errReader{}), to(a.ID, b.ID))
	if !errors.Is(err, errBroken) {
		t.Errorf("Deliver of a failing reader: error %v, want it to wrap the reader's", err)
	}

	for _, u := range []store.User{a, b} {
		if l := e.list(u.ID); len(l) != 0 {
			t.Errorf("%s got %v from refused deliveries", u.Address, l)
		}
		e.wantUsage(u.ID, 0, 0)
	}
}

var errBroken = errors.New("connection dropped")

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errBroken }

func testUIDsNeverReused(t *testing.T, e *env) {
	u := e.addUser("alice@example.com", 0)
	var seen []uint64
	next := func() uint64 {
		t.Helper()
		uid := e.deliver(fmt.Sprintf("Subject: %d\r\n\r\n", len(seen)), u.ID)[0]
		if len(seen) > 0 && uid <= seen[len(seen)-1] {
			t.Fatalf("UID %d assigned after %d: UIDs must strictly increase", uid, seen[len(seen)-1])
		}
		seen = append(seen, uid)
		return uid
	}
	next()
	next()
	last := next()
	e.del(u.ID, last) // the highest UID is not handed out again
	next()
	e.del(u.ID, uids(e.list(u.ID))...) // nor is any after the mailbox is emptied
	next()
	e.reopen() // nor after a restart
	next()
	e.del(u.ID, uids(e.list(u.ID))...)
	e.reopen()
	next()
}

func testRestart(t *testing.T, e *env) {
	alice := e.addUser("alice@example.com", 100)
	e.must(e.s.AddAddress(e.ctx, alice.ID, "al@example.com"), "AddAddress")
	e.must(e.s.SetAlias(e.ctx, store.Alias{Address: "all@example.com", Targets: []string{"alice@example.com"}}), "SetAlias")
	body := "Subject: kept\r\n\r\n\x00\xff\r\n"
	uid := e.deliver(body, alice.ID)[0]

	e.reopen()
	got, err := e.s.UserByAddress(e.ctx, "al@example.com")
	e.must(err, "UserByAddress after restart")
	sameUser(t, got, alice, "user after restart")
	if a, err := e.s.Alias(e.ctx, "all@example.com"); err != nil || !slices.Equal(a.Targets, []string{"alice@example.com"}) {
		t.Errorf("Alias after restart = %+v, %v", a, err)
	}
	if l := e.list(alice.ID); !slices.Equal(l, []store.MessageInfo{{UID: uid, Size: int64(len(body))}}) {
		t.Errorf("List after restart = %v", l)
	}
	if r := string(e.read(alice.ID, uid)); r != body {
		t.Errorf("body after restart = %q, want %q", r, body)
	}
	e.wantUsage(alice.ID, 1, int64(len(body)))
}

func testListOrder(t *testing.T, e *env) {
	u := e.addUser("alice@example.com", 0)
	var want []store.MessageInfo
	for i := range 6 {
		body := strings.Repeat("x", i*7) + "\r\n"
		want = append(want, store.MessageInfo{UID: e.deliver(body, u.ID)[0], Size: int64(len(body))})
	}
	e.del(u.ID, want[2].UID)
	want = slices.Delete(want, 2, 3)
	if got := e.list(u.ID); !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	var total int64
	for _, m := range want {
		total += m.Size
	}
	e.wantUsage(u.ID, len(want), total)
}

func testOpenMissing(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	ua := e.deliver("a\r\n", a.ID)[0]
	var ub []uint64
	for range 3 {
		ub = append(ub, e.deliver("b\r\n", b.ID)[0])
	}
	e.del(a.ID, ua)
	_, err := e.s.Open(e.ctx, a.ID, ua)
	wantErr(t, err, store.ErrNotFound, "Open of a deleted message")
	_, err = e.s.Open(e.ctx, a.ID, ub[2]+1000)
	wantErr(t, err, store.ErrNotFound, "Open of a UID never assigned")
	for _, uid := range ub {
		_, err = e.s.Open(e.ctx, a.ID, uid)
		wantErr(t, err, store.ErrNotFound, "Open of a UID only another mailbox has")
	}
	_, err = e.s.Open(e.ctx, b.ID+1000, ub[0])
	wantErr(t, err, store.ErrNotFound, "Open in an unknown mailbox")
	_, err = e.s.List(e.ctx, b.ID+1000, 0)
	wantErr(t, err, store.ErrNotFound, "List of an unknown mailbox")
}

// testSnapshot: Summary counts what a bounded List later returns, as a
// POP3 login uses them (RFC 1939 section 4: the maildrop as of the lock):
// deliveries after the Summary fall outside the bound, deletions and an
// expiry before it are counted.
func testSnapshot(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	sum, err := e.s.Summary(e.ctx, a.ID)
	if err != nil || sum.Count != 0 || sum.Bytes != 0 || sum.NextUID == 0 {
		t.Fatalf("Summary of an empty mailbox = %+v, %v; want no messages and a UID to come", sum, err)
	}
	if l, err := e.s.List(e.ctx, a.ID, sum.NextUID); err != nil || len(l) != 0 {
		t.Errorf("List below %d of an empty mailbox = %v, %v; want nothing", sum.NextUID, l, err)
	}
	var ua []uint64
	for _, body := range []string{"one\r\n", "two two\r\n", "three\r\n", "four\r\n"} {
		ua = append(ua, e.deliver(body, a.ID)[0])
	}
	e.deliver("bob's\r\n", b.ID)
	e.del(a.ID, ua[1])
	sum, err = e.s.Summary(e.ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	e.deliver("after the snapshot\r\n", a.ID)
	l, err := e.s.List(e.ctx, a.ID, sum.NextUID)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{ua[0], ua[2], ua[3]}
	if got := uids(l); !slices.Equal(got, want) {
		t.Errorf("List below %d = %v, want %v (not the later delivery)", sum.NextUID, got, want)
	}
	var total int64
	for _, m := range l {
		total += m.Size
	}
	if sum.Count != len(want) || sum.Bytes != total || sum.NextUID != ua[3]+1 {
		t.Errorf("Summary = %+v; want %d messages of %d octets, next UID %d", sum, len(want), total, ua[3]+1)
	}
	if got := uids(e.list(a.ID)); len(got) != 4 {
		t.Errorf("List of everything = %v, want 4 messages", got)
	}
	_, err = e.s.Summary(e.ctx, b.ID+1000)
	wantErr(t, err, store.ErrNotFound, "Summary of an unknown mailbox")
	_, err = e.s.List(e.ctx, b.ID+1000, 5)
	wantErr(t, err, store.ErrNotFound, "bounded List of an unknown mailbox")
}

func testDelete(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	var ua, ub []uint64
	for range 3 {
		ua = append(ua, e.deliver("1234\r\n", a.ID)[0])
		ub = append(ub, e.deliver("56\r\n", b.ID)[0])
	}
	e.del(a.ID, ua[0], ua[2])
	e.del(a.ID, ua[0], ua[2])                        // again: already gone, no error
	e.del(a.ID, ua[2]+1000, ua[2]+1, math.MaxUint64) // never assigned
	e.del(a.ID)
	if got := uids(e.list(a.ID)); !slices.Equal(got, ua[1:2]) {
		t.Errorf("alice's UIDs after Delete = %v, want %v", got, ua[1:2])
	}
	e.wantUsage(a.ID, 1, 6)
	if got := uids(e.list(b.ID)); !slices.Equal(got, ub) {
		t.Errorf("bob's UIDs after deleting alice's = %v, want %v untouched", got, ub)
	}
	e.wantUsage(b.ID, 3, 12)
	wantErr(t, e.s.Delete(e.ctx, b.ID+1000, ub), store.ErrNotFound, "Delete in an unknown mailbox")
}

func testQuota(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 100)
	b := e.addUser("bob@example.com", 0)
	first := e.deliver(strings.Repeat("a", 60), a.ID)[0]

	_, err := e.s.Deliver(e.ctx, strings.NewReader(strings.Repeat("b", 41)), to(b.ID, a.ID))
	wantErr(t, err, store.ErrQuota, "Deliver over quota")
	if err != nil && !strings.Contains(err.Error(), "alice@example.com") {
		t.Errorf("quota error %q does not name the user", err)
	}
	if l := e.list(b.ID); len(l) != 0 {
		t.Errorf("bob got %v although alice's copy went over quota", l)
	}
	e.wantUsage(a.ID, 1, 60)

	e.deliver(strings.Repeat("c", 40), a.ID) // exactly at the quota
	_, err = e.s.Deliver(e.ctx, strings.NewReader("d"), to(a.ID))
	wantErr(t, err, store.ErrQuota, "Deliver of one byte over quota")
	e.wantUsage(a.ID, 2, 100)

	e.del(a.ID, first)
	e.deliver(strings.Repeat("e", 60), a.ID)

	a.QuotaBytes = 0
	e.must(e.s.UpdateUser(e.ctx, a), "UpdateUser")
	e.deliver(strings.Repeat("f", 1000), a.ID)
	e.wantUsage(a.ID, 3, 1100)
}

func testLock(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	l1, err := e.s.Lock(e.ctx, a.ID, "session 1")
	e.must(err, "Lock")
	_, err = e.s.Lock(e.ctx, a.ID, "session 2")
	wantErr(t, err, store.ErrLocked, "second Lock")
	lb, err := e.s.Lock(e.ctx, b.ID, "session 3")
	e.must(err, "Lock of another user while the first is locked")

	// The lock fences deletions: its holder's Delete applies them.
	uids := e.deliver("one\r\n", a.ID)
	uids = append(uids, e.deliver("two\r\n", a.ID)...)
	uids = append(uids, e.deliver("three\r\n", a.ID)...)
	if err := l1.Err(); err != nil {
		t.Errorf("Err of a held lock: %v", err)
	}
	e.must(l1.Delete(e.ctx, uids[:1]), "Delete under the lock")
	if l := e.list(a.ID); len(l) != 2 || l[0].UID != uids[1] {
		t.Errorf("after Delete under the lock the mailbox lists %+v, want UIDs %v", l, uids[1:])
	}

	l1.Unlock()
	wantErr(t, l1.Err(), store.ErrLockLost, "Err after Unlock")
	l2, err := e.s.Lock(e.ctx, a.ID, "session 4")
	e.must(err, "Lock after Unlock")
	l1.Unlock() // harmless, and must not release session 4's lock
	_, err = e.s.Lock(e.ctx, a.ID, "session 5")
	wantErr(t, err, store.ErrLocked, "Lock after a stale Unlock")
	// A released acquisition deletes nothing, even while another holds
	// the lock.
	wantErr(t, l1.Delete(e.ctx, uids[1:2]), store.ErrLockLost, "Delete with a released lock")
	if l := e.list(a.ID); len(l) != 2 {
		t.Errorf("Delete with a released lock deleted: the mailbox lists %+v", l)
	}
	e.must(l2.Delete(e.ctx, uids[1:2]), "Delete under the second lock")
	l2.Unlock()
	lb.Unlock()
	e.wantUsage(a.ID, 1, int64(len("three\r\n")))

	_, err = e.s.Lock(e.ctx, b.ID+1000, "session 6")
	wantErr(t, err, store.ErrNotFound, "Lock of an unknown mailbox")
}

func testConcurrentDeliver(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	const workers, each = 4, 8
	var (
		mu     sync.Mutex
		bodies = map[int64]map[uint64]string{a.ID: {}, b.ID: {}}
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf("Subject: %d/%d\r\n\r\n%s\r\n", w, i, strings.Repeat("z", w*100+i))
				uids, err := e.s.Deliver(e.ctx, strings.NewReader(body), to(a.ID, b.ID))
				if err != nil {
					t.Errorf("Deliver: %v", err)
					return
				}
				mu.Lock()
				for j, id := range []int64{a.ID, b.ID} {
					if _, dup := bodies[id][uids[j]]; dup {
						t.Errorf("UID %d assigned twice in mailbox %d", uids[j], id)
					}
					bodies[id][uids[j]] = body
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, id := range []int64{a.ID, b.ID} {
		l := e.list(id)
		if len(l) != workers*each {
			t.Errorf("mailbox %d has %d messages, want %d", id, len(l), workers*each)
		}
		for _, m := range l {
			want, ok := bodies[id][m.UID]
			if !ok {
				t.Errorf("mailbox %d lists UID %d, which Deliver never returned", id, m.UID)
				continue
			}
			if got := string(e.read(id, m.UID)); got != want || m.Size != int64(len(want)) {
				t.Errorf("mailbox %d UID %d: size %d, body %.20q; want %d, %.20q", id, m.UID, m.Size, got, len(want), want)
			}
		}
	}
}

func testBodies(t *testing.T, e *env) {
	u := e.addUser("alice@example.com", 0)
	var all []byte
	for i := range 256 {
		all = append(all, byte(i))
	}
	big := bytes.Repeat([]byte("0123456789abcdef\r\n\xe9\xff"), 20000) // larger than any I/O buffer
	for _, body := range [][]byte{{}, all, big} {
		uid := e.deliver(string(body), u.ID)[0]
		if l := e.list(u.ID); l[len(l)-1].Size != int64(len(body)) {
			t.Errorf("size of a %d-byte body listed as %d", len(body), l[len(l)-1].Size)
		}
		if got := e.read(u.ID, uid); !bytes.Equal(got, body) {
			t.Errorf("%d-byte body read back as %d bytes, not identical", len(body), len(got))
		}
	}
}

// testDeliverHeaders: each copy carries its own header before the one
// shared body, and the header counts in its size.
func testDeliverHeaders(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 0)
	b := e.addUser("bob@example.com", 0)
	c := e.addUser("carol@example.com", 0)
	body := "Subject: hello\r\n\r\nshared body\r\n"
	rcpts := []store.Delivery{
		{UserID: a.ID, Header: []byte("Delivered-To: alice@example.com\r\n")},
		{UserID: b.ID, Header: []byte("Delivered-To: bob@example.com\r\nX-Extra: 1\r\n")},
		{UserID: c.ID}, // no header: the body alone
	}
	got, err := e.s.Deliver(e.ctx, strings.NewReader(body), rcpts)
	e.must(err, "Deliver with headers")
	if len(got) != len(rcpts) {
		t.Fatalf("Deliver returned %d UIDs for %d recipients", len(got), len(rcpts))
	}
	check := func(when string) {
		t.Helper()
		for i, r := range rcpts {
			want := string(r.Header) + body
			if l := e.list(r.UserID); !slices.Equal(l, []store.MessageInfo{{UID: got[i], Size: int64(len(want))}}) {
				t.Errorf("%s: user %d lists %v, want [{%d %d}] (header counted in the size)", when, r.UserID, l, got[i], len(want))
			}
			if r := string(e.read(r.UserID, got[i])); r != want {
				t.Errorf("%s: user %d reads %q, want %q", when, rcpts[i].UserID, r, want)
			}
			e.wantUsage(r.UserID, 1, int64(len(want)))
		}
	}
	check("after Deliver")
	e.reopen()
	check("after a restart")

	// Deleting one copy leaves the others, header and body, intact.
	e.del(a.ID, got[0])
	e.wantUsage(a.ID, 0, 0)
	want := string(rcpts[1].Header) + body
	if r := string(e.read(b.ID, got[1])); r != want {
		t.Errorf("after deleting alice's copy, bob reads %q, want %q", r, want)
	}

	// A header that is not whole CRLF lines would run into the body.
	for _, bad := range []string{"Delivered-To: x@example.com", "A: 1\nB: 2\r\n", "A: 1\r\r\n", "A: 1\n"} {
		_, err := e.s.Deliver(e.ctx, strings.NewReader(body), []store.Delivery{{UserID: c.ID, Header: []byte(bad)}})
		wantErr(t, err, store.ErrInvalid, fmt.Sprintf("Deliver with header %q", bad))
	}
	e.wantUsage(c.ID, 1, int64(len(body)))
}

// testHeaderQuota: the per-copy header counts against the quota.
func testHeaderQuota(t *testing.T, e *env) {
	a := e.addUser("alice@example.com", 100)
	b := e.addUser("bob@example.com", 100)
	body := strings.Repeat("x", 90) + "\r\n" // 92 octets
	h9 := []byte("X-Nine:\r\n")              // 9 octets: 101 in all
	h8 := []byte("X-Ate:\r\n")               // 8 octets: 100, the quota
	if len(body) != 92 || len(h9) != 9 || len(h8) != 8 {
		t.Fatalf("test data: %d, %d and %d octets", len(body), len(h9), len(h8))
	}
	_, err := e.s.Deliver(e.ctx, strings.NewReader(body), []store.Delivery{{UserID: b.ID}, {UserID: a.ID, Header: h9}})
	wantErr(t, err, store.ErrQuota, "Deliver of body+header one byte over quota")
	e.wantUsage(a.ID, 0, 0)
	e.wantUsage(b.ID, 0, 0)

	_, err = e.s.Deliver(e.ctx, strings.NewReader(body), []store.Delivery{{UserID: b.ID}, {UserID: a.ID, Header: h8}})
	e.must(err, "Deliver of body+header exactly at the quota")
	e.wantUsage(a.ID, 1, 100)
	e.wantUsage(b.ID, 1, 92)

	e.del(a.ID, e.list(a.ID)[0].UID)
	e.wantUsage(a.ID, 0, 0)
}

func (e *env) enqueue(from string, rcpts []string, body string) int64 {
	e.t.Helper()
	id, err := e.s.Enqueue(e.ctx, store.QueueEnvelope{From: from, To: rcpts}, strings.NewReader(body))
	if err != nil {
		e.t.Fatalf("Enqueue(%q, %v): %v", from, rcpts, err)
	}
	return id
}

func (e *env) readQueued(id int64) string {
	e.t.Helper()
	rc, err := e.s.OpenQueued(e.ctx, id)
	if err != nil {
		e.t.Fatalf("OpenQueued(%d): %v", id, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		e.t.Fatalf("reading queued message %d: %v", id, err)
	}
	return string(b)
}

func pending(addrs ...string) []store.QueueRecipient {
	rs := make([]store.QueueRecipient, len(addrs))
	for i, a := range addrs {
		rs[i] = store.QueueRecipient{Address: a, State: store.QueuePending}
	}
	return rs
}

// sameQueued compares everything but the times, which it checks apart:
// CreatedAt within [notBefore, notAfter] (at a precision of a second) and
// NextAttempt equal to it, as for a message never tried.
func sameQueued(t *testing.T, got, want store.QueuedMessage, notBefore, notAfter time.Time, what string) {
	t.Helper()
	if got.CreatedAt.Before(notBefore.Truncate(time.Second)) || got.CreatedAt.After(notAfter) {
		t.Errorf("%s: CreatedAt %v, want between %v and %v", what, got.CreatedAt, notBefore, notAfter)
	}
	if !got.NextAttempt.Equal(got.CreatedAt) {
		t.Errorf("%s: NextAttempt %v, want CreatedAt %v", what, got.NextAttempt, got.CreatedAt)
	}
	if got.ID != want.ID || got.From != want.From || got.Size != want.Size || got.Attempts != want.Attempts ||
		got.Held != want.Held || got.Ret != want.Ret || got.EnvID != want.EnvID || !reflect.DeepEqual(got.Recipients, want.Recipients) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func testQueue(t *testing.T, e *env) {
	if l, err := e.s.ListQueue(e.ctx); err != nil || len(l) != 0 {
		t.Errorf("ListQueue of a new store = %v, %v; want empty", l, err)
	}
	before := time.Now()
	body := "From: alice@example.com\r\nSubject: out\r\n\r\n\x00\xffbinary-safe\r\n"
	// Remote addresses are kept as given: their local parts may be case
	// sensitive.
	rcpts := []string{"Zed@Remote.example", "amy@remote.example", "\"odd local\"@other.example"}
	id := e.enqueue("alice@example.com", rcpts, body)
	bounceBody := "Subject: bounce\r\n\r\n"
	bounce := e.enqueue("", []string{"bob@remote.example"}, bounceBody)
	after := time.Now()
	if id == bounce {
		t.Fatalf("Enqueue returned the ID %d twice", id)
	}

	want := store.QueuedMessage{ID: id, From: "alice@example.com", Recipients: pending(rcpts...), Size: int64(len(body))}
	wantBounce := store.QueuedMessage{ID: bounce, From: "", Recipients: pending("bob@remote.example"), Size: int64(len(bounceBody))}
	got, err := e.s.QueuedMessage(e.ctx, id)
	e.must(err, "QueuedMessage")
	sameQueued(t, got, want, before, after, "QueuedMessage")
	got, err = e.s.QueuedMessage(e.ctx, bounce)
	e.must(err, "QueuedMessage")
	sameQueued(t, got, wantBounce, before, after, "QueuedMessage of a null-sender message")

	l, err := e.s.ListQueue(e.ctx)
	e.must(err, "ListQueue")
	if len(l) != 2 {
		t.Fatalf("ListQueue = %+v, want 2 entries", l)
	}
	sameQueued(t, l[0], want, before, after, "ListQueue[0]")
	sameQueued(t, l[1], wantBounce, before, after, "ListQueue[1]")

	if r := e.readQueued(id); r != body {
		t.Errorf("OpenQueued = %q, want %q", r, body)
	}

	e.must(e.s.DeleteQueued(e.ctx, id), "DeleteQueued")
	_, err = e.s.QueuedMessage(e.ctx, id)
	wantErr(t, err, store.ErrNotFound, "QueuedMessage after DeleteQueued")
	_, err = e.s.OpenQueued(e.ctx, id)
	wantErr(t, err, store.ErrNotFound, "OpenQueued after DeleteQueued")
	wantErr(t, e.s.DeleteQueued(e.ctx, id), store.ErrNotFound, "DeleteQueued twice")
	_, err = e.s.QueuedMessage(e.ctx, bounce+1000)
	wantErr(t, err, store.ErrNotFound, "QueuedMessage of an ID never assigned")
	_, err = e.s.OpenQueued(e.ctx, bounce+1000)
	wantErr(t, err, store.ErrNotFound, "OpenQueued of an ID never assigned")

	l, err = e.s.ListQueue(e.ctx)
	if err != nil || len(l) != 1 || l[0].ID != bounce {
		t.Errorf("ListQueue after DeleteQueued = %+v, %v; want only %d", l, err, bounce)
	}
	if r := e.readQueued(bounce); r != bounceBody {
		t.Errorf("the other queued message reads %q after DeleteQueued", r)
	}
	e.must(e.s.DeleteQueued(e.ctx, bounce), "DeleteQueued")
	if l, err := e.s.ListQueue(e.ctx); err != nil || len(l) != 0 {
		t.Errorf("ListQueue once all are deleted = %v, %v; want empty", l, err)
	}
	// IDs are not handed out again.
	if again := e.enqueue("", []string{"x@remote.example"}, "x\r\n"); again == id || again == bounce {
		t.Errorf("Enqueue after DeleteQueued reused ID %d", again)
	}
}

func testQueueOrder(t *testing.T, e *env) {
	var ids []int64
	for i := range 5 {
		ids = append(ids, e.enqueue("", []string{fmt.Sprintf("r%d@remote.example", i)}, fmt.Sprintf("%d\r\n", i)))
	}
	e.must(e.s.DeleteQueued(e.ctx, ids[1]), "DeleteQueued")
	ids = slices.Delete(ids, 1, 2)
	l, err := e.s.ListQueue(e.ctx)
	e.must(err, "ListQueue")
	var got []int64
	for i, m := range l {
		got = append(got, m.ID)
		if i > 0 && m.CreatedAt.Before(l[i-1].CreatedAt) {
			t.Errorf("ListQueue: entry %d created %v before entry %d, %v", m.ID, m.CreatedAt, l[i-1].ID, l[i-1].CreatedAt)
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("ListQueue IDs = %v, want %v (oldest first)", got, ids)
	}
}

// testQueueRestart: Enqueue is durable once it returns.
func testQueueRestart(t *testing.T, e *env) {
	body := "Subject: survives\r\n\r\n" + strings.Repeat("y", 100000) + "\r\n"
	id := e.enqueue("alice@example.com", []string{"a@remote.example", "b@remote.example"}, body)
	before, err := e.s.QueuedMessage(e.ctx, id)
	e.must(err, "QueuedMessage")
	e.reopen()
	got, err := e.s.QueuedMessage(e.ctx, id)
	e.must(err, "QueuedMessage after a restart")
	sameQueued(t, got, before, before.CreatedAt, before.CreatedAt, "QueuedMessage after a restart")
	if r := e.readQueued(id); r != body {
		t.Errorf("queued body after a restart: %d octets, want %d", len(r), len(body))
	}
	e.must(e.s.DeleteQueued(e.ctx, id), "DeleteQueued")
	e.reopen()
	_, err = e.s.QueuedMessage(e.ctx, id)
	wantErr(t, err, store.ErrNotFound, "QueuedMessage after DeleteQueued and a restart")
}

// testQueueRefused: an Enqueue that fails queues nothing.
func testQueueRefused(t *testing.T, e *env) {
	one := []string{"a@remote.example"}
	for _, env := range []store.QueueEnvelope{
		{From: "alice@example.com"},
		{From: "alice@example.com", To: []string{}},
		{From: "alice@example.com", To: []string{""}},
		{From: "alice@example.com", To: []string{"no-at-sign"}},
		{From: "alice@example.com", To: []string{"a@remote.example\r\nRCPT TO:<b@remote.example>"}},
		{From: "alice@example.com", To: []string{"a@remote.example", "a@remote.example"}},
		{From: "bad\nsender@example.com", To: one},
		// DSN parameters as RFC 3461 section 4 does not allow them.
		{To: one, DSN: []dsn.RcptParams{{}, {}}},
		{To: one, DSN: []dsn.RcptParams{{Notify: []string{"NEVER", "SUCCESS"}}}},
		{To: one, DSN: []dsn.RcptParams{{Notify: []string{"SOMETIMES"}}}},
		{To: one, DSN: []dsn.RcptParams{{Notify: []string{}}}},
		{To: one, DSN: []dsn.RcptParams{{ORcptType: "rfc822", ORcpt: "a@b\r\nX: y"}}},
		{To: one, DSN: []dsn.RcptParams{{ORcpt: "a@remote.example"}}},
		{To: one, Ret: "BODY"},
		{To: one, EnvID: "id\x00"},
		{To: one, EnvID: strings.Repeat("x", 101)},
	} {
		_, err := e.s.Enqueue(e.ctx, env, strings.NewReader("x\r\n"))
		wantErr(t, err, store.ErrInvalid, fmt.Sprintf("Enqueue(%+v)", env))
	}
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	if _, err := e.s.Enqueue(ctx, store.QueueEnvelope{To: one}, strings.NewReader("x\r\n")); err == nil {
		t.Errorf("Enqueue with a cancelled context succeeded")
	}
	_, err := e.s.Enqueue(e.ctx, store.QueueEnvelope{To: one}, io.MultiReader(strings.NewReader("partial"), errReader{}))
	if !errors.Is(err, errBroken) {
		t.Errorf("Enqueue of a failing reader: error %v, want it to wrap the reader's", err)
	}
	if l, err := e.s.ListQueue(e.ctx); err != nil || len(l) != 0 {
		t.Errorf("ListQueue after refused Enqueues = %+v, %v; want empty", l, err)
	}
}
