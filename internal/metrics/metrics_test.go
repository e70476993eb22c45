package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// scrape returns the exposition text of m.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func wantLines(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, "\n"+l+"\n") {
			t.Errorf("metrics lack %q", l)
		}
	}
}

func TestJournalCounts(t *testing.T) {
	m := New("v1", func(context.Context) (int, error) { return 7, nil })
	t0 := time.Unix(1700000000, 0)
	m.Journal([]store.JournalEntry{
		{Event: store.EventReceived, Size: 1000, Time: t0},
		{Event: store.EventDelivered, Time: t0.Add(40 * time.Millisecond)},
		{Event: store.EventDelivered, Time: t0.Add(60 * time.Millisecond)},
		{Event: store.EventQueued, Time: t0.Add(60 * time.Millisecond)},
	})
	m.Journal([]store.JournalEntry{{Event: store.EventRetrieved, Size: 1100}, {Event: store.EventDeleted, Size: 1100}})
	wantLines(t, scrape(t, m),
		`postoffice_messages_total{event="received"} 1`,
		`postoffice_messages_total{event="delivered"} 2`,
		`postoffice_messages_total{event="queued"} 1`,
		`postoffice_messages_total{event="retrieved"} 1`,
		`postoffice_messages_total{event="deleted"} 1`,
		`postoffice_messages_total{event="bounced"} 0`,
		`postoffice_received_bytes_total 1000`,
		`postoffice_retrieved_bytes_total 1100`,
		// Two local deliveries measured from the receipt: 40ms and 60ms.
		`postoffice_delivery_duration_seconds_count{kind="local"} 2`,
		`postoffice_delivery_duration_seconds_bucket{kind="local",le="0.05"} 1`,
		`postoffice_delivery_duration_seconds_bucket{kind="local",le="0.1"} 2`,
		`postoffice_queue_messages 7`,
		`postoffice_build_info{version="v1"} 1`,
	)
}

func TestSessionsAndLogins(t *testing.T) {
	m := New("v1", nil)
	done := m.SessionOpened("pop3")
	m.SessionOpened("pop3")
	done()
	m.Login("smtp", true)
	m.Login("smtp", false)
	m.Login("smtp", false)
	m.SessionRefused("smtp", "per_ip")
	m.ServiceUp("pop3", true)
	m.ServiceUp("smtp", true)
	m.ServiceUp("pop3", false)
	body := scrape(t, m)
	wantLines(t, body,
		`postoffice_sessions{protocol="pop3"} 1`,
		`postoffice_sessions_total{protocol="pop3"} 2`,
		`postoffice_logins_total{protocol="smtp",result="ok"} 1`,
		`postoffice_logins_total{protocol="smtp",result="failed"} 2`,
		`postoffice_logins_total{protocol="admin",result="ok"} 0`,
		`postoffice_sessions_refused_total{limit="per_ip",protocol="smtp"} 1`,
		`postoffice_service_up{service="pop3"} 0`,
		`postoffice_service_up{service="smtp"} 1`,
	)
	if strings.Contains(body, "postoffice_queue_messages") {
		t.Error("queue size reported without a source")
	}
	// A nil Metrics (a command without a server) counts nothing, safely.
	var none *Metrics
	none.Login("pop3", true)
	none.SessionOpened("pop3")()
	none.Journal([]store.JournalEntry{{Event: store.EventReceived}})
}

func TestCertificates(t *testing.T) {
	m := New("v1", nil)
	exp := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	m.Certificate("mail.example.com", exp, false)
	m.Certificate("mta-sts.example.com", time.Time{}, true)
	m.Certificate("mta-sts.example.com", time.Time{}, true)
	m.Certificate("autoconfig.example.com", exp, false)
	m.ForgetCertificate("autoconfig.example.com")
	body := scrape(t, m)
	wantLines(t, body,
		`postoffice_certificate_expiry_timestamp_seconds{name="mail.example.com"} `+strconv.FormatFloat(float64(exp.Unix()), 'g', -1, 64),
		`postoffice_certificate_renewal_failures_total{name="mail.example.com"} 0`,
		`postoffice_certificate_renewal_failures_total{name="mta-sts.example.com"} 2`,
	)
	for _, absent := range []string{`postoffice_certificate_expiry_timestamp_seconds{name="mta-sts.example.com"}`, `name="autoconfig.example.com"`} {
		if strings.Contains(body, absent) {
			t.Errorf("%s in the metrics:\n%s", absent, body)
		}
	}
	var none *Metrics
	none.Certificate("x", exp, true)
	none.ForgetCertificate("x")
}
