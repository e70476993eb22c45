package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/server"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// runningNote is added to commands that change the schedule: serve picks
// changes up at its next poll.
const runningNote = "A running 'serve' acts on it within [queue] poll_interval."

const (
	queueShowHelp = `Show a queued message: its envelope, schedule, each recipient's state and
last error, and its header section.`
	queueRetryHelp = `Make the message ID, or every queued message, due for delivery now (a held
message stays held). ` + runningNote
	queueHoldHelp = `Stop delivery attempts of message ID until 'queue release'. An attempt under
way finishes.`
	queueReleaseHelp = "Release the held message ID and make it due now. " + runningNote
	queueDeleteHelp  = `Remove message ID from the queue. With --bounce its sender first gets a
delivery status notification (RFC 3464) for the recipients not yet delivered.`
)

func runQueueList(c *call) error {
	st, err := c.store()
	if err != nil {
		return err
	}
	msgs, err := st.ListQueue(context.Background())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUEUED\tSIZE\tATTEMPTS\tNEXT\tFROM\tRECIPIENTS")
	for _, m := range msgs {
		var rcpts []string
		for _, r := range m.Recipients {
			rcpts = append(rcpts, fmt.Sprintf("%s (%s)", r.Address, r.State))
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%s\t%s\t%s\n", m.ID, m.CreatedAt.Local().Format(time.DateTime), m.Size,
			m.Attempts, nextText(m), senderText(m.From), strings.Join(rcpts, ", "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%d message(s) queued\n", len(msgs))
	return nil
}

func senderText(from string) string {
	if from == "" {
		return "<>"
	}
	return from
}

// nextText says when a message is next tried.
func nextText(m store.QueuedMessage) string {
	switch {
	case m.Held:
		return "held"
	case !m.ClaimedUntil.IsZero() && m.ClaimedUntil.After(time.Now()):
		return "delivering"
	case !m.NextAttempt.After(time.Now()):
		return "now"
	}
	return m.NextAttempt.Local().Format(time.DateTime)
}

// notQueued maps ErrNotFound to a one-line message.
func notQueued(id int64, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fail(exitFailure, "no message %d in the queue", id)
	}
	return err
}

func runQueueShow(c *call) error {
	id, err := c.queueID(0)
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	m, err := st.QueuedMessage(ctx, id)
	if err != nil {
		return notQueued(id, err)
	}
	w := c.stdout
	fmt.Fprintf(w, "ID:           %d\n", m.ID)
	fmt.Fprintf(w, "From:         %s\n", senderText(m.From))
	fmt.Fprintf(w, "Size:         %d\n", m.Size)
	fmt.Fprintf(w, "Queued:       %s\n", m.CreatedAt.Local().Format(time.DateTime))
	fmt.Fprintf(w, "Attempts:     %d\n", m.Attempts)
	if !m.LastAttempt.IsZero() {
		fmt.Fprintf(w, "Last attempt: %s\n", m.LastAttempt.Local().Format(time.DateTime))
	}
	fmt.Fprintf(w, "Next attempt: %s\n", nextText(m))
	if m.Warned {
		fmt.Fprintf(w, "Warned:       the sender was told of the delay\n")
	}
	if dsn := dsnText(m.Ret, m.EnvID, ""); dsn != "" {
		fmt.Fprintf(w, "DSN:          %s\n", dsn)
	}
	fmt.Fprintln(w, "Recipients:")
	for _, r := range m.Recipients {
		state := string(r.State)
		if r.State != store.QueuePending && r.Notified && m.From != "" {
			state += ", sender notified"
		}
		fmt.Fprintf(w, "  %s (%s)", r.Address, state)
		if r.Status != "" {
			fmt.Fprintf(w, " %s", r.Status)
		}
		if r.RemoteMTA != "" {
			fmt.Fprintf(w, " via %s", r.RemoteMTA)
		}
		fmt.Fprintln(w)
		// The remote reply as it came (code, status, text), with the
		// command it answered and the host; our own reason.
		if !r.Remote.IsZero() {
			fmt.Fprintf(w, "    %s\n", r.Remote)
		}
		if r.LastError != "" {
			fmt.Fprintf(w, "    %s\n", r.LastError)
		}
		if dsn := dsnText("", "", r.DSN.NotifyString()); dsn != "" || r.DSN.ORcpt != "" {
			if r.DSN.ORcpt != "" {
				dsn = strings.TrimSpace(dsn + " ORCPT=" + r.DSN.ORcptType + ";" + r.DSN.ORcpt)
			}
			fmt.Fprintf(w, "    DSN: %s\n", dsn)
		}
	}
	rc, err := st.OpenQueued(ctx, id)
	if err != nil {
		return notQueued(id, err)
	}
	defer rc.Close()
	fmt.Fprintln(w, "Header:")
	br := bufio.NewReader(rc)
	for n := 0; n < 200; n++ {
		line, err := br.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		fmt.Fprintf(w, "  %s\n", line)
		if err != nil {
			break
		}
	}
	return nil
}

func runQueueRetry(c *call) error {
	var id int64
	if len(c.args) == 1 {
		var err error
		if id, err = c.queueID(0); err != nil {
			return err
		}
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	n, err := st.RetryQueued(context.Background(), id, time.Now())
	if err != nil {
		return notQueued(id, err)
	}
	fmt.Fprintf(c.stdout, "%d message(s) due now\n", n)
	return nil
}

func runQueueHold(c *call) error { return setHeld(c, true) }

func runQueueRelease(c *call) error { return setHeld(c, false) }

func setHeld(c *call, held bool) error {
	id, err := c.queueID(0)
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := st.HoldQueued(ctx, id, held); err != nil {
		return notQueued(id, err)
	}
	if held {
		fmt.Fprintf(c.stdout, "message %d held\n", id)
		return nil
	}
	if _, err := st.RetryQueued(ctx, id, time.Now()); err != nil {
		return notQueued(id, err)
	}
	fmt.Fprintf(c.stdout, "message %d released\n", id)
	return nil
}

func runQueueDelete(c *call) error {
	id, err := c.queueID(0)
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	st, err := c.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	if c.bounce {
		rt := server.NewRouter(cfg, st, slog.New(slog.DiscardHandler), nil, nil)
		n, err := queue.BounceDeleted(ctx, st, server.RouterBouncer(rt), cfg.Hostname, id,
			"the message was deleted from the queue by the postmaster")
		if err != nil {
			return notQueued(id, err)
		}
		if n > 0 {
			fmt.Fprintf(c.stdout, "bounce sent for %d recipient(s)\n", n)
		} else {
			fmt.Fprintln(c.stdout, "no bounce: the message is from the null sender or has no recipient left")
		}
	}
	if err := st.DeleteQueued(ctx, id); err != nil {
		return notQueued(id, err)
	}
	fmt.Fprintf(c.stdout, "message %d deleted\n", id)
	return nil
}

// dsnText writes DSN parameters (RFC 3461 section 4) as they went on the
// wire, decoded: "RET=HDRS ENVID=x", "NOTIFY=SUCCESS,DELAY".
func dsnText(ret, envid, notify string) string {
	var parts []string
	for _, p := range [][2]string{{"RET", ret}, {"ENVID", envid}, {"NOTIFY", notify}} {
		if p[1] != "" {
			parts = append(parts, p[0]+"="+p[1])
		}
	}
	return strings.Join(parts, " ")
}
