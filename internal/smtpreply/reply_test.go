package smtpreply

import (
	"fmt"
	"slices"
	"testing"
)

func TestParseStatus(t *testing.T) {
	good := map[string]Status{"2.0.0": {2, 0, 0}, "5.1.1": {5, 1, 1}, "4.7.999": {4, 7, 999}, "5.10.10": {5, 10, 10}}
	for in, want := range good {
		if got, ok := ParseStatus(in); !ok || got != want {
			t.Errorf("ParseStatus(%q) = %v, %v; want %v", in, got, ok, want)
		}
		if got := want.String(); got != in {
			t.Errorf("%v.String() = %q, want %q", want, got, in)
		}
	}
	for _, in := range []string{"", "5.1", "3.1.1", "5.01.1", "5.1.1000", "5.a.1", "5.1.1.1", " 5.1.1", "5..1"} {
		if got, ok := ParseStatus(in); ok {
			t.Errorf("ParseStatus(%q) = %v, accepted", in, got)
		}
	}
}

func TestWire(t *testing.T) {
	cases := []struct {
		r    Reply
		want string
	}{
		{New(250, "2.1.0", "OK"), "250 2.1.0 OK\r\n"},
		{New(354, "", "Go ahead"), "354 Go ahead\r\n"},
		{New(250, "", "mail.test", "PIPELINING", "SIZE 100"), "250-mail.test\r\n250-PIPELINING\r\n250 SIZE 100\r\n"},
		{New(550, "5.7.1", "Refused", "See the log"), "550-5.7.1 Refused\r\n550 5.7.1 See the log\r\n"},
		{New(421, "4.3.2"), "421 4.3.2\r\n"},
		{New(550, "5.0.0", "bad\r\n250 injected"), "550 5.0.0 bad  250 injected\r\n"},
		// Not UTF-8: the octets stay as they are (no U+FFFD, which would
		// make the line longer), controls still become spaces.
		{New(250, "", "\xff\xfe\x01é\x7f"), "250 \xff\xfe é \r\n"},
	}
	for _, c := range cases {
		if got := c.r.Wire(); got != c.want {
			t.Errorf("%#v.Wire() = %q, want %q", c.r, got, c.want)
		}
	}
}

func TestParse(t *testing.T) {
	cases := []struct {
		lines []string
		want  Reply
	}{
		{[]string{"250 2.0.0 Ok: queued as 4F2"}, New(250, "2.0.0", "Ok: queued as 4F2")},
		{[]string{"550-5.1.1 The email account that you tried to reach", "550 5.1.1 does not exist."},
			New(550, "5.1.1", "The email account that you tried to reach", "does not exist.")},
		{[]string{"250-mx.test", "250-PIPELINING", "250 8BITMIME"}, New(250, "", "mx.test", "PIPELINING", "8BITMIME")},
		{[]string{"354 End data with <CR><LF>.<CR><LF>"}, New(354, "", "End data with <CR><LF>.<CR><LF>")},
		{[]string{"220"}, New(220, "", "")},
		// A status whose class disagrees with the code is text.
		{[]string{"550 4.1.1 odd"}, New(550, "", "4.1.1 odd")},
		// Lines that disagree on the status keep it as text.
		{[]string{"451-4.3.0 a", "451 4.4.1 b"}, New(451, "", "4.3.0 a", "4.4.1 b")},
	}
	for _, c := range cases {
		got, err := Parse(c.lines)
		if err != nil || got.Code != c.want.Code || got.Status != c.want.Status || !slices.Equal(got.Text, c.want.Text) {
			t.Errorf("Parse(%q) = %#v, %v; want %#v", c.lines, got, err, c.want)
		}
	}
	for _, bad := range [][]string{nil, {"25"}, {"abc hello"}, {"250-a"}, {"250-a", "251 b"}, {"250 a", "250 b"},
		{"199 x"}, {"600 x"}, {"250x"}, {"+50 x"}} {
		if got, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) = %#v, accepted", bad, got)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	for _, r := range []Reply{New(250, "2.0.0", "Ok", "queued"), New(452, "4.3.1", "Insufficient system storage"),
		New(250, "", "hello", "SIZE 10")} {
		wire := r.Wire()
		var lines []string
		for len(wire) > 0 {
			i := len(wire)
			for j := 0; j+1 < len(wire); j++ {
				if wire[j] == '\r' && wire[j+1] == '\n' {
					i = j
					break
				}
			}
			lines = append(lines, wire[:i])
			wire = wire[i+2:]
		}
		got, err := Parse(lines)
		if err != nil || got.Code != r.Code || got.Status != r.Status || !slices.Equal(got.Text, r.Text) {
			t.Errorf("round trip of %#v: %#v, %v", r, got, err)
		}
	}
}

func TestClassesAndError(t *testing.T) {
	r := New(550, "5.1.1", "No such user")
	if !r.Permanent() || r.Temporary() || r.Positive() {
		t.Errorf("550: permanent %v temporary %v positive %v", r.Permanent(), r.Temporary(), r.Positive())
	}
	if r := New(451, "4.3.0"); !r.Temporary() || r.Permanent() {
		t.Error("451 is temporary")
	}
	if got := r.Error(); got != "550 5.1.1 No such user" {
		t.Errorf("Error() = %q", got)
	}
	wrapped := fmt.Errorf("rcpt: %w", r)
	if got, ok := As(wrapped); !ok || got.Code != 550 {
		t.Errorf("As(wrapped) = %v, %v", got, ok)
	}
	if got, ok := As(fmt.Errorf("x: %w", &r)); !ok || got.Status != (Status{5, 1, 1}) {
		t.Errorf("As(pointer) = %v, %v", got, ok)
	}
	if _, ok := As(fmt.Errorf("plain")); ok {
		t.Error("As found a reply in a plain error")
	}
}
