package smtpclient

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDotWriter(t *testing.T) {
	cases := map[string]string{
		"":                         ".\r\n",
		"a\r\n":                    "a\r\n.\r\n",
		"a":                        "a\r\n.\r\n",
		".\r\n":                    "..\r\n.\r\n",
		"a\r\n.\r\nb\r\n":          "a\r\n..\r\nb\r\n.\r\n",
		"a\n.\nb":                  "a\r\n..\r\nb\r\n.\r\n",
		"a\r.\rb\r\n":              "a\r\n..\r\nb\r\n.\r\n",
		"x\r\n\r\n..y\r\n":         "x\r\n\r\n...y\r\n.\r\n",
		"smuggle\n.\r\nMAIL FROM:": "smuggle\r\n..\r\nMAIL FROM:\r\n.\r\n",
	}
	for in, want := range cases {
		// Whole, and one octet per write: CRLF split across writes.
		for _, oneByte := range []bool{false, true} {
			var b bytes.Buffer
			w := newDotWriter(&b)
			r := io.Reader(strings.NewReader(in))
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			if _, err := io.Copy(w, r); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if b.String() != want {
				t.Errorf("%q (one octet per write: %v) = %q, want %q", in, oneByte, b.String(), want)
			}
		}
	}
}

func TestXtext(t *testing.T) {
	for in, want := range map[string]string{
		"a@b.test":       "a@b.test",
		"a+b=c@d":        "a+2Bb+3Dc@d",
		"sp ace":         "sp+20ace",
		"caf\xc3\xa9":    "caf+C3+A9",
		"\x00\x7f~!":     "+00+7F~!",
		"<id@host.test>": "<id@host.test>",
	} {
		if got := xtext(in); got != want {
			t.Errorf("xtext(%q) = %q, want %q", in, got, want)
		}
	}
	if got := utf8AddrXtext("jörg+x=y\\z@b"); got != `j\x{F6}rg\x{2B}x\x{3D}y\x{5C}z@b` {
		t.Errorf("utf8AddrXtext = %q", got)
	}
}

func TestNotifyParam(t *testing.T) {
	if got, err := notifyParam([]string{"failure", "DELAY", "failure"}); err != nil || got != "FAILURE,DELAY" {
		t.Errorf("got %q, %v", got, err)
	}
	for _, bad := range [][]string{{"NEVER", "SUCCESS"}, {"ALWAYS"}, {"SUCCESS,FAILURE"}} {
		if got, err := notifyParam(bad); err == nil {
			t.Errorf("%q accepted as %q", bad, got)
		}
	}
}

func TestParseExtensions(t *testing.T) {
	ext := parseExtensions([]string{"PIPELINING", "SIZE 35882577", "8bitmime", "AUTH PLAIN login", "DSN", "SMTPUTF8",
		"CHUNKING", "ENHANCEDSTATUSCODES", "STARTTLS", "X-UNKNOWN 1", ""})
	if !ext.ESMTP || !ext.Pipelining || ext.Size != 35882577 || !ext.SizeOffered || !ext.EightBitMIME || !ext.DSN ||
		!ext.SMTPUTF8 || !ext.Chunking || !ext.EnhancedStatusCodes || !ext.StartTLS || strings.Join(ext.Auth, ",") != "PLAIN,LOGIN" {
		t.Errorf("%+v", ext)
	}
	if ext := parseExtensions([]string{"SIZE"}); !ext.SizeOffered || ext.Size != 0 {
		t.Errorf("SIZE without a number: %+v", ext)
	}
	if ext := parseExtensions([]string{"SIZE -5"}); ext.Size != 0 {
		t.Errorf("SIZE -5: %+v", ext)
	}
}

func TestReadReply(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("250-mx.test\r\n250-PIPELINING\n250 SIZE 10\r\n421 4.3.2 bye\r\n"))
	rep, err := readReply(r)
	if err != nil || rep.Code != 250 || len(rep.Text) != 3 || rep.Text[2] != "SIZE 10" {
		t.Errorf("%+v, %v", rep, err)
	}
	if rep, err = readReply(r); err != nil || rep.Code != 421 || rep.Status.String() != "4.3.2" {
		t.Errorf("%+v, %v", rep, err)
	}
	if _, err = readReply(r); err != io.EOF {
		t.Errorf("at the end: %v", err)
	}
	for in, want := range map[string]error{
		"250 ok":                           io.ErrUnexpectedEOF,
		"250-a\r\n":                        io.EOF,
		"hello\r\n":                        errReplySyntax,
		"250-a\r\n251 b\r\n":               errReplySyntax,
		strings.Repeat("x", 5000) + "\r\n": errReplyTooLong,
		strings.Repeat("250-x\r\n", 101) + "250\r\n": errReplyTooLong,
	} {
		_, err := readReply(bufio.NewReader(strings.NewReader(in)))
		if !errors.Is(err, want) {
			t.Errorf("%.30q: %v, want %v", in, err, want)
		}
	}
}

// FuzzReadReply: whatever a peer sends, the reader returns a reply within
// its limits whose wire form reads back, or an error; it never panics.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{"250 ok\r\n", "250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n", "550 5.1.1 no\r\n",
		"354 go\n", "421-4.3.2 a\r\n421 4.3.2 b\r\n", "2500\r\n", "250-\r\n250\r\n", "\r\n", "250 \xff\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for range 20 {
			rep, err := readReply(r)
			if err != nil {
				return
			}
			if rep.Code < 200 || rep.Code > 599 || len(rep.Text) > maxReplyLines {
				t.Fatalf("reply %+v out of range", rep)
			}
			for _, l := range rep.Text {
				if len(l) > maxReplyLine || strings.ContainsAny(l, "\n") {
					t.Fatalf("line %q", l)
				}
			}
			// Its wire form (control characters made spaces) reads back
			// as a reply with the same code.
			back, err := readReply(bufio.NewReader(strings.NewReader(rep.Wire())))
			if err != nil || back.Code != rep.Code {
				t.Fatalf("%+v written as %q reads back as %+v, %v", rep, rep.Wire(), back, err)
			}
		}
	})
}
