package mailauth

import (
	"bytes"
	"io"
	"testing"
)

// FuzzStripAuthResults: the header section comes from the sender, so
// whatever it holds, StripAuthResults does not panic, only ever takes
// whole lines out (the body and every other field pass octet for octet),
// leaves nothing a second pass would take (no field of ours is left
// behind, none is made by joining what was around a removed one), and
// returns a message that names no Authentication-Results field as it
// came.
func FuzzStripAuthResults(f *testing.F) {
	for _, seed := range []string{
		"Authentication-Results: mx.example; spf=pass\r\nSubject: x\r\n\r\nbody\r\n",
		"Subject: x\r\nAuthentication-Results: MX.Example. ; dkim=pass\r\n\tcontinued\r\n\r\nAuthentication-Results: mx.example; in the body\r\n",
		"Authentication-Results: (comment) mx.example (more); none\r\n\r\n",
		"Authentication-Results: other.example; spf=fail\r\n\r\n",
		" leading continuation\r\nAuthentication-Results: mx.example; x\r\n\r\n",
		"Authentication-Results : mx.example; spaced name\n\nLF only\n",
		"no blank line, Authentication-Results: mx.example",
		"",
	} {
		f.Add([]byte(seed))
	}
	const id = "mx.example"
	f.Fuzz(func(t *testing.T, msg []byte) {
		out, err := strip(msg, id)
		if err != nil {
			return
		}
		if !bytes.Contains(bytes.ToLower(msg), []byte("authentication-results")) && !bytes.Equal(out, msg) {
			t.Fatalf("no such field, yet the message changed:\n%q\nto\n%q", msg, out)
		}
		if !wholeLinesOf(out, msg) {
			t.Fatalf("not whole lines taken out of\n%q\ngave\n%q", msg, out)
		}
		again, err := strip(out, id)
		if err != nil {
			t.Fatalf("second pass: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("a second pass took more:\n%q\nthen\n%q", out, again)
		}
	})
}

func strip(msg []byte, id string) ([]byte, error) {
	rc := StripAuthResults(bytes.NewReader(msg), id)
	defer rc.Close()
	return io.ReadAll(rc)
}

// wholeLinesOf reports whether out is in with some of its lines (each
// up to and with its LF) left out.
func wholeLinesOf(out, in []byte) bool {
	for len(in) > 0 {
		line := in
		if i := bytes.IndexByte(in, '\n'); i >= 0 {
			line = in[:i+1]
		}
		in = in[len(line):]
		out = bytes.TrimPrefix(out, line)
	}
	return len(out) == 0
}
