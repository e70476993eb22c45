package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/postoffice-mail/postoffice/internal/queue"
	"github.com/postoffice-mail/postoffice/internal/server"
	"github.com/postoffice-mail/postoffice/internal/store"
)

var queueCommand = &command{
	name:    "queue",
	usage:   "list|show|retry|delete|hold|release",
	summary: "inspect and manage the outbound queue of mail for remote recipients",
	sub: []*command{
		{name: "list", summary: "list queued messages with their recipients", run: runQueueList},
		{name: "show", usage: "ID", summary: "show one queued message: recipients, attempts, errors, header", run: runQueueShow},
		{name: "retry", usage: "[ID]", summary: "make one message (or all) due for delivery now", run: runQueueRetry},
		{name: "delete", usage: "ID [--bounce]", summary: "remove a message from the queue, optionally bouncing it to its sender", run: runQueueDelete},
		{name: "hold", usage: "ID", summary: "stop delivery attempts of a message until it is released", run: runQueueHold},
		{name: "release", usage: "ID", summary: "release a held message and make it due now", run: runQueueRelease},
	},
}

// runningNote is added to commands that change the schedule: serve picks
// changes up at its next poll.
const runningNote = "A running 'serve' acts on it within [queue] poll_interval seconds."

func runQueueList(e *env, args []string) error {
	fs := newFlags(e, "queue list", "", "List queued messages, oldest first, with the state of each recipient.")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		msgs, err := st.ListQueue(context.Background())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
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
		fmt.Fprintf(e.stdout, "%d message(s) queued\n", len(msgs))
		return nil
	})
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

// queueID parses the ID argument.
func queueID(arg string) (int64, error) {
	id, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || id <= 0 {
		return 0, fail(exitUsage, "%q is not a queue ID (see: postoffice queue list)", arg)
	}
	return id, nil
}

// notQueued maps ErrNotFound to a one-line message.
func notQueued(id int64, err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return fail(exitFailure, "no message %d in the queue", id)
	}
	return err
}

func runQueueShow(e *env, args []string) error {
	fs := newFlags(e, "queue show", "ID", "Show a queued message: its envelope, schedule, each recipient's state and\nlast error, and its header section.")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	id, err := queueID(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		ctx := context.Background()
		m, err := st.QueuedMessage(ctx, id)
		if err != nil {
			return notQueued(id, err)
		}
		w := e.stdout
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
		fmt.Fprintln(w, "Recipients:")
		for _, r := range m.Recipients {
			state := string(r.State)
			if r.State == store.QueueFailed && r.Notified {
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
			if r.LastError != "" {
				fmt.Fprintf(w, "    %s\n", r.LastError)
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
	})
}

func runQueueRetry(e *env, args []string) error {
	fs := newFlags(e, "queue retry", "[ID]", "Make the message ID, or every queued message, due for delivery now (a held\nmessage stays held). "+runningNote)
	pos, err := e.parseArgs(fs, args, 0, 1)
	if err != nil {
		return err
	}
	var id int64
	if len(pos) == 1 {
		if id, err = queueID(pos[0]); err != nil {
			return err
		}
	}
	return e.withStore(func(st store.Store) error {
		n, err := st.RetryQueued(context.Background(), id, time.Now())
		if err != nil {
			return notQueued(id, err)
		}
		fmt.Fprintf(e.stdout, "%d message(s) due now\n", n)
		return nil
	})
}

func runQueueHold(e *env, args []string) error {
	return setHeld(e, args, true, "queue hold", "Stop delivery attempts of message ID until 'queue release'. An attempt under\nway finishes.")
}

func runQueueRelease(e *env, args []string) error {
	return setHeld(e, args, false, "queue release", "Release the held message ID and make it due now. "+runningNote)
}

func setHeld(e *env, args []string, held bool, name, summary string) error {
	fs := newFlags(e, name, "ID", summary)
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	id, err := queueID(pos[0])
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		ctx := context.Background()
		if err := st.HoldQueued(ctx, id, held); err != nil {
			return notQueued(id, err)
		}
		if !held {
			if _, err := st.RetryQueued(ctx, id, time.Now()); err != nil {
				return notQueued(id, err)
			}
			fmt.Fprintf(e.stdout, "message %d released\n", id)
			return nil
		}
		fmt.Fprintf(e.stdout, "message %d held\n", id)
		return nil
	})
}

func runQueueDelete(e *env, args []string) error {
	fs := newFlags(e, "queue delete", "ID [--bounce]", "Remove message ID from the queue. With --bounce its sender first gets a\ndelivery status notification (RFC 3464) for the recipients not yet delivered.")
	bounce := fs.Bool("bounce", false, "notify the sender that the message will not be delivered")
	pos, err := e.parseArgs(fs, args, 1, 1)
	if err != nil {
		return err
	}
	id, err := queueID(pos[0])
	if err != nil {
		return err
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		ctx := context.Background()
		if *bounce {
			rt := server.NewRouter(cfg, st, slog.New(slog.DiscardHandler), nil, nil)
			n, err := queue.BounceDeleted(ctx, st, server.RouterBouncer(rt), cfg.Hostname, id,
				"the message was deleted from the queue by the postmaster")
			if err != nil {
				return notQueued(id, err)
			}
			if n > 0 {
				fmt.Fprintf(e.stdout, "bounce sent for %d recipient(s)\n", n)
			} else {
				fmt.Fprintln(e.stdout, "no bounce: the message is from the null sender or has no recipient left")
			}
		}
		if err := st.DeleteQueued(ctx, id); err != nil {
			return notQueued(id, err)
		}
		fmt.Fprintf(e.stdout, "message %d deleted\n", id)
		return nil
	})
}
