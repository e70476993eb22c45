package directory

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// ErrBadHash is returned (wrapped) by VerifyPassword for a stored hash it
// cannot use: malformed, of an unsupported scheme, or with parameters out of
// range.
var ErrBadHash = errors.New("malformed or unsupported password hash")

// argonParams are the argon2id cost parameters of a PHC string.
type argonParams struct {
	memory  uint32 // KiB
	time    uint32 // passes
	threads uint8
}

// defaultParams is the OWASP Password Storage Cheat Sheet's first argon2id
// configuration: 19 MiB of memory, 2 passes, 1 thread.
var defaultParams = argonParams{memory: 19 * 1024, time: 2, threads: 1}

// hashParams is what HashPassword uses; tests lower it to stay fast.
var hashParams = defaultParams

const (
	saltLen = 16
	keyLen  = 32

	// Limits on parameters read from a stored hash, so that a corrupt or
	// hostile database row cannot make one login cost gigabytes of memory
	// or minutes of CPU.
	maxMemory  = 1 << 20 // KiB, 1 GiB
	maxTime    = 64
	minSaltLen = 8
	minKeyLen  = 16
	maxKeyLen  = 128
)

// hashSlots bounds the argon2id computations running at once to the number
// of CPUs. More cannot finish sooner, and each holds its memory cost (19
// MiB by default) for the whole computation: a burst of 100 logins would
// otherwise allocate 2 GiB at once, and the garbage collector would spend
// its time on it.
var hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))

// idKey is argon2.IDKey, at most len(hashSlots) at a time.
func idKey(password, salt []byte, time, memory uint32, threads uint8, keyLen uint32) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey(password, salt, time, memory, threads, keyLen)
}

// b64 is the encoding of the PHC string format: standard alphabet, no padding.
var b64 = base64.RawStdEncoding

// HashPassword returns an argon2id hash of pw in PHC string format
// ($argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>) with a fresh 16-byte salt.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading random salt: %w", err)
	}
	p := hashParams
	key := idKey([]byte(pw), salt, p.time, p.memory, p.threads, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword reports whether pw matches hash, an argon2id PHC string
// (any parameters), a bcrypt hash ($2a$, $2b$ or $2y$), or a "{SCHEME}"
// hash imported from another server (see Schemes). A wrong password
// is (false, nil); an unusable hash is an error wrapping ErrBadHash.
func VerifyPassword(hash, pw string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, pw)
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		// bcrypt compares in constant time itself.
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
			return false, nil
		default:
			return false, fmt.Errorf("%w: bcrypt: %v", ErrBadHash, err)
		}
	case strings.HasPrefix(hash, "{"):
		// Imported from another server (schemes.go).
		return verifyScheme(hash, pw)
	case hash == "":
		return false, fmt.Errorf("%w: no password set", ErrBadHash)
	default:
		return false, fmt.Errorf("%w: unknown scheme", ErrBadHash)
	}
}

func verifyArgon2id(hash, pw string) (bool, error) {
	p, salt, key, err := parseArgon2id(hash)
	if err != nil {
		return false, fmt.Errorf("%w: argon2id: %v", ErrBadHash, err)
	}
	got := idKey([]byte(pw), salt, p.time, p.memory, p.threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

// parseArgon2id splits "$argon2id$v=19$m=M,t=T,p=P$salt$hash". The PHC
// format fixes the order of the parameters; the optional keyid and data
// parameters are not supported.
func parseArgon2id(s string) (p argonParams, salt, key []byte, err error) {
	f := strings.Split(s, "$")
	if len(f) != 6 || f[0] != "" || f[1] != "argon2id" {
		return p, nil, nil, errors.New("want $argon2id$v=19$m=M,t=T,p=P$salt$hash")
	}
	if f[2] != "v="+strconv.Itoa(argon2.Version) {
		return p, nil, nil, fmt.Errorf("unsupported version %q", f[2])
	}
	kv := strings.Split(f[3], ",")
	if len(kv) != 3 {
		return p, nil, nil, fmt.Errorf("parameters %q: want m=M,t=T,p=P", f[3])
	}
	m, err1 := paramValue(kv[0], "m", 32)
	t, err2 := paramValue(kv[1], "t", 32)
	par, err3 := paramValue(kv[2], "p", 8)
	if err := errors.Join(err1, err2, err3); err != nil {
		return p, nil, nil, err
	}
	p = argonParams{memory: uint32(m), time: uint32(t), threads: uint8(par)}
	switch {
	case p.time < 1 || p.time > maxTime:
		return p, nil, nil, fmt.Errorf("t=%d out of range 1..%d", p.time, maxTime)
	case p.threads < 1:
		return p, nil, nil, errors.New("p=0")
	case p.memory < 8*uint32(p.threads) || p.memory > maxMemory:
		// RFC 9106 section 3.1: m is at least 8*p.
		return p, nil, nil, fmt.Errorf("m=%d out of range %d..%d", p.memory, 8*uint32(p.threads), maxMemory)
	}
	if salt, err = b64.Strict().DecodeString(f[4]); err != nil || len(salt) < minSaltLen {
		return p, nil, nil, errors.New("bad salt")
	}
	if key, err = b64.Strict().DecodeString(f[5]); err != nil || len(key) < minKeyLen || len(key) > maxKeyLen {
		return p, nil, nil, errors.New("bad hash")
	}
	return p, salt, key, nil
}

func paramValue(kv, name string, bits int) (uint64, error) {
	v, ok := strings.CutPrefix(kv, name+"=")
	if !ok {
		return 0, fmt.Errorf("parameter %q: want %s=", kv, name)
	}
	n, err := strconv.ParseUint(v, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("parameter %q: %v", kv, err)
	}
	return n, nil
}
