package directory

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// TestMain makes hashing cheap for every test of the package, the external
// ones included; TestHashPasswordDefaults puts the real cost back.
func TestMain(m *testing.M) {
	hashParams = argonParams{memory: 64, time: 1, threads: 1}
	os.Exit(m.Run())
}

func TestHashPasswordDefaults(t *testing.T) {
	saved := hashParams
	hashParams = defaultParams
	defer func() { hashParams = saved }()

	h, err := HashPassword("correct horse battery staple")
	if err != nil {
		t.Fatal(err)
	}
	if want := "$argon2id$v=19$m=19456,t=2,p=1$"; !strings.HasPrefix(h, want) {
		t.Errorf("hash %q does not start with %q (the OWASP parameters)", h, want)
	}
	_, salt, key, err := parseArgon2id(h)
	if err != nil || len(salt) != 16 || len(key) != 32 {
		t.Errorf("hash %q: salt %d bytes, key %d bytes, err %v; want 16, 32", h, len(salt), len(key), err)
	}
	if ok, err := VerifyPassword(h, "correct horse battery staple"); !ok || err != nil {
		t.Errorf("VerifyPassword of the right password = %v, %v", ok, err)
	}
}

func TestHashRoundTrip(t *testing.T) {
	for _, pw := range []string{"secret", "", "pässwörd ✓", strings.Repeat("long", 100)} {
		h1, err := HashPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := HashPassword(pw)
		if err != nil {
			t.Fatal(err)
		}
		if h1 == h2 {
			t.Errorf("two hashes of %q are equal: salt not random", pw)
		}
		for _, h := range []string{h1, h2} {
			if ok, err := VerifyPassword(h, pw); !ok || err != nil {
				t.Errorf("VerifyPassword(%q, %q) = %v, %v; want true", h, pw, ok, err)
			}
			if ok, err := VerifyPassword(h, pw+"x"); ok || err != nil {
				t.Errorf("VerifyPassword(%q, wrong) = %v, %v; want false, nil", h, ok, err)
			}
		}
	}
}

// TestVerifyArgon2idParameters: the parameters come from the hash, not
// from what HashPassword would use today.
func TestVerifyArgon2idParameters(t *testing.T) {
	salt := []byte("0123456789abcdef0123")
	key := argon2.IDKey([]byte("pw"), salt, 3, 256, 4, 24)
	h := fmt.Sprintf("$argon2id$v=19$m=256,t=3,p=4$%s$%s", b64.EncodeToString(salt), b64.EncodeToString(key))
	if ok, err := VerifyPassword(h, "pw"); !ok || err != nil {
		t.Errorf("VerifyPassword(%s) = %v, %v; want true", h, ok, err)
	}
	if ok, err := VerifyPassword(h, "PW"); ok || err != nil {
		t.Errorf("VerifyPassword(%s, wrong) = %v, %v; want false, nil", h, ok, err)
	}
}

func TestVerifyBcrypt(t *testing.T) {
	b, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// The three prefixes name the same algorithm for our purposes.
	for _, prefix := range []string{"$2a$", "$2b$", "$2y$"} {
		h := prefix + string(b[4:])
		if ok, err := VerifyPassword(h, "s3cret"); !ok || err != nil {
			t.Errorf("VerifyPassword(%s) = %v, %v; want true", h, ok, err)
		}
		if ok, err := VerifyPassword(h, "s3cre"); ok || err != nil {
			t.Errorf("VerifyPassword(%s, wrong) = %v, %v; want false, nil", h, ok, err)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	const salt, key = "c29tZXNhbHRzb21lc2FsdA", "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
	good := "$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key
	if _, err := VerifyPassword(good, "x"); err != nil {
		t.Fatalf("the template %s is not well formed: %v", good, err)
	}
	for _, h := range []string{
		"",
		"plaintext",
		"$argon2i$v=19$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=16$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$m=64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$" + key + "$",
		"$argon2id$v=19$t=1,m=64,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1,keyid=x$" + salt + "$" + key,
		"$argon2id$v=19$m=x,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=-64,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=0,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=0$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=256$" + salt + "$" + key,
		"$argon2id$v=19$m=7,t=1,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=99999999,t=1,p=1$" + salt + "$" + key, // too costly to try
		"$argon2id$v=19$m=64,t=1000,p=1$" + salt + "$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "==$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$!!!!$" + key,
		"$argon2id$v=19$m=64,t=1,p=1$c2FsdA$" + key,       // 4-byte salt
		"$argon2id$v=19$m=64,t=1,p=1$" + salt + "$aGFzaA", // 4-byte key
		"$2b$04$short",
		"$2b$99$abcdefghijklmnopqrstuu5Ep8m8JYCtcyJAGA8vStW5GZJp8sJ9.",
		"$5$rounds=5000$salt$hash",
	} {
		ok, err := VerifyPassword(h, "x")
		if ok || !errors.Is(err, ErrBadHash) {
			t.Errorf("VerifyPassword(%q) = %v, %v; want false and ErrBadHash", h, ok, err)
		}
	}
}
