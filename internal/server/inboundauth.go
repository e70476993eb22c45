package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/mailauth"
	"github.com/postoffice-mail/postoffice/internal/message"
	"github.com/postoffice-mail/postoffice/internal/metrics"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// inboundChecks runs the checks of [auth_checks] on mail that other hosts
// send to the MX service: SPF at MAIL, DKIM and DMARC at the end of the
// data; it refuses what the author domain's DMARC policy asks to refuse
// and hands on the rest with an Authentication-Results field (RFC 8601)
// in front, the forged ones removed. Sessions that logged in are not
// checked (submission, or the MX with AUTH): their mail gets auth=pass;
// nor is the deliver command, which does not come this way. A nil
// *inboundChecks checks nothing.
type inboundChecks struct {
	checker *mailauth.Checker
	metrics *metrics.Metrics
	log     *slog.Logger
	// record writes a refusal to the mail journal (an accepted message
	// has its results in the router's received entry).
	record func(...store.JournalEntry)
	// subjectTag ([spam] subject_tag) goes before the Subject of mail
	// DMARC says to quarantine, as of mail a milter marks as spam.
	subjectTag string
}

// authCheckSettings are what a generation's checks are built from.
type authCheckSettings struct {
	enabled     bool
	dmarcReject string
	authservID  string
	dnsServer   string
}

func authCheckSettingsOf(c config.Config) authCheckSettings {
	a := c.AuthChecks
	id := a.AuthServID
	if id == "" {
		id = c.ServiceHostname(c.SMTP.Service)
	}
	return authCheckSettings{enabled: a.Enabled, dmarcReject: a.DMARCReject, authservID: id, dnsServer: c.Queue.DNSServer}
}

// newInboundChecks returns the checks of the MX service, nil when
// [auth_checks] is off.
func (s *Server) newInboundChecks(cfg config.Config) *inboundChecks {
	a := authCheckSettingsOf(cfg)
	if !a.enabled {
		return nil
	}
	c := &mailauth.Checker{Resolver: s.dns.get(cfg), AuthServID: a.authservID, RejectAs: mailauth.Reject}
	if a.dmarcReject == "quarantine" {
		c.RejectAs = mailauth.Quarantine
	}
	return &inboundChecks{checker: c, metrics: s.metrics, log: s.log.With("service", "smtp"), record: s.journal.Record,
		subjectTag: cfg.Spam.SubjectTag}
}

// applies reports whether a transaction is checked: one that did not
// log in, on the MX service.
func (c *inboundChecks) applies(env *smtpd.Envelope) bool {
	return c != nil && env.AuthUser == "" && !env.Submission
}

// inboundTx is a checked transaction: the SPF results of MAIL time, then
// the verdict of the end of the data. It is the router envelope's Checks,
// which the journal's received entry shows.
type inboundTx struct {
	spf     mailauth.SPFResults
	verdict *mailauth.Verdict
	action  string // accept, quarantine, reject, tempfail
}

// quarantined says whether DMARC asked to quarantine the message, which
// is then delivered marked as spam.
func (t *inboundTx) quarantined() bool {
	return t != nil && t.action == string(mailauth.Quarantine)
}

// String sums the results up for the journal: "spf=pass dkim=pass
// dmarc=pass", and what was done when the message was not simply
// accepted.
func (t *inboundTx) String() string {
	if t == nil || t.verdict == nil {
		return ""
	}
	v := t.verdict
	parts := []string{"spf=" + v.SPF.MailFrom.Result}
	if len(v.DKIM) == 0 {
		parts = append(parts, "dkim="+mailauth.ResultNone)
	}
	for _, d := range v.DKIM {
		parts = append(parts, "dkim="+d.Result+" ("+d.Domain+")")
	}
	dmarc := "dmarc=" + v.DMARC.Result
	if v.DMARC.Domain != "" {
		dmarc += " (" + v.DMARC.Domain
		if v.DMARC.Policy != "" {
			dmarc += " p=" + string(v.DMARC.Policy)
		}
		dmarc += ")"
	}
	parts = append(parts, dmarc)
	if t.action != string(mailauth.Accept) {
		parts = append(parts, t.action)
	}
	return strings.Join(parts, " ")
}

