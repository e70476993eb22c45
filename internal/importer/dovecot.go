package importer

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultLayout is where a user's maildir is under the mail root, as
// Dovecot's mail_location maildir:/var/mail/%d/%n.
const DefaultLayout = "%d/%n"

// DefaultUIDLFormat is Dovecot's default pop3_uidl_format.
const DefaultUIDLFormat = "%08Xu%08Xv"

// Dovecot says where a Dovecot installation's mail and users are.
type Dovecot struct {
	MailRoot   string
	Layout     string // DefaultLayout if empty; %u, %n, %d (with L: lower case), %%
	PasswdFile string // Dovecot passwd-file: users and password hashes; optional
	Domain     string // completes user names without a domain
	UIDLFormat string // pop3_uidl_format; DefaultUIDLFormat if empty
	User       string // only this user, if set
}

// uidlist is a parsed dovecot-uidlist.
type uidlist struct {
	version  int
	validity uint64
	next     uint64
	records  []uidRecord
}

// uidRecord is one message line: its UID, extension fields (P: the POP3
// unique-id, G: the GUID, W: the size with CRLF line endings, S: the
// file's size...) and its file name without flags.
type uidRecord struct {
	uid  uint64
	ext  map[byte]string
	base string
}

// readUIDList parses dovecot-uidlist: version 3 (the header "3 V<uidvalidity>
// N<next uid> G<guid>...", lines "UID [EXT...] :NAME") and version 1
// ("1 UIDVALIDITY NEXTUID", lines "UID NAME").
func readUIDList(path string) (*uidlist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: empty", path)
	}
	l := &uidlist{}
	head := strings.Fields(sc.Text())
	if len(head) == 0 {
		return nil, fmt.Errorf("%s: empty first line", path)
	}
	switch head[0] {
	case "1":
		if len(head) < 3 {
			return nil, fmt.Errorf("%s: version 1 header %q: want 1 UIDVALIDITY NEXTUID", path, sc.Text())
		}
		l.version = 1
		l.validity, err = strconv.ParseUint(head[1], 10, 32)
		if err == nil {
			l.next, err = strconv.ParseUint(head[2], 10, 32)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: header %q: %v", path, sc.Text(), err)
		}
	case "3":
		l.version = 3
		for _, h := range head[1:] {
			if len(h) < 2 {
				continue
			}
			var err error
			switch h[0] {
			case 'V':
				l.validity, err = strconv.ParseUint(h[1:], 10, 32)
			case 'N':
				l.next, err = strconv.ParseUint(h[1:], 10, 32)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: header field %q: %v", path, h, err)
			}
		}
	default:
		return nil, fmt.Errorf("%s: unsupported version %q (want 1 or 3)", path, head[0])
	}
	line := 1
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" {
			continue
		}
		var r uidRecord
		var rest string
		uid, after, ok := strings.Cut(text, " ")
		n, err := strconv.ParseUint(uid, 10, 32)
		if !ok || err != nil || n == 0 {
			return nil, fmt.Errorf("%s line %d: %q: no UID", path, line, text)
		}
		r.uid, rest = n, after
		if l.version == 1 {
			r.base = baseName(rest)
		} else {
			ext, name, ok := strings.Cut(rest, ":")
			if !ok {
				return nil, fmt.Errorf("%s line %d: %q: no :NAME", path, line, text)
			}
			r.base = baseName(name)
			for _, e := range strings.Fields(ext) {
				if r.ext == nil {
					r.ext = map[byte]string{}
				}
				r.ext[e[0]] = e[1:]
			}
		}
		if r.base == "" {
			return nil, fmt.Errorf("%s line %d: %q: no file name", path, line, text)
		}
		l.records = append(l.records, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// uidlVars are what pop3_uidl_format's variables expand to for one
// message.
type uidlVars struct {
	uid, validity uint64
	guid, file    string
}

// checkUIDLFormat refuses a format with a variable we do not know.
func checkUIDLFormat(format string) error {
	_, err := expandUIDL(format, uidlVars{uid: 1, validity: 1, guid: "g", file: "f"})
	return err
}

// expandUIDL expands a pop3_uidl_format as Dovecot's variable expansion
// does: %u the UID, %v the UIDVALIDITY, %g the GUID, %f the maildir file
// name, %% a %. (%m, the MD5 of the header, Dovecot has for mbox only: its
// maildir POP3 fails on it, so no maildir was ever shown one.) Between % and the letter: an
// optional width, zero-padded when it starts with 0 (%08Xu) and a
// prefix otherwise, and modifiers: X (the number in hexadecimal), L and U
// (lower and upper case).
func expandUIDL(format string, v uidlVars) (string, error) {
	var b strings.Builder
	for i := 0; i < len(format); i++ {
		c := format[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		i++
		if i >= len(format) {
			return "", fmt.Errorf("pop3_uidl_format %q ends with %%", format)
		}
		if format[i] == '%' {
			b.WriteByte('%')
			continue
		}
		zero := format[i] == '0'
		start := i
		for i < len(format) && format[i] >= '0' && format[i] <= '9' {
			i++
		}
		width, _ := strconv.Atoi(format[start:i])
		var hexa, lower, upper bool
	mods:
		for ; i < len(format); i++ {
			switch format[i] {
			case 'X':
				hexa = true
			case 'L':
				lower = true
			case 'U':
				upper = true
			default:
				break mods
			}
		}
		if i >= len(format) {
			return "", fmt.Errorf("pop3_uidl_format %q: %% without a variable", format)
		}
		var val string
		switch format[i] {
		case 'u':
			val = strconv.FormatUint(v.uid, 10)
		case 'v':
			val = strconv.FormatUint(v.validity, 10)
		case 'g':
			val = v.guid
		case 'f':
			val = v.file
		case 'm':
			return "", fmt.Errorf("pop3_uidl_format %q: %%m (the header's MD5) is for mbox only: Dovecot's POP3 fails on it with maildir", format)
		default:
			return "", fmt.Errorf("pop3_uidl_format %q: unknown variable %%%c (known: %%u %%v %%g %%f)", format, format[i])
		}
		if hexa {
			n, err := strconv.ParseUint(val, 10, 64)
			if err != nil {
				return "", fmt.Errorf("pop3_uidl_format %q: %%X of %q, not a number", format, val)
			}
			val = strconv.FormatUint(n, 16)
		}
		switch {
		case lower:
			val = strings.ToLower(val)
		case upper:
			val = strings.ToUpper(val)
		}
		if width > 0 {
			if zero {
				for len(val) < width {
					val = "0" + val
				}
			} else if len(val) > width {
				val = val[:width]
			}
		}
		b.WriteString(val)
	}
	return b.String(), nil
}

// DovecotMaildir reads one user's Dovecot maildir: the messages in the
// order of their UIDs in dovecot-uidlist, each with the unique-id
// Dovecot's POP3 showed: the P extension (POP3 UIDL, written by Dovecot's
// migration tools) when present, pop3_uidl_format otherwise; and the size
// Dovecot's LIST showed: the W extension or the ,W= field of the file
// name. Messages not in the list yet (delivered since Dovecot last looked)
// get the next UIDs, as Dovecot would give them.
func DovecotMaildir(dir, user, format string) (Mailbox, error) {
	if format == "" {
		format = DefaultUIDLFormat
	}
	if err := checkUIDLFormat(format); err != nil {
		return Mailbox{}, err
	}
	b := Mailbox{Address: user, UIDLSource: "dovecot-uidlist with pop3_uidl_format " + format}
	files, err := readMaildir(dir)
	if err != nil {
		return b, err
	}
	list, err := readUIDList(filepath.Join(dir, "dovecot-uidlist"))
	if errors.Is(err, fs.ErrNotExist) {
		// Dovecot never opened this maildir: no client saw its messages.
		// Like Dovecot, take the time as the UIDVALIDITY: unique-ids of
		// the default form then differ from our own (which start with the
		// user's UID validity, a small number) for every UID below one
		// billion.
		validity := uint64(time.Now().Unix())
		list, err = &uidlist{version: 3, validity: validity, next: 1}, nil
		b.Problems = append(b.Problems, fmt.Sprintf("%s: no dovecot-uidlist: no POP3 client saw its messages; unique-ids from UIDVALIDITY %d", dir, validity))
	}
	if err != nil {
		return b, err
	}
	byBase := make(map[string]mailFile, len(files))
	for _, f := range files {
		byBase[f.base] = f
	}
	listed := map[string]bool{}
	type entry struct {
		f   mailFile
		rec uidRecord
	}
	var entries []entry
	recs := append([]uidRecord(nil), list.records...)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].uid < recs[j].uid })
	for _, r := range recs {
		f, ok := byBase[r.base]
		if !ok || listed[r.base] {
			continue // expunged since
		}
		listed[r.base] = true
		entries = append(entries, entry{f, r})
	}
	next := max(list.next, 1)
	if n := len(recs); n > 0 && recs[n-1].uid >= next {
		next = recs[n-1].uid + 1
	}
	for _, f := range files {
		if !listed[f.base] {
			entries = append(entries, entry{f, uidRecord{uid: next, base: f.base}})
			next++
		}
	}
	for _, e := range entries {
		uidl := e.rec.ext['P']
		if uidl == "" {
			guid := e.rec.ext['G']
			if guid == "" {
				guid = e.f.base // Dovecot's GUID of a maildir message without one
			}
			uidl, err = expandUIDL(format, uidlVars{uid: e.rec.uid, validity: list.validity, guid: guid, file: e.f.base})
			if err != nil {
				return b, err
			}
		} else {
			b.UIDLSource = "dovecot-uidlist (P extension where present, else pop3_uidl_format " + format + ")"
		}
		size := e.f.vsize
		if w, err := strconv.ParseInt(e.rec.ext['W'], 10, 64); err == nil && w > 0 {
			size = w
		}
		b.Messages = append(b.Messages, e.f.message(uidl, size))
	}
	return b, nil
}

