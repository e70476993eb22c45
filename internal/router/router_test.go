package router_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

type fixture struct {
	t   *testing.T
	st  *sqlite.Store
	ids map[string]int64
}

func newFixture(t *testing.T, opts ...func(*router.Options)) (*fixture, *router.Router) {
	t.Helper()
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{t: t, st: st, ids: map[string]int64{}}
	o := router.Options{
		Hostname: "mx.test", Store: st, CatchAll: true, SpoolDir: t.TempDir(),
		Now: func() time.Time { return time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC) },
	}
	for _, fn := range opts {
		fn(&o)
	}
	return f, router.New(o)
}

func (f *fixture) user(addr string, quota int64) {
	f.t.Helper()
	u, err := f.st.AddUser(context.Background(), store.User{Address: addr, PasswordHash: "x", Enabled: true, QuotaBytes: quota})
	if err != nil {
		f.t.Fatal(err)
	}
	f.ids[addr] = u.ID
}

func (f *fixture) alias(addr string, targets ...string) {
	f.t.Helper()
	if err := f.st.SetAlias(context.Background(), store.Alias{Address: addr, Targets: targets}); err != nil {
		f.t.Fatal(err)
	}
}

// mailbox returns the bodies in a user's mailbox.
func (f *fixture) mailbox(addr string) []string {
	f.t.Helper()
	ctx := context.Background()
	infos, err := f.st.List(ctx, f.ids[addr], 0)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, m := range infos {
		rc, err := f.st.Open(ctx, f.ids[addr], m.UID)
		if err != nil {
			f.t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		if int64(len(b)) != m.Size {
			f.t.Errorf("size %d recorded, %d stored", m.Size, len(b))
		}
		out = append(out, string(b))
	}
	return out
}

func (f *fixture) queue() []store.QueuedMessage {
	f.t.Helper()
	q, err := f.st.ListQueue(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return q
}

const body = "From: s@remote.test\r\nSubject: hi\r\n\r\nhello\r\n"

func mx(from string, to ...string) *router.Envelope {
	return &router.Envelope{From: from, To: to, Helo: "client.test", RemoteAddr: "192.0.2.7:4567", Protocol: "ESMTP", Source: "smtp"}
}

func TestAliasExpansionDeduplicatesAndQueuesRemote(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.user("b@local.test", 0)
	if err := f.st.AddAddress(context.Background(), f.ids["b@local.test"], "bee@local.test"); err != nil {
		t.Fatal(err)
	}
	f.alias("team@local.test", "a@local.test", "b@local.test", "x@remote.test")
	f.alias("all@local.test", "team@local.test", "bee@local.test", "all@local.test", "x@remote.test")
	if err := r.Route(context.Background(), mx("s@remote.test", "all@local.test", "a@local.test"), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"a@local.test", "b@local.test"} {
		got := f.mailbox(u)
		if len(got) != 1 {
			t.Fatalf("%s has %d copies, want 1", u, len(got))
		}
		if !strings.HasSuffix(got[0], body) || !strings.Contains(got[0], "Delivered-To: "+u+"\r\n") ||
			!strings.HasPrefix(got[0], "Return-Path: <s@remote.test>\r\n") {
			t.Errorf("%s copy: %q", u, got[0])
		}
	}
	q := f.queue()
	if len(q) != 1 || len(q[0].Recipients) != 1 || q[0].Recipients[0].Address != "x@remote.test" || q[0].From != "s@remote.test" {
		t.Fatalf("queue: %+v", q)
	}
	// The queued copy has the Received field but no local trace fields.
	rc, _ := f.st.OpenQueued(context.Background(), q[0].ID)
	qb, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.HasPrefix(string(qb), "Received: from client.test ([192.0.2.7])") || strings.Contains(string(qb), "Return-Path") || !strings.HasSuffix(string(qb), body) {
		t.Errorf("queued copy: %q", qb)
	}
}

func TestRefusals(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.alias("loop1@local.test", "loop2@local.test")
	f.alias("loop2@local.test", "loop1@local.test")
	ctx := context.Background()
	for _, tc := range []struct {
		env   *router.Envelope
		rcpt  string
		code  int
		cause error
	}{
		{mx("s@remote.test"), "nobody@local.test", 550, router.ErrUnknownUser},
		{mx("s@remote.test"), "x@elsewhere.test", 554, router.ErrRelayDenied},
		{mx("s@remote.test"), "not an address", 501, router.ErrBadRecipient},
		{mx("s@remote.test"), "loop1@local.test", 554, router.ErrLoop},
		{&router.Envelope{Source: "deliver", Protocol: "local"}, "x@elsewhere.test", 550, router.ErrUnknownUser},
	} {
		err := r.CheckRecipient(ctx, tc.env, tc.rcpt)
		var re *router.Error
		if !errors.As(err, &re) || re.Reply.Code != tc.code || !errors.Is(err, tc.cause) {
			t.Errorf("%s: got %v, want %d (%v)", tc.rcpt, err, tc.code, tc.cause)
		}
	}
	// An authenticated client may send anywhere.
	auth := mx("a@local.test")
	auth.AuthUser = "a@local.test"
	if err := r.CheckRecipient(ctx, auth, "x@elsewhere.test"); err != nil {
		t.Errorf("authenticated relay refused: %v", err)
	}
}

func TestHopLimit(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	msg := strings.Repeat("Received: from x by y; Wed, 25 Nov 2026 10:00:00 +0000\r\n", 31) + body
	err := r.Route(context.Background(), mx("s@remote.test", "a@local.test"), strings.NewReader(msg))
	var re *router.Error
	if !errors.As(err, &re) || re.Reply.Code != 554 || re.Reply.Status.String() != "5.4.6" {
		t.Fatalf("31 hops: %v", err)
	}
	if n := len(f.mailbox("a@local.test")); n != 0 {
		t.Fatalf("looping message stored %d times", n)
	}
	// A Delivered-To naming the mailbox already is a forwarding loop.
	msg = "Delivered-To: a@local.test\r\n" + body
	if err := r.Route(context.Background(), mx("s@remote.test", "a@local.test"), strings.NewReader(msg)); err == nil {
		t.Fatal("Delivered-To loop accepted")
	}
}

// A failure after acceptance (a dangling alias target) becomes a bounce
// that lands in the local sender's mailbox; the other target gets the mail.
func TestBounceToLocalSender(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.user("sender@local.test", 0)
	f.alias("list@local.test", "a@local.test", "gone@local.test")
	if err := r.Route(context.Background(), mx("sender@local.test", "list@local.test"), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if n := len(f.mailbox("a@local.test")); n != 1 {
		t.Fatalf("a has %d messages", n)
	}
	got := f.mailbox("sender@local.test")
	if len(got) != 1 {
		t.Fatalf("sender has %d messages, want the bounce", len(got))
	}
	b := got[0]
	for _, want := range []string{
		"Return-Path: <>\r\n",
		"Content-Type: multipart/report; report-type=delivery-status;",
		"Content-Type: message/delivery-status",
		"Final-Recipient: rfc822; gone@local.test",
		"Original-Recipient: rfc822; list@local.test",
		"Action: failed",
		"Status: 5.1.1",
		"Content-Type: text/rfc822-headers",
		"Subject: hi",
		"Auto-Submitted: auto-replied",
	} {
		if !strings.Contains(b, want) {
			t.Errorf("bounce lacks %q:\n%s", want, b)
		}
	}
}

// No bounce to the null sender, ever.
func TestNoBounceToNullSender(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.alias("list@local.test", "a@local.test", "gone@local.test")
	if err := r.Route(context.Background(), mx("", "list@local.test"), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if q := f.queue(); len(q) != 0 {
		t.Fatalf("something was queued: %+v", q)
	}
}

// When nothing can be delivered the transaction is refused, not bounced.
func TestQuotaRefusedNotBounced(t *testing.T) {
	f, r := newFixture(t)
	f.user("small@local.test", 100)
	err := r.Route(context.Background(), mx("s@remote.test", "small@local.test"), strings.NewReader(body+strings.Repeat("x", 200)))
	if !errors.Is(err, router.ErrQuota) {
		t.Fatalf("got %v, want ErrQuota", err)
	}
	if len(f.queue()) != 0 || len(f.mailbox("small@local.test")) != 0 {
		t.Fatal("refused message left traces")
	}
}

// Extension points: a deployment's resolver and envelope processor run in
// the same pipeline.
type rewriteResolver struct{}

func (rewriteResolver) Resolve(ctx context.Context, env *router.Envelope, rcpt string) ([]*router.Recipient, error) {
	if rcpt == "postmaster@local.test" {
		return nil, &router.Error{Reply: smtpreply.New(550, "5.7.1", "custom refusal")}
	}
	return nil, nil
}

type tagger struct{}

func (tagger) ProcessEnvelope(ctx context.Context, m *router.Message) error {
	m.Trace = append([]byte("X-Scanned: yes\r\n"), m.Trace...)
	return nil
}

func TestExtensionPoints(t *testing.T) {
	f, r := newFixture(t, func(o *router.Options) {
		o.ExtraResolvers = []router.Resolver{rewriteResolver{}}
		o.ExtraEnvelopeProcessors = []router.EnvelopeProcessor{tagger{}}
	})
	f.user("a@local.test", 0)
	if err := r.CheckRecipient(context.Background(), mx("s@remote.test"), "postmaster@local.test"); err == nil || err.Error() != "550 5.7.1 custom refusal" {
		t.Errorf("extra resolver not consulted: %v", err)
	}
	if err := r.Route(context.Background(), mx("s@remote.test", "a@local.test"), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if got := f.mailbox("a@local.test"); len(got) != 1 || !strings.Contains(got[0], "X-Scanned: yes\r\nReceived: ") {
		t.Errorf("extra processor not applied: %q", got)
	}
}

// Large messages are spooled to disk and still arrive intact.
func TestLargeMessageSpooled(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	big := body + strings.Repeat("0123456789abcdef\r\n", 200_000) // 3.6 MB
	if err := r.Route(context.Background(), mx("s@remote.test", "a@local.test"), strings.NewReader(big)); err != nil {
		t.Fatal(err)
	}
	got := f.mailbox("a@local.test")
	if len(got) != 1 || !strings.HasSuffix(got[0], big) {
		t.Fatal("large message damaged")
	}
}

func TestBareLFCanonicalised(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	env := &router.Envelope{From: "", To: []string{"a@local.test"}, Protocol: "local", Source: "deliver"}
	if err := r.Route(context.Background(), env, bytes.NewReader([]byte("Subject: x\n\nline\nlast"))); err != nil {
		t.Fatal(err)
	}
	want := "Return-Path: <>\r\nDelivered-To: a@local.test\r\nSubject: x\r\n\r\nline\r\nlast\r\n"
	if got := f.mailbox("a@local.test"); len(got) != 1 || got[0] != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// countingResolver counts the resolutions the router asks for and leaves
// them to the built-in resolver.
type countingResolver struct{ n map[string]int }

func (c *countingResolver) Resolve(ctx context.Context, env *router.Envelope, rcpt string) ([]*router.Recipient, error) {
	c.n[rcpt]++
	return nil, nil
}

// A transaction resolves each recipient once: at RCPT time
// (CheckRecipient), its result kept for Route. A Route without a check
// (the deliver command) resolves by itself.
func TestRecipientsResolvedOnce(t *testing.T) {
	c := &countingResolver{n: map[string]int{}}
	f, r := newFixture(t, func(o *router.Options) { o.ExtraResolvers = []router.Resolver{c} })
	f.user("a@local.test", 0)
	f.user("b@local.test", 1000)
	f.alias("team@local.test", "a@local.test", "b@local.test")
	env := mx("s@remote.test")
	for _, to := range []string{"a@local.test", "team@local.test"} {
		if err := r.CheckRecipient(context.Background(), env, to); err != nil {
			t.Fatal(err)
		}
		env.To = append(env.To, to)
	}
	if err := r.Route(context.Background(), env, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if c.n["a@local.test"] != 1 || c.n["team@local.test"] != 1 {
		t.Errorf("resolutions %v, want one per recipient", c.n)
	}
	if err := r.Route(context.Background(), mx("s@remote.test", "b@local.test"), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	if c.n["b@local.test"] != 1 {
		t.Errorf("Route without CheckRecipient resolved b %d times, want 1", c.n["b@local.test"])
	}
	// a once (deduplicated through the alias), b twice; b's quota (from
	// the resolution) was checked and let both in.
	if na, nb := len(f.mailbox("a@local.test")), len(f.mailbox("b@local.test")); na != 1 || nb != 2 {
		t.Errorf("a has %d messages, b %d; want 1 and 2", na, nb)
	}
}

// TestQuotedAddresses: envelope addresses in their written form (quoted
// local parts) keep it through the pipeline: a remote recipient is
// queued as written (its local part's case too), the trace fields write
// every address through package address, and a quoted local part of a
// local domain reaches the catch-all rather than an error.
func TestQuotedAddresses(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.alias("@local.test", "a@local.test")
	env := mx(`"john smith"@remote.test`, `"Big Boss"@Remote.TEST`)
	env.AuthUser = "a@local.test"
	if err := r.Route(context.Background(), env, strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	q := f.queue()
	if len(q) != 1 || q[0].From != `"john smith"@remote.test` || q[0].Recipients[0].Address != `"Big Boss"@remote.test` {
		t.Fatalf("queue: %+v", q)
	}
	rc, _ := f.st.OpenQueued(context.Background(), q[0].ID)
	qb, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.Contains(string(qb), "\tfor <\"Big Boss\"@Remote.TEST>;") {
		t.Errorf("queued copy: %q", qb)
	}

	if err := r.Route(context.Background(), mx(`"x y"@remote.test`, `"a b"@local.test`), strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	got := f.mailbox("a@local.test")
	if len(got) != 1 || !strings.HasPrefix(got[0], "Return-Path: <\"x y\"@remote.test>\r\nDelivered-To: a@local.test\r\n") {
		t.Fatalf("local copy: %q", got)
	}
	// What package address refuses never becomes a header field.
	err := r.Route(context.Background(), mx("a>b@remote.test", "a@local.test"), strings.NewReader(body))
	var re *router.Error
	if !errors.As(err, &re) || re.Reply.Code != 501 || re.Reply.Status.String() != "5.1.7" {
		t.Fatalf("unwritable sender: %v", err)
	}
}

// TestCheckSpace: below MinFree free octets, intake is refused with 452
// 4.3.1 before anything is stored, for a message whose size would take
// the store below it too; a free space that cannot be read stops nothing.
func TestCheckSpace(t *testing.T) {
	free, freeErr := int64(10_000), error(nil)
	f, r := newFixture(t, func(o *router.Options) {
		o.FreeSpace = func() (int64, error) { return free, freeErr }
		o.MinFree = 5_000
	})
	f.user("a@local.test", 0)
	ctx := context.Background()
	if err := r.CheckSpace(4_000); err != nil {
		t.Fatalf("4000 octets with 10000 free: %v", err)
	}
	var re *router.Error
	if err := r.CheckSpace(6_000); !errors.As(err, &re) || re.Reply.Code != 452 || re.Reply.Status.String() != "4.3.1" || !errors.Is(err, router.ErrNoSpace) {
		t.Fatalf("6000 octets with 10000 free, 5000 to keep: %v", err)
	}
	if err := r.Route(ctx, mx("s@remote.test", "a@local.test"), strings.NewReader(body+strings.Repeat("x", 6_000))); !errors.Is(err, router.ErrNoSpace) {
		t.Fatalf("a message that does not fit: %v", err)
	}
	free = 4_000
	if err := r.Route(ctx, mx("s@remote.test", "a@local.test"), strings.NewReader(body)); !errors.Is(err, router.ErrNoSpace) {
		t.Fatalf("below the minimum: %v", err)
	}
	if n := len(f.mailbox("a@local.test")); n != 0 {
		t.Fatalf("%d messages stored while short of space", n)
	}
	freeErr = errors.New("statfs failed")
	if err := r.Route(ctx, mx("s@remote.test", "a@local.test"), strings.NewReader(body)); err != nil {
		t.Fatalf("free space unknown: %v", err)
	}
}

// A mailbox copy has one Return-Path, the final delivery's (RFC 5321
// section 4.4): one the message brought, folded or not, whatever its
// case (Postfix's pipe(8) with the R flag adds one before calling
// deliver), is replaced; the queued copy for a remote recipient is
// untouched.
func TestReturnPathReplaced(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.alias("both@local.test", "a@local.test", "x@remote.test")
	msg := "Return-Path: <old@elsewhere.test>\r\nreturn-path:\r\n <older@elsewhere.test>\r\nFrom: s@remote.test\r\nSubject: hi\r\n\r\nReturn-Path: <in-the-body@x.test>\r\n"
	env := &router.Envelope{From: "s@remote.test", To: []string{"both@local.test"}, Protocol: "local", Source: "deliver"}
	if err := r.Route(context.Background(), env, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	got := f.mailbox("a@local.test")
	if len(got) != 1 {
		t.Fatalf("%d messages", len(got))
	}
	want := "Return-Path: <s@remote.test>\r\nDelivered-To: a@local.test\r\n" +
		"From: s@remote.test\r\nSubject: hi\r\n\r\nReturn-Path: <in-the-body@x.test>\r\n"
	if got[0] != want {
		t.Errorf("mailbox copy:\n%q\nwant\n%q", got[0], want)
	}
	q := f.queue()
	rc, _ := f.st.OpenQueued(context.Background(), q[0].ID)
	qb, _ := io.ReadAll(rc)
	rc.Close()
	if !strings.HasSuffix(string(qb), msg) {
		t.Errorf("queued copy changed: %q", qb)
	}
}

// TestCheckSender: with the rule on, a logged-in client sends only as one
// of its own addresses (its primary or an extra one); without a login, or
// with the rule off, any sender passes.
func TestCheckSender(t *testing.T) {
	f, r := newFixture(t)
	f.user("a@local.test", 0)
	f.user("b@local.test", 0)
	if err := f.st.AddAddress(context.Background(), f.ids["a@local.test"], "alias-a@local.test"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	env := func(from, user string) *router.Envelope {
		e := mx(from)
		e.AuthUser = user
		return e
	}
	for _, tc := range []struct {
		env      *router.Envelope
		ownOnly  bool
		code     int
		enhanced [3]int
	}{
		{env("a@local.test", "a@local.test"), true, 0, [3]int{}},
		{env("A@Local.Test", "a@local.test"), true, 0, [3]int{}},
		{env("alias-a@local.test", "a@local.test"), true, 0, [3]int{}},
		{env("b@local.test", "a@local.test"), true, 553, [3]int{5, 7, 1}},
		{env("x@elsewhere.test", "a@local.test"), true, 553, [3]int{5, 7, 1}},
		{env("", "a@local.test"), true, 553, [3]int{5, 7, 1}},
		{env(`"a b"@local.test`, "a@local.test"), true, 553, [3]int{5, 1, 7}},
		{env("b@local.test", "a@local.test"), false, 0, [3]int{}},
		{env("b@local.test", ""), true, 0, [3]int{}},
	} {
		err := r.CheckSender(ctx, tc.env, tc.ownOnly)
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%q as %q (own only %v): %v", tc.env.From, tc.env.AuthUser, tc.ownOnly, err)
			}
			continue
		}
		re, ok := smtpreply.As(err)
		if !ok || re.Code != tc.code || re.Status != (smtpreply.Status{Class: tc.enhanced[0], Subject: tc.enhanced[1], Detail: tc.enhanced[2]}) {
			t.Errorf("%q as %q: got %v, want %d %v", tc.env.From, tc.env.AuthUser, err, tc.code, tc.enhanced)
		}
	}
}
