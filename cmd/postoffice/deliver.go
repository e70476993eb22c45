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
	deliverSummary = "store one message from standard input in a local mailbox (a delivery agent)"
	deliverHelp    = `Store one message read from standard input into the mailbox of ADDRESS, like
dovecot-lda or procmail. Exits 0 only once the message is on disk; 67 for an
unknown recipient, 75 for a temporary failure (try again), 65 for a message
that cannot be accepted. Works while 'serve' runs on the same data directory.`
)

func runDeliver(c *call) error {
	if c.to == "" {
		return fail(exitUsage, "deliver: --to ADDRESS is required")
	}
	rcpt, err := address.Normalize(c.to)
	if err != nil {
		return fail(exitNoUser, "unknown recipient %q: %v", c.to, err)
	}
	sender, err := envelopeSender(c.sender)
	if err != nil {
		return fail(exitUsage, "--from %q: %v", c.sender, err)
	}
	in := bufio.NewReader(c.stdin)
	if _, err := in.Peek(1); err == io.EOF {
		return fail(exitDataErr, "empty message on standard input")
	} else if err != nil {
		return fail(exitTempFail, "reading standard input: %v", err)
	}
	cfg, err := c.config()
	if err != nil {
		return tempFail(err)
	}
	st, err := c.store()
	if err != nil {
		return tempFail(err)
	}

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
		return fail(exitDataErr, "message refused: %s", re.Reply.Message())
	default:
		return fail(exitTempFail, "delivering to %s: %v", rcpt, err)
	}
}

// tempFail makes any error of deliver's setup a temporary failure (75):
// whatever the reason, the mail waits at the calling MTA, as 66, 77 or 78
// would make Postfix bounce it (5.3.0, 5.7.0).
func tempFail(err error) error {
	_, msg := exitCode(err)
	return &exitError{code: exitTempFail, msg: msg}
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
