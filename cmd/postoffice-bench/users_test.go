package main

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

func bufioWriter(w io.Writer) *bufio.Writer { return bufio.NewWriter(w) }

func TestUsersFromPattern(t *testing.T) {
	u, err := usersFromPattern("user%d@bench.test", 3, "pw")
	if err != nil {
		t.Fatal(err)
	}
	if len(u) != 3 || u[0] != (account{"user1@bench.test", "pw"}) || u[2].Name != "user3@bench.test" {
		t.Errorf("got %v", u)
	}
	for _, bad := range []string{"user@bench.test", "u%d%d@x", "u%s@x", "%d%%"} {
		if _, err := usersFromPattern(bad, 3, "pw"); err == nil {
			t.Errorf("pattern %q: no error", bad)
		}
	}
	if _, err := usersFromPattern("u%d@x", 0, "pw"); err == nil {
		t.Error("0 users: no error")
	}
}

func TestReadUsers(t *testing.T) {
	in := "# accounts\nalice@x.test\n\nbob@x.test secret with spaces \n"
	u, err := readUsers(strings.NewReader(in), "default")
	if err != nil {
		t.Fatal(err)
	}
	want := []account{{"alice@x.test", "default"}, {"bob@x.test", "secret with spaces"}}
	if len(u) != 2 || u[0] != want[0] || u[1] != want[1] {
		t.Errorf("got %q, want %q", u, want)
	}
	if _, err := readUsers(strings.NewReader("alice@x.test\n"), ""); err == nil {
		t.Error("no password at all: no error")
	}
	if _, err := readUsers(strings.NewReader("# nothing\n"), "pw"); err == nil {
		t.Error("no users: no error")
	}
}
