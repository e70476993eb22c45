package server

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// signingRig is a router over a real store with DKIM keys for
// example.com, and what it journals.
type signingRig struct {
	t       *testing.T
	st      *sqlite.Store
	rt      *router.Router
	metrics *metrics.Metrics
	keys    []mailauth.Key
	journal []store.JournalEntry
	user    store.User
}

func newSigningRig(t *testing.T) *signingRig {
	t.Helper()
	st, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &signingRig{t: t, st: st, metrics: metrics.New("test", nil)}
	ctx := t.Context()
	if r.user, err = st.AddUser(ctx, store.User{Address: "alice@example.com", Enabled: true}); err != nil {
		t.Fatal(err)
	}
	if r.keys, err = mailauth.Keygen(ctx, st, "example.com", "", nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Hostname = "mail.example.com"
	log := slog.New(slog.DiscardHandler)
	record := func(_ context.Context, es []store.JournalEntry) { r.journal = append(r.journal, es...) }
	r.rt = newRouter(cfg, st, log, record, nil, newDKIMSigner(st, st, log, r.metrics))
	return r
}

func (r *signingRig) route(env *router.Envelope, msg string) {
	r.t.Helper()
	if err := r.rt.Route(r.t.Context(), env, strings.NewReader(msg)); err != nil {
		r.t.Fatalf("Route: %v", err)
	}
}

// lookup serves the records of the rig's keys, active or not.
func (r *signingRig) lookup(domain string) ([]string, error) {
	for _, k := range r.keys {
		if k.Selector+"._domainkey."+k.Domain == domain {
			txt, err := k.TXT()
			return []string{txt}, err
		}
	}
	return nil, &dkimNotFound{domain}
}

type dkimNotFound struct{ name string }

func (e *dkimNotFound) Error() string { return "no record at " + e.name }

// verify returns the d= and s= of every signature of msg that verifies;
// it fails the test on one that does not.
func (r *signingRig) verify(what string, msg []byte) []string {
	r.t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: r.lookup})
	if err != nil {
		r.t.Fatalf("%s: verify: %v", what, err)
	}
	var out []string
	for _, v := range vs {
		if v.Err != nil {
			r.t.Errorf("%s: signature of %s fails: %v\n%s", what, v.Domain, v.Err, msg)
			continue
		}
		out = append(out, v.Domain)
	}
	return out
}

