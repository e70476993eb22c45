package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/server"
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
	from := fs.String("from", "", "envelope sender, recorded as Return-Path (default: the null sender <>)")
	if _, err := e.parseArgs(fs, args, 0, 0); err != nil {
		return err
	}
	if *to == "" {
		return fail(exitUsage, "deliver: --to ADDRESS is required")
	}
	rcpt, err := address.Normalize(*to)
	if err != nil {
		return fail(exitNoUser, "unknown recipient %q: %v", *to, err)
	}
	sender, err := envelopeSender(*from)
	if err != nil {
		return fail(exitUsage, "--from %q: %v", *from, err)
	}
	in := bufio.NewReader(e.stdin)
	if _, err := in.Peek(1); err == io.EOF {
		return fail(exitDataErr, "empty message on standard input")
	} else if err != nil {
		return fail(exitTempFail, "reading standard input: %v", err)
	}
	cfg, err := e.loadConfig()
	if err != nil {
		return &exitError{code: exitTempFail, msg: err.Error()}
	}
	st, err := openStore(cfg, existingStore)
	if err != nil {
		// Whatever the reason, the mail waits at the calling MTA: 66 or
		// 77 would make Postfix bounce it (5.3.0, 5.7.0).
		var ee *exitError
		if errors.As(err, &ee) {
			ee.code = exitTempFail
		}
		return err
	}
	defer st.Close()

	// The same pipeline as mail arriving by SMTP: resolution (aliases
	// included), trace fields, local delivery.
	rt := server.NewRouter(cfg, st, slog.New(slog.DiscardHandler), nil, nil)
	env := &router.Envelope{From: sender, To: []string{rcpt}, Protocol: "local", Source: "deliver"}
	ctx := context.Background()
	err = rt.CheckRecipient(ctx, env, rcpt)
	if err == nil {
		err = rt.Route(ctx, env, in)
	}
	if err == nil {
		return nil
	}
	var re *router.Error
	switch {
	case errors.Is(err, router.ErrUnknownUser), errors.Is(err, router.ErrBadRecipient):
		return fail(exitNoUser, "unknown recipient %s", rcpt)
	case errors.Is(err, router.ErrQuota):
		// Like Dovecot's quota_full_tempfail: the calling MTA keeps the
		// message and retries; the mailbox may have room later.
		return fail(exitTempFail, "mailbox of %s is full", rcpt)
	case errors.As(err, &re) && !re.Temporary():
		return fail(exitDataErr, "message refused: %s", re.Message)
	default:
		return fail(exitTempFail, "delivering to %s: %v", rcpt, err)
	}
}

// envelopeSender reads --from: an address as written in SMTP (quoted
// local part and all, optionally in angle brackets), or with its local
// part unquoted as Postfix's $SENDER gives it; "" or "<>" is the null
// sender. The result is in the written form of address.Address.String.
func envelopeSender(from string) (string, error) {
	if strings.HasPrefix(from, "<") && strings.HasSuffix(from, ">") {
		from = from[1 : len(from)-1]
	}
	if from == "" {
		return "", nil
	}
	a, err := address.Parse(from)
	if err != nil {
		var uerr error
		if a, uerr = address.ParseUnquoted(from); uerr != nil {
			return "", err
		}
	}
	return a.String(), nil
}
