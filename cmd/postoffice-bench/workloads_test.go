package main

import (
	"context"
	"testing"
	"time"
)

func TestPacerSchedule(t *testing.T) {
	p := newPacer(1000) // one slot a millisecond
	var dues []time.Time
	for range 5 {
		due, err := p.wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().Before(due) {
			t.Errorf("wait returned before its slot %v", due)
		}
		dues = append(dues, due)
	}
	for k := range dues {
		if want := p.start.Add(time.Duration(k) * time.Millisecond); !dues[k].Equal(want) {
			t.Errorf("slot %d due at %v, want %v", k, dues[k].Sub(p.start), want.Sub(p.start))
		}
	}
	// A slot far ahead: a cancelled wait returns at once with the error.
	p = newPacer(0.001)
	p.wait(context.Background()) // slot 0, due now
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.wait(ctx); err == nil {
		t.Error("a cancelled wait for a slot 1000 s ahead returned no error")
	}
}
