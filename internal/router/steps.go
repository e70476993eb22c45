package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// maxAliasDepth bounds nested alias expansion; deeper is treated as a loop.
const maxAliasDepth = 10

// directoryResolver is the built-in resolver: users and their extra
// addresses, aliases (nested, with local and remote targets), an optional
// catch-all per domain, and the no-open-relay rule.
type directoryResolver struct {
	st       store.Store
	catchAll bool
}

func (d *directoryResolver) Resolve(ctx context.Context, env *Envelope, rcpt string) ([]*Recipient, error) {
	parsed, err := address.Parse(rcpt)
	if err != nil {
		// RFC 3463 section 3.2: X.1.3 bad destination mailbox address syntax.
		return nil, refuse(501, "5.1.3", ErrBadRecipient, "Bad recipient address syntax: %s", rcpt)
	}
	// Directory addresses are lower case, their domains in A-labels
	// (address.Normalize: a U-label domain of SMTPUTF8 mail
	// reaches the same mailboxes); an address it would not keep (a
	// quoted local part, an address literal) keeps its local part as
	// written and reaches no mailbox by name.
	domain := strings.ToLower(parsed.Domain)
	addr, err := address.Normalize(rcpt)
	if err != nil {
		parsed.Domain = domain
		addr = parsed.String()
	} else {
		domain = address.DomainOf(addr)
	}
	local := false
	if address.HostnameProblem(domain) == "" {
		if local, err = d.st.HasDomain(ctx, domain); err != nil {
			return nil, err
		}
	}
	if !local {
		// RFC 5321 section 3.6.2 and 7.1: no open relay. Only
		// authenticated users and postoffice's own bounces may send to
		// other domains; the deliver command only delivers locally.
		if env.AuthUser != "" || env.Source == "bounce" {
			return []*Recipient{{Original: rcpt, Address: addr}}, nil
		}
		if env.Source == "deliver" {
			return nil, refuse(550, "5.1.1", ErrUnknownUser, "No such user here: %s", addr)
		}
		return nil, refuse(554, "5.7.1", ErrRelayDenied, "Relay access denied: %s is not a local domain", addr)
	}
	var out []*Recipient
	if err := d.expand(ctx, rcpt, addr, 0, map[string]bool{}, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// expand resolves one local address into out.
func (d *directoryResolver) expand(ctx context.Context, original, addr string, depth int, seen map[string]bool, out *[]*Recipient) error {
	if seen[addr] {
		return nil // an alias cycle: this branch adds nothing new
	}
	seen[addr] = true
	if depth > maxAliasDepth {
		return refuse(554, "5.4.6", ErrLoop, "Alias expansion of %s is too deep (loop?)", original)
	}
	u, err := d.st.UserByAddress(ctx, addr)
	if err == nil {
		// The mailbox's own address, whichever of its addresses was used:
		// that is what Delivered-To names and what duplicates are found by.
		*out = append(*out, &Recipient{Original: original, Address: u.Address, UserID: u.ID, Quota: u.QuotaBytes,
			SpamRejectScore: u.SpamRejectScore})
		return nil
	}
	if !notFound(err) {
		return err
	}
	a, err := d.st.Alias(ctx, addr)
	if notFound(err) && d.catchAll && depth == 0 {
		a, err = d.st.Alias(ctx, "@"+domainOf(addr))
	}
	if notFound(err) {
		if depth == 0 {
			return refuse(550, "5.1.1", ErrUnknownUser, "No such user here: %s", addr)
		}
		// A dangling alias target: the rest of the list still gets the
		// message, this one is bounced (never silently dropped).
		*out = append(*out, &Recipient{Original: original, Address: addr,
			Err: refuse(550, "5.1.1", ErrUnknownUser, "No such user here: %s (alias target)", addr)})
		return nil
	}
	if err != nil {
		return err
	}
	for _, t := range a.Targets {
		local, err := d.st.HasDomain(ctx, domainOf(t))
		if err != nil {
			return err
		}
		if !local {
			if !seen[t] {
				seen[t] = true
				*out = append(*out, &Recipient{Original: original, Address: t})
			}
			continue
		}
		if err := d.expand(ctx, original, t, depth+1, seen, out); err != nil {
			return err
		}
	}
	if depth == 0 && len(*out) == 0 {
		return refuse(554, "5.4.6", ErrLoop, "Alias %s expands to nothing (loop)", addr)
	}
	return nil
}

func notFound(err error) bool {
	return errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid)
}

func domainOf(addr string) string { return address.DomainOf(addr) }

// traceProcessor is the built-in envelope processing step: hop counting
// and the trace fields of RFC 5321 section 4.4.
type traceProcessor struct {
	hostname string
	maxHops  int
}

func (p *traceProcessor) ProcessEnvelope(ctx context.Context, m *Message) error {
	// RFC 5321 section 6.3: a message with too many Received fields is in
	// a loop.
	if n := m.Header.Count("Received"); n > p.maxHops {
		return refuse(554, "5.4.6", ErrLoop, "Too many hops (%d Received header fields): mail loop", n)
	}
	env := m.Env
	// A delivery agent adds no Received field (the MTA that called it
	// did); network doors and bounces do.
	if env.Source != "deliver" {
		m.Trace = received(env, p.hostname)
	}

	// RFC 5321 section 4.4: the final delivery adds Return-Path, the
	// reverse-path written as a path (address.Path quotes what must be;
	// the doors have refused what cannot be written).
	path, err := address.Path(env.From)
	if err != nil {
		return refuse(501, "5.1.7", err, "Bad sender address syntax")
	}
	m.LocalTrace = []byte("Return-Path: " + path + "\r\n")
	for _, rc := range m.Recipients {
		if !rc.Local() || rc.Err != nil {
			continue
		}
		// Delivered-To (as Postfix and Dovecot add it) lets a later
		// hop see a forwarding loop back to this mailbox.
		if m.Header.Has("Delivered-To", rc.Address) {
			rc.Err = refuse(554, "5.4.6", ErrLoop, "Mail forwarding loop for %s", rc.Address)
			continue
		}
		to, err := address.Quote(rc.Address)
		if err != nil {
			return err // a mailbox's own address: always writable
		}
		m.PerRecipient[rc.UserID] = []byte("Delivered-To: " + to + "\r\n")
	}
	return nil
}

// received builds the Received field of RFC 5321 section 4.4, with the
// TLS and authentication details of the session.
func received(env *Envelope, hostname string) []byte {
	var b bytes.Buffer
	b.WriteString("Received: ")
	if env.RemoteAddr == "" {
		fmt.Fprintf(&b, "by %s (postoffice) with %s id %s", hostname, env.Protocol, env.ID)
	} else {
		ip := env.RemoteAddr
		if i := strings.LastIndexByte(ip, ':'); i >= 0 {
			ip = strings.Trim(ip[:i], "[]")
		}
		helo := env.Helo
		if helo == "" {
			helo = "unknown"
		}
		fmt.Fprintf(&b, "from %s ([%s])\r\n\tby %s (postoffice) with %s id %s", sanitize(helo), ip, hostname, env.Protocol, env.ID)
	}
	if env.TLS != "" {
		fmt.Fprintf(&b, "\r\n\t(using %s)", sanitize(env.TLS))
	}
	if env.AuthUser != "" {
		user, err := address.Quote(env.AuthUser) // a user's own address
		if err != nil {
			user = sanitize(env.AuthUser)
		}
		fmt.Fprintf(&b, "\r\n\t(authenticated as %s)", user)
	}
	if len(env.To) == 1 {
		// One recipient only: naming several would disclose Bcc.
		if path, err := address.Path(env.To[0]); err == nil {
			fmt.Fprintf(&b, "\r\n\tfor %s", path)
		}
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", env.Received.Format(time.RFC1123Z))
	return b.Bytes()
}

// sanitize keeps client-supplied text from breaking a header field.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// storeDeliverer is the built-in local delivery step: one stored body for
// every local recipient, each copy with its own trace header.
type storeDeliverer struct {
	st store.Store
}

func (d *storeDeliverer) DeliverLocal(ctx context.Context, m *Message, rcpts []*Recipient) error {
	var dels []store.Delivery
	for _, rc := range rcpts {
		if rc.Err != nil {
			continue
		}
		header := append(append(append([]byte{}, m.LocalTrace...), m.PerRecipient[rc.UserID]...), m.Trace...)
		// A full mailbox is bounced alone; the store's own check (which
		// would fail the delivery to every recipient) is for a race.
		if rc.Quota > 0 {
			_, used, err := d.st.Usage(ctx, rc.UserID)
			if err != nil {
				return err
			}
			if used+int64(len(header))+m.Body.Size() > rc.Quota {
				rc.Err = refuse(552, "5.2.2", ErrQuota, "Mailbox of %s is full", rc.Address)
				continue
			}
		}
		dels = append(dels, store.Delivery{UserID: rc.UserID, Header: header})
	}
	if len(dels) == 0 {
		return nil
	}
	uids, err := d.st.Deliver(ctx, mailboxBody(m), dels)
	if err != nil {
		return err
	}
	for i, del := range dels {
		for _, rc := range rcpts {
			if rc.UserID == del.UserID && rc.Err == nil {
				rc.UID = uids[i]
			}
		}
	}
	return nil
}

// mailboxBody is the message as a mailbox keeps it: without a
// Return-Path field of its own, since the one LocalTrace adds is the
// final delivery's (RFC 5321 section 4.4: the server making the final
// delivery may remove Return-Path fields before adding its own), as
// Dovecot's LDA does; Postfix's pipe(8) with the R flag, for one, adds
// one before calling the deliver command.
func mailboxBody(m *Message) io.Reader {
	if m.Header.Count("Return-Path") == 0 {
		return m.Body.Open()
	}
	header, ok := m.Header.Without("Return-Path")
	if !ok {
		return m.Body.Open()
	}
	rest := m.Body.Open()
	if _, err := io.CopyN(io.Discard, rest, int64(len(m.Header.Raw))); err != nil {
		return m.Body.Open()
	}
	return io.MultiReader(bytes.NewReader(header), rest)
}

// queueHandoff is the built-in remote step: the durable outbound queue.
type queueHandoff struct {
	q        store.Queue
	onQueued func(id int64)
}

func (h *queueHandoff) HandOff(ctx context.Context, m *Message, rcpts []*Recipient) error {
	env := store.QueueEnvelope{From: m.Env.From, Ret: m.Env.Ret, EnvID: m.Env.EnvID}
	withDSN := false
	for _, rc := range rcpts {
		if rc.Err != nil {
			continue
		}
		env.To = append(env.To, rc.Address)
		p := rc.DSN
		if p.ORcpt == "" && rc.Original != rc.Address {
			// RFC 3461 section 4.2: a relaying MTA may add the ORCPT a
			// client did not give, the address it received; here where an
			// alias changed it, so that a notification from further on
			// names the address the sender used.
			p.ORcptType, p.ORcpt = "rfc822", rc.Original
			if !isASCII(rc.Original) {
				p.ORcptType = "utf-8" // RFC 6533 section 3
			}
		}
		withDSN = withDSN || p.Notify != nil || p.ORcpt != ""
		env.DSN = append(env.DSN, p)
	}
	if len(env.To) == 0 {
		return nil
	}
	if !withDSN {
		env.DSN = nil
	}
	id, err := h.q.Enqueue(ctx, env, io.MultiReader(bytes.NewReader(m.Trace), m.Body.Open()))
	if err == nil {
		for _, rc := range rcpts {
			if rc.Err == nil {
				rc.QueueID = id
			}
		}
	}
	if err == nil && h.onQueued != nil {
		h.onQueued(id)
	}
	return err
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
