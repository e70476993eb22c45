package milter

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	gomilter "github.com/d--j/go-milter"
)

func reply(code uint16, text string) *gomilter.Response {
	r, err := gomilter.RejectWithCodeAndReason(code, text)
	if err != nil {
		panic(err)
	}
	return r
}

// at answers r at one event (and argument, when arg is not "").
func at(event, arg string, r *gomilter.Response) func(string, string) *gomilter.Response {
	return func(ev, a string) *gomilter.Response {
		if ev == event && (arg == "" || a == arg) {
			return r
		}
		return nil
	}
}

// Each answer a milter can give at each event, and what the engine gets.
func TestVerdicts(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		answer func(string, string) *gomilter.Response
		// where the refusal shows: "connect", "mail", "rcpt", "data" or
		// "end"
		where  string
		action Action
		reply  string
	}{
		{"reject at connect", at("connect", "", reply(554, "5.7.1 go away")), "connect", Reject, "554 5.7.1 go away"},
		{"tempfail at connect", at("connect", "", gomilter.RespTempFail), "connect", TempFail, "451 4.7.1 Service unavailable - try again later"},
		{"reject at helo", at("helo", "", gomilter.RespReject), "helo", Reject, "550 5.7.1 Command rejected"},
		{"reject at mail", at("mail", "", reply(550, "5.7.1 sender refused")), "mail", Reject, "550 5.7.1 sender refused"},
		{"tempfail at mail", at("mail", "", reply(450, "4.7.1 greylisted")), "mail", TempFail, "450 4.7.1 greylisted"},
		{"reject at data", at("data", "", gomilter.RespReject), "data", Reject, "550 5.7.1 Command rejected"},
		{"reject at a header", at("header", "Subject", reply(550, "5.7.1 bad subject")), "end", Reject, "550 5.7.1 bad subject"},
		{"reject at end of header", at("eoh", "", gomilter.RespReject), "end", Reject, "550 5.7.1 Command rejected"},
		{"tempfail in the body", at("body", "", gomilter.RespTempFail), "end", TempFail, "451 4.7.1 Service unavailable - try again later"},
		{"reject at the end, two lines", at("eom", "", reply(554, "5.7.1 line one\nline two")), "end", Reject, "554-5.7.1 line one\r\n554 5.7.1 line two"},
		{"discard at mail", at("mail", "", gomilter.RespDiscard), "discard", Discard, ""},
		{"discard at rcpt", at("rcpt", "<bob@example.org>", gomilter.RespDiscard), "discard", Discard, ""},
		{"discard at the end", at("eom", "", gomilter.RespDiscard), "discard", Discard, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc := &script{answer: tc.answer}
			c, _ := newClient(t, Config{Name: "test", Address: startScript(t, sc)})
			s := c.Session(testConn)
			defer s.Close()
			check := func(v Verdict) {
				t.Helper()
				if v.Action != tc.action || v.Reply.String() != tc.reply && tc.reply != "" || (v.Action != Continue && v.Milter != "test") {
					t.Errorf("verdict %+v (%q), want %s %q from test", v, v.Reply.String(), tc.action, tc.reply)
				}
			}
			v := s.Connect(ctx)
			if tc.where == "connect" {
				check(v)
				// The whole session is refused: MAIL gets it too.
				tx, v := s.Mail(ctx, "a@example.net", nil, "")
				if tx != nil {
					t.Error("a transaction in a refused session")
				}
				check(v)
				return
			}
			v = s.Helo(ctx, "client.example.net")
			if tc.where == "helo" {
				check(v)
				_, v = s.Mail(ctx, "a@example.net", nil, "")
				check(v)
				return
			}
			tx, v := s.Mail(ctx, "alice@example.net", nil, "Q1")
			if tc.where == "mail" {
				check(v)
				if tx != nil {
					t.Error("a refused MAIL gave a transaction")
				}
				// The milter was reset: a new transaction goes on.
				sc.setAnswer(nil)
				if tx, v = s.Mail(ctx, "other@example.net", nil, "Q2"); v.Action != Continue || tx == nil {
					t.Errorf("next MAIL: %+v", v)
				}
				return
			}
			tx.Rcpt(ctx, "bob@example.org", nil)
			v = tx.Data(ctx)
			if tc.where == "data" {
				check(v)
				tx.Abort(ctx)
				return
			}
			res := end(t, ctx, tx, testMessage)
			check(res.Verdict)
			if tc.action == Discard {
				// The milter saw no more than what led to the discard.
				if ev := sc.Events(); strings.Contains(strings.Join(ev, ","), "eom") && !strings.Contains(tc.name, "end") {
					t.Errorf("a discarded message went on to the milter: %q", ev)
				}
			}
			// After the end, the session serves the next transaction.
			sc.setAnswer(nil)
			tx2, v := s.Mail(ctx, "next@example.net", nil, "Q2")
			if v.Action != Continue {
				t.Fatalf("next transaction: %+v", v)
			}
			tx2.Rcpt(ctx, "bob@example.org", nil)
			tx2.Data(ctx)
			if res := end(t, ctx, tx2, testMessage); res.Action != Continue {
				t.Errorf("next message: %+v", res.Verdict)
			}
		})
	}
}

