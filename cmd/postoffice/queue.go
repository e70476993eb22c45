package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"postoffice/internal/store"
)

var queueCommand = &command{
	name:    "queue",
	usage:   "list",
	summary: "inspect the outbound queue of mail for remote recipients",
	sub: []*command{
		{name: "list", summary: "list queued messages with their recipients", run: runQueueList},
	},
}

func runQueueList(e *env, args []string) error {
	fs := newFlags(e, "queue list", "", "List queued messages, oldest first.")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	return e.withStore(func(st store.Store) error {
		msgs, err := st.ListQueue(context.Background())
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tQUEUED\tSIZE\tFROM\tRECIPIENTS")
		for _, m := range msgs {
			var rcpts []string
			for _, r := range m.Recipients {
				rcpts = append(rcpts, fmt.Sprintf("%s (%s)", r.Address, r.State))
			}
			from := m.From
			if from == "" {
				from = "<>"
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", m.ID, m.CreatedAt.Local().Format(time.DateTime), m.Size, from, strings.Join(rcpts, ", "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%d message(s) queued\n", len(msgs))
		return nil
	})
}
