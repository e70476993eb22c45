package storetest

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/acmecert"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// testACMEStorageRestart: what acmecert stores (certificates with their
// private keys) and a lock's lease survive a restart, as after a node
// restarts while another keeps issuing.
func testACMEStorageRestart(t *testing.T, e *env) {
	a := e.s.ACMEStorage()
	const name = "acme/ca/cert/mail.example.com"
	key := []byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n-----END PRIVATE KEY-----\n")
	e.must(a.Put(e.ctx, name, key), "Put")
	if ok, err := a.TryLock(e.ctx, "acme/ca/lock", "node-a", time.Hour); err != nil || !ok {
		t.Fatalf("TryLock: %v, %v", ok, err)
	}
	e.reopen()
	a = e.s.ACMEStorage()
	if got, err := a.Get(e.ctx, name); err != nil || !bytes.Equal(got, key) {
		t.Fatalf("Get after restart = %q, %v; want %q", got, err, key)
	}
	if ok, err := a.TryLock(e.ctx, "acme/ca/lock", "node-b", time.Hour); err != nil || ok {
		t.Fatalf("TryLock by another holder after restart = %v, %v; want false (the lease runs)", ok, err)
	}
	if _, err := a.Get(e.ctx, "acme/ca/cert/other.example.com"); !errors.Is(err, acmecert.ErrNotFound) {
		t.Fatalf("Get of a missing name after restart: %v", err)
	}
}

// testSecret: a secret is created once per purpose, random, 32 octets,
// the same after a restart and for callers that ask at once.
func testSecret(t *testing.T, e *env) {
	if _, err := e.s.Secret(e.ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("Secret without a purpose: %v, want ErrInvalid", err)
	}
	// Many callers at once (nodes starting together) get one value.
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Go(func() {
			v, err := e.s.Secret(e.ctx, "profile-link")
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		})
	}
	wg.Wait()
	first := got[0]
	if len(first) != store.SecretSize {
		t.Fatalf("secret of %d octets, want %d", len(first), store.SecretSize)
	}
	if bytes.Equal(first, make([]byte, store.SecretSize)) {
		t.Fatal("the secret is all zeros")
	}
	for i, v := range got {
		if !bytes.Equal(v, first) {
			t.Fatalf("caller %d got another secret: %x, want %x", i, v, first)
		}
	}
	other, err := e.s.Secret(e.ctx, "another")
	if err != nil || len(other) != store.SecretSize || bytes.Equal(other, first) {
		t.Fatalf("the secret of another purpose = %x, %v; want 32 other octets", other, err)
	}
	e.reopen()
	again, err := e.s.Secret(e.ctx, "profile-link")
	if err != nil || !bytes.Equal(again, first) {
		t.Fatalf("secret after restart = %x, %v; want %x", again, err, first)
	}
}
