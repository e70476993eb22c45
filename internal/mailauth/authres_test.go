package mailauth

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestAuthservIDOf(t *testing.T) {
	for v, want := range map[string]string{
		"mx.example.org; spf=pass":                      "mx.example.org",
		"  mx.example.org 1; none":                      "mx.example.org",
		"(comment (nested) \\) x) mx.example.org; none": "mx.example.org",
		`"mx.example.org"; none`:                        "mx.example.org",
		`"mx.ex\"ample"; none`:                          `mx.ex"ample`,
		"mx.example.org(comment); none":                 "mx.example.org",
		"":                                              "",
		"(unterminated":                                 "",
		`"unterminated`:                                 "",
	} {
		if got := authservIDOf(v); got != want {
			t.Errorf("authservIDOf(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestStripAuthResults(t *testing.T) {
	const ours = "mx.postoffice.test"
	in := "Received: from x\r\n" +
		"Authentication-Results: mx.postoffice.test; dmarc=pass header.from=bank.test\r\n" +
		"Authentication-Results: upstream.test;\r\n\tspf=pass smtp.mailfrom=a@b.test\r\n" +
		"authentication-results: (forged) MX.POSTOFFICE.TEST.;\r\n\tdkim=pass\r\n" +
		"Authentication-Results: \"mx.postoffice.test\"; spf=pass\r\n" +
		"junk line without a colon\r\n" +
		"Authentication-Results : mx.postoffice.test; dmarc=pass\r\n" +
		"Authentication-Results: mx.postoffice.test.example; spf=pass\r\n" +
		"From: a@b.test\r\n" +
		"\r\n" +
		"Authentication-Results: mx.postoffice.test; in the body, untouched\r\n"
	want := "Received: from x\r\n" +
		"Authentication-Results: upstream.test;\r\n\tspf=pass smtp.mailfrom=a@b.test\r\n" +
		"junk line without a colon\r\n" +
		"Authentication-Results: mx.postoffice.test.example; spf=pass\r\n" +
		"From: a@b.test\r\n" +
		"\r\n" +
		"Authentication-Results: mx.postoffice.test; in the body, untouched\r\n"
	got, err := io.ReadAll(StripAuthResults(strings.NewReader(in), ours))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("stripped:\n%s\nwant:\n%s", got, want)
	}
	// The same through one-byte reads.
	got, err = io.ReadAll(iotest.OneByteReader(StripAuthResults(iotest.OneByteReader(strings.NewReader(in)), ours)))
	if err != nil || string(got) != want {
		t.Errorf("one byte at a time: %q, %v", got, err)
	}

	// Without any field of ours, nothing changes; a message without a
	// body or without an empty line neither.
	for _, msg := range []string{"From: a@b\r\n\r\nbody\r\n", "From: a@b\r\n", "", "\r\nbody only\r\n"} {
		got, err := io.ReadAll(StripAuthResults(strings.NewReader(msg), ours))
		if err != nil || string(got) != msg {
			t.Errorf("StripAuthResults(%q) = %q, %v", msg, got, err)
		}
	}

	// A read error is passed on.
	_, err = io.ReadAll(StripAuthResults(iotest.ErrReader(io.ErrUnexpectedEOF), ours))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read error: %v", err)
	}
	// A header section over the limit is an error, not unbounded memory.
	huge := "X: " + strings.Repeat("a", MaxHeaderBytes+10) + "\r\n\r\n"
	if _, err := io.ReadAll(StripAuthResults(strings.NewReader(huge), ours)); !errors.Is(err, ErrHeaderTooLong) {
		t.Errorf("huge header: %v", err)
	}
}

// The stripper's buffer is lent: after Close a read is an error, not
// another message's bytes, and a second Close is harmless.
func TestStripAuthResultsClose(t *testing.T) {
	msg := "Authentication-Results: mx.example.org; spf=pass\r\nSubject: x\r\n\r\nbody\r\n"
	r := StripAuthResults(strings.NewReader(msg), "mx.example.org")
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "Subject: x\r\n\r\nbody\r\n" {
		t.Fatalf("read %q, %v", got, err)
	}
	r.Close()
	if n, err := r.Read(make([]byte, 10)); n != 0 || err == nil || err == io.EOF {
		t.Errorf("read after Close: %d, %v", n, err)
	}
	r.Close()
	// Closed before its end: the next stripper reads its own message.
	r = StripAuthResults(strings.NewReader(msg), "mx.example.org")
	r.Close()
	r = StripAuthResults(strings.NewReader("Subject: y\r\n\r\nother\r\n"), "mx.example.org")
	defer r.Close()
	if got, err := io.ReadAll(r); err != nil || string(got) != "Subject: y\r\n\r\nother\r\n" {
		t.Errorf("next stripper read %q, %v", got, err)
	}
}