// PasswdEntry is one user of a Dovecot passwd-file.
type PasswdEntry struct {
	User string // as in the file: user@domain or user
	Hash string // "{SCHEME}hash", or crypt(3)'s without a prefix, or ""
}

// ReadPasswdFile parses a Dovecot passwd-file: "user:password:uid:gid:
// gecos:home:shell:extra fields", # comments and empty lines ignored.
func ReadPasswdFile(path string) ([]PasswdEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []PasswdEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(text) == "" || strings.HasPrefix(strings.TrimSpace(text), "#") {
			continue
		}
		user, rest, _ := strings.Cut(text, ":")
		hash, _, _ := strings.Cut(rest, ":")
		if user == "" {
			return nil, fmt.Errorf("%s line %d: no user name", path, line)
		}
		out = append(out, PasswdEntry{User: user, Hash: hash})
	}
	return out, sc.Err()
}

// layoutVar matches the variables of a layout: %u, %n, %d, with L for
// lower case.
var layoutVar = regexp.MustCompile(`%L?[und%]`)

// expandLayout is the maildir of user (local@domain) under the layout.
func expandLayout(layout, user string) string {
	local, domain, _ := strings.Cut(user, "@")
	return layoutVar.ReplaceAllStringFunc(layout, func(v string) string {
		var s string
		switch v[len(v)-1] {
		case 'u':
			s = user
		case 'n':
			s = local
		case 'd':
			s = domain
		case '%':
			return "%"
		}
		if strings.Contains(v, "L") {
			s = strings.ToLower(s)
		}
		return s
	})
}

