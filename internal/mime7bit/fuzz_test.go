package mime7bit

import (
	"bytes"
	"testing"
)

// FuzzConvert: whatever a sender puts in a message (mail relayed to a
// peer without 8BITMIME comes from the network), Convert does not panic,
// and what it returns without an error has no octet above 127 (RFC 6152
// section 3: the converted message must be 7-bit), or is the message
// itself when nothing needed converting.
func FuzzConvert(f *testing.F) {
	for _, seed := range []string{
		"Subject: x\r\n\r\ncaf\xc3\xa9\r\n",
		"Content-Type: text/plain; charset=utf-8\r\n\r\n\xd0\x9f\xd1\x80\xd0\xb8\r\n",
		"Content-Type: multipart/mixed; boundary=b\r\n\r\npre\r\n--b\r\nContent-Type: text/plain\r\n\r\n\xe9t\xe9\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\n\x00\xff\xfe\r\n--b--\r\npost\r\n",
		"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n\xe9\r\n",
		"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n\xff\r\n",
		"Subject: \xe9\r\n\r\nbody\r\n",
		"no header, \xe9 only",
		"Content-Type: multipart/alternative; boundary=\"x\"\n\n--x\n\n\xe9\n--x--\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		in := bytes.Clone(msg)
		out, changed, err := Convert(msg)
		if !bytes.Equal(msg, in) {
			t.Fatal("Convert changed its input")
		}
		if err != nil {
			return
		}
		if Is8Bit(out) {
			t.Fatalf("converted message still has 8-bit octets:\n%q\nfrom\n%q", out, msg)
		}
		if !changed && !bytes.Equal(out, msg) {
			t.Fatalf("unchanged, yet the output differs:\n%q\nfrom\n%q", out, msg)
		}
	})
}
