package server

import (
	"context"
	"strings"
	"testing"
)

// TestReloadComparesValues: reload tells a change of a service's settings
// from their values, not from how they print: [pop3] hostname "pop1" with
// an inactivity timeout of 600 seconds and "pop" with 1600 both print
// "pop1600" when written side by side, and are different settings; the
// same value written another way ("10m" for 600) is no change.
func TestReloadComparesValues(t *testing.T) {
	ts := newTestServer(t, "hostname = \"pop1\"\ninactivity_timeout = 600")
	addr := ts.pop3Addr()

	writeConfig(t, ts.cfg, ts.dir, "hostname = \"pop1\"\ninactivity_timeout = \"10m\"")
	notes, err := ts.srv.Reload(context.Background())
	if err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if strings.Contains(strings.Join(notes, "\n"), "new settings") {
		t.Errorf("the same timeout written as 10m is taken for a change: %q", notes)
	}

	writeConfig(t, ts.cfg, ts.dir, "hostname = \"pop\"\ninactivity_timeout = 1600")
	if notes, err = ts.srv.Reload(context.Background()); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !strings.Contains(strings.Join(notes, "\n"), "pop3: new settings apply to new sessions") {
		t.Errorf("a new host name and timeout are not applied: notes %q", notes)
	}
	if _, g := dialPOP(t, addr); !strings.HasPrefix(g, "+OK pop ") {
		t.Errorf("new session greeting %q, want the new host name", g)
	}
}
