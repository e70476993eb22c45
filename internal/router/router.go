// Package router is postoffice's mail framework: every message, whichever
// door it came in by (SMTP, submission, the deliver command, a bounce),
// passes the same pipeline of named steps:
//
//  1. address resolution  (Resolver)          address -> local mailboxes / remote addresses
//  2. envelope processing (EnvelopeProcessor) trace fields: Received, Return-Path, Delivered-To
//  3. local delivery      (LocalDeliverer)    into the mailbox store
//  4. remote hand-off     (RemoteHandoff)     into the durable outbound queue
//  5. non-delivery        (NonDeliveryHandler) failures after acceptance become bounces
//
// Each step is an interface: an exit point. A deployment adds behaviour in
// Go by passing extra steps in Options (they run after the built-in ones of
// the same kind) or by replacing a built-in one, without editing the others.
// The router speaks no wire protocol.
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/message"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// Envelope describes one message transaction, whichever door it used.
type Envelope struct {
	From       string   // reverse-path; "" is the null sender (RFC 5321 section 4.5.5)
	To         []string // recipients as given by the client
	Helo       string
	RemoteAddr string // host:port of the client, "" for local submission
	TLS        string // TLS version and cipher, "" if none
	AuthUser   string // authenticated user, "" if none
	Protocol   string // RFC 3848 "with" keyword: ESMTP, ESMTPS, ESMTPSA, ... or "local"
	Source     string // "smtp", "submission", "deliver", "bounce"
	ID         string // transaction id, set by the router
	Received   time.Time

	// DSN parameters (RFC 3461 section 4): RET and ENVID of the message
	// (dsn.RetFull, dsn.RetHdrs or "", "" for none) and, parallel to To,
	// each recipient's NOTIFY and ORCPT (nil: none for any). They are
	// honoured here and kept with queued copies for the next hop.
	Ret   string
	EnvID string
	DSN   []dsn.RcptParams

	// Checks are the checks the door made before routing (at the MX:
	// SPF, DKIM, DMARC), set by the door; their String, when not empty,
	// goes into the journal's received entry.
	Checks fmt.Stringer
	// SpamScore is the score a filter (a milter such as rspamd) gave the
	// message, when it gave one: a local recipient whose SpamRejectScore
	// it exceeds refuses the message.
	SpamScore    float64
	HasSpamScore bool
	// Notes are what the stages before the router (the milters) said of
	// the message, for the journal's received entry: "marked as spam".
	Notes []string

	// resolved keeps CheckRecipient's resolution of each recipient for
	// Route, so that an SMTP transaction resolves every address once.
	resolved map[string][]*Recipient
}

// Recipient is one final destination after resolution.
type Recipient struct {
	Original string // the envelope recipient it came from
	Address  string // final address (a user's address, or a remote one)
	UserID   int64  // local mailbox, 0 for a remote address
	// Quota is the local mailbox's quota in octets as resolved, 0 for
	// none; the store enforces it again when the message is written.
	Quota int64
	// Err is set by a step that failed for this recipient after the message
	// was accepted; NonDeliveryHandler steps turn it into a bounce.
	Err error
	// UID is the message's UID in the local mailbox once delivered, and
	// QueueID its outbound queue entry once queued (for the journal).
	UID     uint64
	QueueID int64
	// DSN are the NOTIFY and ORCPT parameters of the envelope recipient
	// it came from (RFC 3461 section 4).
	DSN dsn.RcptParams
	// SpamRejectScore is the local user's spam score above which mail is
	// refused (store.User.SpamRejectScore), nil for none.
	SpamRejectScore *float64
}

// rcptDSN is the DSN parameters the client gave with the envelope
// recipient rcpt.
func (env *Envelope) rcptDSN(rcpt string) dsn.RcptParams {
	for i, to := range env.To {
		if to == rcpt && i < len(env.DSN) {
			return env.DSN[i]
		}
	}
	return dsn.RcptParams{}
}

// Local reports whether the recipient is a local mailbox.
func (r *Recipient) Local() bool { return r.UserID != 0 }

// Message is what flows through the pipeline.
type Message struct {
	Env        *Envelope
	Recipients []*Recipient
	// Trace holds header fields prepended to every copy (Received...).
	Trace []byte
	// LocalTrace holds fields prepended only to mailbox copies
	// (Return-Path, RFC 5321 section 4.4).
	LocalTrace []byte
	// PerRecipient holds fields prepended to one mailbox's copy only
	// (Delivered-To), keyed by user ID.
	PerRecipient map[int64][]byte
	// Body is the message as received, spooled so that every step may
	// read it from the start.
	Body Body
	// Header is the parsed header section of Body (read-only).
	Header message.Header
	// Notes are what steps say about the message for the mail journal
	// ("dkim-signed d=example.com s=20260315e,20260315r"), added to the
	// detail of its received entry.
	Notes []string
}

