package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// account is one login name and its password.
type account struct {
	Name     string
	Password string
}

// usersFromPattern expands a pattern with one %d (e.g. "user%d@bench.test")
// for 1..n, all with the same password.
func usersFromPattern(pattern string, n int, password string) ([]account, error) {
	if strings.Count(pattern, "%d") != 1 || strings.Count(pattern, "%") != 1 {
		return nil, fmt.Errorf("user pattern %q: want exactly one %%d, e.g. user%%d@bench.test", pattern)
	}
	if n <= 0 {
		return nil, fmt.Errorf("user count %d: want at least 1", n)
	}
	users := make([]account, n)
	for i := range users {
		users[i] = account{Name: fmt.Sprintf(pattern, i+1), Password: password}
	}
	return users, nil
}

// readUsers reads one account per line: "name" (with defaultPassword) or
// "name password" (the password is the rest of the line). Blank lines and
// lines starting with "#" are skipped.
func readUsers(r io.Reader, defaultPassword string) ([]account, error) {
	var users []account
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, pw, ok := strings.Cut(line, " ")
		if !ok {
			pw = defaultPassword
		}
		if pw == "" {
			return nil, fmt.Errorf("line %d: no password and no default one", n)
		}
		users = append(users, account{Name: name, Password: strings.TrimSpace(pw)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("no users")
	}
	return users, nil
}

func readUsersFile(path, defaultPassword string) ([]account, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	users, err := readUsers(f, defaultPassword)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return users, nil
}
