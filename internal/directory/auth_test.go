package directory_test

import (
	"errors"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/postoffice-mail/postoffice/internal/directory"
	"github.com/postoffice-mail/postoffice/internal/store"
	"github.com/postoffice-mail/postoffice/internal/store/sqlite"
)

func TestAuthenticate(t *testing.T) {
	ctx := t.Context()
	s, err := sqlite.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	argon, err := directory.HashPassword("alice pw")
	if err != nil {
		t.Fatal(err)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte("bob pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := []store.User{
		{Address: "alice@example.com", PasswordHash: argon, Enabled: true},
		{Address: "bob@example.com", PasswordHash: string(bc), Enabled: true},
		{Address: "carol@example.com", PasswordHash: argon, Enabled: false},
		{Address: "dave@example.com", PasswordHash: "", Enabled: true},
	}
	for _, u := range users {
		if _, err := s.AddUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := s.UserByAddress(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddAddress(ctx, alice.ID, "al@example.com"); err != nil {
		t.Fatal(err)
	}

	a := directory.NewAuthenticator(s)
	for _, tt := range []struct {
		login, pw string
		want      string // "" means ErrAuthFailed
	}{
		{"alice@example.com", "alice pw", "alice@example.com"},
		{" Alice@EXAMPLE.com ", "alice pw", "alice@example.com"},
		{"bob@example.com", "bob pw", "bob@example.com"},
		{"alice@example.com", "Alice pw", ""},
		{"alice@example.com", "", ""},
		{"nobody@example.com", "alice pw", ""},
		{"not a login", "alice pw", ""},
		{"al@example.com", "alice pw", ""},    // extra addresses are not logins
		{"carol@example.com", "alice pw", ""}, // disabled
		{"dave@example.com", "", ""},          // no password set
	} {
		u, err := a.Authenticate(ctx, tt.login, tt.pw)
		switch {
		case tt.want == "" && !errors.Is(err, directory.ErrAuthFailed):
			t.Errorf("Authenticate(%q, %q) = %s, %v; want ErrAuthFailed", tt.login, tt.pw, u.Address, err)
		case tt.want != "" && (err != nil || u.Address != tt.want):
			t.Errorf("Authenticate(%q, %q) = %s, %v; want %s", tt.login, tt.pw, u.Address, err, tt.want)
		}
	}

	// A directory that fails is not a failed authentication: the client
	// must be told to come back later, not that its password is wrong.
	s.Close()
	if _, err := a.Authenticate(ctx, "alice@example.com", "alice pw"); err == nil || errors.Is(err, directory.ErrAuthFailed) {
		t.Errorf("Authenticate with a closed store: %v; want an error other than ErrAuthFailed", err)
	}
}
