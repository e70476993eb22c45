package admin

import (
	"context"
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// The dashboard's charts: message events per hour over the last 24 hours
// or per day over the last 30 days, counted in the journal (on disk), and
// logins, failed logins and the queue's size, which the running process
// keeps in memory (metrics.Hours). Drawn here as inline SVG: no script.

// bar is one period of a chart.
type bar struct {
	Label string // "14:00", "Mon 2 Dec"
	Value int64
	Known bool // false: no data for the period (the server did not run)
}

// chart is one small chart of one series.
type chart struct {
	ID, Title string
	Level     bool // a level (queue size: the largest sample), not a count
	Bars      []bar
	Total     int64 // the sum, or for a level the largest value
	Max       int64
}

// chartsData is the dashboard's charts of one period: Range "24h" (per
// hour) or "30d" (per day).
type chartsData struct {
	End         string // what the last period is: "now", "today"
	Range       string
	Per         string // "hour" or "day"
	Charts      []chart
	MemorySince time.Time // logins and queue sizes are known since then
}

// chartEvents are the journal's events charted, in order.
var chartEvents = []struct {
	event store.JournalEvent
	title string
}{
	{store.EventReceived, "Received"}, {store.EventDelivered, "Delivered"}, {store.EventRetrieved, "Retrieved"},
	{store.EventBounced, "Bounced"}, {store.EventDeferred, "Deferred"},
}

// buildCharts gathers the charts of the period rng ending now.
func (c *Console) buildCharts(ctx context.Context, rng string, now time.Time) (chartsData, error) {
	d := chartsData{Range: rng, Per: "hour", End: "this hour"}
	hourStart := now.Truncate(time.Hour)
	var (
		since  time.Time
		hours  int
		bucket func(t time.Time) int // hour start -> period index
		labels []string
	)
	if rng == "30d" {
		d.Per, d.End = "day", "today"
		y, m, dd := now.Date()
		since = time.Date(y, m, dd-29, 0, 0, 0, 0, now.Location())
		hours = int(hourStart.Sub(since)/time.Hour) + 1
		for i := range 30 {
			labels = append(labels, since.AddDate(0, 0, i).Format("Mon 2 Jan"))
		}
		bucket = func(t time.Time) int {
			ty, tm, td := t.In(now.Location()).Date()
			day := time.Date(ty, tm, td, 0, 0, 0, 0, now.Location())
			for i := range 30 {
				if since.AddDate(0, 0, i).Equal(day) {
					return i
				}
			}
			return -1
		}
	} else {
		d.Range = "24h"
		hours = 24
		since = hourStart.Add(-23 * time.Hour)
		for i := range 24 {
			labels = append(labels, since.Add(time.Duration(i)*time.Hour).Local().Format("15:04"))
		}
		bucket = func(t time.Time) int { return int(t.Sub(since) / time.Hour) }
	}
	n := len(labels)

	counts, err := c.st.JournalHistogram(ctx, since, time.Hour, hours)
	if err != nil {
		return d, err
	}
	for _, ce := range chartEvents {
		ch := chart{ID: string(ce.event), Title: ce.title, Bars: make([]bar, n)}
		for i := range ch.Bars {
			ch.Bars[i] = bar{Label: labels[i], Known: true}
		}
		for h, v := range counts[ce.event] {
			if i := bucket(since.Add(time.Duration(h) * time.Hour)); i >= 0 && i < n {
				ch.Bars[i].Value += v
			}
		}
		d.Charts = append(d.Charts, finish(ch))
	}

	// From the process's memory: as many hours back as since.
	mem := c.ctl.Hours(now, int(hourStart.Sub(since.Truncate(time.Hour))/time.Hour)+1)
	logins := chart{ID: "logins", Title: "Logins", Bars: make([]bar, n)}
	failed := chart{ID: "failed-logins", Title: "Failed logins", Bars: make([]bar, n)}
	queue := chart{ID: "queue", Title: "Queue size", Level: true, Bars: make([]bar, n)}
	for i := range n {
		logins.Bars[i].Label, failed.Bars[i].Label, queue.Bars[i].Label = labels[i], labels[i], labels[i]
	}
	for _, h := range mem {
		i := bucket(h.Start)
		if i < 0 || i >= n || !h.Seen {
			continue
		}
		logins.Bars[i].Known, failed.Bars[i].Known = true, true
		logins.Bars[i].Value += h.Logins
		failed.Bars[i].Value += h.FailedLogins
		if h.Sampled {
			queue.Bars[i].Known = true
			queue.Bars[i].Value = max(queue.Bars[i].Value, int64(h.QueueMessages))
		}
	}
	d.Charts = append(d.Charts, finish(queue), finish(logins), finish(failed))
	d.MemorySince = memoryStart(mem)
	return d, nil
}

// memoryStart is when the running server's in-memory history begins.
func memoryStart(hours []metrics.Hour) time.Time {
	for _, h := range hours {
		if h.Seen {
			return h.Start
		}
	}
	return time.Time{}
}

func finish(ch chart) chart {
	for _, b := range ch.Bars {
		ch.Max = max(ch.Max, b.Value)
		if ch.Level {
			ch.Total = max(ch.Total, b.Value)
		} else {
			ch.Total += b.Value
		}
	}
	return ch
}

// SVG draws the chart's bars: one per period, scaled to the largest; a
// period without data is a dotted mark on the base line. Each bar carries
// its value (data-value) and a tooltip.
func (ch chart) SVG() template.HTML {
	const barW, gap, height = 10, 2, 60
	n := len(ch.Bars)
	width := n*(barW+gap) - gap
	var b strings.Builder
	per := "hour"
	if n == 30 {
		per = "day"
	}
	what := "total"
	if ch.Level {
		what = "largest"
	}
	fmt.Fprintf(&b, `<svg class="chart-svg" viewBox="0 0 %d %d" preserveAspectRatio="none" role="img" aria-label="%s per %s: %s %d, most in one %s %d">`,
		width, height+2, template.HTMLEscapeString(ch.Title), per, what, ch.Total, per, ch.Max)
	for i, bar := range ch.Bars {
		x := i * (barW + gap)
		label := template.HTMLEscapeString(bar.Label)
		if !bar.Known {
			fmt.Fprintf(&b, `<rect class="bar-unknown" x="%d" y="%d" width="%d" height="2" data-value="" data-label="%s"><title>%s: no data (the server was not running)</title></rect>`,
				x, height, barW, label, label)
			continue
		}
		h := 0
		if ch.Max > 0 {
			h = int(bar.Value * height / ch.Max)
		}
		if bar.Value > 0 && h < 2 {
			h = 2
		}
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%d" height="%d" data-value="%d" data-label="%s"><title>%s: %d</title></rect>`,
			x, height-h, barW, h, bar.Value, label, label, bar.Value)
	}
	fmt.Fprintf(&b, `<line class="baseline" x1="0" y1="%d" x2="%d" y2="%d"/></svg>`, height+1, width, height+1)
	return template.HTML(b.String())
}
