package directory_test

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

// Hashes of "sesame 42" made by Dovecot 2.3's doveadm pw -s SCHEME.
var doveadmHashes = map[string]string{
	"BLF-CRYPT":     "{BLF-CRYPT}$2y$05$RsV1ebuv.7Vf0H.4LiGo2OREnxS.h343JbLKWQQ5SMciWW3jHW4Vi",
	"SHA512-CRYPT":  "{SHA512-CRYPT}$6$9FWLEy7DRcmiu7Q9$g7ctmjZPomTFp.F2sRENscNaVzV890/m/Pvw.rT9rVsm5e8BPdV8GOei8908dtRBO.R9atxhBDHImufviR2Hz/",
	"SHA256-CRYPT":  "{SHA256-CRYPT}$5$y5h0UJMuGlP3oGL.$fWrxkMBvczhV3PMC3zT.gh/7eSjOeekBIj2sSD3hsm4",
	"ARGON2I":       "{ARGON2I}$argon2i$v=19$m=32768,t=4,p=1$83AhcpxXS4t76TQ1nWe/mw$lHuKr27EHIxgAaw6jdL+3Bn7Q3eiZfe3H6uw6CA8FIo",
	"ARGON2ID":      "{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$KjPGW+bZSMZ1w6eiKIR9Bw$IoJxsbrmMfgJj1ByjfGLe7eu7Y5y9V8s4r1fskkELtk",
	"PBKDF2":        "{PBKDF2}$1$egj7YE8g/qjT3AfA$5000$b9342906620b4ded6115bd7b90d916d87673ba2b",
	"SSHA512":       "{SSHA512}+iDjlhwWSK9FT4t1tlx/T9Msc3MjPucu5u+KphX2mOb1hT2X6p3CxQA4EGtrS0ZEsuBUEg2yijMOTarzVOmHbHWh3Pc=",
	"SSHA":          "{SSHA}bWpamtWqJfaW7N7P2aD/FWvdJ/hgxdLX",
	"PLAIN":         "{PLAIN}sesame 42",
	"CLEAR":         "{CLEAR}sesame 42",
	"SHA512-ROUNDS": "{SHA512-CRYPT}$6$rounds=10000$mYBXPVR/FaTZiG.F$HDZHDJ9u.RN2Ho6REGYmuzi37KjPRugQX.PyB9XEflFRGOXvTDCoHZjeqlGU96p.Z3WPc2rb/zv8VFCWE8dNa/",
}

func TestImportedSchemes(t *testing.T) {
	for name, h := range doveadmHashes {
		pw := "sesame 42"
		if name == "SHA512-ROUNDS" {
			pw = "x"
		}
		if ok, err := directory.VerifyPassword(h, pw); !ok || err != nil {
			t.Errorf("%s: VerifyPassword(right password) = %v, %v", name, ok, err)
		}
		if ok, err := directory.VerifyPassword(h, pw+"!"); ok || err != nil {
			t.Errorf("%s: VerifyPassword(wrong password) = %v, %v; want false, nil", name, ok, err)
		}
		if !directory.NeedsRehash(h) {
			t.Errorf("%s: NeedsRehash = false", name)
		}
	}
	// Scheme names are case-insensitive in Dovecot.
	if ok, err := directory.VerifyPassword("{plain}sesame", "sesame"); !ok || err != nil {
		t.Errorf("{plain}: %v, %v", ok, err)
	}
	cram := "{CRAM-MD5}9ab261ed67e66782d405a9bb4869d248dfc035a70d94046f1c131c0ae7ddf243"
	if _, err := directory.VerifyPassword(cram, "sesame 42"); !errors.Is(err, directory.ErrCRAMMD5) || !errors.Is(err, directory.ErrBadHash) {
		t.Errorf("CRAM-MD5: %v; want ErrCRAMMD5 and ErrBadHash", err)
	}
	if err := directory.CheckScheme(cram); !errors.Is(err, directory.ErrCRAMMD5) || !strings.Contains(err.Error(), "user passwd") {
		t.Errorf("CheckScheme(CRAM-MD5) = %v; want ErrCRAMMD5 saying what to do", err)
	}
	for _, bad := range []string{"{MD5-CRYPT}$1$x$y", "{SSHA}!!!", "{SSHA}AAAA", "{PBKDF2}$1$s$0$00", "{PBKDF2}x",
		"{SHA512-CRYPT}$1$salt$x", "{ARGON2ID}$argon2d$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", "{}x"} {
		if ok, err := directory.VerifyPassword(bad, "pw"); ok || !errors.Is(err, directory.ErrBadHash) {
			t.Errorf("VerifyPassword(%q) = %v, %v; want ErrBadHash", bad, ok, err)
		}
	}
	own, err := directory.HashPassword("x")
	if err != nil {
		t.Fatal(err)
	}
	if directory.NeedsRehash(own) {
		t.Errorf("NeedsRehash(our own hash) = true")
	}
}

// TestRehashAtLogin: a user imported with a Dovecot hash logs in with the
// old password, and the hash becomes our own; the old password keeps
// working, a wrong one does not rehash.
func TestRehashAtLogin(t *testing.T) {
	ctx := t.Context()
	s, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, addr := range []string{"blf@example.com", "sha@example.com"} {
		h := doveadmHashes["BLF-CRYPT"]
		if strings.HasPrefix(addr, "sha") {
			h = doveadmHashes["SHA512-CRYPT"]
		}
		if _, err := s.AddUser(ctx, store.User{Address: addr, PasswordHash: h, Enabled: true}); err != nil {
			t.Fatal(err)
		}
	}
	l := directory.NewLogins(directory.NewAuthenticator(s), nil, slog.New(slog.DiscardHandler))
	if _, err := l.Check(ctx, "blf@example.com", "wrong"); !errors.Is(err, directory.ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
	if u, _ := s.UserByAddress(ctx, "blf@example.com"); u.PasswordHash != doveadmHashes["BLF-CRYPT"] {
		t.Errorf("a failed login changed the hash to %s", u.PasswordHash)
	}
	for _, addr := range []string{"blf@example.com", "sha@example.com"} {
		if _, err := l.Check(ctx, addr, "sesame 42"); err != nil {
			t.Fatalf("%s with the old password: %v", addr, err)
		}
		u, err := s.UserByAddress(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(u.PasswordHash, "$argon2id$") {
			t.Errorf("%s: hash after login = %s, want our own", addr, u.PasswordHash)
		}
		// A fresh authenticator (no cache) verifies the new hash.
		if _, err := directory.NewAuthenticatorTTL(s, 0).Authenticate(ctx, addr, "sesame 42"); err != nil {
			t.Errorf("%s: login after the rehash: %v", addr, err)
		}
	}
}
