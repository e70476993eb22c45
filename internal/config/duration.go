package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a length of time. In the file, on the command line and in
// the console it is a number with a unit, "90s", "10m", "36h", "1h30m",
// "5d" (days), or a plain number of seconds: 600 and "600" are ten minutes,
// so that the files written when every duration key was a number of
// seconds still mean what they meant.
type Duration time.Duration

// ParseDuration reads a duration: seconds, or a number with a unit (the
// units of time.ParseDuration, and d for days, which may lead: "1d12h").
// A negative duration parses; the keys' checks refuse it where it makes no
// sense.
func ParseDuration(in string) (Duration, error) {
	s := strings.ReplaceAll(strings.TrimSpace(in), "_", "")
	bad := fmt.Errorf("%q is not a duration: give seconds, or a number with a unit such as 90s, 10m, 36h or 5d", in)
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, bad
		}
		return Duration(time.Duration(n) * time.Second), nil
	}
	neg := strings.HasPrefix(s, "-")
	if s = strings.TrimPrefix(s, "-"); s == "" {
		return 0, bad
	}
	var d time.Duration
	if days, rest, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 64)
		if err != nil || n > uint64(math.MaxInt64/int64(day)) {
			return 0, bad
		}
		d, s = time.Duration(n)*day, rest
	}
	if s != "" {
		if s[0] == '-' || s[0] == '+' {
			return 0, bad
		}
		r, err := time.ParseDuration(s)
		if err != nil || d > math.MaxInt64-r {
			return 0, bad
		}
		d += r
	}
	if neg {
		d = -d
	}
	return Duration(d), nil
}

// String is the duration as ParseDuration reads it back: whole days as
// "5d", otherwise time.Duration's form without its zero tails ("10m", not
// "10m0s"; "1h30m").
func (d Duration) String() string {
	t := time.Duration(d)
	if t != 0 && t%day == 0 {
		return strconv.FormatInt(int64(t/day), 10) + "d"
	}
	s := t.String()
	if m, ok := strings.CutSuffix(s, "m0s"); ok {
		s = m + "m"
	}
	if h, ok := strings.CutSuffix(s, "h0m"); ok {
		s = h + "h"
	}
	return s
}

// Set implements flag.Value.
func (d *Duration) Set(v string) error {
	n, err := ParseDuration(v)
	if err != nil {
		return err
	}
	*d = n
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalTOML takes a TOML integer (seconds) or a string (go-toml's
// unstable.Unmarshaler, enabled in decode).
func (d *Duration) UnmarshalTOML(raw []byte) error {
	n, err := ParseDuration(unquoteRaw(raw))
	if err != nil {
		return &valueError{err}
	}
	*d = n
	return nil
}

// unquoteRaw is the text of a raw TOML scalar: a string's content, or a
// number as written.
func unquoteRaw(raw []byte) string {
	v := strings.TrimSpace(string(raw))
	if len(v) < 2 || v[0] != v[len(v)-1] {
		return v
	}
	switch v[0] {
	case '"':
		if u, err := strconv.Unquote(v); err == nil {
			return u
		}
		return v[1 : len(v)-1]
	case '\'':
		return v[1 : len(v)-1]
	}
	return v
}