// discover finds the users under the mail root: every directory the
// layout matches.
func discover(root, layout string) ([]string, error) {
	glob := filepath.Join(root, layoutVar.ReplaceAllStringFunc(layout, func(v string) string {
		if v == "%%" {
			return "%"
		}
		return "*"
	}))
	var re strings.Builder
	re.WriteString("^")
	rest := filepath.ToSlash(layout)
	for {
		loc := layoutVar.FindStringIndex(rest)
		if loc == nil {
			re.WriteString(regexp.QuoteMeta(rest))
			break
		}
		re.WriteString(regexp.QuoteMeta(rest[:loc[0]]))
		switch v := rest[loc[0]:loc[1]]; v[len(v)-1] {
		case 'u':
			re.WriteString(`(?P<u>[^/]+)`)
		case 'n':
			re.WriteString(`(?P<n>[^/]+)`)
		case 'd':
			re.WriteString(`(?P<d>[^/]+)`)
		case '%':
			re.WriteString("%")
		}
		rest = rest[loc[1]:]
	}
	re.WriteString("$")
	rx, err := regexp.Compile(re.String())
	if err != nil {
		return nil, fmt.Errorf("layout %q: %v", layout, err)
	}
	matches, err := filepath.Glob(glob)
	if err != nil {
		return nil, fmt.Errorf("layout %q: %v", layout, err)
	}
	var users []string
	for _, m := range matches {
		rel, err := filepath.Rel(root, m)
		if err != nil {
			continue
		}
		sub := rx.FindStringSubmatch(filepath.ToSlash(rel))
		if sub == nil {
			continue
		}
		var u, n, d string
		for i, name := range rx.SubexpNames() {
			switch name {
			case "u":
				u = sub[i]
			case "n":
				n = sub[i]
			case "d":
				d = sub[i]
			}
		}
		if u == "" {
			u = n
			if d != "" {
				u = n + "@" + d
			}
		}
		if !isMaildir(m) {
			continue
		}
		users = append(users, u)
	}
	sort.Strings(users)
	return users, nil
}

