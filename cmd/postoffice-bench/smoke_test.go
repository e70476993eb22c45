package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/message"
	"github.com/postoffice-mail/postoffice/internal/pop3"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// The smoke test runs every workload of the load generator briefly against
// an in-process postoffice: the POP3 server and the SMTP server over the
// real SQLite store, with small adapters standing in for internal/server.

type testPOP3Backend struct {
	st   *sqlite.Store
	auth *directory.Authenticator
}

func (b testPOP3Backend) Authenticate(ctx context.Context, login, password string) (string, error) {
	u, err := b.auth.Authenticate(ctx, login, password)
	if err != nil {
		return "", pop3.ErrAuthFailed
	}
	return u.Address, nil
}

func (b testPOP3Backend) OpenMaildrop(ctx context.Context, user string) (pop3.Maildrop, error) {
	u, err := b.st.UserByAddress(ctx, user)
	if err != nil {
		return nil, err
	}
	lock, err := b.st.Lock(ctx, u.ID, "smoke")
	if errors.Is(err, store.ErrLocked) {
		return nil, pop3.ErrInUse
	} else if err != nil {
		return nil, err
	}
	infos, err := b.st.List(ctx, u.ID, 0)
	if err != nil {
		lock.Unlock()
		return nil, err
	}
	md := &testMaildrop{st: b.st, user: u.ID, lock: lock, infos: infos}
	for _, m := range infos {
		md.msgs = append(md.msgs, pop3.Message{UID: "uid-" + strconv.FormatUint(m.UID, 10), Size: m.Size})
	}
	return md, nil
}

type testMaildrop struct {
	st    *sqlite.Store
	user  int64
	lock  store.MaildropLock
	infos []store.MessageInfo
	msgs  []pop3.Message
}

func (m *testMaildrop) Stat() (int, int64) {
	var size int64
	for _, x := range m.msgs {
		size += x.Size
	}
	return len(m.msgs), size
}
func (m *testMaildrop) Messages(context.Context) ([]pop3.Message, error) { return m.msgs, nil }
func (m *testMaildrop) Open(ctx context.Context, i int) (io.ReadCloser, error) {
	return m.st.Open(ctx, m.user, m.infos[i].UID)
}
func (m *testMaildrop) Commit(ctx context.Context, deleted []int) error {
	uids := make([]uint64, len(deleted))
	for k, i := range deleted {
		uids[k] = m.infos[i].UID
	}
	return m.st.Delete(ctx, m.user, uids)
}
func (m *testMaildrop) Close() error { m.lock.Unlock(); return nil }

type testSMTPBackend struct{ st *sqlite.Store }

