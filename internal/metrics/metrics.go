// Package metrics holds postoffice's Prometheus metrics. One Metrics value
// per process is shared by the services that count (sessions, logins) and
// fed the mail journal's entries (messages and bytes); the web console
// serves it on /metrics.
package metrics

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postoffice-mail/postoffice/internal/store"
)

// Metrics is the set of postoffice metrics and their registry.
type Metrics struct {
	reg *prometheus.Registry

	sessions        *prometheus.GaugeVec
	sessionsTotal   *prometheus.CounterVec
	sessionsRefused *prometheus.CounterVec
	logins          *prometheus.CounterVec
	messages        *prometheus.CounterVec
	receivedBytes   prometheus.Counter
	retrievedBytes  prometheus.Counter
	deliveryLatency *prometheus.HistogramVec
	serviceUp       *prometheus.GaugeVec
	certExpiry      *prometheus.GaugeVec
	certFailures    *prometheus.CounterVec
	dkimSigned      *prometheus.CounterVec
	auth            authChecks
	milterVerdicts  *prometheus.CounterVec

	hourly *hourly // logins and queue size per hour, for the console
}

// New creates the metrics. queueSize, if not nil, is called at each scrape
// for the number of messages in the outbound queue.
func New(version string, queueSize func(context.Context) (int, error)) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), hourly: newHourly(time.Now())}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.sessions = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "postoffice_sessions", Help: "Open client sessions by protocol.",
	}, []string{"protocol"})
	m.sessionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_sessions_total", Help: "Client sessions accepted by protocol.",
	}, []string{"protocol"})
	m.sessionsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_sessions_refused_total", Help: "Client connections refused by a session limit.",
	}, []string{"protocol", "limit"})
	m.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_logins_total", Help: "Authentication attempts by protocol and result (ok, failed).",
	}, []string{"protocol", "result"})
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_messages_total",
		Help: "Message events of the mail journal: received, delivered, queued, forwarded, deferred, bounced, retrieved, deleted, expired, rejected.",
	}, []string{"event"})
	m.receivedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "postoffice_received_bytes_total", Help: "Octets of messages received (all doors).",
	})
	m.retrievedBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "postoffice_retrieved_bytes_total", Help: "Octets of messages retrieved by POP3 clients (RETR).",
	})
	m.deliveryLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "postoffice_delivery_duration_seconds",
		Help:    "Time from receipt to delivery: into a local mailbox, or to the remote host for forwarded mail.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	}, []string{"kind"})
	m.serviceUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "postoffice_service_up", Help: "1 when the service is running, 0 when stopped.",
	}, []string{"service"})
	m.certExpiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "postoffice_certificate_expiry_timestamp_seconds",
		Help: "When the ACME certificate served for a name expires (Unix time); absent while the name has none.",
	}, []string{"name"})
	m.certFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_certificate_renewal_failures_total",
		Help: "Failed attempts to obtain or renew the ACME certificate of a name, as this process saw them (by any node of a cluster).",
	}, []string{"name"})
	m.dkimSigned = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_dkim_signed_total",
		Help: "Messages DKIM-signed for a domain with keys, by domain and result: ok (signed), failed (sent unsigned).",
	}, []string{"domain", "result"})
	for _, c := range []prometheus.Collector{m.sessions, m.sessionsTotal, m.sessionsRefused, m.logins, m.messages,
		m.receivedBytes, m.retrievedBytes, m.deliveryLatency, m.serviceUp, m.certExpiry, m.certFailures, m.dkimSigned} {
		f(c)
	}
	m.auth = newAuthChecks(f)
	for _, ev := range store.JournalEvents {
		m.messages.WithLabelValues(string(ev))
	}
	for _, p := range []string{"pop3", "smtp", "submission"} {
		m.sessions.WithLabelValues(p)
		m.sessionsTotal.WithLabelValues(p)
	}
	for _, p := range []string{"pop3", "smtp", "admin"} {
		m.logins.WithLabelValues(p, "ok")
		m.logins.WithLabelValues(p, "failed")
	}
	m.milterVerdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "postoffice_milter_verdicts_total",
		Help: "Milters' answers other than continue at each SMTP event (accept, reject, tempfail, discard; error for a milter that could not be asked), and continue or quarantine for each message a milter let through, by milter name and action.",
	}, []string{"milter", "action"})
	f(m.milterVerdicts)
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "postoffice_build_info", Help: "Always 1; the version label names the build.",
		ConstLabels: prometheus.Labels{"version": version},
	}, func() float64 { return 1 }))
	if queueSize != nil {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "postoffice_queue_messages", Help: "Messages in the outbound queue.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n, err := queueSize(ctx)
			if err != nil {
				return -1
			}
			return float64(n)
		}))
	}
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Registry is the registry of the metrics (tests gather from it).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// SessionOpened counts a session of protocol ("pop3", "smtp",
// "submission") and returns the function that ends it.
func (m *Metrics) SessionOpened(protocol string) (closed func()) {
	if m == nil {
		return func() {}
	}
	m.sessionsTotal.WithLabelValues(protocol).Inc()
	g := m.sessions.WithLabelValues(protocol)
	g.Inc()
	return g.Dec
}

