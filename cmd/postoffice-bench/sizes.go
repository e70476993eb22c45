package main

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/config"
)

// sizeDist draws message sizes: a fixed size, or a log-normal distribution
// with the given median, clipped to [min, max].
type sizeDist struct {
	min, max, median int
	sigma            float64 // 0: fixed size median
}

// parseSize reads one size of a specification with config.ParseSize, the
// server's size syntax ("2048", "20k", "1m", "1.5G"); it must be positive.
func parseSize(s string) (int, error) {
	n, err := config.ParseSize(s)
	if err != nil || n <= 0 || n > math.MaxInt32 {
		return 0, fmt.Errorf("size %q: want a positive size such as 2048, 20k or 1m", s)
	}
	return int(n), nil
}

// minMessageSize is the smallest message generateMessage makes exactly.
const minMessageSize = 512

// parseSizeDist reads a size specification:
//
//	20k          every message 20 KiB
//	2k-1m/20k    log-normal with median 20 KiB, clipped to 2 KiB..1 MiB;
//	             sigma is chosen so that 1 in 1000 would exceed the maximum
//	mix          2k-1m/20k, the mail-like mix of the download workload
func parseSizeDist(spec string) (sizeDist, error) {
	if spec == "mix" {
		spec = "2k-1m/20k"
	}
	rng, med, ok := strings.Cut(spec, "/")
	if !ok {
		n, err := parseSize(spec)
		if err != nil {
			return sizeDist{}, err
		}
		if n < minMessageSize {
			return sizeDist{}, fmt.Errorf("size %q: at least %d octets", spec, minMessageSize)
		}
		return sizeDist{min: n, max: n, median: n}, nil
	}
	lo, hi, ok := strings.Cut(rng, "-")
	if !ok {
		return sizeDist{}, fmt.Errorf("size mix %q: want MIN-MAX/MEDIAN, e.g. 2k-1m/20k", spec)
	}
	var d sizeDist
	var err error
	if d.min, err = parseSize(lo); err != nil {
		return sizeDist{}, err
	}
	if d.max, err = parseSize(hi); err != nil {
		return sizeDist{}, err
	}
	if d.median, err = parseSize(med); err != nil {
		return sizeDist{}, err
	}
	if d.min < minMessageSize || d.min > d.median || d.median > d.max {
		return sizeDist{}, fmt.Errorf("size mix %q: want %d <= MIN <= MEDIAN <= MAX", spec, minMessageSize)
	}
	if d.max > d.median {
		// z for the 99.9th percentile of the normal distribution.
		d.sigma = math.Log(float64(d.max)/float64(d.median)) / 3.09
	}
	return d, nil
}

func (d sizeDist) String() string {
	if d.sigma == 0 {
		return strconv.Itoa(d.median)
	}
	return fmt.Sprintf("%d-%d/%d", d.min, d.max, d.median)
}

// draw returns a size from r.
func (d sizeDist) draw(r *rand.Rand) int {
	if d.sigma == 0 {
		return d.median
	}
	v := float64(d.median) * math.Exp(d.sigma*r.NormFloat64())
	return min(max(int(v), d.min), d.max)
}

// text is the alphabet of generated body lines.
const text = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,;-"

// generateMessage returns a message of exactly size octets in canonical
// form (CRLF line endings, final CRLF), the same bytes for the same
// arguments. Some body lines start with "." so that dot-stuffing is
// exercised.
func generateMessage(to string, seq int, size int) []byte {
	return generateMessageFrom("", to, seq, size)
}

// generateMessageFrom is generateMessage with the given From field (""
// for the default, Bench Sender <sender@bench.invalid>).
func generateMessageFrom(from, to string, seq int, size int) []byte {
	if from == "" {
		from = "Bench Sender <sender@bench.invalid>"
	}
	size = max(size, minMessageSize)
	var b bytes.Buffer
	b.Grow(size)
	fmt.Fprintf(&b, "From: %s\r\n"+
		"To: <%s>\r\n"+
		"Subject: benchmark message %d\r\n"+
		"Date: Mon, 02 Jan 2006 15:04:05 +0000\r\n"+
		"Message-ID: <%d.%d@bench.invalid>\r\n"+
		"MIME-Version: 1.0\r\n"+
		"Content-Type: text/plain; charset=us-ascii\r\n"+
		"\r\n", from, to, seq, seq, size)
	r := rand.New(rand.NewPCG(uint64(seq), uint64(size)))
	line := 0
	for b.Len() < size {
		left := size - b.Len()
		n := 72
		switch {
		case left <= n+2:
			n = left - 2 // the last line fills the message exactly
		case left-(n+2) < 2:
			n = left - 4 // leave room for a last (empty) line
		}
		if line%17 == 3 && n > 0 {
			b.WriteByte('.')
			n--
		}
		for range n {
			b.WriteByte(text[r.IntN(len(text))])
		}
		b.WriteString("\r\n")
		line++
	}
	return b.Bytes()
}

// toLF turns canonical CRLF text into LF line endings, as maildir files
// are usually stored.
func toLF(msg []byte) []byte {
	return bytes.ReplaceAll(msg, []byte("\r\n"), []byte("\n"))
}

// MarshalText writes the specification (JSON reports).
func (d sizeDist) MarshalText() ([]byte, error) { return []byte(d.String()), nil }