// atMail checks SPF when MAIL arrives (RFC 7208 section 2.4: the MAIL
// FROM identity, and the HELO identity, section 2.3). A failure is not
// refused here: DMARC decides at the end of the data, where an aligned
// DKIM signature may still pass the message (RFC 7489 section 6.6.2).
func (c *inboundChecks) atMail(ctx context.Context, env *smtpd.Envelope, renv *router.Envelope) {
	if !c.applies(env) {
		return
	}
	spf := c.checker.SPF(ctx, c.envelope(env))
	renv.Checks = &inboundTx{spf: spf}
}

func (c *inboundChecks) envelope(env *smtpd.Envelope) mailauth.Envelope {
	host, _, err := net.SplitHostPort(env.RemoteAddr)
	if err != nil {
		host = env.RemoteAddr
	}
	return mailauth.Envelope{IP: net.ParseIP(host), HELO: env.Helo, MailFrom: env.From}
}

// atData checks the message at the end of the data. It reads body to its
// end and returns what to route instead: the Authentication-Results
// field, X-Spam for a quarantined message, and the message without the
// Authentication-Results fields that claim our authserv-id (RFC 8601
// section 5); release frees the copy once routed. A refusal is the
// error, as the SMTP reply to give. Transactions that are not checked
// pass as they came.
func (c *inboundChecks) atData(ctx context.Context, env *smtpd.Envelope, body io.Reader) (out io.Reader, release func(), err error) {
	if c != nil && env.AuthUser != "" {
		return c.authenticated(env, body)
	}
	if !c.applies(env) {
		return body, func() {}, nil
	}
	renv := transaction(env)
	tx, _ := renv.Checks.(*inboundTx)
	var spf *mailauth.SPFResults
	if tx != nil {
		spf = &tx.spf
	} else {
		// No SPF at MAIL (the transaction began before a reload that
		// switched the checks on): Check does it now.
		tx = &inboundTx{}
	}
	sp, err := router.Spool(body, "")
	if err != nil {
		if _, ok := smtpreply.As(err); ok {
			return nil, nil, err // the body reader's own verdict (too big...)
		}
		return nil, nil, smtpreply.New(451, "4.3.0", "Error reading the message, try again later")
	}
	v, err := c.checker.Check(ctx, c.envelope(env), spf, sp.Open())
	if err != nil {
		sp.Close()
		if errors.Is(err, mailauth.ErrHeaderTooLong) {
			// RFC 3463 section 3.7: X.6.0, other or undefined media error.
			return nil, nil, smtpreply.New(554, "5.6.0", "Header section too long")
		}
		return nil, nil, smtpreply.New(451, "4.3.0", "Error reading the message, try again later")
	}
	tx.verdict, tx.action = v, string(v.Action)
	renv.Checks = tx
	reply := c.decide(v, tx)
	c.count(v, tx.action)
	c.log.Info("authentication checks", "id", env.ID, "client", env.RemoteAddr, "from", env.From,
		"spf", v.SPF.MailFrom.Result, "dkim", dkimResults(v.DKIM), "dmarc", v.DMARC.Result,
		"dmarc_domain", v.DMARC.Domain, "policy", string(v.DMARC.Policy), "action", tx.action)
	if reply != nil {
		c.rejected(env, sp, tx, reply)
		sp.Close()
		return nil, nil, reply
	}
	head := v.AuthResults
	stripped := mailauth.StripAuthResults(sp.Open(), c.checker.AuthServID)
	release = func() { stripped.Close(); sp.Close() }
	var msg io.Reader = stripped
	if tx.quarantined() {
		// RFC 7489 section 6.3: quarantine, for a POP3 user a message
		// marked as spam (spam.go): X-Spam below our field, and the
		// subject tag.
		head += SpamHeader
		if msg, err = markSpam(msg, false, c.subjectTag); err != nil {
			// Not the header's size: Check bounded it the same.
			release()
			return nil, nil, smtpreply.New(451, "4.3.0", "Error reading the message, try again later")
		}
	}
	// RFC 8601 section 4: the field goes on top, as a trace field does;
	// the router's Received goes above it.
	out = io.MultiReader(strings.NewReader(head), msg)
	return out, release, nil
}

