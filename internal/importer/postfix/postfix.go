package postfix

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// User is a virtual mailbox of Postfix: a postoffice user, without a
// password (Postfix's maps hold none).
type User struct {
	Address string
	Where   string // table and line
}

// Alias is an entry of virtual_alias_maps that postoffice can express.
type Alias struct {
	Address string // local@domain, or @domain for a catch-all
	Targets []string
	Where   string
}

// Problem is something of the source that is not imported, and why.
type Problem struct {
	Where string
	What  string
}

func (p Problem) String() string { return p.Where + ": " + p.What }

// Plan is what a Postfix configuration holds, as postoffice will have it.
type Plan struct {
	Domains  []string
	Users    []User
	Aliases  []Alias
	Problems []Problem // not imported
	Notes    []string  // imported, but worth saying
}

// Read reads main.cf at path and the tables of its virtual_mailbox_domains,
// virtual_mailbox_maps, virtual_alias_domains and virtual_alias_maps, as
// virtual(5) and virtual(8) give them meaning:
//
//   - a domain of virtual_mailbox_domains or virtual_alias_domains (a name,
//     the keys of a table, or the names in a file) becomes a domain;
//   - a key user@domain of virtual_mailbox_maps becomes a user;
//   - a key of virtual_alias_maps becomes an alias of its targets (several,
//     separated by commas or whitespace; a target without a domain gets
//     $myorigin's, as Postfix's does): user@domain, or @domain for a
//     catch-all.
//
// Of several tables in one parameter the first with a key counts, as in
// Postfix's lookups.
func Read(path string) (*Plan, error) {
	m, err := ReadMainCF(path)
	if err != nil {
		return nil, err
	}
	p := &Plan{}
	tables := map[string]*Table{}
	readTables := func(param string) []*Table {
		var out []*Table
		for _, ref := range List(m.Expand(param)) {
			if t, ok := tables[ref]; ok {
				out = append(out, t)
				continue
			}
			t, err := ReadTable(ref)
			if err != nil {
				p.problem(param, "%v", err)
				continue
			}
			tables[ref] = t
			p.Notes = append(p.Notes, t.Notes...)
			out = append(out, t)
		}
		return out
	}
	mailboxMaps := readTables("virtual_mailbox_maps")
	aliasMaps := readTables("virtual_alias_maps")

	domains := map[string]bool{}
	for _, param := range []string{"virtual_mailbox_domains", "virtual_alias_domains"} {
		for _, d := range p.domainList(m, param, tables) {
			domains[d] = true
		}
	}
	for d := range domains {
		p.Domains = append(p.Domains, d)
	}
	slices.Sort(p.Domains)

	users := map[string]bool{}
	for _, t := range mailboxMaps {
		for _, e := range t.Entries {
			where := fmt.Sprintf("%s line %d", t.Source, e.Line)
			switch local, domain, at := strings.Cut(e.Key, "@"); {
			case !at && domains[e.Key]:
				// A domain listed in the table (virtual_mailbox_domains
				// = $virtual_mailbox_maps): not a mailbox.
			case !at:
				p.problem(where, "%q is not an address (user@domain): not imported", e.Key)
			case local == "":
				p.problem(where, "%q is a catch-all mailbox, which postoffice does not have: not imported (an alias %s to one user, postoffice alias add, does the same)", e.Key, e.Key)
			default:
				addr, err := address.Normalize(e.Key)
				switch {
				case err != nil:
					p.problem(where, "%q: %v: not imported", e.Key, err)
				case !domains[domain]:
					p.problem(where, "%s: its domain is not in virtual_mailbox_domains, so Postfix does not deliver to it: not imported", addr)
				case users[addr]:
					p.Notes = append(p.Notes, fmt.Sprintf("%s: %s is in an earlier table of virtual_mailbox_maps, which counts", where, addr))
				default:
					users[addr] = true
					p.Users = append(p.Users, User{Address: addr, Where: where})
				}
			}
		}
	}

	origin := m.Expand("myorigin")
	aliases := map[string]bool{}
	for _, t := range aliasMaps {
		for _, e := range t.Entries {
			where := fmt.Sprintf("%s line %d", t.Source, e.Line)
			if a, ok := p.alias(e, where, domains, origin); ok {
				switch {
				case aliases[a.Address]:
					p.Notes = append(p.Notes, fmt.Sprintf("%s: %s is in an earlier table of virtual_alias_maps, which counts", where, a.Address))
				case users[a.Address]:
					// Postfix resolves the alias first; postoffice has one
					// owner per address.
					aliases[a.Address] = true
					p.problem(where, "%s is a mailbox and an alias of %s; postoffice keeps the mailbox only: not imported (forward with an alias of another address, or add the mailbox's other addresses as its extra addresses)",
						a.Address, strings.Join(a.Targets, ", "))
				default:
					aliases[a.Address] = true
					p.Aliases = append(p.Aliases, a)
				}
			}
		}
	}
	for name := range m.Unknown {
		p.Notes = append(p.Notes, fmt.Sprintf("%s: $%s has no value here (not in the file): expanded to nothing; check with postconf -x", m.Path, name))
	}
	slices.Sort(p.Notes)
	return p, nil
}

