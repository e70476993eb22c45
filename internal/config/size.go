package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
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
	n, err := ParseSize(unquoteRaw(raw))
	if err != nil {
		return &valueError{err}
	}
	*s = n
	return nil
}
