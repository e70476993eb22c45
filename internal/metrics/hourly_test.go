package metrics

import (
	"testing"
	"time"
)

// TestHours: logins and queue samples land in their clock hour; hours
// before the process started are not Seen; the history is bounded.
func TestHours(t *testing.T) {
	m := New("test", nil)
	start := m.Started()
	now := start.Truncate(time.Hour).Add(2*time.Hour + 5*time.Minute)
	m.Login("pop3", true)
	m.Login("smtp", false)
	m.Login("admin", false) // not a mail login
	m.LoginAt(now, true)
	m.QueueSample(now, 3)
	m.QueueSample(now.Add(time.Minute), 1)
	hs := m.Hours(now, 4)
	if len(hs) != 4 || !hs[3].Start.Equal(now.Truncate(time.Hour)) {
		t.Fatalf("hours %+v", hs)
	}
	if hs[0].Seen || !hs[1].Seen || hs[1].Logins != 1 || hs[1].FailedLogins != 1 {
		t.Errorf("the start hour: %+v, the one before: %+v", hs[1], hs[0])
	}
	if hs[2].Sampled || hs[2].Logins != 0 || !hs[2].Seen {
		t.Errorf("an hour without events: %+v", hs[2])
	}
	if hs[3].Logins != 1 || !hs[3].Sampled || hs[3].QueueMessages != 3 {
		t.Errorf("now: %+v, want 1 login and the largest sample, 3", hs[3])
	}
	// Older than the kept history: gone.
	m.LoginAt(now.Add(40*24*time.Hour), true)
	if hs := m.Hours(now, 4); hs[3].Logins != 0 {
		t.Errorf("an hour 40 days old is still kept: %+v", hs[3])
	}
}
