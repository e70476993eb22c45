package sqlite

import (
	"slices"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// TestParseList: List's compact form is read back in UID order, sorted if
// SQLite ever scans out of order, and anything else is an error.
func TestParseList(t *testing.T) {
	got, err := parseList([]byte("3 30 1 10 18446744073709551615 9223372036854775807 2 0"))
	want := []store.MessageInfo{{UID: 1, Size: 10}, {UID: 2, Size: 0}, {UID: 3, Size: 30}, {UID: 18446744073709551615, Size: 9223372036854775807}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseList = %v, %v; want %v", got, err, want)
	}
	for _, bad := range []string{"1", "1 ", "1 2 ", " 1 2", "1  2", "1 x", "1 2 3", "18446744073709551616 1", "1 9223372036854775808", "1 -2", "1\t2"} {
		if got, err := parseList([]byte(bad)); err == nil {
			t.Errorf("parseList(%q) = %v, want an error", bad, got)
		}
	}
}