// Body is a spooled message that can be read several times.
type Body interface {
	Open() io.Reader
	Size() int64
}

// Resolver expands one envelope recipient. It returns ErrUnknownUser,
// ErrRelayDenied (wrapped) or a *Error for a refusal; other errors are
// temporary. Resolvers are tried in order; the first that returns a result
// or a refusal wins, (nil, nil) means "not mine, ask the next". A local
// Recipient carries its mailbox's quota (Quota), which is what the router
// checks before writing.
type Resolver interface {
	Resolve(ctx context.Context, env *Envelope, rcpt string) ([]*Recipient, error)
}

// EnvelopeProcessor adds trace information or otherwise changes the
// message before delivery. A returned *Error rejects the whole message.
type EnvelopeProcessor interface {
	ProcessEnvelope(ctx context.Context, m *Message) error
}

// LocalDeliverer stores the message for the local recipients; it sets
// Recipient.Err for permanent per-recipient failures and returns an error
// only for a failure of the whole delivery (temporary).
type LocalDeliverer interface {
	DeliverLocal(ctx context.Context, m *Message, rcpts []*Recipient) error
}

// RemoteHandoff queues the message for remote recipients; an error fails
// the whole transaction (temporary).
type RemoteHandoff interface {
	HandOff(ctx context.Context, m *Message, rcpts []*Recipient) error
}

// NonDeliveryHandler is given the recipients that failed after the message
// was accepted (Recipient.Err set). It must not lose them silently.
type NonDeliveryHandler interface {
	NonDelivery(ctx context.Context, m *Message, failed []*Recipient) error
}

// Error is a refusal: the SMTP reply that says it (smtpreply.Reply, the
// one reply type from the wire to the journal), which the SMTP door
// passes on and the deliver command maps to an exit code, and the cause,
// for errors.Is (ErrUnknownUser...).
type Error struct {
	Reply smtpreply.Reply
	Err   error // the underlying cause
}

// Error is the reply on one line, "550 5.1.1 No such user here: ...".
func (e *Error) Error() string { return e.Reply.Error() }
func (e *Error) Unwrap() error { return e.Err }

// As lets smtpreply.As (errors.As with a *smtpreply.Reply) find the reply
// of a refusal anywhere in an error chain.
func (e *Error) As(target any) bool {
	if r, ok := target.(*smtpreply.Reply); ok {
		*r = e.Reply
		return true
	}
	return false
}

// Temporary reports whether the sender should try again later (a 4xx
// reply, RFC 5321 section 4.2.1).
func (e *Error) Temporary() bool { return e.Reply.Temporary() }

// Sentinel causes carried by *Error.
var (
	ErrUnknownUser  = errors.New("unknown user")
	ErrRelayDenied  = errors.New("relay denied")
	ErrQuota        = errors.New("mailbox full")
	ErrLoop         = errors.New("mail loop")
	ErrTooBig       = errors.New("message too big")
	ErrSpam         = errors.New("refused as spam")
	ErrBadRecipient = errors.New("bad recipient address")
	ErrNoSpace      = errors.New("insufficient storage")
	ErrNotYours     = errors.New("sender address not the user's")
)

// refuse makes a refusal with a reply code, an RFC 3463 status ("5.1.1")
// and a text.
func refuse(code int, status string, cause error, format string, a ...any) *Error {
	return &Error{Reply: smtpreply.Errorf(code, status, format, a...), Err: cause}
}

// tempError wraps an unexpected failure as 451 4.3.0.
func tempError(err error) *Error {
	var re *Error
	if errors.As(err, &re) {
		return re
	}
	return refuse(451, "4.3.0", err, "Temporary local problem, try again later")
}

