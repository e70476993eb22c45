package directory

import (
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// SHA-crypt, "Unix crypt using SHA-256 and SHA-512" (Ulrich Drepper,
// 2007-2008): the $5$ and $6$ hashes of glibc's crypt(3), which Dovecot
// stores as {SHA256-CRYPT} and {SHA512-CRYPT}. Written from the
// specification's algorithm; its test vectors are in shacrypt_test.go.

const (
	shaCryptDefaultRounds = 5000
	shaCryptMinRounds     = 1000
	shaCryptMaxRounds     = 999999999
	shaCryptMaxSalt       = 16
	// shaCryptLimitRounds bounds what a stored hash may ask for, so that
	// a hostile row cannot make a login cost minutes of CPU (the
	// specification allows up to 999,999,999).
	shaCryptLimitRounds = 10_000_000
)

// crypt64 is the alphabet of crypt(3)'s base-64 encoding.
const crypt64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// The order in which the specification encodes the bytes of the final
// digest: groups of three (the last group shorter), each written as
// 24 bits, least significant six bits first.
var (
	sha256Order = [][]int{{0, 10, 20}, {21, 1, 11}, {12, 22, 2}, {3, 13, 23}, {24, 4, 14}, {15, 25, 5},
		{6, 16, 26}, {27, 7, 17}, {18, 28, 8}, {9, 19, 29}, {-1, 31, 30}}
	sha512Order = [][]int{{0, 21, 42}, {22, 43, 1}, {44, 2, 23}, {3, 24, 45}, {25, 46, 4}, {47, 5, 26},
		{6, 27, 48}, {28, 49, 7}, {50, 8, 29}, {9, 30, 51}, {31, 52, 10}, {53, 11, 32}, {12, 33, 54},
		{34, 55, 13}, {56, 14, 35}, {15, 36, 57}, {37, 58, 16}, {59, 17, 38}, {18, 39, 60}, {40, 61, 19},
		{62, 20, 41}, {-1, -1, 63}}
)

// verifySHACrypt checks pw against a $5$ or $6$ hash.
func verifySHACrypt(stored, pw string) (bool, error) {
	got, want, err := shaCrypt(stored, pw)
	if err != nil {
		return false, fmt.Errorf("%w: SHA-crypt: %v", ErrBadHash, err)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1, nil
}

// shaCrypt parses "$5$[rounds=N$]salt$hash" (or $6$) and returns the hash
// part computed for pw, and the stored one.
func shaCrypt(stored, pw string) (got, want string, err error) {
	var newHash func() hash.Hash
	var order [][]int
	var rest string
	switch {
	case strings.HasPrefix(stored, "$5$"):
		newHash, order, rest = sha256.New, sha256Order, stored[3:]
	case strings.HasPrefix(stored, "$6$"):
		newHash, order, rest = sha512.New, sha512Order, stored[3:]
	default:
		return "", "", errors.New("want $5$ or $6$")
	}
	rounds := shaCryptDefaultRounds
	if r, ok := strings.CutPrefix(rest, "rounds="); ok {
		n, after, found := strings.Cut(r, "$")
		if !found {
			return "", "", errors.New("rounds= without a salt")
		}
		v, err := strconv.ParseUint(n, 10, 32)
		if err != nil {
			return "", "", fmt.Errorf("rounds %q: %v", n, err)
		}
		// The specification clamps the number of rounds to its range.
		rounds = int(min(max(v, shaCryptMinRounds), shaCryptMaxRounds))
		if rounds > shaCryptLimitRounds {
			return "", "", fmt.Errorf("rounds=%d is more than %d", rounds, shaCryptLimitRounds)
		}
		rest = after
	}
	salt, want, found := strings.Cut(rest, "$")
	if !found || want == "" {
		return "", "", errors.New("no hash after the salt")
	}
	// At most 16 characters of salt count.
	if len(salt) > shaCryptMaxSalt {
		salt = salt[:shaCryptMaxSalt]
	}
	return shaCryptSum(newHash, order, []byte(pw), []byte(salt), rounds), want, nil
}

// shaCryptSum is the specification's algorithm, its steps numbered as
// there.
func shaCryptSum(newHash func() hash.Hash, order [][]int, key, salt []byte, rounds int) string {
	// Steps 4-8: digest B of key, salt, key.
	h := newHash()
	h.Write(key)
	h.Write(salt)
	h.Write(key)
	b := h.Sum(nil)
	size := len(b)

	// Steps 1-3, 9-12: digest A.
	h.Reset()
	h.Write(key)
	h.Write(salt)
	n := len(key)
	for ; n > size; n -= size {
		h.Write(b)
	}
	h.Write(b[:n])
	for n := len(key); n > 0; n >>= 1 {
		if n&1 != 0 {
			h.Write(b)
		} else {
			h.Write(key)
		}
	}
	a := h.Sum(nil)

	// Steps 13-16: the byte sequence P from digest DP of the key
	// repeated once for each of its bytes.
	h.Reset()
	for range len(key) {
		h.Write(key)
	}
	p := repeatTo(h.Sum(nil), len(key))

	// Steps 17-20: the byte sequence S from digest DS of the salt
	// repeated 16+A[0] times.
	h.Reset()
	for range 16 + int(a[0]) {
		h.Write(salt)
	}
	s := repeatTo(h.Sum(nil), len(salt))

	// Step 21: the rounds.
	c := a
	for i := range rounds {
		h.Reset()
		if i&1 != 0 {
			h.Write(p)
		} else {
			h.Write(c)
		}
		if i%3 != 0 {
			h.Write(s)
		}
		if i%7 != 0 {
			h.Write(p)
		}
		if i&1 != 0 {
			h.Write(c)
		} else {
			h.Write(p)
		}
		c = h.Sum(c[:0])
	}

	// Step 22: the encoding.
	var out strings.Builder
	for _, g := range order {
		var w uint32
		chars := 4
		for k, idx := range g {
			w <<= 8
			if idx >= 0 {
				w |= uint32(c[idx])
			} else if k == 0 {
				chars--
			}
		}
		if g[0] < 0 && g[1] < 0 {
			chars = 2
		}
		for range chars {
			out.WriteByte(crypt64[w&0x3f])
			w >>= 6
		}
	}
	return out.String()
}

// repeatTo is d repeated to n bytes, as steps 16 and 20 make P and S.
func repeatTo(d []byte, n int) []byte {
	out := make([]byte, 0, n)
	for len(out)+len(d) <= n {
		out = append(out, d...)
	}
	return append(out, d[:n-len(out)]...)
}
