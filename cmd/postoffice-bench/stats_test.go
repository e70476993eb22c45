package main

import (
	"bytes"
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var s []time.Duration
	for i := 1; i <= 100; i++ {
		s = append(s, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{
		{50, 50 * time.Millisecond},
		{95, 95 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{100, 100 * time.Millisecond},
		{0.1, 1 * time.Millisecond},
	} {
		if got := percentile(s, c.p); got != c.want {
			t.Errorf("percentile(1..100 ms, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	// Nearest rank: with 3 samples p50 is the 2nd, p99 the 3rd.
	three := []time.Duration{10, 20, 30}
	if got := percentile(three, 50); got != 20 {
		t.Errorf("p50 of 3 = %v, want 20", got)
	}
	if got := percentile(three, 99); got != 30 {
		t.Errorf("p99 of 3 = %v, want 30", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("percentile of nothing = %v, want 0", got)
	}
}

func TestSummarizeUnsorted(t *testing.T) {
	in := []time.Duration{5 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond}
	l := summarize(in)
	if l.P50 != 3 || l.Max != 5 || l.Mean != 3 || l.P99 != 5 {
		t.Errorf("summarize = %+v, want p50 3, p99 5, max 5, mean 3", l)
	}
	if in[0] != 5*time.Millisecond {
		t.Error("summarize sorted its argument in place")
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median(3,1,2) = %v", got)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median(4,1,3,2) = %v", got)
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median of nothing is not NaN")
	}
}

func TestCollectorResult(t *testing.T) {
	c := newCollector()
	for i := 1; i <= 10; i++ {
		c.rec("session").add(time.Duration(i)*time.Millisecond, 100)
	}
	c.fail("session", errString("boom"))
	c.set("kib_per_session", 12.5)
	r := c.result("poll", 2*time.Second)
	s := r.Ops["session"]
	if s.Ops != 10 || s.Errors != 1 || s.OpsPerSec != 5 || s.Bytes != 1000 || s.BytesPerSec != 500 {
		t.Errorf("session stats = %+v", s)
	}
	if r.Errors() != 1 || len(r.ErrorSamples) != 1 || !strings.Contains(r.ErrorSamples[0], "boom") {
		t.Errorf("errors: %d %v", r.Errors(), r.ErrorSamples)
	}
	var tbl bytes.Buffer
	if err := writeTable(&tbl, []Result{r}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"session", "5.0", "kib_per_session=12.500", "boom"} {
		if !strings.Contains(tbl.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, tbl.String())
		}
	}
	var js bytes.Buffer
	if err := writeJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Ops["session"].Latency.P50 != 5 || back.Values["kib_per_session"] != 12.5 {
		t.Errorf("JSON round trip: %+v", back)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestSummarizeRuns(t *testing.T) {
	run := func(server string, rate, p50 float64) roundResult {
		return roundResult{Server: server, Result: Result{Workload: "poll",
			Ops: map[string]OpStats{"session": {OpsPerSec: rate, Latency: Latency{P50: p50, P99: p50 * 2}}}}}
	}
	runs := []roundResult{
		run("postoffice", 300, 1), run("dovecot", 100, 4),
		run("postoffice", 200, 2), run("dovecot", 50, 5),
		run("postoffice", 400, 3), run("dovecot", 150, 6),
	}
	rows := summarizeRuns(runs, "dovecot")
	if len(rows) != len(metrics["poll"]) {
		t.Fatalf("%d rows, want %d", len(rows), len(metrics["poll"]))
	}
	rate := rows[0]
	if rate.Postoffice != 300 || rate.Peer != 100 || rate.Ratio != 3 || rate.Advantage != 3 {
		t.Errorf("sessions/s row = %+v", rate)
	}
	lat := rows[1]
	if lat.Postoffice != 2 || lat.Peer != 5 || lat.Ratio != 0.4 || lat.Advantage != 2.5 {
		t.Errorf("p50 row = %+v", lat)
	}
	var b bytes.Buffer
	writeSummary(&b, []workloadReport{{Workload: "poll", Peer: "dovecot", Summary: rows}})
	if !strings.Contains(b.String(), "3.00x better") || !strings.Contains(b.String(), "2.50x better") {
		t.Errorf("summary:\n%s", b.String())
	}
}

// TestSummaryJSONNotFinite: a ratio against a figure of 0 (the filters'
// CPU of a server without filters) is written as null, and the report
// still encodes; the ratios that are finite are kept.
func TestSummaryJSONNotFinite(t *testing.T) {
	rows := []summaryRow{
		{Metric: "filters CPU ms/message", Postoffice: 0, Peer: 5.2, Ratio: 0, Advantage: math.Inf(1)},
		{Metric: "x", Postoffice: 0, Peer: 0, Ratio: math.NaN(), Advantage: math.NaN()},
		{Metric: "messages/s", Postoffice: 900, Peer: 300, Ratio: 3, Advantage: 3, HigherBetter: true},
	}
	var b bytes.Buffer
	if err := writeJSON(&b, workloadReport{Workload: "intake", Summary: rows}); err != nil {
		t.Fatal(err)
	}
	var back struct {
		Summary []map[string]any `json:"summary"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Summary) != 3 {
		t.Fatalf("%d rows back: %s", len(back.Summary), b.String())
	}
	first, last := back.Summary[0], back.Summary[2]
	if first["advantage"] != nil || first["ratio"] != 0.0 || first["peer"] != 5.2 || first["metric"] != "filters CPU ms/message" {
		t.Errorf("row against 0: %v", first)
	}
	if back.Summary[1]["ratio"] != nil {
		t.Errorf("NaN ratio: %v", back.Summary[1])
	}
	if last["ratio"] != 3.0 || last["advantage"] != 3.0 || last["higher_is_better"] != true {
		t.Errorf("finite row: %v", last)
	}
}

// The idle share comes from /proc/stat's idle column alone: I/O wait,
// the writes settle waits for, counts as busy.
func TestCPUTimes(t *testing.T) {
	prev, err := parseCPUTimes([]byte("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n"))
	if err != nil || prev != (cpuTimes{idle: 800, total: 1000}) {
		t.Fatalf("parse: %+v, %v", prev, err)
	}
	cur, err := parseCPUTimes([]byte("cpu  110 0 60 980 50 0 0 0 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cur.idleShare(prev); got != 0.9 {
		t.Errorf("idle share %v, want 0.9", got)
	}
	waiting, _ := parseCPUTimes([]byte("cpu  110 0 60 980 250 0 0 0 0 0\n"))
	if got := waiting.idleShare(cur); got != 0 {
		t.Errorf("idle share while waiting for I/O %v, want 0", got)
	}
	for _, bad := range []string{"", "intr 1 2 3", "cpu 1 2 x 4 5 6 7 8"} {
		if _, err := parseCPUTimes([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestMsPer(t *testing.T) {
	r := Result{Ops: map[string]OpStats{"retr": {Ops: 400}},
		Values: map[string]float64{"server_cpu_s": 0.2, "client_cpu_s": 0.1}}
	if got := msPer("server_cpu_s", "retr")(r); got != 0.5 {
		t.Errorf("server: %v ms per RETR, want 0.5", got)
	}
	if got := msPer("client_cpu_s", "retr")(r); got != 0.25 {
		t.Errorf("load generator: %v ms per RETR, want 0.25", got)
	}
	if got := msPer("server_cpu_s", "message")(r); !math.IsNaN(got) {
		t.Errorf("no messages: %v, want NaN", got)
	}
}

// selfCPU counts this process's CPU: a loop that spins for 50 ms of wall
// time adds to it, and the whole cannot exceed the wall time on every core.
func TestSelfCPU(t *testing.T) {
	before, start := selfCPU(), time.Now()
	for x := 0; time.Since(start) < 50*time.Millisecond; x++ {
		_ = x * x
	}
	used, wall := selfCPU()-before, time.Since(start).Seconds()
	if used <= 0 || used > wall*float64(runtime.NumCPU())+0.05 {
		t.Errorf("selfCPU grew by %.3f s over %.3f s of wall time", used, wall)
	}
}