// Options configures a Router. Built-in steps are made from Store; the
// Extra fields are the exit points for deployments.
type Options struct {
	Hostname string
	Store    store.Store
	Logger   *slog.Logger
	// MaxHops refuses a message that already carries more Received fields
	// (RFC 5321 section 6.3: loop detection). Default 30.
	MaxHops int
	// CatchAll: when true, a domain's "@domain" alias catches every
	// unknown local part.
	CatchAll bool

	ExtraResolvers          []Resolver // tried before the built-in directory resolver
	ExtraEnvelopeProcessors []EnvelopeProcessor
	ExtraLocalDeliverers    []LocalDeliverer
	ExtraNonDelivery        []NonDeliveryHandler
	// RemoteHandoff replaces the built-in queue hand-off when set.
	RemoteHandoff RemoteHandoff
	// OnQueued, if set, is called by the built-in queue hand-off after
	// each message it queued (serve uses it to wake the queue runner).
	OnQueued func(id int64)
	// Record, if set, receives the mail journal entries of each accepted
	// message (received, then delivered, queued and bounced per
	// recipient) once it is accepted. See journal.go.
	Record func(ctx context.Context, entries []store.JournalEntry)
	// SpoolDir holds large messages while they are routed ("" is
	// os.TempDir()).
	SpoolDir string
	// FreeSpace, if set, reports the octets left where messages are
	// stored; with MinFree, deliveries that would leave less than
	// MinFree free are refused for the time being (CheckSpace).
	FreeSpace func() (int64, error)
	MinFree   int64
	// Now is the clock, for tests.
	Now func() time.Time
}

// Router runs the pipeline.
type Router struct {
	opt        Options
	log        *slog.Logger
	resolvers  []Resolver
	processors []EnvelopeProcessor
	locals     []LocalDeliverer
	handoff    RemoteHandoff
	nondeliv   []NonDeliveryHandler
}

// New builds the pipeline: the deployment's extra steps around the
// built-in ones.
func New(opt Options) *Router {
	if opt.MaxHops == 0 {
		opt.MaxHops = 30
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Router{opt: opt, log: opt.Logger}
	r.resolvers = append(append([]Resolver{}, opt.ExtraResolvers...), &directoryResolver{st: opt.Store, catchAll: opt.CatchAll})
	r.processors = append([]EnvelopeProcessor{&traceProcessor{hostname: opt.Hostname, maxHops: opt.MaxHops}}, opt.ExtraEnvelopeProcessors...)
	r.locals = append([]LocalDeliverer{&storeDeliverer{st: opt.Store}}, opt.ExtraLocalDeliverers...)
	r.handoff = opt.RemoteHandoff
	if r.handoff == nil {
		r.handoff = &queueHandoff{q: opt.Store, onQueued: opt.OnQueued}
	}
	r.nondeliv = append([]NonDeliveryHandler{&bouncer{r: r}}, opt.ExtraNonDelivery...)
	return r
}

// CheckSpace refuses intake while the store is short of room: when
// accepting size more octets (0 if unknown) would leave less than
// Options.MinFree free, it returns 452 4.3.1 (RFC 5321 section 4.2.2,
// "insufficient system storage"; RFC 3463 section 3.4, X.3.1 "mail
// system full"), a temporary refusal, so that senders retry later while
// users can still delete mail to make room. A free space that cannot be
// read does not stop mail: the store reports a real failure itself.
func (r *Router) CheckSpace(size int64) error {
	if r.opt.FreeSpace == nil || r.opt.MinFree <= 0 {
		return nil
	}
	free, err := r.opt.FreeSpace()
	if err != nil {
		return nil
	}
	if free-max(size, 0) < r.opt.MinFree {
		r.log.Warn("intake refused: the store is short of space", "free", free, "size", size, "min_free", r.opt.MinFree)
		return refuse(452, "4.3.1", ErrNoSpace, "Insufficient system storage, try again later")
	}
	return nil
}

// CheckSender applies the rule for authenticated senders when ownOnly is
// set: a client that logged in (env.AuthUser) must use one of its user's
// addresses as the envelope sender (RFC 6409 section 6.1 lets the MSA
// check the sender's identity), so that a login is not a way to relay
// mail in someone else's name. It refuses with 553 5.7.1, or 553 5.1.7 for
// a sender it cannot read (RFC 3463 section 3.2, bad sender's address
// syntax); a session without login passes.
func (r *Router) CheckSender(ctx context.Context, env *Envelope, ownOnly bool) error {
	if env.AuthUser == "" || !ownOnly {
		return nil
	}
	denied := refuse(553, "5.7.1", ErrNotYours, "Sender address %s is not one of yours (%s)", env.From, env.AuthUser)
	if env.From == "" {
		return denied
	}
	from, err := address.Normalize(env.From)
	if err != nil {
		return refuse(553, "5.1.7", ErrNotYours, "Bad sender address syntax")
	}
	u, err := r.opt.Store.UserByAddress(ctx, from)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
			return denied
		}
		return tempError(err)
	}
	if u.Address != env.AuthUser {
		return denied
	}
	return nil
}

