package mime7bit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strings"
	"testing"
)

// A message as Thunderbird writes one: text and HTML alternatives in
// UTF-8 sent as 8bit, an attachment already in base64, a forwarded
// message with an 8-bit body, a Russian text part (mostly 8-bit) and a
// binary part with a NUL.
var thunderbird = strings.ReplaceAll(`Message-ID: <c0ffee@example.org>
Date: Mon, 3 Mar 2025 10:00:00 +0100
MIME-Version: 1.0
User-Agent: Mozilla Thunderbird
From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.org>
To: anna@example.net
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=
Content-Type: multipart/mixed;
 boundary="------------mixed0123"

This is a multi-part message in MIME format.
--------------mixed0123
Content-Type: multipart/alternative;
 boundary="------------alt4567"

--------------alt4567
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 8bit

Grüße aus Köln, schöne Woche!
.a line that starts with a dot
--
Jörg
--------------alt4567
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: 8bit

<html><body><p>Grüße aus Köln</p></body></html>

--------------alt4567--
--------------mixed0123
Content-Type: application/pdf; name="plan.pdf"
Content-Disposition: attachment; filename="plan.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0
ZURlY29kZT4+CnN0cmVhbQo=
--------------mixed0123
Content-Type: message/rfc822
Content-Transfer-Encoding: 8bit

From: anna@example.net
Subject: earlier
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Früher war alles anders.
--------------mixed0123
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: 8bit

Привет, как дела? Всё хорошо.
--------------mixed0123
Content-Type: application/octet-stream; name="raw.bin"
Content-Transfer-Encoding: binary

`+"\x00\x01\xff\xfe binary \x80"+`
--------------mixed0123--
`, "\n", "\r\n")

type leaf struct {
	header  string // the fields but Content-Transfer-Encoding, as they came
	ctype   string
	decoded string
}

// leaves walks an entity and decodes every leaf part with Go's own MIME
// readers, not the converter's code.
func leaves(t *testing.T, ent []byte, depth int) []leaf {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(ent))
	if err != nil {
		t.Fatalf("reading an entity: %v", err)
	}
	body, _ := io.ReadAll(m.Body)
	return walk(t, textproto.MIMEHeader(m.Header), rawFields(ent), body, depth)
}

func rawFields(ent []byte) string {
	hdr, _, _ := bytes.Cut(ent, []byte("\r\n\r\n"))
	var keep []string
	for _, f := range strings.Split(strings.ReplaceAll(string(hdr), "\r\n ", "\r\n\x00"), "\r\n") {
		if !strings.HasPrefix(strings.ToLower(f), "content-transfer-encoding:") {
			keep = append(keep, f)
		}
	}
	return strings.Join(keep, "\n")
}

func walk(t *testing.T, h textproto.MIMEHeader, raw string, body []byte, depth int) []leaf {
	ct := h.Get("Content-Type")
	if ct == "" {
		ct = "text/plain"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		t.Fatalf("Content-Type %q: %v", ct, err)
	}
	cte := strings.ToLower(h.Get("Content-Transfer-Encoding"))
	var out []leaf
	switch {
	case strings.HasPrefix(mt, "multipart/"):
		r := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := r.NextRawPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("part: %v", err)
			}
			b, _ := io.ReadAll(p)
			var hb strings.Builder
			for k := range p.Header {
				if k != "Content-Transfer-Encoding" {
					hb.WriteString(k + ": " + strings.Join(p.Header[k], ",") + "\n")
				}
			}
			out = append(out, walk(t, p.Header, sortLines(hb.String()), b, depth+1)...)
		}
	case mt == "message/rfc822":
		out = append(out, leaf{header: raw, ctype: mt})
		out = append(out, leaves(t, body, depth+1)...)
	default:
		var d []byte
		switch cte {
		case "quoted-printable":
			d, err = io.ReadAll(quotedprintable.NewReader(bytes.NewReader(body)))
		case "base64":
			d, err = io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(bytes.ReplaceAll(body, []byte("\r\n"), nil))))
		default:
			d = body
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", cte, err)
		}
		// The line end before a delimiter is the delimiter's; an encoded
		// part may end in one more.
		out = append(out, leaf{header: raw, ctype: mt, decoded: strings.TrimRight(string(d), "\r\n")})
	}
	return out
}

func sortLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if l[j] < l[i] {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
	return strings.Join(l, "\n")
}

func TestConvertThunderbird(t *testing.T) {
	in := []byte(thunderbird)
	out, changed, err := Convert(in)
	if err != nil || !changed {
		t.Fatalf("Convert: %v, %v", changed, err)
	}
	if Is8Bit(out) {
		t.Errorf("8-bit octets left at %d", bytes.IndexFunc(out, func(r rune) bool { return r >= 0x80 }))
	}
	for i, l := range strings.Split(string(out), "\r\n") {
		if len(l) > 998 {
			t.Errorf("line %d is %d octets long", i+1, len(l))
		}
	}
	// The top-level header is kept octet for octet.
	hin, _, _ := bytes.Cut(in, []byte("\r\n\r\n"))
	hout, _, _ := bytes.Cut(out, []byte("\r\n\r\n"))
	if !bytes.Equal(hin, hout) {
		t.Errorf("header changed:\n%s", hout)
	}
	want, got := leaves(t, in, 0), leaves(t, out, 0)
	if len(want) != 7 || len(got) != len(want) {
		t.Fatalf("%d leaves in, %d out", len(want), len(got))
	}
	for i := range want {
		if want[i] != got[i] {
			t.Errorf("part %d (%s) differs:\n in: %+v\nout: %+v", i, want[i].ctype, want[i], got[i])
		}
	}
	// Each 8-bit part got the encoding that fits it.
	for _, c := range []string{
		"Content-Type: text/plain; charset=UTF-8; format=flowed\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nGr=C3=BC=C3=9Fe aus K=C3=B6ln",
		"Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
		"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 7bit\r\n\r\nFrom: anna@example.net\r\n",
		"Fr=C3=BCher war alles anders.",
		"Content-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: base64\r\n\r\n0J/RgNC4",
		"Content-Type: application/octet-stream; name=\"raw.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAH//iBiaW5hcnkggA==\r\n",
		"ZURlY29kZT4+CnN0cmVhbQo=\r\n--------------mixed0123", // untouched
		"\r\n.a line that starts with a dot",                  // QP keeps it; the SMTP client stuffs it
	} {
		if !bytes.Contains(out, []byte(c)) {
			t.Errorf("output lacks %q", c)
		}
	}
}

func TestConvertSimple(t *testing.T) {
	// No 8-bit octet: the same bytes.
	in := []byte("Subject: x\r\n\r\nascii only\r\n")
	if out, changed, err := Convert(in); err != nil || changed || !bytes.Equal(out, in) {
		t.Errorf("7-bit message: %q, %v, %v", out, changed, err)
	}
	// A single-part message without MIME headers: quoted-printable, and
	// a Content-Transfer-Encoding field added at the end of the header.
	in = []byte("Subject: x\r\nFrom: a@b\r\n\r\ncaf\xc3\xa9\r\n")
	out, _, err := Convert(in)
	if want := "Subject: x\r\nFrom: a@b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n"; err != nil || string(out) != want {
		t.Errorf("plain message: %q, %v; want %q", out, err, want)
	}
}

func TestConvertRefuses(t *testing.T) {
	_, _, err := Convert([]byte("Subject: caf\xc3\xa9\r\n\r\nbody \xc3\xa9\r\n"))
	if !errors.Is(err, ErrHeader) {
		t.Errorf("8-bit header: %v", err)
	}
	_, _, err = Convert([]byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf\xc3\xa9\r\n--b--\r\n"))
	if !errors.Is(err, ErrEncoded) {
		t.Errorf("8-bit in a quoted-printable part: %v", err)
	}
	deep := strings.Repeat("Content-Type: message/rfc822\r\n\r\n", 60) + "\r\n\xff\r\n"
	if _, _, err := Convert([]byte(deep)); err == nil {
		t.Error("60 nested messages converted")
	}
}
