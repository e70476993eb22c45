package server

import (
	"context"
	"log/slog"
	"net/mail"
	"slices"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/address"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// dkimSigner is the router's DKIM signing step (RFC 6376): it signs, once,
// at intake, each message that postoffice sends in its own name, with the
// active keys of its author's (From) domain, for every copy: those queued
// for remote recipients and those delivered to local mailboxes alike, so
// that a message is signed once whichever way it goes and however often
// its delivery is retried. The stored copies carry the signature; a key
// retired after a message was queued has its record kept published for a
// while (mailauth.RetiredKeyPublished) so that the signature still
// verifies.
//
// Signed: mail from authenticated users (submission, or the MX service
// with AUTH) whose From domain is the user's (the domain of its login, or
// of the envelope sender when that is one of its addresses), and the
// notifications postoffice makes itself (bounces and other DSNs, source
// "bounce"). A user of one hosted domain writing From another gets no
// signature of that other domain: it would pass that domain's DMARC.
//
// Not signed: mail that came in from other hosts on port 25 and is
// forwarded by an alias, nor what `postoffice deliver` hands in (an MTA
// received it), whatever From it claims: a signature claims
// responsibility for the message (RFC 6376 section 1), and signing those
// would lend our domain's name to forged mail.
//
// A notification's From is MAILER-DAEMON at the hostname, which seldom has
// keys of its own: it is signed with those of the nearest parent domain
// that has some (mail.example.com's with example.com's), which DMARC's
// relaxed alignment accepts (RFC 7489 section 3.1.1).
//
// A failure to sign is logged and counted, and the message goes unsigned:
// a signature is worth less than the mail.
type dkimSigner struct {
	keys    *mailauth.KeyCache
	users   userFinder
	author  *mailauth.Signer
	notices *mailauth.Signer
	log     *slog.Logger
	metrics *metrics.Metrics
}

// userFinder finds the user of an address (store.Directory).
type userFinder interface {
	UserByAddress(ctx context.Context, address string) (store.User, error)
}

func newDKIMSigner(keys mailauth.KeyStore, users userFinder, log *slog.Logger, m *metrics.Metrics) *dkimSigner {
	cache := &mailauth.KeyCache{Store: keys}
	return &dkimSigner{
		keys:    cache,
		users:   users,
		author:  &mailauth.Signer{Keys: usersDomains{cache}},
		notices: &mailauth.Signer{Keys: parentKeys{cache}},
		log:     log.With("service", "dkim"),
		metrics: m,
	}
}

// ProcessEnvelope implements router.EnvelopeProcessor. It must run after
// every step that changes the message: it signs the message as it then
// is, and the signature goes above every other field.
func (d *dkimSigner) ProcessEnvelope(ctx context.Context, m *router.Message) error {
	env := m.Env
	signer := d.author
	switch {
	case env.Source == "bounce":
		signer = d.notices
	case env.AuthUser == "":
		return nil
	default:
		ctx = context.WithValue(ctx, signableKey{}, d.userDomains(ctx, env))
	}
	fields, keys, err := signer.SignKeys(ctx, m.Body.Open())
	if err != nil {
		domain := ""
		if len(keys) > 0 {
			domain = keys[0].Domain
		} else if a, perr := mail.ParseAddress(m.Header.Get("From")); perr == nil {
			domain = strings.ToLower(a.Address[strings.LastIndexByte(a.Address, '@')+1:])
		}
		d.log.Error("DKIM signing failed: the message goes unsigned", "id", env.ID, "domain", domain, "err", err)
		d.metrics.DKIMSigned(domain, false)
		m.Notes = append(m.Notes, "dkim failed: "+err.Error())
		return nil
	}
	if fields == "" {
		return nil
	}
	m.Trace = append([]byte(fields), m.Trace...)
	var domains, selectors []string
	for _, k := range keys {
		if !slices.Contains(domains, k.Domain) {
			domains = append(domains, k.Domain)
			d.metrics.DKIMSigned(k.Domain, true)
		}
		selectors = append(selectors, k.Selector)
	}
	m.Notes = append(m.Notes, "dkim-signed d="+strings.Join(domains, ",")+" s="+strings.Join(selectors, ","))
	return nil
}

// userDomains are the domains an authenticated user's mail is signed
// for: that of its login, and that of the envelope sender when the
// sender is one of the user's addresses.
func (d *dkimSigner) userDomains(ctx context.Context, env *router.Envelope) []string {
	domains := []string{address.DomainOf(env.AuthUser)}
	from, err := address.Normalize(env.From)
	if err != nil || slices.Contains(domains, address.DomainOf(from)) {
		return domains
	}
	if u, err := d.users.UserByAddress(ctx, from); err == nil && u.Address == env.AuthUser {
		domains = append(domains, address.DomainOf(from))
	}
	return domains
}

// signableKey carries, in a context, the domains a message may be signed
// for.
type signableKey struct{}

// usersDomains has no keys for a domain outside those the context allows
// (signableKey).
type usersDomains struct{ mailauth.KeyStore }

func (u usersDomains) DKIMKeys(ctx context.Context, domain string) ([]mailauth.Key, error) {
	allowed, _ := ctx.Value(signableKey{}).([]string)
	if !slices.Contains(allowed, domain) {
		return nil, nil
	}
	return u.KeyStore.DKIMKeys(ctx, domain)
}

// parentKeys gives a domain without active keys those of its nearest
// parent that has some, down to a name of two labels.
type parentKeys struct{ mailauth.KeyStore }

func (p parentKeys) DKIMKeys(ctx context.Context, domain string) ([]mailauth.Key, error) {
	for {
		keys, err := p.KeyStore.DKIMKeys(ctx, domain)
		if err != nil {
			return nil, err
		}
		for _, k := range keys {
			if k.Active() {
				return keys, nil
			}
		}
		_, parent, ok := strings.Cut(domain, ".")
		if !ok || !strings.Contains(parent, ".") {
			return nil, nil
		}
		domain = parent
	}
}
