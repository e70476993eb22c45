package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Size is a number of octets. Everywhere a size is typed (byte-size keys
// such as smtp.max_message_size, user quotas on the command line and in
// the console) it is a whole number of bytes, or a number with K, M, G or
// T for powers of 1024: 500M, 2G, 1.5G, 64k (a trailing B or iB is
// allowed: 500MB, 500MiB).
type Size int64

var sizeUnits = []struct {
	suffix byte
	mult   int64
}{{'T', 1 << 40}, {'G', 1 << 30}, {'M', 1 << 20}, {'K', 1 << 10}}

// ParseSize reads a size: bytes, or a number with K, M, G or T. A size
// must not be negative.
func ParseSize(in string) (Size, error) {
	s := strings.ToUpper(strings.TrimSpace(in))
	s = strings.TrimSuffix(s, "B")
	s = strings.TrimSuffix(s, "I")
	s = strings.ReplaceAll(s, "_", "")
	mult := int64(1)
	if n := len(s); n > 0 {
		for _, u := range sizeUnits {
			if s[n-1] == u.suffix {
				mult, s = u.mult, strings.TrimSpace(s[:n-1])
				break
			}
		}
	}
	bad := fmt.Errorf("%q is not a size: give bytes or a number with K, M, G or T, such as 500M or 2G", in)
	if s == "" {
		return 0, bad
	}
	if mult == 1 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return 0, bad
		}
		return Size(n), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f*float64(mult) > 1<<62 {
		return 0, bad
	}
	return Size(math.Round(f * float64(mult))), nil
}

// String is the size as ParseSize reads it: with the largest unit that
// divides it (50M), or in bytes.
func (s Size) String() string {
	for _, u := range sizeUnits {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + string(u.suffix)
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// Set implements flag.Value, for options such as --quota.
func (s *Size) Set(v string) error {
	n, err := ParseSize(v)
	if err != nil {
		return err
	}
	*s = n
	return nil
}

// UnmarshalTOML takes a TOML integer (bytes) or a string with a unit
// (go-toml's unstable.Unmarshaler, enabled in decode).
func (s *Size) UnmarshalTOML(raw []byte) error {
	v := strings.TrimSpace(string(raw))
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		v = v[1 : len(v)-1]
	}
	n, err := ParseSize(v)
	if err != nil {
		return &sizeError{err}
	}
	*s = n
	return nil
}

// sizeError is a bad size in a file; decode names its key.
type sizeError struct{ error }

func (e *sizeError) Unwrap() error { return e.error }

// badSizeKey names the size key of a TOML document whose value does not
// parse, with the problem.
func badSizeKey(data []byte, se *sizeError) string {
	var doc map[string]any
	if toml.Unmarshal(data, &doc) == nil {
		kinds := map[string]string{}
		for _, s := range Settings(Default()) {
			kinds[s.Key] = s.Kind
		}
		for key := range keysOf(data) {
			if kinds[key] != "size" {
				continue
			}
			v := lookupDoc(doc, key)
			if _, err := ParseSize(fmt.Sprint(v)); err != nil {
				return fmt.Sprintf("key %q: %v", key, err)
			}
		}
	}
	return se.Error()
}

// lookupDoc finds a dotted key in a decoded TOML document.
func lookupDoc(doc map[string]any, key string) any {
	var cur any = doc
	for _, part := range strings.Split(key, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}
