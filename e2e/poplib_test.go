package e2e

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// popScript runs a list of poplib calls and prints each result as JSON.
// Bytes travel base64-encoded so that 8-bit data is compared exactly.
const popScript = `
import base64, json, poplib, ssl, sys
host, port, mode, ops = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
if mode == "ssl":
    p = poplib.POP3_SSL(host, port, context=ctx, timeout=30)
else:
    p = poplib.POP3(host, port, timeout=30)
b = lambda x: base64.b64encode(x).decode() if isinstance(x, bytes) else x
def enc(r):
    if isinstance(r, (list, tuple)):
        return [enc(x) for x in r]
    if isinstance(r, dict):
        return {k: enc(v) for k, v in r.items()}
    return b(r)
out = [b(p.getwelcome())]
for op in ops:
    name, args = op[0], op[1:]
    try:
        if name == "stls":
            r = p.stls(context=ctx)
        else:
            r = getattr(p, name)(*args)
        out.append(enc(r))
    except poplib.error_proto as e:
        out.append({"error": b(e.args[0])})
print(json.dumps(out))
`

// pop runs ops through Python's poplib and returns one decoded result per
// op; results are strings (base64-decoded bytes) or nested lists.
func pop(t *testing.T, addr, mode string, ops ...[]any) []any {
	t.Helper()
	need(t, "python3")
	host, port, _ := strings.Cut(addr, ":")
	opsJSON, _ := json.Marshal(ops)
	cmd := exec.Command("python3", "-c", popScript, host, port, mode, string(opsJSON))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("poplib: %v\n%s", err, out)
	}
	var res []any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("poplib output: %v\n%s", err, out)
	}
	return res
}

func unb64(t *testing.T, v any) string {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("expected a string, got %#v", v)
	}
	d, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64 %q: %v", s, err)
	}
	return string(d)
}

// errorOf returns the -ERR text of an op that failed, or "".
func errorOf(t *testing.T, v any) string {
	t.Helper()
	if m, ok := v.(map[string]any); ok {
		return unb64(t, m["error"])
	}
	return ""
}

// retrBytes rebuilds the exact message octets from poplib's RETR result
// (resp, lines, octets): poplib strips CRLF and undoes byte-stuffing.
func retrBytes(t *testing.T, v any) (body string, octets int) {
	t.Helper()
	r := v.([]any)
	var sb strings.Builder
	for _, l := range r[1].([]any) {
		sb.WriteString(unb64(t, l))
		sb.WriteString("\r\n")
	}
	return sb.String(), int(r[2].(float64))
}

// mdaTrace is what the deliver command puts on top of a message: the
// envelope sender and the final recipient (RFC 5321 section 4.4).
func mdaTrace(from, rcpt string) string {
	return "Return-Path: <" + from + ">\r\nDelivered-To: " + rcpt + "\r\n"
}

// Messages with every awkward shape: dots at line starts, bare LF, no final
// newline, 8-bit bytes. want is the canonical form RETR must return.
var testMessages = []struct{ raw, want string }{
	{
		raw:  "From: a@example.org\r\nSubject: one\r\n\r\nHello.\r\n.\r\n..two dots\r\n.leading\r\n",
		want: "From: a@example.org\r\nSubject: one\r\n\r\nHello.\r\n.\r\n..two dots\r\n.leading\r\n",
	},
	{
		raw:  "From: b@example.org\nSubject: bare lf\n\nline1\nline2\n",
		want: "From: b@example.org\r\nSubject: bare lf\r\n\r\nline1\r\nline2\r\n",
	},
	{
		raw:  "From: c@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 \xe2\x82\xac \xff\xfe\r\nno final newline",
		want: "From: c@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Transfer-Encoding: 8bit\r\n\r\ncaf\xc3\xa9 \xe2\x82\xac \xff\xfe\r\nno final newline\r\n",
	},
}

