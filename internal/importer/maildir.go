package importer

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// mailFile is one message file of a maildir (new/ or cur/).
type mailFile struct {
	path string
	// base is the file name up to the flags (":2,..."): the part that
	// stays when a server renames the file.
	base  string
	size  int64
	mtime time.Time
	// vsize is the ",W=" field of the name (the size with CRLF line
	// endings, as Dovecot and Courier write it), 0 if absent.
	vsize int64
}

// readMaildir lists the messages of a maildir, in the order they
// arrived (the time at the start of the name, then the name).
func readMaildir(dir string) ([]mailFile, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", dir)
	}
	var files []mailFile
	found := false
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, err
		}
		found = true
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return nil, err
			}
			f := mailFile{path: filepath.Join(dir, sub, e.Name()), base: baseName(e.Name()), size: info.Size(), mtime: info.ModTime()}
			f.vsize = nameField(f.base, 'W')
			files = append(files, f)
		}
	}
	if !found {
		return nil, fmt.Errorf("%s is not a maildir (no cur/ or new/)", dir)
	}
	sort.Slice(files, func(i, j int) bool { return arrivalLess(files[i].base, files[j].base) })
	return files, nil
}

// baseName is a maildir file name without its flags (":2,FS").
func baseName(name string) string {
	if i := strings.IndexByte(name, ':'); i >= 0 {
		return name[:i]
	}
	return name
}

// nameField returns the value of a ",X=N" field of a maildir file name
// (S: the file's size, W: the size with CRLF line endings), 0 if absent.
func nameField(base string, key byte) int64 {
	for _, f := range strings.Split(base, ",")[1:] {
		if len(f) > 2 && f[0] == key && f[1] == '=' {
			if n, err := strconv.ParseInt(f[2:], 10, 64); err == nil && n > 0 {
				return n
			}
		}
	}
	return 0
}

// arrivalLess orders maildir names by the delivery time they start with,
// then by name.
func arrivalLess(a, b string) bool {
	ta, tb := leadingNumber(a), leadingNumber(b)
	if ta != tb {
		return ta < tb
	}
	return a < b
}

func leadingNumber(s string) int64 {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, _ := strconv.ParseInt(s[:i], 10, 64)
	return n
}

// message makes the Message of a file.
func (f mailFile) message(uidl string, listSize int64) Message {
	path := f.path
	return Message{UIDL: uidl, ListSize: listSize, Bytes: f.size, Date: f.mtime, Name: path,
		open: func() ([]byte, error) { return readFile(filepath.Dir(filepath.Dir(path)), path) }}
}

// readFile reads a message file. A server running on the source may have
// renamed it since the listing (flags changed: cur/NAME:2,S): then it is
// looked up again by its base name.
func readFile(dir, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	base := baseName(filepath.Base(path))
	for _, sub := range []string{"cur", "new"} {
		matches, _ := filepath.Glob(filepath.Join(dir, sub, globEscape(base)+"*"))
		for _, m := range matches {
			if baseName(filepath.Base(m)) == base {
				return os.ReadFile(m)
			}
		}
	}
	return nil, err
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// UIDL sources of a plain maildir (--uidl-from).
const (
	UIDLFromFilename = "filename"
	UIDLFromCourier  = "courier"
)

// Maildir reads one user's plain maildir. from says where the unique-ids
// come from: UIDLFromFilename (the file name up to its flags, as Dovecot's
// %f and Courier before its courierpop3dsizelist), or UIDLFromCourier
// (courierpop3dsizelist, as Courier's pop3d showed them).
func Maildir(dir, user, from string) (Mailbox, error) {
	files, err := readMaildir(dir)
	if err != nil {
		return Mailbox{}, err
	}
	b := Mailbox{Address: user}
	switch from {
	case UIDLFromFilename, "":
		b.UIDLSource = "maildir file names"
		for _, f := range files {
			b.Messages = append(b.Messages, f.message(escapeUIDL(f.base), f.vsize))
		}
	case UIDLFromCourier:
		b.UIDLSource = "courierpop3dsizelist"
		if err := courier(dir, files, &b); err != nil {
			return Mailbox{}, err
		}
	default:
		return Mailbox{}, fmt.Errorf("unique-ids from %q: want %s or %s", from, UIDLFromFilename, UIDLFromCourier)
	}
	return b, nil
}

// escapeUIDL makes a file name a unique-id (RFC 1939 section 7: 0x21 to
// 0x7E), writing other octets as +XX like Courier's pop3d.
func escapeUIDL(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x21 || c > 0x7e || c == '+' && needsEscape(name) {
			fmt.Fprintf(&b, "+%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// needsEscape: a name with an octet outside 0x21-0x7E is escaped, and
// then its "+" too, so that the result is unambiguous.
func needsEscape(name string) bool {
	for i := 0; i < len(name); i++ {
		if name[i] < 0x21 || name[i] > 0x7e {
			return true
		}
	}
	return false
}

// courier reads courierpop3dsizelist: a line "/VERSION NEXTUID UIDV", then
// one per message, "NAME SIZE UID:UIDV[:UTF8]", NAME the file name (its
// flags may have changed since). Courier's pop3d shows UIDL
// "UID<uid>-<uidv>" ("UID<uid>" when UIDV is 0) and LIST SIZE for those;
// a message not listed gets the next UID, as pop3d would give it.
func courier(dir string, files []mailFile, b *Mailbox) error {
	f, err := os.Open(filepath.Join(dir, "courierpop3dsizelist"))
	if err != nil {
		return fmt.Errorf("reading Courier's list of unique-ids: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 4096), 1<<20)
	if !sc.Scan() {
		return fmt.Errorf("%s: empty", f.Name())
	}
	var version int
	var next, uidv uint64
	if n, _ := fmt.Sscanf(sc.Text(), "/%d %d %d", &version, &next, &uidv); n < 2 || version < 2 || version > 3 {
		return fmt.Errorf("%s: first line %q: want /2 or /3 NEXTUID UIDVALIDITY", f.Name(), sc.Text())
	}
	type entry struct {
		size      int64
		uid, uidv uint64
	}
	known := map[string]entry{}
	line := 1
	for sc.Scan() {
		line++
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			b.Problems = append(b.Problems, fmt.Sprintf("%s line %d: malformed, ignored", f.Name(), line))
			continue
		}
		// The name may hold spaces: the last two fields are the others.
		name := strings.Join(fields[:len(fields)-2], " ")
		size, err1 := strconv.ParseInt(fields[len(fields)-2], 10, 64)
		ids := strings.Split(fields[len(fields)-1], ":")
		var e entry
		var err2, err3 error
		if len(ids) >= 2 {
			e.uid, err2 = strconv.ParseUint(ids[0], 10, 64)
			e.uidv, err3 = strconv.ParseUint(ids[1], 10, 64)
		}
		if len(ids) < 2 || errors.Join(err1, err2, err3) != nil || e.uid == 0 {
			b.Problems = append(b.Problems, fmt.Sprintf("%s line %d: malformed, ignored", f.Name(), line))
			continue
		}
		e.size = size
		known[baseName(name)] = e
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", f.Name(), err)
	}
	for _, mf := range files {
		e, ok := known[mf.base]
		if !ok {
			e = entry{uid: next, uidv: uidv}
			next++
		}
		uidl := fmt.Sprintf("UID%d-%d", e.uid, e.uidv)
		if e.uidv == 0 {
			uidl = fmt.Sprintf("UID%d", e.uid)
		}
		b.Messages = append(b.Messages, mf.message(uidl, e.size))
	}
	return nil
}
