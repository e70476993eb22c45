package metrics

import "github.com/prometheus/client_golang/prometheus"

// authChecks counts the checks of mail arriving at the MX (SPF, DKIM,
// DMARC) and what was done with the messages.
type authChecks struct {
	results *prometheus.CounterVec
	actions *prometheus.CounterVec
}

// The methods and the actions, created at 0 so that a rate over them
// works from the first message.
var (
	authMethods = []string{"spf", "dkim", "dmarc"}
	authActions = []string{"accept", "quarantine", "reject", "tempfail"}
)

func newAuthChecks(register func(prometheus.Collector)) authChecks {
	a := authChecks{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postoffice_auth_check_results_total",
			Help: "Results of the checks of mail arriving at the MX by method (spf, dkim, dmarc) and result (RFC 8601: pass, fail, softfail, neutral, none, temperror, permerror, policy); dkim counts each signature, and none for an unsigned message.",
		}, []string{"method", "result"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "postoffice_auth_check_actions_total",
			Help: "What the checks of mail arriving at the MX did with it: accept, quarantine (delivered marked X-Spam: yes), reject (550 5.7.1 by DMARC policy), tempfail (451 4.4.3: a DNS failure where DMARC would reject).",
		}, []string{"action"}),
	}
	register(a.results)
	register(a.actions)
	for _, m := range authMethods {
		for _, r := range []string{"pass", "fail", "none"} {
			a.results.WithLabelValues(m, r)
		}
	}
	for _, x := range authActions {
		a.actions.WithLabelValues(x)
	}
	return a
}

// AuthCheck counts one result of a check of incoming mail: method is spf,
// dkim or dmarc, result as Authentication-Results spells it.
func (m *Metrics) AuthCheck(method, result string) {
	if m != nil {
		m.auth.results.WithLabelValues(method, result).Inc()
	}
}

// AuthAction counts what the checks did with a message: accept,
// quarantine, reject or tempfail.
func (m *Metrics) AuthAction(action string) {
	if m != nil {
		m.auth.actions.WithLabelValues(action).Inc()
	}
}
