package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"

	"postoffice/internal/directory"
	"postoffice/internal/message"
	"postoffice/internal/store"
)

const (
	deliverUsage   = "--to ADDRESS [--from SENDER] < message"
	deliverSummary = "store one message from standard input in a local mailbox (a delivery agent)"
)

var deliverCommand = &command{name: "deliver", usage: deliverUsage, summary: deliverSummary, run: runDeliver}

func runDeliver(e *env, args []string) error {
	fs := newFlags(e, "deliver", deliverUsage,
		"Store one message read from standard input into the mailbox of ADDRESS, like\n"+
			"dovecot-lda or procmail. Exits 0 only once the message is on disk; 67 for an\n"+
			"unknown recipient, 75 for a temporary failure (try again), 65 for a message\n"+
			"that cannot be accepted. Works while 'serve' runs on the same data directory.")
	to := fs.String("to", "", "recipient address (required)")
	from := fs.String("from", "", "envelope sender, recorded as Return-Path (\"<>\" for none)")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	if *to == "" {
		return fail(exitUsage, "deliver: --to ADDRESS is required")
	}
	rcpt, err := directory.NormalizeAddress(*to)
	if err != nil {
		return fail(exitNoUser, "unknown recipient %q: %v", *to, err)
	}
	in := bufio.NewReader(e.stdin)
	if _, err := in.Peek(1); err == io.EOF {
		return fail(exitDataErr, "empty message on standard input")
	} else if err != nil {
		return fail(exitTempFail, "reading standard input: %v", err)
	}
	var body io.Reader = in
	if *from != "" {
		sender := strings.Trim(*from, "<>")
		if sender != "" {
			if sender, err = directory.NormalizeAddress(sender); err != nil {
				return fail(exitUsage, "--from %q: %v", *from, err)
			}
		}
		// RFC 5321 section 4.4: the delivery agent records the envelope
		// sender in a Return-Path header at the top of the message.
		body = io.MultiReader(strings.NewReader("Return-Path: <"+sender+">\r\n"), body)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return &exitError{code: exitTempFail, msg: err.Error()}
	}
	st, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx := context.Background()
	u, err := st.UserByAddress(ctx, rcpt)
	if errors.Is(err, store.ErrNotFound) {
		return fail(exitNoUser, "unknown recipient %s", rcpt)
	}
	if err != nil {
		return fail(exitTempFail, "looking up %s: %v", rcpt, err)
	}
	_, err = st.Deliver(ctx, message.Canonical(body), []int64{u.ID})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrQuota):
		// Like Dovecot's quota_full_tempfail: the sender's MTA keeps the
		// message and retries, the mailbox may have room later.
		return fail(exitTempFail, "mailbox of %s is full", rcpt)
	default:
		return fail(exitTempFail, "storing the message for %s: %v", rcpt, err)
	}
}
