package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"strings"
	"sync"
	"testing"

	gomilter "github.com/d--j/go-milter"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// wiringMilter adds a field and, for a subject of "spam" (tagged or not),
// quarantines.
type wiringMilter struct {
	gomilter.NoOpMilter
	subject string
}

func (m *wiringMilter) Header(name, value string, _ gomilter.Modifier) (*gomilter.Response, error) {
	if strings.EqualFold(name, "Subject") {
		m.subject = strings.TrimSpace(value)
	}
	return gomilter.RespContinue, nil
}

func (m *wiringMilter) EndOfMessage(mod gomilter.Modifier) (*gomilter.Response, error) {
	if err := mod.AddHeader("X-Wiring-Milter", "seen"); err != nil {
		return nil, err
	}
	if m.subject == "spam" || m.subject == "[SPAM] spam" {
		if err := mod.Quarantine("test"); err != nil {
			return nil, err
		}
	}
	return gomilter.RespAccept, nil
}

// wiringTables starts a wiringMilter server on loopback and returns the
// [spam] table (subject tag "[SPAM]") and the [[milter]] table using it.
func wiringTables(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ms := gomilter.NewServer(
		gomilter.WithMilter(func() gomilter.Milter { return &wiringMilter{} }),
		gomilter.WithActions(gomilter.OptAddHeader|gomilter.OptQuarantine))
	go ms.Serve(ln)
	t.Cleanup(func() { ms.Close() })
	return "[spam]\nsubject_tag = \"[SPAM]\"\n[[milter]]\nname = \"w\"\naddress = \"tcp:" + ln.Addr().String() + "\"\n"
}

// The smtp service with a [[milter]]: several sessions at once (for
// -race), each message through the milter and into the mailbox with the
// milter's field, the quarantined ones marked X-Spam: yes with the
// subject tag.
func TestMilterWiring(t *testing.T) {
	ts := newTestServer(t, wiringTables(t))
	u := ts.addUser("bob@example.org", "pw")
	addr := ts.srv.Addrs("smtp")[0].String()
	var wg sync.WaitGroup
	for i := range 6 {
		subject := "ham"
		if i%2 == 0 {
			subject = "spam"
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := "From: a@example.net\r\nTo: bob@example.org\r\nSubject: " + subject + "\r\n\r\nHello.\r\n"
			if err := sendPlain(addr, msg); err != nil {
				t.Errorf("send: %v", err)
			}
		}()
	}
	wg.Wait()
	ctx := context.Background()
	list, err := ts.st.List(ctx, u.ID, 0)
	if err != nil || len(list) != 6 {
		t.Fatalf("%d messages (%v), want 6", len(list), err)
	}
	spam := 0
	for _, mi := range list {
		rc, err := ts.st.Open(ctx, u.ID, mi.UID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		m := string(b)
		if !strings.Contains(m, "X-Wiring-Milter: seen\r\n") {
			t.Errorf("the milter's field is missing:\n%s", m)
		}
		if strings.Contains(m, "Subject: [SPAM] spam\r\n") {
			spam++
			if !strings.Contains(m, "X-Spam: yes\r\n") {
				t.Errorf("quarantined but not marked:\n%s", m)
			}
		} else if strings.Contains(m, "X-Spam") {
			t.Errorf("ham marked:\n%s", m)
		}
	}
	if spam != 3 {
		t.Errorf("%d messages marked, want 3", spam)
	}
}

// TestMilterAfterDMARCQuarantine: mail that DMARC says to quarantine
// (the From domain's p=quarantine, nothing aligned) and that the milter
// quarantines too is marked once: one X-Spam field, the subject tagged
// once; mail the milter lets through is marked by DMARC alone.
func TestMilterAfterDMARCQuarantine(t *testing.T) {
	tables := wiringTables(t)
	dns := testlib.StartDNS(t, `_dmarc.example.net. 60 IN TXT "v=DMARC1; p=quarantine"`)

	ts := newTestServer(t, "[auth_checks]\nenabled = true\n"+tables, fmt.Sprintf("dns_server = %q", dns.Addr))
	u := ts.addUser("bob@example.org", "pw")
	addr := ts.srv.Addrs("smtp")[0].String()
	for _, subject := range []string{"spam", "ham"} {
		if err := sendPlain(addr, "From: a@example.net\r\nTo: bob@example.org\r\nSubject: "+subject+"\r\n\r\nHello.\r\n"); err != nil {
			t.Fatalf("send %s: %v", subject, err)
		}
	}
	ctx := context.Background()
	list, err := ts.st.List(ctx, u.ID, 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("%d messages (%v), want 2", len(list), err)
	}
	for i, subject := range []string{"spam", "ham"} {
		rc, err := ts.st.Open(ctx, u.ID, list[i].UID)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		m := string(b)
		if strings.Count(m, "X-Spam: yes\r\n") != 1 || !strings.Contains(m, "\r\nSubject: [SPAM] "+subject+"\r\n") ||
			!strings.Contains(m, "dmarc=fail") || !strings.Contains(m, "X-Wiring-Milter: seen\r\n") {
			t.Errorf("%s: not marked once by DMARC and the milter:\n%s", subject, m)
		}
	}
}

// sendPlain sends msg to bob@example.org without STARTTLS (the server's
// certificate is self-signed).
func sendPlain(addr, msg string) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Mail("a@example.net"); err != nil {
		return err
	}
	if err := c.Rcpt("bob@example.org"); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(w, msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}