func TestPoplibFullSession(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("alice@example.org", "s3cret pw")
	for _, m := range testMessages {
		in.deliver("alice@example.org", m.raw)
	}
	in.start()
	addr := in.addr("pop3")

	trace := mdaTrace("", "alice@example.org")
	total := 0
	for _, m := range testMessages {
		total += len(trace + m.want)
	}
	res := pop(t, addr, "plain",
		[]any{"capa"},
		[]any{"user", "alice@example.org"},
		[]any{"pass_", "s3cret pw"},
		[]any{"stat"},
		[]any{"list"},
		[]any{"uidl"},
		[]any{"retr", 1},
		[]any{"retr", 2},
		[]any{"retr", 3},
		[]any{"top", 1, 0},
		[]any{"top", 3, 1},
		[]any{"dele", 2},
		[]any{"stat"},
		[]any{"retr", 2},
		[]any{"rset"},
		[]any{"stat"},
		[]any{"dele", 2},
		[]any{"quit"},
	)
	if g := unb64(t, res[0]); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	capa := res[1].(map[string]any)
	for _, c := range []string{"USER", "TOP", "UIDL", "PIPELINING", "RESP-CODES", "AUTH-RESP-CODE", "SASL", "STLS", "IMPLEMENTATION"} {
		if _, ok := capa[c]; !ok {
			t.Errorf("CAPA lacks %s: %v", c, capa)
		}
	}
	if stat := res[4].([]any); int(stat[0].(float64)) != 3 || int(stat[1].(float64)) != total {
		t.Fatalf("STAT = %v, want 3 %d", stat, total)
	}
	list := res[5].([]any)[1].([]any)
	uidl := res[6].([]any)[1].([]any)
	uids := map[string]string{}
	for i, m := range testMessages {
		if got, want := unb64(t, list[i]), fmt.Sprintf("%d %d", i+1, len(trace+m.want)); got != want {
			t.Errorf("LIST line %q, want %q", got, want)
		}
		n, uid, _ := strings.Cut(unb64(t, uidl[i]), " ")
		if n != fmt.Sprint(i+1) || len(uid) < 1 || len(uid) > 70 || strings.ContainsFunc(uid, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			t.Errorf("UIDL line %q is not RFC 1939 section 7 conformant", unb64(t, uidl[i]))
		}
		if _, dup := uids[uid]; dup {
			t.Errorf("UIDL %q repeated", uid)
		}
		uids[uid] = m.want
		body, octets := retrBytes(t, res[7+i])
		if body != trace+m.want {
			t.Errorf("RETR %d = %q, want %q", i+1, body, trace+m.want)
		}
		if octets != len(trace+m.want) {
			t.Errorf("RETR %d sent %d octets, LIST said %d", i+1, octets, len(m.want))
		}
	}
	if top, _ := retrBytes(t, res[10]); top != trace+"From: a@example.org\r\nSubject: one\r\n\r\n" {
		t.Errorf("TOP 1 0 = %q", top)
	}
	if top, _ := retrBytes(t, res[11]); !strings.HasSuffix(top, "\r\n\r\ncaf\xc3\xa9 \xe2\x82\xac \xff\xfe\r\n") {
		t.Errorf("TOP 3 1 = %q", top)
	}
	if stat := res[13].([]any); int(stat[0].(float64)) != 2 || int(stat[1].(float64)) != total-len(trace+testMessages[1].want) {
		t.Errorf("STAT after DELE = %v", stat)
	}
	if e := errorOf(t, res[14]); !strings.HasPrefix(e, "-ERR") {
		t.Errorf("RETR of a deleted message did not fail: %v", res[14])
	}
	if stat := res[16].([]any); int(stat[0].(float64)) != 3 {
		t.Errorf("STAT after RSET = %v", stat)
	}

	// The next session sees the deletion, and the surviving messages keep
	// their UIDLs.
	res = pop(t, addr, "plain",
		[]any{"user", "alice@example.org"}, []any{"pass_", "s3cret pw"}, []any{"uidl"}, []any{"retr", 2}, []any{"quit"})
	uidl = res[3].([]any)[1].([]any)
	if len(uidl) != 2 {
		t.Fatalf("UIDL after deletion has %d entries", len(uidl))
	}
	for i, want := range []string{testMessages[0].want, testMessages[2].want} {
		_, uid, _ := strings.Cut(unb64(t, uidl[i]), " ")
		if uids[uid] != want {
			t.Errorf("UIDL %q of message %d changed between sessions", uid, i+1)
		}
	}
	if body, _ := retrBytes(t, res[4]); body != trace+testMessages[2].want {
		t.Errorf("second session RETR 2 = %q", body)
	}
}

func TestPoplibTLSAndAuthFailures(t *testing.T) {
	in := newInstance(t, "")
	in.addUser("bob@example.org", "pw-bob")
	in.deliver("bob@example.org", "Subject: hi\r\n\r\nhi\r\n")
	in.start()

	// Implicit TLS (RFC 8314) on the second listener.
	res := pop(t, in.addr("pop3s"), "ssl",
		[]any{"capa"}, []any{"user", "bob@example.org"}, []any{"pass_", "pw-bob"}, []any{"stat"}, []any{"quit"})
	if _, ok := res[1].(map[string]any)["STLS"]; ok {
		t.Error("STLS advertised on an implicit TLS connection")
	}
	if stat := res[4].([]any); int(stat[0].(float64)) != 1 {
		t.Errorf("STAT over TLS = %v", stat)
	}

	// STLS (RFC 2595), then SASL PLAIN... poplib speaks USER/PASS only, so
	// check the upgraded session and the same answer for unknown user and
	// wrong password.
	res = pop(t, in.addr("pop3"), "plain",
		[]any{"stls"},
		[]any{"user", "nobody@example.org"}, []any{"pass_", "pw-bob"},
		[]any{"user", "bob@example.org"}, []any{"pass_", "wrong"},
		[]any{"user", "bob@example.org"}, []any{"pass_", "pw-bob"},
		[]any{"stat"}, []any{"quit"})
	unknown, wrong := errorOf(t, res[3]), errorOf(t, res[5])
	if !strings.HasPrefix(unknown, "-ERR [AUTH]") || unknown != wrong {
		t.Errorf("unknown user answered %q, wrong password %q: want the same -ERR [AUTH]", unknown, wrong)
	}
	if stat := res[8].([]any); int(stat[0].(float64)) != 1 {
		t.Errorf("STAT after STLS = %v", stat)
	}
}
