package sasllogin

import (
	"errors"
	"testing"
)

func TestExchange(t *testing.T) {
	bad := errors.New("bad password")
	for _, tc := range []struct {
		name      string
		responses [][]byte // nil first: no initial response
		wantChall []string
		wantErr   error
	}{
		{"no initial response", [][]byte{nil, []byte("alice"), []byte("pw")}, []string{"Username:", "Password:", ""}, nil},
		{"user name as initial response", [][]byte{[]byte("alice"), []byte("pw")}, []string{"Password:", ""}, nil},
		{"empty initial response is a user name", [][]byte{{}, []byte("pw")}, []string{"Password:", ""}, bad},
		{"wrong password", [][]byte{nil, []byte("alice"), []byte("nope")}, []string{"Username:", "Password:", ""}, bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got [2]string
			s := NewServer(func(u, p string) error {
				got = [2]string{u, p}
				if u != "alice" || p != "pw" {
					return bad
				}
				return nil
			})
			for i, r := range tc.responses {
				ch, done, err := s.Next(r)
				last := i == len(tc.responses)-1
				if string(ch) != tc.wantChall[i] || done != last {
					t.Fatalf("step %d: challenge %q done %v", i, ch, done)
				}
				if last && !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v (got %q)", err, tc.wantErr, got)
				}
				if !last && err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			if _, _, err := s.Next([]byte("more")); !errors.Is(err, ErrUnexpected) {
				t.Errorf("response after the end: %v", err)
			}
		})
	}
}
