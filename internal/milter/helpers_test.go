package milter

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	gomilter "github.com/d--j/go-milter"
)

// script is a milter for the tests, on go-milter's server side: it
// records every event and the macros it got, and answers as told.
type script struct {
	mu      sync.Mutex
	events  []string          // "connect host family port addr", "mail <from> args"...
	macros  map[string]string // every macro value seen, last one wins
	headers []string          // "Name: value" as received
	body    bytes.Buffer
	lead    bool // the negotiated SMFIP_HDR_LEADSPC

	// answer returns the response to an event ("connect", "helo",
	// "mail", "rcpt", "data", "header", "eoh", "body", "eom") with its
	// argument; nil means continue.
	answer func(event, arg string) *gomilter.Response
	// eom makes the changes at the end of the message.
	eom func(m gomilter.Modifier) error
	// hang makes the milter stop answering at an event.
	hang string
}

func (s *script) record(m gomilter.Modifier, event string, args ...any) *gomilter.Response {
	s.mu.Lock()
	parts := []string{event}
	for _, a := range args {
		parts = append(parts, fmt.Sprint(a))
	}
	s.events = append(s.events, strings.Join(parts, " "))
	if s.macros == nil {
		s.macros = map[string]string{}
	}
	for _, name := range []string{"j", "v", "i", "{daemon_name}", "{daemon_addr}", "{daemon_port}", "{if_addr}",
		"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}", "{tls_version}", "{cipher}",
		"{cipher_bits}", "{cert_subject}", "{auth_type}", "{auth_authen}", "{mail_addr}", "{mail_host}",
		"{rcpt_addr}", "{rcpt_host}"} {
		if v, ok := m.GetEx(name); ok {
			s.macros[event+" "+name] = v
		}
	}
	hang := s.hang == event
	answer := s.answer
	s.mu.Unlock()
	if hang {
		time.Sleep(time.Hour)
	}
	if answer != nil {
		arg := ""
		if len(args) > 0 {
			arg = fmt.Sprint(args[0])
		}
		if r := answer(event, arg); r != nil {
			return r
		}
	}
	return gomilter.RespContinue
}

// setAnswer changes the answers while the milter serves.
func (s *script) setAnswer(f func(event, arg string) *gomilter.Response) {
	s.mu.Lock()
	s.answer = f
	s.mu.Unlock()
}

// Headers returns the header fields received, "Name:value".
func (s *script) Headers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.headers...)
}

// Body returns the body received.
func (s *script) Body() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.body.String()
}

func (s *script) Events() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.events...)
}

func (s *script) Macro(event, name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.macros[event+" "+name]
}

// scriptMilter is one connection's Milter of a script.
type scriptMilter struct {
	gomilter.NoOpMilter
	s *script
}

func (b scriptMilter) Connect(host, family string, port uint16, addr string, m gomilter.Modifier) (*gomilter.Response, error) {
	b.s.mu.Lock()
	b.s.lead = m.Protocol()&gomilter.OptHeaderLeadingSpace != 0
	b.s.mu.Unlock()
	return b.s.record(m, "connect", host, family, port, addr), nil
}
func (b scriptMilter) Helo(name string, m gomilter.Modifier) (*gomilter.Response, error) {
	return b.s.record(m, "helo", name), nil
}
func (b scriptMilter) MailFrom(from, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	return b.s.record(m, "mail", "<"+from+">", args), nil
}
func (b scriptMilter) RcptTo(to, args string, m gomilter.Modifier) (*gomilter.Response, error) {
	return b.s.record(m, "rcpt", "<"+to+">", args), nil
}
func (b scriptMilter) Data(m gomilter.Modifier) (*gomilter.Response, error) {
	return b.s.record(m, "data"), nil
}
func (b scriptMilter) Header(name, value string, m gomilter.Modifier) (*gomilter.Response, error) {
	b.s.mu.Lock()
	b.s.headers = append(b.s.headers, name+":"+value)
	b.s.mu.Unlock()
	return b.s.record(m, "header", name), nil
}
func (b scriptMilter) Headers(m gomilter.Modifier) (*gomilter.Response, error) {
	return b.s.record(m, "eoh"), nil
}
func (b scriptMilter) BodyChunk(chunk []byte, m gomilter.Modifier) (*gomilter.Response, error) {
	b.s.mu.Lock()
	b.s.body.Write(chunk)
	b.s.mu.Unlock()
	return b.s.record(m, "body", len(chunk)), nil
}
func (b scriptMilter) EndOfMessage(m gomilter.Modifier) (*gomilter.Response, error) {
	r := b.s.record(m, "eom")
	if b.s.eom != nil {
		if err := b.s.eom(m); err != nil {
			return nil, err
		}
	}
	if r == gomilter.RespContinue {
		r = gomilter.RespAccept
	}
	return r, nil
}
func (b scriptMilter) Abort(m gomilter.Modifier) error {
	b.s.record(m, "abort")
	return nil
}

