package clientinfo

import (
	"context"
	"strings"
	"testing"
)

func TestClip(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"alice@example.com", "alice@example.com"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), strings.Repeat("a", 64) + "..."},
		{"bad\xffbyte", "bad?byte"},
		{strings.Repeat("a", 63) + "é", strings.Repeat("a", 63) + "?..."}, // cut inside the rune
	} {
		if got := Clip(tc.in); got != tc.want {
			t.Errorf("Clip(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRemote(t *testing.T) {
	if got := Remote(context.Background()); got != "" {
		t.Errorf("Remote of a bare context = %q", got)
	}
	if got := Remote(WithRemote(context.Background(), "192.0.2.1:2525")); got != "192.0.2.1:2525" {
		t.Errorf("Remote = %q", got)
	}
}
