package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/message"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// maxHeaderCopy bounds the original header section returned in a
// notification.
const maxHeaderCopy = 64 << 10

// msgInfo is what an attempt needs to know about a message's content,
// read once per attempt.
type msgInfo struct {
	id         int64
	size       int64
	eightBit   bool   // any octet above 127 (RFC 6152)
	utf8Header bool   // such an octet in the header section (RFC 6532)
	header     []byte // the header section, for notifications
	messageID  string
}

// inspect reads a queued message once to learn what the peer must
// support and to keep its header section.
func inspect(ctx context.Context, q store.Queue, m store.QueuedMessage) (*msgInfo, error) {
	rc, err := q.OpenQueued(ctx, m.ID)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	hr := &highBits{r: rc}
	h, err := message.ReadHeader(hr)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return nil, err
	}
	return &msgInfo{
		id:         m.ID,
		size:       m.Size,
		eightBit:   hr.seen,
		utf8Header: slices.ContainsFunc(h.Raw, func(c byte) bool { return c >= 0x80 }),
		header:     clipLines(h.Raw, maxHeaderCopy),
		messageID:  h.Get("Message-ID"),
	}, nil
}

// highBits reads through r and notes whether any octet was above 127.
type highBits struct {
	r    io.Reader
	seen bool
}

func (h *highBits) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	if !h.seen {
		for _, c := range p[:n] {
			if c >= 0x80 {
				h.seen = true
				break
			}
		}
	}
	return n, err
}

// clipLines returns the whole lines of b that fit in n octets.
func clipLines(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	return b[:bytes.LastIndexByte(b[:n], '\n')+1]
}

// report builds the notification of action (dsn.Failed, dsn.Delayed,
// dsn.Relayed) about some recipients of m: each one's remote reply as it
// came, or the reason in our own words; the message whole for a failure
// when RET=FULL asked for it (RFC 3461 section 4.3), else its header
// section; ENVID and each ORCPT (RFC 3464 sections 2.2.1 and 2.3.1).
func (r *Runner) report(ctx context.Context, m store.QueuedMessage, info *msgInfo, rcpts []store.QueueRecipient, action string, now time.Time) ([]byte, error) {
	rep := dsn.Report{
		ReportingMTA:   r.cfg.Hostname,
		To:             m.From,
		ID:             strconv.FormatInt(m.ID, 10),
		EnvID:          m.EnvID,
		Arrival:        m.CreatedAt,
		OriginalHeader: info.header,
		Date:           now,
	}
	if dsn.ReturnsFull(m.Ret, m.Size, action) {
		full, err := readQueued(ctx, r.cfg.Store, m.ID)
		if err != nil {
			return nil, err
		}
		rep.Original = full
	}
	for _, rc := range rcpts {
		d := dsn.Recipient{
			Original:     rc.DSN.ORcpt,
			OriginalType: rc.DSN.ORcptType,
			Final:        rc.Address,
			Action:       action,
			Status:       rc.Status,
			RemoteMTA:    rc.RemoteMTA,
			// RFC 3464 section 2.3.6: an SMTP reply is reported as it
			// came; any other reason (connection refused, null MX) in
			// our own words.
			Reply:   rc.Remote.Reply,
			Detail:  rc.LastError,
			LastTry: now,
		}
		if d.Status == "" {
			d.Status = "5.0.0"
		}
		if action == dsn.Delayed {
			d.RetryUntil = m.CreatedAt.Add(r.cfg.MaxLifetime)
		}
		rep.Recipients = append(rep.Recipients, d)
	}
	return dsn.Build(rep), nil
}

func readQueued(ctx context.Context, q store.Queue, id int64) ([]byte, error) {
	rc, err := q.OpenQueued(ctx, id)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// notify sends the sender one notification (RFC 3464) of action
// (dsn.Failed or dsn.Relayed) for the recipients and records that it
// did. A failure to send leaves them unnotified: the next attempt at the
// message tries again.
func (r *Runner) notify(ctx context.Context, log *slog.Logger, m store.QueuedMessage, info *msgInfo, action string, rcpts []store.QueueRecipient) {
	if len(rcpts) == 0 {
		return
	}
	msg, err := r.report(ctx, m, info, rcpts, action, r.cfg.Now())
	if err == nil {
		err = r.cfg.Bounce(ctx, m.From, msg)
	}
	switch {
	case errors.Is(err, ErrUndeliverable):
		log.Warn("the notification cannot be delivered either, dropped", "to", m.From, "action", action, "err", err)
	case err != nil:
		log.Error("sending a notification failed, will try again", "to", m.From, "action", action, "err", err)
		return
	default:
		log.Info("notification sent", "to", m.From, "action", action, "recipients", len(rcpts))
	}
	u := store.QueueUpdate{}
	for _, rc := range rcpts {
		rc.Notified = true
		u.Recipients = append(u.Recipients, rc)
	}
	if err := r.cfg.Store.UpdateQueued(ctx, m.ID, u); err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("recording the notification", "err", err)
	}
}

// warn sends the delayed-delivery warning (RFC 3464 action "delayed") for
// the recipients still waiting that did not decline it (RFC 3461 section
// 4.1); it reports whether the warning is done with (sent, or owed to
// none).
func (r *Runner) warn(ctx context.Context, log *slog.Logger, m store.QueuedMessage, info *msgInfo, deferred []store.QueueRecipient, now time.Time) bool {
	var rcpts []store.QueueRecipient
	for _, rc := range deferred {
		if rc.DSN.Wants(dsn.NotifyDelay) {
			rcpts = append(rcpts, rc)
		}
	}
	if len(rcpts) == 0 {
		return true
	}
	msg, err := r.report(ctx, m, info, rcpts, dsn.Delayed, now)
	if err == nil {
		err = r.cfg.Bounce(ctx, m.From, msg)
	}
	switch {
	case errors.Is(err, ErrUndeliverable):
		log.Warn("the delay warning cannot be delivered, dropped", "to", m.From, "err", err)
		return true
	case err != nil:
		log.Error("sending the delay warning failed", "to", m.From, "err", err)
		return false
	}
	log.Info("delay warning sent", "to", m.From, "waiting", len(rcpts))
	return true
}

// BounceDeleted sends the sender of a message an operator is deleting a
// notification that its pending recipients will not get it (RFC 3463
// X.0.0 with the reason given), with the failures it was still owed. It
// returns how many recipients it reported; none for the null sender or
// with nothing pending.
func BounceDeleted(ctx context.Context, q store.Queue, b Bouncer, hostname string, id int64, reason string) (int, error) {
	m, err := q.QueuedMessage(ctx, id)
	if err != nil {
		return 0, err
	}
	var rcpts []store.QueueRecipient
	for _, rc := range m.Recipients {
		if rc.State == store.QueuePending {
			rc.Status, rc.LastError, rc.Remote = "5.0.0", reason, store.RemoteReply{}
			rc.State = store.QueueFailed
		}
		if owed(m.From, rc) == dsn.Failed {
			rcpts = append(rcpts, rc)
		}
	}
	if len(rcpts) == 0 {
		return 0, nil
	}
	info, err := inspect(ctx, q, m)
	if err != nil {
		return 0, err
	}
	r := &Runner{cfg: Config{Hostname: hostname, Store: q}}
	msg, err := r.report(ctx, m, info, rcpts, dsn.Failed, time.Now())
	if err != nil {
		return 0, err
	}
	if err := b(ctx, m.From, msg); err != nil {
		return 0, err
	}
	return len(rcpts), nil
}