// startScript serves a script on loopback (or the unix socket path
// given) and returns its address for Config.Address.
func startScript(t testing.TB, s *script, opts ...gomilter.Option) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveScript(t, ln, s, opts...)
}

func serveScript(t testing.TB, ln net.Listener, s *script, opts ...gomilter.Option) string {
	t.Helper()
	opts = append([]gomilter.Option{
		gomilter.WithMilter(func() gomilter.Milter { return scriptMilter{s: s} }),
		gomilter.WithActions(gomilter.AllClientSupportedActionMasks &^ gomilter.OptSetMacros),
	}, opts...)
	srv := gomilter.NewServer(opts...)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	if ln.Addr().Network() == "unix" {
		return "unix:" + ln.Addr().String()
	}
	return "tcp:" + ln.Addr().String()
}

// logBuffer collects log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newClient returns a client for the configs with a log to look at.
func newClient(t *testing.T, cfgs ...Config) (*Client, *logBuffer) {
	t.Helper()
	var log logBuffer
	c, err := New(cfgs, Options{Hostname: "mx.postoffice.test", Version: "postoffice test",
		Logger: slog.New(slog.NewTextHandler(&log, nil)), TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return c, &log
}

var testConn = Conn{
	Service:    ServiceSMTP,
	Local:      netip.MustParseAddrPort("192.0.2.25:25"),
	Remote:     netip.MustParseAddrPort("198.51.100.7:40123"),
	RemoteName: "client.example.net",
	PTR:        "client.example.net",
}

const testMessage = "Received: from client.example.net by mx.postoffice.test\r\n" +
	"From: Alice <alice@example.net>\r\n" +
	"To: bob@example.org\r\n" +
	"Subject: hello\r\n" +
	"X-Folded: first\r\n\tsecond\r\n" +
	"X-Remove: this one\r\n" +
	"\r\n" +
	"Hello Bob.\r\n" +
	"\r\n" +
	"Bye.\r\n"

// transaction runs a session up to the recipients, one per rcpts,
// failing the test on any refusal; End sends DATA if Data was not called.
func transaction(t *testing.T, ctx context.Context, s *Session, rcpts ...string) *Transaction {
	t.Helper()
	if v := s.Connect(ctx); v.Refused() {
		t.Fatalf("connect: %+v", v)
	}
	if v := s.Helo(ctx, "client.example.net"); v.Refused() {
		t.Fatalf("helo: %+v", v)
	}
	return transactionFrom(t, ctx, s, "alice@example.net", rcpts...)
}

// transactionFrom starts a transaction in a session that has greeted.
func transactionFrom(t *testing.T, ctx context.Context, s *Session, from string, rcpts ...string) *Transaction {
	t.Helper()
	tx, v := s.Mail(ctx, from, []string{"BODY=8BITMIME"}, "Q1")
	if v.Refused() || tx == nil {
		t.Fatalf("mail: %+v", v)
	}
	for _, r := range rcpts {
		if v := tx.Rcpt(ctx, r, nil); v.Refused() {
			t.Fatalf("rcpt %s: %+v", r, v)
		}
	}
	return tx
}

func end(t *testing.T, ctx context.Context, tx *Transaction, msg string) *Result {
	t.Helper()
	res, err := tx.End(ctx, strings.NewReader(msg), int64(len(msg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Close() })
	return res
}

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
