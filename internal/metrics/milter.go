package metrics

// MilterVerdict counts one answer of a milter (milter.Options.Observe).
func (m *Metrics) MilterVerdict(milter, action string) {
	if m == nil {
		return
	}
	m.milterVerdicts.WithLabelValues(milter, action).Inc()
}
