package router

import (
	"bytes"
	"context"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// bouncer is the built-in non-delivery step: a delivery status
// notification (RFC 3464) to the envelope sender, routed like any message.
type bouncer struct {
	r *Router
}

func (b *bouncer) NonDelivery(ctx context.Context, m *Message, failed []*Recipient) error {
	if m.Env.From == "" {
		// RFC 5321 section 4.5.5 / RFC 3464 section 2: never a bounce to
		// the null sender (that is how bounce loops are avoided). The
		// failure is logged so it is not silent.
		for _, rc := range failed {
			b.r.log.Warn("undeliverable message with null sender dropped", "id", m.Env.ID, "rcpt", rc.Address, "err", rc.Err)
		}
		return nil
	}
	rep := dsn.Report{
		ReportingMTA:   b.r.opt.Hostname,
		To:             m.Env.From,
		ID:             m.Env.ID,
		Arrival:        m.Env.Received,
		OriginalHeader: m.Header.Raw,
		Date:           b.r.opt.Now(),
	}
	for _, rc := range failed {
		status, diag := "5.0.0", rc.Err.Error()
		if r, ok := smtpreply.As(rc.Err); ok {
			diag = r.Error()
			if !r.Status.IsZero() {
				status = r.Status.String()
			}
			if r.Status.Class == 4 {
				// Reported as failed: there is no retry after acceptance
				// for local delivery problems.
				status = "5" + status[1:]
			}
		}
		orig := ""
		if rc.Original != rc.Address {
			orig = rc.Original
		}
		rep.Recipients = append(rep.Recipients, dsn.Recipient{
			Original: orig, Final: rc.Address, Action: dsn.Failed, Status: status, Diagnostic: diag,
		})
	}
	env := &Envelope{From: "", To: []string{m.Env.From}, Protocol: "local", Source: "bounce"}
	err := b.r.Route(ctx, env, bytes.NewReader(dsn.Build(rep)))
	if err == nil {
		b.r.log.Info("bounce sent", "id", m.Env.ID, "bounce_id", env.ID, "to", m.Env.From, "failed", len(failed))
	}
	return err
}