func (p *Plan) problem(where, format string, args ...any) {
	p.Problems = append(p.Problems, Problem{Where: where, What: fmt.Sprintf(format, args...)})
}

// domainList expands a domain list parameter: names, tables (their keys
// that are domain names) and files of names (a "/file/name" item).
func (p *Plan) domainList(m *MainCF, param string, tables map[string]*Table) []string {
	var out []string
	add := func(where, d string) {
		if strings.HasPrefix(d, ".") || strings.Contains(d, "*") {
			p.problem(where, "%q: a pattern of subdomains, which postoffice does not have: add each domain", d)
			return
		}
		n, err := address.NormalizeDomain(d)
		if err != nil {
			p.problem(where, "%q is not a domain name: %v", d, err)
			return
		}
		out = append(out, n)
	}
	for _, item := range List(m.Expand(param)) {
		switch {
		case strings.HasPrefix(item, "/"):
			data, err := os.ReadFile(item)
			if err != nil {
				p.problem(param, "%v", err)
				continue
			}
			for _, line := range strings.Split(string(data), "\n") {
				if i := strings.IndexByte(line, '#'); i >= 0 {
					line = line[:i]
				}
				for _, d := range List(line) {
					add(item, d)
				}
			}
		case strings.Contains(item, ":"):
			t, ok := tables[item]
			if !ok {
				var err error
				if t, err = ReadTable(item); err != nil {
					p.problem(param, "%v", err)
					continue
				}
				tables[item] = t
				p.Notes = append(p.Notes, t.Notes...)
			}
			for _, e := range t.Entries {
				// A key without a dot is a local name (of an alias),
				// reported where the table's entries are read.
				if !strings.Contains(e.Key, "@") && strings.Contains(e.Key, ".") {
					add(fmt.Sprintf("%s line %d", t.Source, e.Line), e.Key)
				}
			}
		default:
			add(param, item)
		}
	}
	return out
}

