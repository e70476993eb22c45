package directory

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Password hashes imported from another server (postoffice import) keep
// the form Dovecot and SQL user tables write them in, "{SCHEME}hash"
// (Dovecot's password schemes), and are verified as they are; the first
// successful login replaces them with our own (NeedsRehash).

// ErrCRAMMD5 is returned (wrapped) for a {CRAM-MD5} hash: it is HMAC-MD5's
// intermediate state, good for CRAM-MD5 challenges only, and cannot be
// checked against a password given in the clear.
var ErrCRAMMD5 = errors.New("a CRAM-MD5 hash cannot verify a password given in the clear: the user needs a new password (postoffice user passwd)")

// Schemes lists the "{SCHEME}" password schemes VerifyPassword takes.
var Schemes = []string{"BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "CRYPT", "ARGON2I", "ARGON2ID",
	"PBKDF2", "SSHA512", "SSHA", "PLAIN", "CLEAR", "CLEARTEXT"}

// SplitScheme splits "{SCHEME}rest" into the upper-case scheme and the
// rest; ok is false when hash has no scheme prefix.
func SplitScheme(hash string) (scheme, rest string, ok bool) {
	if !strings.HasPrefix(hash, "{") {
		return "", hash, false
	}
	end := strings.IndexByte(hash, '}')
	if end < 2 {
		return "", hash, false
	}
	return strings.ToUpper(hash[1:end]), hash[end+1:], true
}

// CheckScheme says whether VerifyPassword can use a "{SCHEME}hash"
// string: nil, ErrCRAMMD5 (wrapped) or another error wrapping ErrBadHash.
// It looks at the scheme only, not at the hash.
func CheckScheme(stored string) error {
	scheme, _, ok := SplitScheme(stored)
	if !ok {
		return fmt.Errorf("%w: no {SCHEME} prefix", ErrBadHash)
	}
	switch scheme {
	case "CRAM-MD5", "HMAC-MD5":
		return fmt.Errorf("%w: %w", ErrBadHash, ErrCRAMMD5)
	}
	for _, s := range Schemes {
		if s == scheme {
			return nil
		}
	}
	return fmt.Errorf("%w: unsupported scheme {%s}", ErrBadHash, scheme)
}

// NeedsRehash reports whether a stored hash is not our own (an imported
// "{SCHEME}" one), so that the login that verified it replaces it with
// HashPassword's.
func NeedsRehash(stored string) bool {
	return strings.HasPrefix(stored, "{")
}

// verifyScheme verifies pw against "{SCHEME}rest".
func verifyScheme(stored, pw string) (bool, error) {
	if err := CheckScheme(stored); err != nil {
		return false, err
	}
	scheme, rest, _ := SplitScheme(stored)
	switch scheme {
	case "BLF-CRYPT", "SHA512-CRYPT", "SHA256-CRYPT", "CRYPT":
		// Dovecot's *-CRYPT schemes are crypt(3) strings; CRYPT is any of
		// them (the old DES and MD5 forms are not supported).
		switch {
		case strings.HasPrefix(rest, "$2a$"), strings.HasPrefix(rest, "$2b$"), strings.HasPrefix(rest, "$2y$"):
			return VerifyPassword(rest, pw)
		case strings.HasPrefix(rest, "$5$"), strings.HasPrefix(rest, "$6$"):
			return verifySHACrypt(rest, pw)
		}
		return false, fmt.Errorf("%w: {%s}: not a bcrypt, SHA256-crypt or SHA512-crypt string", ErrBadHash, scheme)
	case "ARGON2I", "ARGON2ID":
		return verifyArgon2(rest, pw)
	case "PBKDF2":
		return verifyPBKDF2(rest, pw)
	case "SSHA512":
		return verifySalted(sha512.New, rest, pw)
	case "SSHA":
		return verifySalted(sha1.New, rest, pw)
	default: // PLAIN, CLEAR, CLEARTEXT
		return subtle.ConstantTimeCompare([]byte(rest), []byte(pw)) == 1, nil
	}
}

// verifyArgon2 verifies an argon2i or argon2id PHC string as libsodium
// (and so Dovecot) writes it: $argon2id$v=19$m=M,t=T,p=P$salt$hash.
func verifyArgon2(s, pw string) (bool, error) {
	if rest, ok := strings.CutPrefix(s, "$argon2i$"); ok {
		p, salt, key, err := parseArgon2id("$argon2id$" + rest)
		if err != nil {
			return false, fmt.Errorf("%w: argon2i: %v", ErrBadHash, err)
		}
		hashSlots <- struct{}{}
		got := argon2.Key([]byte(pw), salt, p.time, p.memory, p.threads, uint32(len(key)))
		<-hashSlots
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	}
	if !strings.HasPrefix(s, "$argon2id$") {
		return false, fmt.Errorf("%w: not an argon2 PHC string", ErrBadHash)
	}
	return verifyArgon2id(s, pw)
}

// verifyPBKDF2 verifies Dovecot's PBKDF2 form: $1$salt$rounds$hex, the
// key PBKDF2-HMAC-SHA1 (RFC 8018 section 5.2) of the password and the salt
// string, 20 octets.
func verifyPBKDF2(s, pw string) (bool, error) {
	f := strings.Split(s, "$")
	if len(f) != 5 || f[0] != "" || f[1] != "1" || f[2] == "" {
		return false, fmt.Errorf("%w: PBKDF2: want $1$salt$rounds$hex", ErrBadHash)
	}
	rounds, err := strconv.Atoi(f[3])
	if err != nil || rounds < 1 || rounds > shaCryptLimitRounds {
		return false, fmt.Errorf("%w: PBKDF2: rounds %q", ErrBadHash, f[3])
	}
	want, err := hex.DecodeString(f[4])
	if err != nil || len(want) < minKeyLen || len(want) > maxKeyLen {
		return false, fmt.Errorf("%w: PBKDF2: bad key", ErrBadHash)
	}
	got, err := pbkdf2.Key(sha1.New, pw, []byte(f[2]), rounds, len(want))
	if err != nil {
		return false, fmt.Errorf("%w: PBKDF2: %v", ErrBadHash, err)
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// verifySalted verifies the LDAP-style salted digests {SSHA} and
// {SSHA512}: base64 of the digest of password and salt, followed by the
// salt.
func verifySalted(newHash func() hash.Hash, s, pw string) (bool, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	h := newHash()
	if err != nil || len(raw) <= h.Size() {
		return false, fmt.Errorf("%w: salted digest: not base64 of a digest and a salt", ErrBadHash)
	}
	want, salt := raw[:h.Size()], raw[h.Size():]
	h.Write([]byte(pw))
	h.Write(salt)
	return subtle.ConstantTimeCompare(h.Sum(nil), want) == 1, nil
}
