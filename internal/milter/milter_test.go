package milter

import (
	"context"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

func TestParseAddress(t *testing.T) {
	for in, want := range map[string][2]string{
		"tcp:127.0.0.1:11332":  {"tcp", "127.0.0.1:11332"},
		"inet:localhost:8891":  {"tcp", "localhost:8891"},
		"tcp:[::1]:11332":      {"tcp", "[::1]:11332"},
		"unix:/run/milter.sck": {"unix", "/run/milter.sck"},
	} {
		n, a, err := ParseAddress(in)
		if err != nil || n != want[0] || a != want[1] {
			t.Errorf("ParseAddress(%q) = %q %q %v", in, n, a, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1:11332", "tcp:", "tcp:host", "unix:relative.sock", "udp:1.2.3.4:5"} {
		if _, _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	good := Config{Address: "tcp:127.0.0.1:1", Services: []string{"smtp"}, OnError: "accept"}
	if err := good.Check(); err != nil {
		t.Error(err)
	}
	for _, bad := range []Config{
		{Address: "nonsense"},
		{Address: "tcp:127.0.0.1:1", Services: []string{"pop3"}},
		{Address: "tcp:127.0.0.1:1", OnError: "reject"},
		{Address: "tcp:127.0.0.1:1", CommandTimeout: -time.Second},
	} {
		if err := bad.Check(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	d := Config{Address: "tcp:127.0.0.1:1"}.withDefaults()
	if d.Name != d.Address || !slices.Equal(d.Services, []string{"smtp", "submission"}) || d.OnError != OnErrorTempFail ||
		d.ConnectTimeout != 30*time.Second || d.CommandTimeout != 30*time.Second || d.EndTimeout != 300*time.Second {
		t.Errorf("defaults %+v", d)
	}
	if _, err := New([]Config{{Address: "x"}}, Options{}); err == nil {
		t.Error("New took a bad address")
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		in   string
		code int
		want Reply
	}{
		{"550 5.7.1 Gtube pattern", 550, Reply{550, "5.7.1", []string{"Gtube pattern"}}},
		{"451 4.7.1 Try again later", 451, Reply{451, "4.7.1", []string{"Try again later"}}},
		{"554-5.7.1 first\r\n554 5.7.1 second", 554, Reply{554, "5.7.1", []string{"first", "second"}}},
		{"550 no status here", 550, Reply{550, "5.7.1", []string{"no status here"}}},
		{"421 4.3.2", 421, Reply{421, "4.3.2", []string{""}}},
		// A status of the wrong class is replaced (RFC 3463 section 2).
		{"450 5.1.1 mismatch", 450, Reply{450, "4.7.1", []string{"mismatch"}}},
	} {
		got := parseReply(tc.in, tc.code)
		if got.Code != tc.want.Code || got.Status != tc.want.Status || !slices.Equal(got.Lines, tc.want.Lines) {
			t.Errorf("parseReply(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	r := Reply{554, "5.7.1", []string{"first", "second"}}
	if r.String() != "554-5.7.1 first\r\n554 5.7.1 second" || r.Temporary() {
		t.Errorf("String = %q", r.String())
	}
}

// Every event reaches the milter with the arguments and macros that
// rspamd and OpenDKIM read, and an unchanged message comes back as it
// went.
func TestEvents(t *testing.T) {
	ctx := context.Background()
	sc := &script{}
	c, _ := newClient(t, Config{Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	if v := s.Connect(ctx); v.Action != Continue {
		t.Fatalf("connect %+v", v)
	}
	s.TLS("TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, "", "")
	s.Auth("PLAIN", "alice@example.net")
	s.Helo(ctx, "client.example.net")
	tx, _ := s.Mail(ctx, "alice@example.net", []string{"BODY=8BITMIME", "SIZE=1000"}, "Q1")
	tx.Rcpt(ctx, "bob@example.org", []string{"NOTIFY=NEVER"})
	tx.Rcpt(ctx, "carol@example.org", nil)
	tx.Data(ctx)
	res := end(t, ctx, tx, testMessage)
	if res.Action != Continue || res.Changed() || len(res.Changes) != 0 {
		t.Errorf("result %+v", res)
	}
	if got := readAll(t, res.Message()); got != testMessage {
		t.Errorf("unchanged message came back as\n%q", got)
	}

	want := []string{
		"connect client.example.net tcp4 40123 198.51.100.7",
		"helo client.example.net",
		"mail <alice@example.net> BODY=8BITMIME SIZE=1000",
		"rcpt <bob@example.org> NOTIFY=NEVER",
		"rcpt <carol@example.org> ",
		"data",
		"header Received", "header From", "header To", "header Subject", "header X-Folded", "header X-Remove",
		"eoh",
		"body 20",
		"eom",
	}
	if got := sc.Events(); !slices.Equal(got, want) {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Header values without the space after the colon, folds as LF, as
	// Sendmail and Postfix send them.
	if !slices.Contains(sc.Headers(), "X-Folded:first\n\tsecond") || !slices.Contains(sc.Headers(), "Subject:hello") {
		t.Errorf("headers %q", sc.Headers())
	}
	if sc.Body() != "Hello Bob.\r\n\r\nBye.\r\n" {
		t.Errorf("body %q", sc.Body())
	}
	for _, m := range []struct{ event, name, want string }{
		{"connect", "j", "mx.postoffice.test"},
		{"connect", "v", "postoffice test"},
		{"connect", "{daemon_name}", "postoffice"},
		{"connect", "{daemon_addr}", "192.0.2.25"},
		{"connect", "{daemon_port}", "25"},
		{"connect", "{client_addr}", "198.51.100.7"},
		{"connect", "{client_port}", "40123"},
		{"connect", "{client_name}", "client.example.net"},
		{"helo", "{tls_version}", "TLSv1.3"},
		{"helo", "{cipher}", "TLS_AES_128_GCM_SHA256"},
		{"helo", "{cipher_bits}", "128"},
		{"mail", "{auth_authen}", "alice@example.net"},
		{"mail", "{auth_type}", "PLAIN"},
		{"mail", "{mail_addr}", "alice@example.net"},
		{"mail", "{mail_host}", "example.net"},
		{"mail", "{client_addr}", "198.51.100.7"},
		{"mail", "i", "Q1"},
		{"rcpt", "{rcpt_addr}", "carol@example.org"},
		{"rcpt", "{rcpt_host}", "example.org"},
		{"eom", "i", "Q1"},
	} {
		if got := sc.Macro(m.event, m.name); got != m.want {
			t.Errorf("macro %s at %s = %q, want %q", m.name, m.event, got, m.want)
		}
	}
}

// A milter that asks for its own macros at negotiation (SMFIF_SETSYMLIST)
// gets those.
func TestMacroRequest(t *testing.T) {
	ctx := context.Background()
	sc := &script{}
	addr := startScript(t, sc, gomilter.WithMacroRequest(gomilter.StageEOM, []string{"{auth_authen}", "{client_addr}", "j"}))
	c, _ := newClient(t, Config{Address: addr})
	s := c.Session(testConn)
	defer s.Close()
	s.Auth("LOGIN", "alice@example.net")
	end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	for name, want := range map[string]string{"{auth_authen}": "alice@example.net", "{client_addr}": "198.51.100.7", "j": "mx.postoffice.test"} {
		if got := sc.Macro("eom", name); got != want {
			t.Errorf("requested macro %s at the end = %q, want %q", name, got, want)
		}
	}
}

// A milter for submission only is not asked about mail from outside.
func TestServices(t *testing.T) {
	ctx := context.Background()
	sc := &script{}
	c, _ := newClient(t, Config{Address: startScript(t, sc), Services: []string{ServiceSubmission}})
	s := c.Session(testConn) // smtp
	end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	s.Close()
	if ev := sc.Events(); len(ev) != 0 {
		t.Errorf("an smtp session reached a submission milter: %q", ev)
	}
	conn := testConn
	conn.Service = ServiceSubmission
	s = c.Session(conn)
	end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	s.Close()
	if ev := sc.Events(); len(ev) == 0 {
		t.Error("the submission milter was not asked")
	}
}

// The unix socket form of the address.
func TestUnixSocket(t *testing.T) {
	ctx := context.Background()
	sc := &script{answer: func(ev, arg string) *gomilter.Response {
		if ev == "eom" {
			r, _ := gomilter.RejectWithCodeAndReason(554, "5.7.1 over the socket")
			return r
		}
		return nil
	}}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "m.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c, _ := newClient(t, Config{Address: serveScript(t, ln, sc)})
	s := c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	if res.Action != Reject || res.Reply.String() != "554 5.7.1 over the socket" {
		t.Errorf("result %+v", res.Verdict)
	}
}

// A body arrives whole, in chunks of at most chunkSize octets, the
// fewest that hold it: one for a short body, one for exactly a chunk,
// several for a large one; an empty body as one empty chunk, and its end
// of message (the client library refused to end a message without a
// chunk: every message without a body was refused).
func TestBodyChunks(t *testing.T) {
	ctx := context.Background()
	for _, body := range []string{
		"",
		"short\r\n",
		strings.Repeat("x", chunkSize-2) + "\r\n",
		strings.Repeat("x", chunkSize-1) + "\r\n",
		strings.Repeat("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\r\n", 5000), // 330 KB
	} {
		sc := &script{}
		c, _ := newClient(t, Config{Address: startScript(t, sc)})
		s := c.Session(testConn)
		msg := "From: a@example.net\r\nSubject: big\r\n\r\n" + body
		res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), msg)
		s.Close()
		if res.Action != Continue {
			t.Fatalf("%d octets: %+v", len(body), res.Verdict)
		}
		if sc.Body() != body {
			t.Errorf("the milter got %d octets of the %d-octet body", len(sc.Body()), len(body))
		}
		chunks, eom := 0, false
		for _, e := range sc.Events() {
			chunks += bool2int(strings.HasPrefix(e, "body "))
			eom = eom || strings.HasPrefix(e, "eom")
		}
		if want := max(1, (len(body)+chunkSize-1)/chunkSize); chunks != want || !eom {
			t.Errorf("%d octets: %d chunks, want %d; end of message seen: %v", len(body), chunks, want, eom)
		}
	}
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}