func (testSMTPBackend) Authenticate(context.Context, string, string) (string, error) {
	return "", smtpd.ErrAuthFailed
}
func (testSMTPBackend) CheckSender(context.Context, *smtpd.Envelope) error { return nil }
func (b testSMTPBackend) CheckRecipient(ctx context.Context, _ *smtpd.Envelope, rcpt string) error {
	if _, err := b.st.UserByAddress(ctx, rcpt); err != nil {
		return smtpreply.New(550, "5.1.1", "no such user")
	}
	return nil
}
func (b testSMTPBackend) Deliver(ctx context.Context, env *smtpd.Envelope, body io.Reader) error {
	var ds []store.Delivery
	for _, to := range env.To {
		u, err := b.st.UserByAddress(ctx, to)
		if err != nil {
			return err
		}
		ds = append(ds, store.Delivery{UserID: u.ID})
	}
	_, err := b.st.Deliver(ctx, message.Canonical(body), ds)
	return err
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSmokeWorkloads(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := sqlite.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	users, err := usersFromPattern("user%d@bench.test", 4, "pw")
	if err != nil {
		t.Fatal(err)
	}
	hash, err := makeHash("pw", "cheap")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, u := range users {
		su, err := st.AddUser(ctx, store.User{Address: u.Name, PasswordHash: hash, Enabled: true})
		if err != nil {
			t.Fatal(err)
		}
		ids[u.Name] = su.ID
	}
	// The bulk loader writes the store's schema directly: check that what
	// it loads reads back through the store's API.
	var items []mailItem
	for i, u := range users {
		for k := range 3 {
			items = append(items, mailItem{user: u.Name, body: generateMessage(u.Name, i*10+k, 600+k*1000)})
		}
	}
	if err := bulkDeliver(ctx, dir, ids, items); err != nil {
		t.Fatal(err)
	}
	for _, u := range users[:1] {
		infos, err := st.List(ctx, ids[u.Name], 0)
		if err != nil || len(infos) != 3 {
			t.Fatalf("List after bulk load: %v, %v", infos, err)
		}
		for k, m := range infos {
			rc, err := st.Open(ctx, ids[u.Name], m.UID)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			if want := items[k].body; !bytes.Equal(got, want) || m.Size != int64(len(want)) {
				t.Errorf("message %d: %d octets (listed %d), want %d", k, len(got), m.Size, len(want))
			}
		}
		if n, size, err := st.Usage(ctx, ids[u.Name]); err != nil || n != 3 {
			t.Errorf("Usage after bulk load = %d, %d, %v", n, size, err)
		}
	}

	discard := slog.New(slog.DiscardHandler)
	ps := pop3.NewServer(pop3.Config{Hostname: "smoke", Logger: discard, AuthFailureDelay: -1,
		Backend: testPOP3Backend{st: st, auth: directory.NewAuthenticator(st)}})
	pl := listen(t)
	go ps.Serve(pl)
	defer ps.Close()
	ss := smtpd.NewServer(smtpd.Config{Hostname: "smoke", Logger: discard, Backend: testSMTPBackend{st: st}})
	sl := listen(t)
	go ss.Serve(sl)
	defer ss.Close()

	check := func(res Result, err error, op string, wantOps int) Result {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if res.Errors() > 0 {
			t.Fatalf("%s: %d errors: %v", res.Workload, res.Errors(), res.ErrorSamples)
		}
		if got := res.Ops[op].Ops; got != wantOps {
			t.Errorf("%s: %d %s ops, want %d", res.Workload, got, op, wantOps)
		}
		return res
	}

	res, err := runWorkload(ctx, "intake", loadOpts{Addr: sl.Addr().String(), Users: users, Concurrency: 2,
		Count: 9, PerConn: 2, Sizes: sizeDist{min: 2048, max: 2048, median: 2048}})
	check(res, err, "message", 9)
	total := 0
	for _, u := range users {
		n, _, _ := st.Usage(ctx, ids[u.Name])
		total += n
	}
	if total != 12+9 {
		t.Errorf("%d messages stored after intake, want 21", total)
	}

	addr := pl.Addr().String()
	res, err = runWorkload(ctx, "poll", loadOpts{Addr: addr, Users: users, Concurrency: 3, Count: 10})
	check(res, err, "session", 10)
	if res.Ops["uidl"].Ops != 10 || res.Ops["login"].Ops != 10 {
		t.Errorf("poll ops: %+v", res.Ops)
	}
	res, err = runWorkload(ctx, "poll", loadOpts{Addr: addr, Users: users, Concurrency: 2, Duration: 200 * time.Millisecond})
	if err != nil || res.Ops["session"].Ops == 0 {
		t.Errorf("poll for a duration: %+v, %v", res.Ops, err)
	}
	res, err = runWorkload(ctx, "bigmbox", loadOpts{Addr: addr, Users: users[:1]})
	check(res, err, "session", 1)
	if res.Ops["list"].Bytes == 0 || res.Ops["uidl"].Bytes == 0 {
		t.Errorf("bigmbox read nothing: %+v", res.Ops)
	}
	res, err = runWorkload(ctx, "idle", loadOpts{Addr: addr, Users: users, Concurrency: 2, Hold: 10 * time.Millisecond,
		measure: func(c *collector) { c.set("measured", 1) }})
	check(res, err, "login", 4)
	if res.Values["sessions_open"] != 4 || res.Values["measured"] != 1 {
		t.Errorf("idle values: %v", res.Values)
	}
	res, err = runWorkload(ctx, "download", loadOpts{Addr: addr, Users: users, Concurrency: 2})
	check(res, err, "session", 4)
	check(res, nil, "retr", 21)
	for _, u := range users {
		if n, _, _ := st.Usage(ctx, ids[u.Name]); n != 0 {
			t.Errorf("%s has %d messages after download", u.Name, n)
		}
	}

	// Two streams (compare --checks): the connections take them in turn,
	// each with its own source address, sender, From field and signing
	// (one sender at a time, so that each connection sends PerConn).
	mark := []byte("X-Signed: yes\r\n")
	res, err = runWorkload(ctx, "intake", loadOpts{Users: users, Concurrency: 1, Count: 8, PerConn: 2,
		Sizes: sizeDist{min: 2048, max: 2048, median: 2048}, Streams: []intakeStream{
			{Addr: sl.Addr().String(), LocalIP: "127.0.0.2", Helo: "mail.sender.test", From: "s@sender.test",
				FromField: "<s@sender.test>", Sign: func(m []byte) ([]byte, error) { return append(mark, m...), nil }},
			{Addr: sl.Addr().String(), From: "user1@bench.test", FromField: "<user1@bench.test>"},
		}})
	check(res, err, "message", 8)
	var signed, local int
	for _, u := range users {
		infos, err := st.List(ctx, ids[u.Name], 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range infos {
			rc, err := st.Open(ctx, ids[u.Name], m.UID)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(rc)
			rc.Close()
			switch {
			case bytes.HasPrefix(got, append(mark, "From: <s@sender.test>\r\n"...)):
				signed++
			case bytes.HasPrefix(got, []byte("From: <user1@bench.test>\r\n")):
				local++
			default:
				t.Errorf("a message of neither stream: %.80q", got)
			}
		}
	}
	if signed != 4 || local != 4 {
		t.Errorf("%d messages of the signed stream and %d of the other, want 4 and 4", signed, local)
	}

	// Paced: 8 RETRs at 100 a second, due 10 ms apart, take at least 70 ms;
	// a RETR's latency from its slot is never less than from its sending.
	res, err = runWorkload(ctx, "download", loadOpts{Addr: addr, Users: users, Concurrency: 2, Rate: 100})
	check(res, err, "retr", 8)
	check(res, nil, "retr-sent", 8)
	if res.Workload != "download-paced" || res.Seconds < 0.07 {
		t.Errorf("paced download: workload %q in %.3f s, want download-paced in at least 0.07 s", res.Workload, res.Seconds)
	}
	if due, sent := res.Ops["retr"].Latency, res.Ops["retr-sent"].Latency; due.Mean < sent.Mean || due.Max < sent.Max {
		t.Errorf("latency from the slot %+v is less than from sending %+v", due, sent)
	}

	// The command line: one run, as JSON and as a table.
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"run", "--workload", "poll", "--addr", addr, "--users", "user%d@bench.test",
		"--nusers", "4", "--password", "pw", "--count", "4", "--json"}, &out, &errOut); code != 0 {
		t.Fatalf("run exited %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), `"ops_per_sec"`) {
		t.Errorf("JSON output: %s", out.String())
	}
	out.Reset()
	if code := run(ctx, []string{"run", "--workload", "poll", "--addr", addr, "--nusers", "4", "--password", "wrong",
		"--count", "1"}, &out, &errOut); code != 1 {
		t.Errorf("a failing run exited %d, want 1", code)
	}
	if !strings.Contains(out.String(), "AUTH") {
		t.Errorf("the failure is not in the table:\n%s", out.String())
	}
}
