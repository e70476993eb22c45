package router

import (
	"bytes"
	"context"
	"io"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
)

// bouncer is the built-in non-delivery step: a delivery status
// notification (RFC 3464) to the envelope sender, routed like any message,
// for the failed recipients that did not ask for none (RFC 3461 section
// 4.1: NOTIFY=NEVER, or a list without FAILURE).
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
	var rcpts []dsn.Recipient
	for _, rc := range failed {
		if !rc.DSN.Wants(dsn.NotifyFailure) {
			b.r.log.Info("undeliverable, no notification asked for", "id", m.Env.ID, "rcpt", rc.Address, "notify", rc.DSN.NotifyString(), "err", rc.Err)
			continue
		}
		d := dsnRecipient(rc, dsn.Failed)
		d.Status = "5.0.0"
		if r, ok := smtpreply.As(rc.Err); ok {
			d.Reply = r
			if !r.Status.IsZero() {
				d.Status = r.Status.String()
			}
			if r.Status.Class == 4 {
				// Reported as failed: there is no retry after acceptance
				// for local delivery problems.
				d.Status = "5" + d.Status[1:]
			}
		} else {
			d.Detail = rc.Err.Error()
		}
		rcpts = append(rcpts, d)
	}
	return b.r.notify(ctx, m, rcpts)
}

// notifySuccess sends the "delivered" notification (RFC 3461 section
// 5.2.3, RFC 3464 section 2.3.3) for the local recipients that asked for
// one with NOTIFY=SUCCESS (section 4.1). The message is in their mailboxes
// already: a failure to notify is logged, not returned.
func (r *Router) notifySuccess(ctx context.Context, m *Message) {
	if m.Env.From == "" {
		return
	}
	var rcpts []dsn.Recipient
	for _, rc := range m.Recipients {
		if rc.Local() && rc.Err == nil && rc.DSN.Wants(dsn.NotifySuccess) {
			d := dsnRecipient(rc, dsn.Delivered)
			d.Status = "2.0.0"
			rcpts = append(rcpts, d)
		}
	}
	if err := r.notify(ctx, m, rcpts); err != nil {
		r.log.Error("sending the success notification failed", "id", m.Env.ID, "to", m.Env.From, "err", err)
	}
}

// dsnRecipient is the report block of rc: its original recipient is the
// ORCPT the client gave, or the envelope recipient an alias expanded.
func dsnRecipient(rc *Recipient, action string) dsn.Recipient {
	d := dsn.Recipient{Final: rc.Address, Action: action}
	switch {
	case rc.DSN.ORcpt != "":
		d.Original, d.OriginalType = rc.DSN.ORcpt, rc.DSN.ORcptType
	case rc.Original != rc.Address:
		d.Original = rc.Original
	}
	return d
}

// notify routes a notification about m to its sender, from the null
// sender: the header section of m, or all of it for a failure when
// RET=FULL asked for it (RFC 3461 section 4.3), its ENVID, the
// recipients' blocks (all with the same action).
func (r *Router) notify(ctx context.Context, m *Message, rcpts []dsn.Recipient) error {
	if len(rcpts) == 0 {
		return nil
	}
	rep := dsn.Report{
		ReportingMTA:   r.opt.Hostname,
		To:             m.Env.From,
		ID:             m.Env.ID,
		EnvID:          m.Env.EnvID,
		Arrival:        m.Env.Received,
		OriginalHeader: m.Header.Raw,
		Recipients:     rcpts,
		Date:           r.opt.Now(),
	}
	if dsn.ReturnsFull(m.Env.Ret, m.Body.Size(), rcpts[0].Action) {
		full, err := io.ReadAll(m.Body.Open())
		if err != nil {
			return err
		}
		rep.Original = full
	}
	env := &Envelope{From: "", To: []string{m.Env.From}, Protocol: "local", Source: "bounce"}
	err := r.Route(ctx, env, bytes.NewReader(dsn.Build(rep)))
	if err == nil {
		r.log.Info("notification sent", "id", m.Env.ID, "notification_id", env.ID, "to", m.Env.From, "action", rcpts[0].Action, "recipients", len(rcpts))
	}
	return err
}
