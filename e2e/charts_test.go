package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// eval runs a script in the page and decodes its JSON result into v.
func (b *browser) eval(js string, v any) {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`JSON.stringify(`+js+`)`))
	if err != nil {
		b.t.Fatalf("eval %s: %v", js, err)
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		b.t.Fatalf("eval %s: %v (%s)", js, err, s)
	}
}

// chartValues reads each chart of the dashboard: id -> the values of its
// bars, "" for a period without data.
func (b *browser) chartValues() map[string][]string {
	b.t.Helper()
	var got map[string][]string
	b.eval(`Object.fromEntries([...document.querySelectorAll("figure.chart")].map(f =>
		[f.id.replace("chart-", ""), [...f.querySelectorAll("rect")].map(r => r.dataset.value)]))`, &got)
	return got
}

type journalLine struct {
	Time  time.Time `json:"time"`
	Event string    `json:"event"`
}

// TestConsoleCharts: the dashboard's charts show, per hour over 24 hours
// and per day over 30 days, exactly what the mail journal (read with
// postoffice journal --json) counts of received, delivered, retrieved,
// bounced and deferred mail, and the logins, failed logins and queue size
// this test caused.
func TestConsoleCharts(t *testing.T) {
	chromium(t)
	// A peer for bounce.test that refuses reject@ (a bounce) and takes the
	// rest (forwarded); remote.test has no DNS (deferred, kept queued).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sink := startSink(t, l, nil)
	sink.rcpt = func(to string) error {
		if strings.HasPrefix(to, "reject@") {
			return smtpreply.New(550, "5.1.1", "No such mailbox")
		}
		return nil
	}
	in := newInstanceWith(t, map[string]string{"queue": fmt.Sprintf("retry_initial = 3600\npoll_interval = 1\n[queue.routes]\n\"bounce.test\" = %q", l.Addr().String())})
	in.must("correct horse\n", "admin", "add", "ops", "--password-stdin")
	in.addUser("alice@example.org", "pw")
	in.addUser("bob@example.org", "pw")
	in.deliver("alice@example.org", "Message-ID: <c1@example.org>\r\nSubject: one\r\n\r\nhi\r\n")
	in.deliver("alice@example.org", "Message-ID: <c2@example.org>\r\nSubject: two\r\n\r\nhi\r\n")
	in.start()
	submitQueued(t, in.addr("submission"), "bob@example.org", "pw", "friend@remote.test")
	submit(t, in, "bob@example.org", "pw", []string{"reject@bounce.test", "ok@bounce.test"},
		"From: bob@example.org\r\nSubject: to the peer\r\nMessage-ID: <c3@example.org>\r\n\r\nhello\r\n")
	// POP3: alice retrieves and deletes one; bob types a wrong password.
	p := dialPOP(t, in.addr("pop3"))
	p.login("alice@example.org", "pw")
	p.multi("RETR 1")
	p.cmd("DELE 1")
	p.quit()
	p = dialPOP(t, in.addr("pop3"))
	p.cmd("USER bob@example.org")
	if r := p.cmd("PASS wrong"); !strings.HasPrefix(r, "-ERR") {
		t.Fatalf("wrong password: %q", r)
	}
	p.cmd("QUIT")
	// Wait until the queue has tried both and the journal has it all.
	journal := func() []journalLine {
		var out []journalLine
		for _, line := range strings.Split(strings.TrimSpace(in.must("", "journal", "--json", "--limit", "10000")), "\n") {
			var j journalLine
			if err := json.Unmarshal([]byte(line), &j); err != nil {
				t.Fatalf("journal --json: %v: %q", err, line)
			}
			out = append(out, j)
		}
		return out
	}
	count := func(js []journalLine, ev string) (n int) {
		for _, j := range js {
			if j.Event == ev {
				n++
			}
		}
		return n
	}
	opsWait(t, "a deferral, a bounce and a forward in the journal", func() bool {
		js := journal()
		return count(js, "deferred") >= 1 && count(js, "bounced") >= 1 && count(js, "forwarded") >= 1 && count(js, "deleted") >= 1
	})

	b := newBrowser(t, "http://"+in.addr("admin"))
	b.open("/login")
	b.submit(chromedp.SendKeys(chromedp.CSS("#name"), "ops"), chromedp.SendKeys(chromedp.CSS("#password"), "correct horse\n"))

	for _, rng := range []struct {
		query, shot string
		periods     int
		bucket      func(now, t time.Time) int
	}{
		{"24h", "dashboard", 24, func(now, t time.Time) int {
			return 23 - int(now.Truncate(time.Hour).Sub(t.Truncate(time.Hour))/time.Hour)
		}},
		{"30d", "dashboard-30-days", 30, func(now, t time.Time) int {
			day := func(x time.Time) time.Time {
				y, m, d := x.Local().Date()
				return time.Date(y, m, d, 0, 0, 0, 0, time.Local)
			}
			return 29 - int(day(now).Sub(day(t)).Hours()/24+0.5)
		}},
	} {
		var got map[string][]string
		var js []journalLine
		var now time.Time
		// The page and the journal read in the same hour.
		for {
			now = time.Now()
			b.open("/?range=" + rng.query)
			got = b.chartValues()
			js = journal()
			if time.Now().Truncate(time.Hour).Equal(now.Truncate(time.Hour)) {
				break
			}
		}
		for _, ev := range []string{"received", "delivered", "retrieved", "bounced", "deferred"} {
			want := make([]int, rng.periods)
			for _, j := range js {
				if i := rng.bucket(now, j.Time); j.Event == ev && i >= 0 && i < rng.periods {
					want[i]++
				}
			}
			if len(got[ev]) != rng.periods {
				t.Errorf("%s: chart %s has %d bars, want %d", rng.query, ev, len(got[ev]), rng.periods)
				continue
			}
			for i := range want {
				if got[ev][i] != fmt.Sprint(want[i]) {
					t.Errorf("%s: chart %s, period %d: %q, the journal counts %d", rng.query, ev, i, got[ev][i], want[i])
				}
			}
			if count(js, ev) == 0 {
				t.Errorf("the test made no %s event: the chart proves nothing", ev)
			}
		}
		// From the server's memory: this hour (or today) only; earlier
		// periods have no data (the server was not running).
		last := rng.periods - 1
		queued := len(in.queueIDs())
		for id, want := range map[string]string{"logins": "3", "failed-logins": "1", "queue": fmt.Sprint(queued)} {
			bars := got[id]
			if len(bars) != rng.periods || bars[last] != want || (rng.periods == 24 && bars[0] != "") {
				t.Errorf("%s: chart %s = %q, want %s in the last period and nothing known before the start", rng.query, id, bars, want)
			}
		}
		if queued == 0 {
			t.Error("nothing queued: the queue chart proves nothing")
		}
		b.screenshot(rng.shot)
	}

	// The journal page: a Message-ID finds its copy's retrieval and
	// deletion too.
	b.open("/journal?q=c1%40example.org")
	if body := b.text("#journal"); !strings.Contains(body, "retrieved") || !strings.Contains(body, "deleted") || !strings.Contains(body, "delivered") {
		t.Errorf("journal search for the Message-ID:\n%s", body)
	}
	b.screenshot("journal-message-id")
}