// alias turns one entry of virtual_alias_maps into an alias, or reports
// why it cannot be one.
func (p *Plan) alias(e Entry, where string, domains map[string]bool, origin string) (Alias, bool) {
	_, domain, at := strings.Cut(e.Key, "@")
	if !at {
		if domains[e.Key] {
			return Alias{}, false // a virtual alias domain's own entry
		}
		p.problem(where, "%q has no domain: Postfix matches it in $myorigin, $mydestination and the host's own addresses, which postoffice does not: add an alias for each address it should have", e.Key)
		return Alias{}, false
	}
	key, err := address.NormalizeAlias(e.Key)
	if err != nil {
		p.problem(where, "%q: %v: not imported", e.Key, err)
		return Alias{}, false
	}
	if !domains[domain] {
		p.problem(where, "%s: its domain is not in virtual_alias_domains or virtual_mailbox_domains, so Postfix does not receive mail for it: not imported", key)
		return Alias{}, false
	}
	a := Alias{Address: key, Where: where}
	for _, target := range List(e.Value) {
		switch {
		case strings.HasPrefix(target, "@"):
			p.problem(where, "%s -> %s: rewriting a whole domain to another (user@a to user@b), which postoffice does not do: not imported; add an alias for each address", key, target)
			return Alias{}, false
		case !strings.Contains(target, "@"):
			if origin == "" {
				p.problem(where, "%s -> %s: a target without a domain, and no $myorigin to complete it: not imported", key, target)
				return Alias{}, false
			}
			p.Notes = append(p.Notes, fmt.Sprintf("%s: %s -> %s completed as %s@%s ($myorigin), as Postfix does", where, key, target, target, origin))
			target += "@" + origin
		}
		t, err := address.Normalize(target)
		if err != nil {
			p.problem(where, "%s -> %q: %v: not imported", key, target, err)
			return Alias{}, false
		}
		if !slices.Contains(a.Targets, t) {
			a.Targets = append(a.Targets, t)
		}
	}
	if len(a.Targets) == 0 {
		p.problem(where, "%s has no targets: not imported", key)
		return Alias{}, false
	}
	slices.Sort(a.Targets) // as the store keeps them; Postfix's order means nothing
	return a, true
}

// Result counts what Apply did (or would do, on a dry run).
type Result struct {
	Domains, Users, Aliases int // added
	Existing                int // already there as they are
	Problems                []Problem
}

// Apply adds the plan's domains, users (enabled, without a password) and
// aliases to dir, keeping what it holds: an existing user stays as it is,
// an existing alias with other targets stays and is reported. On a dry run
// it only reports. Running it again adds nothing.
func Apply(ctx context.Context, p *Plan, dir store.Directory, dryRun bool) (Result, error) {
	var r Result
	for _, d := range p.Domains {
		ok, err := dir.HasDomain(ctx, d)
		if err != nil {
			return r, err
		}
		if ok {
			r.Existing++
			continue
		}
		if !dryRun {
			if err := dir.AddDomain(ctx, d); err != nil && !errors.Is(err, store.ErrExists) {
				return r, fmt.Errorf("domain %s: %w", d, err)
			}
		}
		r.Domains++
	}
	for _, u := range p.Users {
		_, err := dir.UserByAddress(ctx, u.Address)
		if err == nil {
			r.Existing++
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return r, err
		}
		if _, err := dir.Alias(ctx, u.Address); err == nil {
			r.Problems = append(r.Problems, Problem{u.Where, u.Address + " is an alias here already: the mailbox is not imported"})
			continue
		}
		if !dryRun {
			if _, err := dir.AddUser(ctx, store.User{Address: u.Address, Enabled: true}); err != nil {
				if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrInvalid) {
					r.Problems = append(r.Problems, Problem{u.Where, fmt.Sprintf("%s: %v: not imported", u.Address, err)})
					continue
				}
				return r, fmt.Errorf("user %s: %w", u.Address, err)
			}
		}
		r.Users++
	}
	for _, a := range p.Aliases {
		have, err := dir.Alias(ctx, a.Address)
		switch {
		case err == nil && slices.Equal(have.Targets, a.Targets):
			r.Existing++
			continue
		case err == nil:
			r.Problems = append(r.Problems, Problem{a.Where, fmt.Sprintf("%s is an alias here already, of %s: kept (Postfix's has %s)",
				a.Address, strings.Join(have.Targets, ", "), strings.Join(a.Targets, ", "))})
			continue
		case !errors.Is(err, store.ErrNotFound):
			return r, err
		}
		if _, err := dir.UserByAddress(ctx, a.Address); err == nil {
			r.Problems = append(r.Problems, Problem{a.Where, a.Address + " is a user here already: the alias is not imported"})
			continue
		}
		if !dryRun {
			if err := dir.SetAlias(ctx, store.Alias{Address: a.Address, Targets: a.Targets}); err != nil {
				if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrInvalid) {
					r.Problems = append(r.Problems, Problem{a.Where, fmt.Sprintf("%s: %v: not imported", a.Address, err)})
					continue
				}
				return r, fmt.Errorf("alias %s: %w", a.Address, err)
			}
		}
		r.Aliases++
	}
	return r, nil
}
