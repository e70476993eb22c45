package tlsrpt

import (
	"slices"
	"strings"
	"testing"
)

func TestRecord(t *testing.T) {
	r := Record{RUA: []string{Mailto("tls-reports@example.com"), "https://reports.example.com/tlsrpt"}}
	want := "v=TLSRPTv1; rua=mailto:tls-reports@example.com,https://reports.example.com/tlsrpt"
	if r.String() != want {
		t.Fatalf("String %q, want %q", r.String(), want)
	}
	back, err := Parse(r.String())
	if err != nil || !slices.Equal(back.RUA, r.RUA) {
		t.Fatalf("Parse(String) = %+v, %v", back, err)
	}
	// An address with "," or ";" is percent-encoded, so the record parses.
	odd := Record{RUA: []string{Mailto(`"a,b;c!"@example.com`)}}
	if strings.ContainsAny(strings.TrimPrefix(odd.String(), "v=TLSRPTv1; "), ",;!") {
		t.Fatalf("unencoded in %q", odd.String())
	}
	if back, err := Parse(odd.String()); err != nil || len(back.RUA) != 1 {
		t.Fatalf("%q: %+v, %v", odd.String(), back, err)
	}
	if RecordName("example.com.") != "_smtp._tls.example.com" {
		t.Fatal(RecordName("example.com."))
	}
}

func TestParse(t *testing.T) {
	for txt, want := range map[string][]string{
		"v=TLSRPTv1; rua=mailto:a@example.com":                       {"mailto:a@example.com"},
		"v=TLSRPTv1;rua=mailto:a@example.com , https://r.example/":   {"mailto:a@example.com", "https://r.example/"},
		"v=TLSRPTv1 ; rua=mailto:a@example.com; ext=x;":              {"mailto:a@example.com"},
		"v=TLSRPTv1; rua=mailto:a@x.example; rua=mailto:b@x.example": {"mailto:a@x.example"},
	} {
		r, err := Parse(txt)
		if err != nil || !slices.Equal(r.RUA, want) {
			t.Errorf("Parse(%q) = %+v, %v; want %q", txt, r, err, want)
		}
	}
	for _, txt := range []string{
		"", "v=TLSRPTv2; rua=mailto:a@example.com", "v=TLSRPTv1", "v=TLSRPTv1; ext=x",
		"v=TLSRPTv1; rua=", "v=TLSRPTv1; rua=http://r.example/", "v=TLSRPTv1; rua=ftp://r.example/",
		"v=TLSRPTv1; rua=mailto:nobody", "v=TLSRPTv1; rua=https:///path", "rua=mailto:a@example.com; v=TLSRPTv1",
		"v=TLSRPTv1x; rua=mailto:a@example.com", "v=TLSRPTv1; rua=mailto:a@example.com; e=a=b",
		"v=TLSRPTv1; rua=mailto:a!b@example.com",
	} {
		if r, err := Parse(txt); err == nil {
			t.Errorf("Parse(%q) accepted: %+v", txt, r)
		}
	}
}
