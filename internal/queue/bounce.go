package queue

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/message"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// replyRE finds the remote reply in a recipient's LastError, as
// session.transaction writes it.
var replyRE = regexp.MustCompile(`said: ([245]\d\d .*) \(in reply to [^)]*\)$`)

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

// report builds the notification for some recipients of m.
func (r *Runner) report(m store.QueuedMessage, info *msgInfo, rcpts []store.QueueRecipient, action string, now time.Time) []byte {
	rep := dsn.Report{
		ReportingMTA:   r.cfg.Hostname,
		To:             m.From,
		ID:             strconv.FormatInt(m.ID, 10),
		Arrival:        m.CreatedAt,
		OriginalHeader: info.header,
		Date:           now,
	}
	for _, rc := range rcpts {
		d := dsn.Recipient{
			Final:     rc.Address,
			Action:    action,
			Status:    rc.Status,
			RemoteMTA: rc.RemoteMTA,
			LastTry:   now,
		}
		// RFC 3464 section 2.3.6: an SMTP reply is reported as such; any
		// other reason (connection refused, null MX) as our own text.
		if m := replyRE.FindStringSubmatch(rc.LastError); m != nil {
			d.Diagnostic = m[1]
		} else if rc.LastError != "" {
			d.DiagnosticType, d.Diagnostic = "X-Postoffice", rc.LastError
		}
		if d.Status == "" {
			d.Status = "5.0.0"
		}
		if action == dsn.Delayed {
			d.RetryUntil = m.CreatedAt.Add(r.cfg.MaxLifetime)
		}
		rep.Recipients = append(rep.Recipients, d)
	}
	return dsn.Build(rep)
}

// notify sends the sender one notification (RFC 3464) for failed
// recipients and records that it did. A failure to send leaves them
// unnotified: the next attempt at the message tries again.
func (r *Runner) notify(ctx context.Context, log *slog.Logger, m store.QueuedMessage, info *msgInfo, failed []store.QueueRecipient) {
	if m.From != "" {
		err := r.cfg.Bounce(ctx, m.From, r.report(m, info, failed, dsn.Failed, r.cfg.Now()))
		switch {
		case errors.Is(err, ErrUndeliverable):
			log.Warn("the bounce cannot be delivered either, dropped", "to", m.From, "err", err)
		case err != nil:
			log.Error("sending a bounce failed, will try again", "to", m.From, "err", err)
			return
		default:
			log.Info("bounce sent", "to", m.From, "failed", len(failed))
		}
	} else {
		log.Warn("undeliverable message from the null sender dropped", "failed", len(failed))
	}
	u := store.QueueUpdate{}
	for _, rc := range failed {
		rc.Notified = true
		u.Recipients = append(u.Recipients, rc)
	}
	if err := r.cfg.Store.UpdateQueued(ctx, m.ID, u); err != nil && !errors.Is(err, store.ErrNotFound) {
		log.Error("recording the bounce", "err", err)
	}
}

// warn sends the delayed-delivery warning (RFC 3464 action "delayed") for
// the recipients still waiting; it reports whether the warning went out.
func (r *Runner) warn(ctx context.Context, log *slog.Logger, m store.QueuedMessage, info *msgInfo, deferred []store.QueueRecipient, now time.Time) bool {
	err := r.cfg.Bounce(ctx, m.From, r.report(m, info, deferred, dsn.Delayed, now))
	switch {
	case errors.Is(err, ErrUndeliverable):
		log.Warn("the delay warning cannot be delivered, dropped", "to", m.From, "err", err)
		return true
	case err != nil:
		log.Error("sending the delay warning failed", "to", m.From, "err", err)
		return false
	}
	log.Info("delay warning sent", "to", m.From, "waiting", len(deferred))
	return true
}

// BounceDeleted sends the sender of a message an operator is deleting a
// notification that its pending recipients will not get it (RFC 3463
// X.0.0 with the reason given). It returns how many recipients it
// reported; none for the null sender or with nothing pending.
func BounceDeleted(ctx context.Context, q store.Queue, b Bouncer, hostname string, id int64, reason string) (int, error) {
	m, err := q.QueuedMessage(ctx, id)
	if err != nil {
		return 0, err
	}
	var rcpts []store.QueueRecipient
	for _, rc := range m.Recipients {
		if rc.State == store.QueuePending || (rc.State == store.QueueFailed && !rc.Notified) {
			if rc.State == store.QueuePending {
				rc.Status, rc.LastError = "5.0.0", reason
			}
			rcpts = append(rcpts, rc)
		}
	}
	if len(rcpts) == 0 || m.From == "" {
		return 0, nil
	}
	info, err := inspect(ctx, q, m)
	if err != nil {
		return 0, err
	}
	r := &Runner{cfg: Config{Hostname: hostname}}
	if err := b(ctx, m.From, r.report(m, info, rcpts, dsn.Failed, time.Now())); err != nil {
		return 0, err
	}
	return len(rcpts), nil
}
