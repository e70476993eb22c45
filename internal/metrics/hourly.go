package metrics

import (
	"sync"
	"time"
)

// Hour is what the process saw in one clock hour: mail logins (POP3 and
// SMTP AUTH) that succeeded and that failed, and the largest size of the
// outbound queue sampled in it. These are kept in memory (a restart
// starts them again), for the console's charts; message events come from
// the journal, which is on disk.
type Hour struct {
	Start         time.Time
	Logins        int64
	FailedLogins  int64
	QueueMessages int  // the largest sample
	Sampled       bool // the queue was sampled in this hour
	Seen          bool // the process ran in this hour
}

// hoursKept bounds the history: 31 days.
const hoursKept = 31 * 24

type hourly struct {
	mu      sync.Mutex
	started time.Time
	hours   map[int64]*Hour // by Unix hour
}

func newHourly(now time.Time) *hourly {
	return &hourly{started: now, hours: map[int64]*Hour{}}
}

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

// at returns the hour of t, made if absent (h.mu held).
func (h *hourly) at(t time.Time) *Hour {
	k := hourOf(t)
	hr := h.hours[k]
	if hr == nil {
		hr = &Hour{Start: time.Unix(k*3600, 0)}
		h.hours[k] = hr
		for old := range h.hours {
			if old <= k-hoursKept {
				delete(h.hours, old)
			}
		}
	}
	return hr
}

// LoginAt counts a mail login (pop3, smtp) at t in its hour.
func (m *Metrics) LoginAt(t time.Time, ok bool) {
	if m == nil {
		return
	}
	m.hourly.mu.Lock()
	defer m.hourly.mu.Unlock()
	hr := m.hourly.at(t)
	if ok {
		hr.Logins++
	} else {
		hr.FailedLogins++
	}
}

// QueueSample records the size of the outbound queue at t.
func (m *Metrics) QueueSample(t time.Time, n int) {
	if m == nil {
		return
	}
	m.hourly.mu.Lock()
	defer m.hourly.mu.Unlock()
	hr := m.hourly.at(t)
	if !hr.Sampled || n > hr.QueueMessages {
		hr.QueueMessages = n
	}
	hr.Sampled = true
}

// Hours returns the n clock hours up to the one of now, oldest first.
// Hours before the process started have Seen false.
func (m *Metrics) Hours(now time.Time, n int) []Hour {
	m.hourly.mu.Lock()
	defer m.hourly.mu.Unlock()
	out := make([]Hour, n)
	last := hourOf(now)
	first := hourOf(m.hourly.started)
	for i := range out {
		k := last - int64(n-1-i)
		if hr := m.hourly.hours[k]; hr != nil {
			out[i] = *hr
		} else {
			out[i] = Hour{Start: time.Unix(k*3600, 0)}
		}
		out[i].Seen = k >= first
	}
	return out
}

// Started is when the hourly history begins.
func (m *Metrics) Started() time.Time { return m.hourly.started }