// authenticated hands on a message from a user who logged in
// (submission, or the MX with AUTH), unchecked, with the field that says
// so (RFC 8601 section 2.7.4: auth=pass smtp.auth=USER); the fields that
// claim our authserv-id are removed all the same, so that a user cannot
// forge our verdict for another user's mailbox.
func (c *inboundChecks) authenticated(env *smtpd.Envelope, body io.Reader) (io.Reader, func(), error) {
	stripped := mailauth.StripAuthResults(body, c.checker.AuthServID)
	head := mailauth.AuthResultsSubmission(c.checker.AuthServID, env.AuthUser)
	return io.MultiReader(strings.NewReader(head), stripped), func() { stripped.Close() }, nil
}

// decide returns the refusal for a verdict, nil to deliver. Beyond the
// Checker's reject (550 5.7.1), a DMARC temperror of a domain whose
// policy is reject, which the Checker delivers, is refused for now: an
// aligned SPF or DKIM check failed on a DNS error and might have passed,
// or not; RFC 7208 section 8.6 asks for 451 and X.4.3 when temperror is
// refused (RFC 3463 section 3.5: directory server failure), and the
// sender tries again instead of a forgery slipping through while the DNS
// is down. Every other temperror is delivered with the result recorded
// (RFC 7489 section 6.6.3 leaves DNS failures to the receiver): a
// failed record lookup says nothing of a policy to enforce.
func (c *inboundChecks) decide(v *mailauth.Verdict, tx *inboundTx) error {
	switch {
	case v.Action == mailauth.Reject:
		return smtpreply.New(v.Reply.Code, v.Reply.Status, v.Reply.Text)
	case v.DMARC.Result == mailauth.ResultTempError && v.DMARC.Policy == mailauth.DispositionReject &&
		c.checker.RejectAs != mailauth.Quarantine:
		tx.action = "tempfail"
		return smtpreply.New(451, "4.4.3", fmt.Sprintf("DMARC of %s cannot be checked for now (DNS failure), try again later", v.DMARC.Domain))
	}
	return nil
}

// rejected records a refused message in the journal: its envelope, the
// reply and the results.
func (c *inboundChecks) rejected(env *smtpd.Envelope, sp router.Spooled, tx *inboundTx, reply error) {
	msgID := ""
	if h, err := message.ReadHeader(sp.Open()); err == nil {
		msgID = strings.TrimSpace(h.Get("Message-ID"))
	}
	c.record(store.JournalEntry{
		Time: time.Now(), Event: store.EventRefused, MessageID: msgID, TxID: env.ID,
		From: env.From, To: append([]string(nil), env.To...), Size: sp.Size(), Client: env.RemoteAddr,
		Detail: reply.Error() + "; " + tx.String(),
	})
}

// count feeds /metrics: each result, and the action.
func (c *inboundChecks) count(v *mailauth.Verdict, action string) {
	c.metrics.AuthCheck("spf", v.SPF.MailFrom.Result)
	if len(v.DKIM) == 0 {
		c.metrics.AuthCheck("dkim", mailauth.ResultNone)
	}
	for _, d := range v.DKIM {
		c.metrics.AuthCheck("dkim", d.Result)
	}
	c.metrics.AuthCheck("dmarc", v.DMARC.Result)
	c.metrics.AuthAction(action)
}

func dkimResults(ds []mailauth.DKIMResult) string {
	if len(ds) == 0 {
		return mailauth.ResultNone
	}
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Result + ":" + d.Domain
	}
	return strings.Join(out, ",")
}