// SessionRefused counts a connection refused by a limit ("total",
// "per_ip").
func (m *Metrics) SessionRefused(protocol, limit string) {
	if m != nil {
		m.sessionsRefused.WithLabelValues(protocol, limit).Inc()
	}
}

// Login counts an authentication attempt.
func (m *Metrics) Login(protocol string, ok bool) {
	if m == nil {
		return
	}
	result := "failed"
	if ok {
		result = "ok"
	}
	m.logins.WithLabelValues(protocol, result).Inc()
	if protocol != "admin" {
		m.LoginAt(time.Now(), ok)
	}
}

// ServiceUp records whether a service runs.
func (m *Metrics) ServiceUp(service string, up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.serviceUp.WithLabelValues(service).Set(v)
}

// Certificate records the ACME certificate of a name: when the one served
// expires (zero: none), and whether a new failure to obtain it happened.
// A name with a counter gets it from its first status on, at 0, so that a
// rate over it works from the first failure.
func (m *Metrics) Certificate(name string, notAfter time.Time, failed bool) {
	if m == nil {
		return
	}
	if notAfter.IsZero() {
		m.certExpiry.DeleteLabelValues(name)
	} else {
		m.certExpiry.WithLabelValues(name).Set(float64(notAfter.Unix()))
	}
	c := m.certFailures.WithLabelValues(name)
	if failed {
		c.Inc()
	}
}

// DKIMSigned counts a message that the author's domain's keys signed
// (ok) or failed to sign (it went unsigned). Both results of a domain
// appear together, so that a rate over failures works from the first.
func (m *Metrics) DKIMSigned(domain string, ok bool) {
	if m == nil {
		return
	}
	okc, failed := m.dkimSigned.WithLabelValues(domain, "ok"), m.dkimSigned.WithLabelValues(domain, "failed")
	if ok {
		okc.Inc()
	} else {
		failed.Inc()
	}
}

// ForgetCertificate drops the metrics of a name no longer covered (its
// domain was deleted, ACME switched off).
func (m *Metrics) ForgetCertificate(name string) {
	if m == nil {
		return
	}
	m.certExpiry.DeleteLabelValues(name)
	m.certFailures.DeleteLabelValues(name)
}

// Journal counts a batch of journal entries: one message event each, and
// the bytes of received and retrieved messages. In a batch from the router
// the received entry comes first, and the delivered entries' time minus
// its time is the local delivery latency.
func (m *Metrics) Journal(entries []store.JournalEntry) {
	if m == nil {
		return
	}
	var received time.Time
	for _, e := range entries {
		m.messages.WithLabelValues(string(e.Event)).Inc()
		switch e.Event {
		case store.EventReceived:
			m.receivedBytes.Add(float64(e.Size))
			received = e.Time
		case store.EventRetrieved:
			m.retrievedBytes.Add(float64(e.Size))
		case store.EventDelivered:
			if !received.IsZero() && !e.Time.Before(received) {
				m.deliveryLatency.WithLabelValues("local").Observe(e.Time.Sub(received).Seconds())
			}
		}
	}
}
