package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// recorder collects the latencies of one kind of operation. Samples are
// kept whole (a run makes at most a few million), so percentiles are exact.
type recorder struct {
	mu      sync.Mutex
	samples []time.Duration
	errors  int
	bytes   int64
}

func (r *recorder) add(d time.Duration, bytes int64) {
	r.mu.Lock()
	r.samples = append(r.samples, d)
	r.bytes += bytes
	r.mu.Unlock()
}

func (r *recorder) fail() {
	r.mu.Lock()
	r.errors++
	r.mu.Unlock()
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted samples
// by the nearest-rank method: the smallest sample such that at least p% of
// the samples are not larger. Zero for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Latency summarizes a set of samples, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P95  float64 `json:"p95_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Latency{
		P50:  ms(percentile(s, 50)),
		P95:  ms(percentile(s, 95)),
		P99:  ms(percentile(s, 99)),
		Max:  ms(s[len(s)-1]),
		Mean: ms(sum / time.Duration(len(s))),
	}
}

// OpStats is the result for one kind of operation (a session, a RETR, a
// message sent...).
type OpStats struct {
	Ops         int     `json:"ops"`
	Errors      int     `json:"errors"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	Bytes       int64   `json:"bytes"`
	BytesPerSec float64 `json:"bytes_per_sec"`
	Latency     Latency `json:"latency"`
}

// Result is the outcome of one run of one workload against one server.
type Result struct {
	Workload string  `json:"workload"`
	Server   string  `json:"server,omitempty"`
	Addr     string  `json:"addr,omitempty"`
	Seconds  float64 `json:"seconds"`
	// Ops are keyed by operation name; "session" or "message" is the
	// workload's main one.
	Ops map[string]OpStats `json:"ops"`
	// Values holds workload-specific figures (memory, counts...).
	Values map[string]float64 `json:"values,omitempty"`
	// ErrorSamples are the first few error messages.
	ErrorSamples []string `json:"error_samples,omitempty"`
}

// collector gathers recorders by operation name and the first errors.
type collector struct {
	mu     sync.Mutex
	recs   map[string]*recorder
	order  []string
	errs   []string
	values map[string]float64
}

func newCollector() *collector {
	return &collector{recs: make(map[string]*recorder), values: make(map[string]float64)}
}

func (c *collector) rec(name string) *recorder {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.recs[name]
	if !ok {
		r = &recorder{}
		c.recs[name] = r
		c.order = append(c.order, name)
	}
	return r
}

const maxErrorSamples = 5

func (c *collector) fail(name string, err error) {
	c.rec(name).fail()
	c.mu.Lock()
	if len(c.errs) < maxErrorSamples {
		c.errs = append(c.errs, fmt.Sprintf("%s: %v", name, err))
	}
	c.mu.Unlock()
}

func (c *collector) set(name string, v float64) {
	c.mu.Lock()
	c.values[name] = v
	c.mu.Unlock()
}

func (c *collector) result(workload string, elapsed time.Duration) Result {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := Result{Workload: workload, Seconds: elapsed.Seconds(), Ops: make(map[string]OpStats), ErrorSamples: c.errs}
	if len(c.values) > 0 {
		res.Values = make(map[string]float64, len(c.values))
		for k, v := range c.values {
			res.Values[k] = v
		}
	}
	secs := elapsed.Seconds()
	for _, name := range c.order {
		r := c.recs[name]
		r.mu.Lock()
		st := OpStats{Ops: len(r.samples), Errors: r.errors, Bytes: r.bytes, Latency: summarize(r.samples)}
		r.mu.Unlock()
		if secs > 0 {
			st.OpsPerSec = float64(st.Ops) / secs
			st.BytesPerSec = float64(st.Bytes) / secs
		}
		res.Ops[name] = st
	}
	return res
}

// Errors is the number of failed operations of every kind.
func (r Result) Errors() int {
	n := 0
	for _, o := range r.Ops {
		n += o.Errors
	}
	return n
}

// opNames returns the operation names in a stable order: the main one
// first, then alphabetically.
func (r Result) opNames() []string {
	names := make([]string, 0, len(r.Ops))
	for n := range r.Ops {
		names = append(names, n)
	}
	rank := func(n string) int {
		switch n {
		case "session", "message":
			return 0
		}
		return 1
	}
	sort.Slice(names, func(i, j int) bool {
		if a, b := rank(names[i]), rank(names[j]); a != b {
			return a < b
		}
		return names[i] < names[j]
	})
	return names
}

// writeTable prints results as an aligned table.
func writeTable(w io.Writer, results []Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tserver\top\tops\terrors\tops/s\tMB/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\t")
	for _, r := range results {
		for _, n := range r.opNames() {
			o := r.Ops[n]
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
				r.Workload, r.Server, n, o.Ops, o.Errors, o.OpsPerSec, o.BytesPerSec/1e6,
				o.Latency.P50, o.Latency.P95, o.Latency.P99, o.Latency.Max)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range results {
		if len(r.Values) > 0 {
			keys := make([]string, 0, len(r.Values))
			for k := range r.Values {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%s", k, formatValue(r.Values[k])))
			}
			fmt.Fprintf(w, "%s %s: %s\n", r.Workload, r.Server, strings.Join(parts, " "))
		}
		for _, e := range r.ErrorSamples {
			fmt.Fprintf(w, "%s %s error: %s\n", r.Workload, r.Server, e)
		}
	}
	return nil
}

func formatValue(v float64) string {
	if v == math.Trunc(v) && math.Abs(v) < 1e15 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// median returns the median of vs (the mean of the middle two for an even
// count); NaN for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}