func (r *signingRig) mailbox() [][]byte {
	r.t.Helper()
	infos, err := r.st.List(r.t.Context(), r.user.ID, 0)
	if err != nil {
		r.t.Fatal(err)
	}
	var out [][]byte
	for _, in := range infos {
		rc, err := r.st.Open(r.t.Context(), r.user.ID, in.UID)
		if err != nil {
			r.t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out = append(out, b)
	}
	return out
}

func (r *signingRig) queued() [][]byte {
	r.t.Helper()
	q, err := r.st.ListQueue(r.t.Context())
	if err != nil {
		r.t.Fatal(err)
	}
	var out [][]byte
	for _, m := range q {
		rc, err := r.st.OpenQueued(r.t.Context(), m.ID)
		if err != nil {
			r.t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		out = append(out, b)
	}
	return out
}

const signedMsg = "From: Alice <alice@example.com>\r\nTo: bob@remote.example, team@example.com\r\nSubject: signed\r\n" +
	"Message-ID: <1@example.com>\r\nDate: Sun, 06 Dec 2026 11:00:00 +0000\r\n\r\nHello.\r\n"

// TestSubmissionSignedOnce: mail from an authenticated user is signed
// with both keys of its From domain, once, and every copy carries the
// same signatures: the queued one for a remote recipient, the local
// mailbox's, and the queued copy an alias forwards; the journal and the
// metrics say so.
func TestSubmissionSignedOnce(t *testing.T) {
	r := newSigningRig(t)
	ctx := t.Context()
	if err := r.st.SetAlias(ctx, store.Alias{Address: "team@example.com", Targets: []string{"alice@example.com", "carol@elsewhere.example"}}); err != nil {
		t.Fatal(err)
	}
	r.route(&router.Envelope{From: "alice@example.com", To: []string{"bob@remote.example", "team@example.com"},
		AuthUser: "alice@example.com", Protocol: "ESMTPSA", Source: "submission", RemoteAddr: "192.0.2.1:1234"}, signedMsg)

	copies := append(r.mailbox(), r.queued()...)
	if len(copies) != 2 {
		t.Fatalf("%d copies (mailbox and queue), want 2: one local, one queued for both remote recipients", len(copies))
	}
	for i, c := range copies {
		if n := bytes.Count(c, []byte("DKIM-Signature:")); n != 2 {
			t.Errorf("copy %d has %d DKIM-Signature fields, want 2 (rsa and ed25519, once):\n%s", i, n, c)
		}
		if got := r.verify("copy", c); len(got) != 2 || got[0] != "example.com" || got[1] != "example.com" {
			t.Errorf("copy %d: verified signatures of %v, want two of example.com", i, got)
		}
		for _, k := range r.keys {
			if !bytes.Contains(c, []byte("s="+k.Selector+";")) {
				t.Errorf("copy %d is not signed with %s", i, k.Selector)
			}
		}
	}
	if len(r.journal) == 0 || !strings.Contains(r.journal[0].Detail, "dkim-signed d=example.com s="+r.keys[0].Selector+","+r.keys[1].Selector) {
		t.Errorf("the received journal entry does not name the signature: %+v", r.journal)
	}
	rec := httptest.NewRecorder()
	r.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`postoffice_dkim_signed_total{domain="example.com",result="ok"} 1`,
		`postoffice_dkim_signed_total{domain="example.com",result="failed"} 0`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestUnauthenticatedNotSigned: mail that came in from another host
// (port 25, no login) is not signed even when its From is a domain with
// keys and an alias forwards it out: our signature would vouch for a
// forgery.
func TestUnauthenticatedNotSigned(t *testing.T) {
	r := newSigningRig(t)
	if err := r.st.SetAlias(t.Context(), store.Alias{Address: "fwd@example.com", Targets: []string{"carol@elsewhere.example"}}); err != nil {
		t.Fatal(err)
	}
	r.route(&router.Envelope{From: "someone@example.com", To: []string{"fwd@example.com", "alice@example.com"},
		Protocol: "ESMTP", Source: "smtp", RemoteAddr: "198.51.100.7:25"}, signedMsg)
	for _, c := range append(r.mailbox(), r.queued()...) {
		if bytes.Contains(c, []byte("DKIM-Signature:")) {
			t.Errorf("mail from another host was signed:\n%s", c)
		}
	}
	if len(r.mailbox()) != 1 || len(r.queued()) != 1 {
		t.Fatalf("want one local and one forwarded copy")
	}
}

// TestBounceSignedAndRetiredKeys: a notification from MAILER-DAEMON at
// the hostname is signed with the keys of its parent domain; a retired key
// signs no more.
func TestBounceSignedAndRetiredKeys(t *testing.T) {
	r := newSigningRig(t)
	ctx := t.Context()
	retired := r.keys[1]
	if err := r.st.RetireDKIMKey(ctx, retired.Domain, retired.Selector, time.Now()); err != nil {
		t.Fatal(err)
	}
	// A message to a local user that does not exist, from a remote
	// sender via an alias target: the router bounces it to the sender.
	if err := r.st.SetAlias(ctx, store.Alias{Address: "list@example.com", Targets: []string{"alice@example.com", "ghost@example.com"}}); err != nil {
		t.Fatal(err)
	}
	r.route(&router.Envelope{From: "sender@remote.example", To: []string{"list@example.com"},
		Protocol: "ESMTP", Source: "smtp", RemoteAddr: "198.51.100.7:25"},
		"From: sender@remote.example\r\nSubject: to the list\r\n\r\nHi.\r\n")
	q := r.queued()
	if len(q) != 1 {
		t.Fatalf("%d queued messages, want the bounce", len(q))
	}
	if !bytes.Contains(q[0], []byte("MAILER-DAEMON@mail.example.com")) {
		t.Fatalf("the queued message is not the bounce:\n%s", q[0])
	}
	if n := bytes.Count(q[0], []byte("DKIM-Signature:")); n != 1 {
		t.Errorf("the bounce has %d signatures, want 1 (the active key only)", n)
	}
	if !bytes.Contains(q[0], []byte("s="+r.keys[0].Selector+";")) || bytes.Contains(q[0], []byte("s="+retired.Selector+";")) {
		t.Errorf("the bounce is not signed with the active key alone:\n%s", q[0])
	}
	if got := r.verify("bounce", q[0]); len(got) != 1 || got[0] != "example.com" {
		t.Errorf("bounce: verified signatures of %v, want one of example.com", got)
	}
}

// brokenKeys is a key store whose lookups fail (a database out of reach).
type brokenKeys struct{ mailauth.KeyStore }

func (brokenKeys) DKIMKeys(context.Context, string) ([]mailauth.Key, error) {
	return nil, io.ErrUnexpectedEOF
}

// TestSigningFailureStillDelivers: when signing fails the message goes
// unsigned, and the failure is journalled and counted.
func TestSigningFailureStillDelivers(t *testing.T) {
	r := newSigningRig(t)
	cfg := config.Default()
	cfg.Hostname = "mail.example.com"
	log := slog.New(slog.DiscardHandler)
	record := func(_ context.Context, es []store.JournalEntry) { r.journal = append(r.journal, es...) }
	r.rt = newRouter(cfg, r.st, log, record, nil, newDKIMSigner(brokenKeys{r.st}, r.st, log, r.metrics))
	r.route(&router.Envelope{From: "alice@example.com", To: []string{"bob@remote.example", "alice@example.com"},
		AuthUser: "alice@example.com", Protocol: "ESMTPSA", Source: "submission", RemoteAddr: "192.0.2.1:1234"}, signedMsg)
	copies := append(r.mailbox(), r.queued()...)
	if len(copies) != 2 {
		t.Fatalf("%d copies, want the local and the queued one", len(copies))
	}
	for _, c := range copies {
		if bytes.Contains(c, []byte("DKIM-Signature:")) {
			t.Errorf("signed although the keys could not be read:\n%s", c)
		}
	}
	if len(r.journal) == 0 || !strings.Contains(r.journal[0].Detail, "dkim failed: dkim keys of example.com") {
		t.Errorf("the journal does not record the failure: %+v", r.journal)
	}
	rec := httptest.NewRecorder()
	r.metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if want := `postoffice_dkim_signed_total{domain="example.com",result="failed"} 1`; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// TestOtherDomainNotSigned: an authenticated user of one domain writing
// From another local domain that has keys gets no signature of it (it
// would pass that domain's DMARC); with an envelope sender that is one
// of its own addresses in that domain, it does.
func TestOtherDomainNotSigned(t *testing.T) {
	r := newSigningRig(t)
	ctx := t.Context()
	other, err := mailauth.Keygen(ctx, r.st, "other.example", "o1", []mailauth.Algorithm{mailauth.Ed25519}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	r.keys = append(r.keys, other...)
	if err := r.st.AddDomain(ctx, "other.example"); err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(signedMsg, "From: Alice <alice@example.com>", "From: Boss <boss@other.example>", 1)
	r.route(&router.Envelope{From: "alice@example.com", To: []string{"bob@remote.example"},
		AuthUser: "alice@example.com", Protocol: "ESMTPSA", Source: "submission", RemoteAddr: "192.0.2.1:1234"}, msg)
	q := r.queued()
	if len(q) != 1 || bytes.Contains(q[0], []byte("DKIM-Signature:")) {
		t.Fatalf("From another tenant's domain: %d queued, signed:\n%s", len(q), q)
	}
	// Alice's own address in other.example, as the envelope sender.
	if err := r.st.AddAddress(ctx, r.user.ID, "alice@other.example"); err != nil {
		t.Fatal(err)
	}
	msg = strings.Replace(signedMsg, "From: Alice <alice@example.com>", "From: Alice <alice@other.example>", 1)
	r.route(&router.Envelope{From: "alice@other.example", To: []string{"bob@remote.example"},
		AuthUser: "alice@example.com", Protocol: "ESMTPSA", Source: "submission", RemoteAddr: "192.0.2.1:1234"}, msg)
	q = r.queued()
	if len(q) != 2 {
		t.Fatalf("%d queued, want 2", len(q))
	}
	if got := r.verify("own address", q[1]); len(got) != 1 || got[0] != "other.example" {
		t.Errorf("From the user's own address in other.example: signatures of %v, want one of other.example", got)
	}
}