// CheckRecipient resolves one recipient at RCPT time, so that unknown
// users, relaying and full mailboxes are refused before the data is sent.
// An accepted recipient's resolution is kept in env for Route: the few
// seconds between RCPT and the end of DATA do not warrant a second look
// (the store still refuses a mailbox deleted or filled meanwhile).
func (r *Router) CheckRecipient(ctx context.Context, env *Envelope, rcpt string) error {
	rcpts, err := r.resolve(ctx, env, rcpt)
	if err != nil {
		return err
	}
	for _, rc := range rcpts {
		if !rc.Local() {
			continue
		}
		if err := r.checkQuota(ctx, rc, 0); err != nil {
			// A list with one full member still accepts; a single full
			// mailbox is refused now rather than bounced later.
			if len(rcpts) == 1 {
				return err
			}
		}
	}
	if env.resolved == nil {
		env.resolved = make(map[string][]*Recipient)
	}
	env.resolved[rcpt] = rcpts
	return nil
}

// checkQuota refuses a local recipient whose mailbox cannot take size
// more octets (or is full already).
func (r *Router) checkQuota(ctx context.Context, rc *Recipient, size int64) error {
	if rc.Quota <= 0 {
		return nil
	}
	_, used, err := r.opt.Store.Usage(ctx, rc.UserID)
	if err != nil {
		return tempError(err)
	}
	if used+size > rc.Quota || used >= rc.Quota {
		// RFC 3463 section 3.3: X.2.2 mailbox full.
		return refuse(552, "5.2.2", ErrQuota, "Mailbox of %s is full", rc.Address)
	}
	return nil
}

// resolve asks the resolvers in order.
func (r *Router) resolve(ctx context.Context, env *Envelope, rcpt string) ([]*Recipient, error) {
	for _, res := range r.resolvers {
		out, err := res.Resolve(ctx, env, rcpt)
		if err != nil {
			return nil, tempError(err)
		}
		if out != nil {
			return out, nil
		}
	}
	return nil, refuse(550, "5.1.1", ErrUnknownUser, "No such user here: %s", rcpt)
}

// Route runs the whole pipeline for one message and returns nil only once
// the message is durable in every local mailbox and in the queue. A
// returned *Error is the reply for the client (or the exit status of the
// deliver command); after a nil return, every failure becomes a bounce.
func (r *Router) Route(ctx context.Context, env *Envelope, body io.Reader) error {
	env.Received = r.opt.Now()
	if env.ID == "" {
		env.ID = newID()
	}
	m, sp, err := r.receive(env, body)
	if err != nil {
		return err
	}
	defer sp.Close()
	if m.Recipients, err = r.recipients(ctx, env); err != nil {
		return err
	}
	if err := r.checkSpamScore(m); err != nil {
		return err
	}
	// 2. Envelope processing.
	for _, p := range r.processors {
		if err := p.ProcessEnvelope(ctx, m); err != nil {
			return tempError(err)
		}
	}
	local, remote, err := r.deliver(ctx, m)
	if err != nil {
		return err
	}
	failed, err := r.nonDelivery(ctx, m)
	if err != nil {
		return err
	}
	// NOTIFY=SUCCESS of local recipients (RFC 3461 section 5.2.3); the
	// queue reports those of remote ones.
	r.notifySuccess(ctx, m)
	r.log.Info("routed", "id", env.ID, "source", env.Source, "from", env.From,
		"local", len(local), "remote", len(remote), "failed", len(failed), "size", m.Body.Size())
	if r.opt.Record != nil {
		r.opt.Record(ctx, journalEntries(m, r.opt.Now()))
	}
	return nil
}

// receive spools the body (in canonical form) and reads its header,
// refusing it while the store is short of space. The caller closes the
// spooled body, the Message's Body.
func (r *Router) receive(env *Envelope, body io.Reader) (*Message, *spooled, error) {
	if err := r.CheckSpace(0); err != nil {
		return nil, nil, err
	}
	sp, err := spool(body, r.opt.SpoolDir)
	if err != nil {
		var re *Error
		if errors.As(err, &re) {
			return nil, nil, re
		}
		return nil, nil, refuse(451, "4.3.0", err, "Error reading the message: %v", err)
	}
	if err := r.CheckSpace(sp.Size()); err != nil {
		sp.Close()
		return nil, nil, err
	}
	m := &Message{Env: env, Body: sp, PerRecipient: map[int64][]byte{}}
	if m.Header, err = message.ReadHeader(sp.Open()); err != nil {
		sp.Close()
		return nil, nil, refuse(554, "5.6.0", err, "Malformed message header: %v", err)
	}
	return m, sp, nil
}