// A refusal at RCPT is for that recipient only.
func TestRcptRefusal(t *testing.T) {
	ctx := context.Background()
	sc := &script{answer: func(ev, arg string) *gomilter.Response {
		switch {
		case ev == "rcpt" && arg == "<nobody@example.org>":
			return reply(550, "5.1.1 no such user")
		case ev == "rcpt" && arg == "<later@example.org>":
			return gomilter.RespTempFail
		}
		return nil
	}}
	c, _ := newClient(t, Config{Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	tx := transaction(t, ctx, s, "bob@example.org")
	if v := tx.Rcpt(ctx, "nobody@example.org", nil); v.Action != Reject || v.Reply.String() != "550 5.1.1 no such user" {
		t.Errorf("rejected recipient: %+v", v)
	}
	if v := tx.Rcpt(ctx, "later@example.org", nil); v.Action != TempFail || v.Reply.Code != 451 {
		t.Errorf("tempfailed recipient: %+v", v)
	}
	if v := tx.Rcpt(ctx, "carol@example.org", nil); v.Action != Continue {
		t.Errorf("next recipient: %+v", v)
	}
	if res := end(t, ctx, tx, testMessage); res.Action != Continue {
		t.Errorf("message: %+v", res.Verdict)
	}
}

// A milter that accepts is asked nothing more for that scope: the
// transaction at MAIL, the session at connect.
func TestAccept(t *testing.T) {
	ctx := context.Background()
	sc := &script{answer: at("mail", "<alice@example.net>", gomilter.RespAccept)}
	c, _ := newClient(t, Config{Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	tx := transaction(t, ctx, s, "bob@example.org")
	if res := end(t, ctx, tx, testMessage); res.Action != Continue {
		t.Errorf("accepted transaction: %+v", res.Verdict)
	}
	ev := slices.DeleteFunc(sc.Events(), func(e string) bool { return e == "abort" })
	if len(ev) != 3 || ev[2] != "mail <alice@example.net> BODY=8BITMIME" {
		t.Errorf("after accept at MAIL: %q (want nothing after MAIL but an abort)", ev)
	}
	// The next transaction is the milter's again.
	tx, v := s.Mail(ctx, "carol@example.net", nil, "Q2")
	if v.Action != Continue {
		t.Fatal(v)
	}
	tx.Rcpt(ctx, "bob@example.org", nil)
	tx.Data(ctx)
	end(t, ctx, tx, testMessage)
	if ev := sc.Events(); ev[len(ev)-1] != "eom" {
		t.Errorf("second transaction: %q", ev)
	}

	// Accept at connect: the session is over for the milter.
	sc2 := &script{answer: at("connect", "", gomilter.RespAccept)}
	c2, _ := newClient(t, Config{Address: startScript(t, sc2)})
	s2 := c2.Session(testConn)
	defer s2.Close()
	if v := s2.Connect(ctx); v.Action != Accept {
		t.Errorf("connect: %+v, want accept (every milter accepted)", v)
	}
	tx = transaction(t, ctx, s2, "bob@example.org")
	end(t, ctx, tx, testMessage)
	if ev := sc2.Events(); !slices.Equal(ev, []string{"connect client.example.net tcp4 40123 198.51.100.7"}) {
		t.Errorf("after accept at connect: %q", ev)
	}
}

// RSET after MAIL aborts the transaction for the milter.
func TestAbort(t *testing.T) {
	ctx := context.Background()
	sc := &script{}
	c, _ := newClient(t, Config{Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	tx := transaction(t, ctx, s, "bob@example.org")
	tx.Abort(ctx)
	tx.Abort(ctx) // twice is harmless
	tx = transaction2(t, ctx, s)
	end(t, ctx, tx, testMessage)
	ev := strings.Join(sc.Events(), ",")
	if !strings.Contains(ev, "rcpt <bob@example.org> ,abort,mail <second@example.net>") || !strings.HasSuffix(ev, "eom") {
		t.Errorf("events %s", ev)
	}
	// A new MAIL without RSET aborts the transaction before it.
	transactionFrom(t, ctx, s, "third@example.net", "x@example.org")
	transaction2(t, ctx, s)
	if ev := strings.Join(sc.Events(), ","); !strings.HasSuffix(ev, "rcpt <x@example.org> ,abort,mail <second@example.net> ,rcpt <bob@example.org> ,data") {
		t.Errorf("MAIL over a transaction: %s", ev)
	}
}

func transaction2(t *testing.T, ctx context.Context, s *Session) *Transaction {
	t.Helper()
	tx, v := s.Mail(ctx, "second@example.net", nil, "Q2")
	if v.Action != Continue {
		t.Fatal(v)
	}
	tx.Rcpt(ctx, "bob@example.org", nil)
	tx.Data(ctx)
	return tx
}

// Every change of the protocol, applied to the message or reported for
// the envelope.
func TestModifications(t *testing.T) {
	ctx := context.Background()
	sc := &script{eom: func(m gomilter.Modifier) error {
		return errors.Join(
			m.AddHeader("X-Added", "yes"),
			m.AddHeader("X-Multi", "line one\n\tline two"),
			m.ChangeHeader(1, "Subject", "[SPAM] hello"),
			m.ChangeHeader(1, "X-Remove", ""), // delete
			m.ChangeHeader(5, "X-Nothing", "past the end: added"),
			m.InsertHeader(0, "X-First", "at the top"),
			m.InsertHeader(2, "X-Third", "after two fields"),
			m.ReplaceBody(strings.NewReader("New body.\nWith LF line ends.\n")),
			m.AddRecipient("new@example.org", "NOTIFY=NEVER"),
			m.DeleteRecipient("bob@example.org"),
			m.ChangeFrom("bounce@example.net", "RET=HDRS"),
			m.Quarantine("looks odd"),
		)
	}}
	c, _ := newClient(t, Config{Name: "mod", Address: startScript(t, sc)})
	s := c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org", "carol@example.org"), testMessage)
	if res.Action != Continue || !res.Changed() {
		t.Fatalf("result %+v", res.Verdict)
	}
	want := "X-First: at the top\r\n" +
		"Received: from client.example.net by mx.postoffice.test\r\n" +
		"X-Third: after two fields\r\n" +
		"From: Alice <alice@example.net>\r\n" +
		"To: bob@example.org\r\n" +
		"Subject: [SPAM] hello\r\n" +
		"X-Folded: first\r\n\tsecond\r\n" +
		"X-Added: yes\r\n" +
		"X-Multi: line one\r\n\tline two\r\n" +
		"X-Nothing: past the end: added\r\n" +
		"\r\n" +
		"New body.\r\nWith LF line ends.\r\n"
	if got := readAll(t, res.Message()); got != want {
		t.Errorf("message:\n%s\nwant:\n%s", got, want)
	}
	if res.Sender == nil || *res.Sender != (Address{"bounce@example.net", "RET=HDRS"}) {
		t.Errorf("sender %+v", res.Sender)
	}
	if !slices.Equal(res.Added, []Address{{"new@example.org", "NOTIFY=NEVER"}}) || !slices.Equal(res.Deleted, []string{"bob@example.org"}) {
		t.Errorf("recipients added %+v, deleted %q", res.Added, res.Deleted)
	}
	if res.Quarantine != "looks odd" {
		t.Errorf("quarantine %q", res.Quarantine)
	}
	var kinds []ChangeKind
	for _, ch := range res.Changes {
		kinds = append(kinds, ch.Kind)
		if ch.Milter != "mod" {
			t.Errorf("change %+v without its milter", ch)
		}
	}
	if want := []ChangeKind{AddHeader, AddHeader, ChangeHeader, DeleteHeader, ChangeHeader, InsertHeader, InsertHeader,
		ReplaceBody, AddRcpt, DelRcpt, ChangeFrom, Quarantined}; !slices.Equal(kinds, want) {
		t.Errorf("changes %q\nwant    %q", kinds, want)
	}
}

// A milter that keeps the space after the colon (SMFIP_HDR_LEADSPC)
// gets values with it, and its values are taken as they are.
func TestHeaderLeadingSpace(t *testing.T) {
	ctx := context.Background()
	sc := &script{eom: func(m gomilter.Modifier) error { return m.AddHeader("X-Exact", "  two spaces") }}
	addr := startScript(t, sc, gomilter.WithProtocol(gomilter.OptHeaderLeadingSpace))
	c, _ := newClient(t, Config{Address: addr})
	s := c.Session(testConn)
	defer s.Close()
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), testMessage)
	if !slices.Contains(sc.Headers(), "Subject: hello") {
		t.Errorf("headers %q: want the leading space kept", sc.Headers())
	}
	if got := readAll(t, res.Message()); !strings.Contains(got, "\r\nX-Exact:  two spaces\r\n\r\n") {
		t.Errorf("message %q", got)
	}
}

// Milters chain: the second sees the first one's changes, and a
// refusal by the first keeps the event from the second.
func TestChain(t *testing.T) {
	ctx := context.Background()
	first := &script{
		answer: at("rcpt", "<nobody@example.org>", reply(550, "5.1.1 unknown")),
		eom: func(m gomilter.Modifier) error {
			return errors.Join(m.AddHeader("X-First", "1"), m.ChangeHeader(1, "X-Remove", ""),
				m.ReplaceBody(strings.NewReader("replaced by the first\r\n")))
		},
	}
	second := &script{eom: func(m gomilter.Modifier) error { return m.AddHeader("X-Second", "2") }}
	c, _ := newClient(t, Config{Name: "first", Address: startScript(t, first)}, Config{Name: "second", Address: startScript(t, second)})
	s := c.Session(testConn)
	defer s.Close()
	tx := transaction(t, ctx, s, "bob@example.org")
	if v := tx.Rcpt(ctx, "nobody@example.org", nil); v.Action != Reject || v.Milter != "first" {
		t.Errorf("rcpt %+v", v)
	}
	res := end(t, ctx, tx, testMessage)
	if slices.Contains(second.Events(), "rcpt <nobody@example.org> ") {
		t.Error("the second milter saw a recipient the first refused")
	}
	if !slices.Contains(second.Headers(), "X-First:1") || slices.Contains(second.Headers(), "X-Remove:this one") {
		t.Errorf("the second milter saw %q", second.Headers())
	}
	if second.Body() != "replaced by the first\r\n" {
		t.Errorf("the second milter got the body %q", second.Body())
	}
	got := readAll(t, res.Message())
	if !strings.Contains(got, "X-First: 1\r\nX-Second: 2\r\n\r\nreplaced by the first\r\n") || strings.Contains(got, "X-Remove") {
		t.Errorf("message %q", got)
	}

	// A rejection at the end by the second: the result is the refusal.
	second.setAnswer(at("eom", "", reply(554, "5.7.1 second says no")))
	tx = transaction2(t, ctx, s)
	res = end(t, ctx, tx, testMessage)
	if res.Action != Reject || res.Milter != "second" || res.Reply.String() != "554 5.7.1 second says no" {
		t.Errorf("second rejects: %+v", res.Verdict)
	}
}

// A milter that needs no more headers or body says skip (protocol 6):
// it gets none, and still its end of message.
func TestSkip(t *testing.T) {
	ctx := context.Background()
	sc := &script{answer: func(ev, arg string) *gomilter.Response {
		if ev == "header" || ev == "body" {
			return gomilter.RespSkip
		}
		return nil
	}, eom: func(m gomilter.Modifier) error { return m.AddHeader("X-Seen", "end") }}
	c, _ := newClient(t, Config{Address: startScript(t, sc, gomilter.WithProtocol(gomilter.OptSkip))})
	s := c.Session(testConn)
	defer s.Close()
	body := strings.Repeat("x", 3*chunkSize)
	res := end(t, ctx, transaction(t, ctx, s, "bob@example.org"), "From: a@example.net\r\nTo: b@example.org\r\n\r\n"+body)
	var headers, chunks int
	for _, e := range sc.Events() {
		if strings.HasPrefix(e, "header ") {
			headers++
		}
		if strings.HasPrefix(e, "body ") {
			chunks++
		}
	}
	if headers != 1 || chunks != 1 || !strings.Contains(readAll(t, res.Message()), "X-Seen: end") {
		t.Errorf("%d headers, %d chunks after skips; result %+v", headers, chunks, res.Verdict)
	}
}