func isMaildir(dir string) bool {
	for _, sub := range []string{"cur", "new"} {
		if st, err := os.Stat(filepath.Join(dir, sub)); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// complete adds the domain to a user name without one.
func complete(user, domain string) (string, error) {
	if strings.Contains(user, "@") {
		return user, nil
	}
	if domain == "" {
		return "", fmt.Errorf("user %q has no domain: give one with --domain", user)
	}
	return user + "@" + domain, nil
}

// Mailboxes reads the users (from the passwd-file, or every maildir the
// layout finds under the mail root) and their mail.
func (d Dovecot) Mailboxes() ([]Mailbox, error) {
	layout := d.Layout
	if layout == "" {
		layout = DefaultLayout
	}
	if err := checkUIDLFormat(cmp.Or(d.UIDLFormat, DefaultUIDLFormat)); err != nil {
		return nil, err
	}
	hashes := map[string]string{}
	var users []string
	if d.PasswdFile != "" {
		entries, err := ReadPasswdFile(d.PasswdFile)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			u, err := complete(e.User, d.Domain)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.PasswdFile, err)
			}
			u = strings.ToLower(u)
			if _, dup := hashes[u]; !dup {
				users = append(users, u)
			}
			hashes[u] = e.Hash
		}
	} else {
		found, err := discover(d.MailRoot, layout)
		if err != nil {
			return nil, err
		}
		for _, f := range found {
			u, err := complete(f, d.Domain)
			if err != nil {
				return nil, err
			}
			users = append(users, strings.ToLower(u))
		}
	}
	if d.User != "" {
		want, err := complete(strings.ToLower(d.User), d.Domain)
		if err != nil {
			return nil, err
		}
		found := false
		for _, u := range users {
			found = found || u == want
		}
		if !found && d.PasswdFile != "" {
			return nil, fmt.Errorf("user %s is not in %s", want, d.PasswdFile)
		}
		users = []string{want}
	}
	var boxes []Mailbox
	for _, u := range users {
		dir := filepath.Join(d.MailRoot, expandLayout(layout, u))
		var b Mailbox
		if isMaildir(dir) {
			var err error
			if b, err = DovecotMaildir(dir, u, d.UIDLFormat); err != nil {
				return nil, fmt.Errorf("%s: %w", u, err)
			}
		} else {
			b = Mailbox{Address: u, UIDLSource: "no maildir"}
			if d.PasswdFile == "" {
				return nil, fmt.Errorf("%s: no maildir at %s", u, dir)
			}
		}
		b.PasswordHash = hashes[u]
		boxes = append(boxes, b)
	}
	return boxes, nil
}