// recipients is step 1, address resolution (kept from CheckRecipient
// where it ran), with duplicates removed: a user reached by two envelope
// recipients or through two aliases gets one copy.
func (r *Router) recipients(ctx context.Context, env *Envelope) ([]*Recipient, error) {
	var out []*Recipient
	seenUser := map[int64]bool{}
	seenRemote := map[string]bool{}
	for _, to := range env.To {
		rcpts, ok := env.resolved[to]
		if !ok {
			var err error
			if rcpts, err = r.resolve(ctx, env, to); err != nil {
				return nil, err
			}
		}
		for _, rc := range rcpts {
			rc.DSN = env.rcptDSN(to)
			if rc.Local() {
				if seenUser[rc.UserID] {
					continue
				}
				seenUser[rc.UserID] = true
			} else {
				if seenRemote[rc.Address] {
					continue
				}
				seenRemote[rc.Address] = true
			}
			out = append(out, rc)
		}
	}
	return out, nil
}

// checkSpamScore refuses a message whose spam score (Envelope.SpamScore)
// is above a local recipient's SpamRejectScore: 550 5.7.1, as rspamd's
// reject action. The whole message is refused, also for the other
// recipients: after the data, SMTP has one reply for all of them, and
// the sender who is told can send again without that recipient, where a
// copy dropped in silence would be mail lost without a word.
func (r *Router) checkSpamScore(m *Message) error {
	if !m.Env.HasSpamScore {
		return nil
	}
	for _, rc := range m.Recipients {
		if rc.Local() && rc.SpamRejectScore != nil && m.Env.SpamScore > *rc.SpamRejectScore {
			r.log.Info("refused as spam", "id", m.Env.ID, "from", m.Env.From, "rcpt", rc.Address,
				"score", m.Env.SpamScore, "limit", *rc.SpamRejectScore)
			return refuse(550, "5.7.1", ErrSpam, "Message refused as spam (score %.2f)", m.Env.SpamScore)
		}
	}
	return nil
}

// deliver is steps 3 and 4. The queue goes first: if it fails the client
// retries, and the local copies are not yet written (so no duplicates on
// retry). Once remote copies are queued, a failure of local delivery
// becomes a temporary failure of the local recipients, to bounce.
func (r *Router) deliver(ctx context.Context, m *Message) (local, remote []*Recipient, err error) {
	for _, rc := range m.Recipients {
		if rc.Local() {
			local = append(local, rc)
		} else {
			remote = append(remote, rc)
		}
	}
	if len(remote) > 0 {
		if err := r.handoff.HandOff(ctx, m, remote); err != nil {
			return nil, nil, tempError(err)
		}
	}
	if len(local) == 0 {
		return local, remote, nil
	}
	for _, d := range r.locals {
		err := d.DeliverLocal(ctx, m, local)
		if err == nil {
			continue
		}
		if len(remote) == 0 {
			return nil, nil, tempError(err)
		}
		// The remote copies are queued already: the local recipients
		// must not be lost either. Bounce them with a temporary reason
		// rather than fail the transaction and cause duplicates remotely.
		for _, rc := range local {
			if rc.Err == nil {
				rc.Err = tempError(err)
			}
		}
		break
	}
	return local, remote, nil
}

// nonDelivery is step 5: the recipients that failed after acceptance
// become bounces. When every recipient failed, nothing was delivered or
// queued: the transaction itself is refused (the client reports it to
// its user) rather than accepted and bounced, which would send
// backscatter to forged senders.
func (r *Router) nonDelivery(ctx context.Context, m *Message) ([]*Recipient, error) {
	var failed []*Recipient
	for _, rc := range m.Recipients {
		if rc.Err != nil {
			failed = append(failed, rc)
		}
	}
	if len(failed) == 0 {
		return nil, nil
	}
	if len(failed) == len(m.Recipients) {
		var re *Error
		if errors.As(failed[0].Err, &re) {
			return nil, re
		}
		return nil, tempError(failed[0].Err)
	}
	for _, h := range r.nondeliv {
		if err := h.NonDelivery(ctx, m, failed); err != nil {
			// Something was delivered: the message stays accepted.
			r.log.Error("non-delivery handling failed", "id", m.Env.ID, "err", err)
		}
	}
	return failed, nil
}
