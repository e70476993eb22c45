package server

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/config"
	"github.com/postoffice-mail/postoffice/internal/dsn"
	"github.com/postoffice-mail/postoffice/internal/journal"
	"github.com/postoffice-mail/postoffice/internal/milter"
	"github.com/postoffice-mail/postoffice/internal/router"
	"github.com/postoffice-mail/postoffice/internal/smtpd"
	"github.com/postoffice-mail/postoffice/internal/smtpreply"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// milterStage is the milters' exit point of one generation of an SMTP
// service: the smtpd hooks of each session (milterSession) and the end
// of the message in Deliver (smtpBackend.milterEnd), which comes after
// the sender authentication checks and before the router.
type milterStage struct {
	client     *milter.Client
	service    string // milter.ServiceSMTP or milter.ServiceSubmission
	subjectTag string // [spam] subject_tag
	journal    *journal.Writer
	log        *slog.Logger
}

// milterSettings are what a generation's milters are built from.
type milterSettings struct {
	milters    []config.Milter
	subjectTag string
}

func milterSettingsOf(c config.Config) milterSettings {
	return milterSettings{milters: c.Milter, subjectTag: c.Spam.SubjectTag}
}

// newMilterStage returns the stage for a service, nil when no milter
// applies to it.
func (s *Server) newMilterStage(c config.Config, submission bool) *milterStage {
	service := milter.ServiceSMTP
	if submission {
		service = milter.ServiceSubmission
	}
	var cfgs []milter.Config
	for _, m := range c.Milter {
		mc := m.MilterConfig()
		for _, svc := range mc.Services {
			if svc == service {
				cfgs = append(cfgs, mc)
				break
			}
		}
	}
	if len(cfgs) == 0 {
		return nil
	}
	log := s.log.With("service", service)
	client, err := milter.New(cfgs, milter.Options{
		Hostname:   c.Hostname,
		DaemonName: service,
		Version:    "postoffice",
		Logger:     log,
		TempDir:    os.TempDir(),
		Observe: func(name, _, action string) {
			s.metrics.MilterVerdict(name, action)
		},
		MaxMessageSize: int64(c.SMTP.MaxMessageSize) * 2,
	})
	if err != nil {
		// The configuration's checks ran before: this is a bug.
		panic(fmt.Sprintf("milters: %v", err))
	}
	return &milterStage{client: client, service: service, subjectTag: c.Spam.SubjectTag, journal: s.journal, log: log}
}

// OpenSession gives smtpd the milters' hooks for one connection (nil
// when no milter applies to the service).
func (b *smtpBackend) OpenSession(ctx context.Context, c smtpd.ConnInfo) smtpd.SessionHooks {
	st := b.milters
	if st == nil {
		return nil
	}
	conn := milter.Conn{Service: st.service}
	conn.Local, _ = netip.ParseAddrPort(c.LocalAddr)
	conn.Remote, _ = netip.ParseAddrPort(c.RemoteAddr)
	ms := &milterSession{st: st, s: st.client.Session(conn), remote: c.RemoteAddr}
	if c.TLS != nil {
		ms.TLS(*c.TLS)
	}
	return ms
}

// milterSession is one SMTP session's milters (smtpd.SessionHooks).
type milterSession struct {
	st     *milterStage
	s      *milter.Session
	tx     *milter.Transaction
	remote string
}

// replyOfVerdict is a milter's refusal as an SMTP reply.
func replyOfVerdict(v milter.Verdict) *smtpreply.Reply {
	if !v.Refused() {
		return nil
	}
	r := smtpreply.New(v.Reply.Code, v.Reply.Status, v.Reply.Lines...)
	return &r
}

// refused journals a milter's refusal (or, for a stage before the
// message, of a recipient).
func (ms *milterSession) refused(env *smtpd.Envelope, stage string, v milter.Verdict, to []string) {
	e := store.JournalEntry{Event: store.EventRefused, Client: ms.remote}
	if env != nil {
		e.TxID, e.From = env.ID, env.From
		if to == nil {
			to = env.To
		}
	}
	e.To = to
	e.Detail = fmt.Sprintf("milter %s at %s: %s", v.Milter, stage, v.Reply.String())
	if v.Err != nil {
		e.Detail += " (milter failed: " + v.Err.Error() + ")"
	}
	ms.st.journal.Record(e)
}

func (ms *milterSession) Connect(ctx context.Context) *smtpreply.Reply {
	v := ms.s.Connect(ctx)
	if v.Refused() {
		ms.refused(nil, "connect", v, nil)
	}
	return replyOfVerdict(v)
}

func (ms *milterSession) Helo(ctx context.Context, name string) *smtpreply.Reply {
	v := ms.s.Helo(ctx, name)
	if v.Refused() {
		ms.refused(nil, "HELO", v, nil)
	}
	return replyOfVerdict(v)
}

// TLS gives the milters the macros {tls_version}, {cipher} and
// {cipher_bits}, as Postfix writes them ("TLSv1.3").
func (ms *milterSession) TLS(cs tls.ConnectionState) {
	version := strings.Replace(tls.VersionName(cs.Version), "TLS 1", "TLSv1", 1)
	cipher := tls.CipherSuiteName(cs.CipherSuite)
	bits := 256
	if strings.Contains(cipher, "AES_128") {
		bits = 128
	}
	ms.s.TLS(version, cipher, bits, "", "")
}

func (ms *milterSession) Auth(mechanism, user string) { ms.s.Auth(mechanism, user) }

func (ms *milterSession) Mail(ctx context.Context, env *smtpd.Envelope, params []string) *smtpreply.Reply {
	tx, v := ms.s.Mail(ctx, env.From, params, env.ID)
	if v.Refused() {
		ms.refused(env, "MAIL", v, nil)
		return replyOfVerdict(v)
	}
	ms.tx = tx
	return nil
}

func (ms *milterSession) Rcpt(ctx context.Context, env *smtpd.Envelope, rcpt string, params []string) *smtpreply.Reply {
	if ms.tx == nil {
		return nil
	}
	v := ms.tx.Rcpt(ctx, rcpt, params)
	if v.Refused() {
		ms.refused(env, "RCPT", v, []string{rcpt})
	}
	return replyOfVerdict(v)
}

func (ms *milterSession) Data(ctx context.Context, env *smtpd.Envelope) *smtpreply.Reply {
	if ms.tx == nil {
		return nil
	}
	v := ms.tx.Data(ctx)
	if v.Refused() {
		ms.refused(env, "DATA", v, nil)
	}
	return replyOfVerdict(v)
}

func (ms *milterSession) Reset(ctx context.Context) {
	if ms.tx != nil {
		ms.tx.Abort(ctx)
		ms.tx = nil
	}
}

func (ms *milterSession) Close() { ms.s.Close() }

// milterEnd is the end of the message for the milters of the session:
// the message is spooled, given to them, and what they decided is
// applied to the transaction (renv) and the message. It returns the
// message to route and a function that frees it, or a nil reader when
// nothing is to be routed: the message was discarded, its 250 is due.
// A refusal is the error, the client's reply.
func (b *smtpBackend) milterEnd(ctx context.Context, env *smtpd.Envelope, renv *router.Envelope, body io.Reader) (io.Reader, func(), error) {
	ms, ok := env.Hooks.(*milterSession)
	if !ok || ms.tx == nil {
		return body, func() {}, nil
	}
	tx := ms.tx
	ms.tx = nil
	sp, err := router.Spool(body, os.TempDir())
	if err != nil {
		tx.Abort(ctx)
		return nil, nil, err
	}
	res, err := tx.End(ctx, sp, sp.Size())
	if err != nil {
		sp.Close()
		return nil, nil, err
	}
	release := func() { res.Close(); sp.Close() }
	switch res.Action {
	case milter.Reject, milter.TempFail:
		release()
		ms.refused(env, "end of data", res.Verdict, nil)
		return nil, nil, *replyOfVerdict(res.Verdict)
	case milter.Discard:
		release()
		ms.discarded(env, "discarded by milter "+res.Milter)
		return nil, nil, nil
	}
	if failed := ms.s.Failed(); len(failed) > 0 {
		// on_error = accept: logged by the milter client; the journal's
		// received entry says so too.
		b.milters.log.Warn("message passed unfiltered", "id", env.ID, "milters", failed)
		renv.Notes = append(renv.Notes, "unfiltered by milter "+strings.Join(failed, ", "))
	}
	if n := b.applyEnvelope(ctx, env, renv, res); n == 0 {
		release()
		ms.discarded(env, "every recipient deleted by the milters")
		return nil, nil, nil
	}
	spam := spamOf(res)
	if spam.score != nil {
		renv.SpamScore, renv.HasSpamScore = *spam.score, true
	}
	msg := res.Message()
	if spam.marked {
		renv.Notes = append(renv.Notes, "marked as spam")
		// No second X-Spam where the checks wrote one (DMARC's
		// quarantine): the subject tag is put once either way.
		checks, _ := renv.Checks.(*inboundTx)
		if msg, err = markSpam(msg, !spam.hasHeader && !checks.quarantined(), b.milters.subjectTag); err != nil {
			release()
			return nil, nil, err
		}
	}
	return msg, release, nil
}

// discarded journals a message dropped after its 250.
func (ms *milterSession) discarded(env *smtpd.Envelope, why string) {
	ms.st.log.Info("message discarded", "id", env.ID, "from", env.From, "rcpts", env.To, "reason", why)
	ms.st.journal.Record(store.JournalEntry{Event: store.EventDiscarded, TxID: env.ID, From: env.From, To: env.To,
		Client: ms.remote, Detail: why})
}

// applyEnvelope applies the milters' envelope changes (a new sender,
// recipients added and deleted) to renv and returns how many recipients
// remain. An added recipient that the router refuses (an unknown user)
// is left out, logged: the milter's wish cannot cost the others their
// copy.
func (b *smtpBackend) applyEnvelope(ctx context.Context, env *smtpd.Envelope, renv *router.Envelope, res *milter.Result) int {
	log := b.milters.log
	if res.Sender != nil {
		log.Info("milter changed the sender", "id", env.ID, "from", renv.From, "to", res.Sender.Addr)
		renv.From = res.Sender.Addr
	}
	for _, d := range res.Deleted {
		for i := 0; i < len(renv.To); i++ {
			if strings.EqualFold(renv.To[i], d) {
				renv.To = append(renv.To[:i:i], renv.To[i+1:]...)
				if i < len(renv.DSN) {
					renv.DSN = append(renv.DSN[:i:i], renv.DSN[i+1:]...)
				}
				i--
			}
		}
		log.Info("milter deleted a recipient", "id", env.ID, "rcpt", d)
	}
	for _, a := range res.Added {
		if err := b.router.CheckRecipient(ctx, renv, a.Addr); err != nil {
			log.Warn("recipient added by a milter refused", "id", env.ID, "rcpt", a.Addr, "err", err)
			continue
		}
		renv.To = append(renv.To, a.Addr)
		if renv.DSN != nil {
			renv.DSN = append(renv.DSN, dsn.RcptParams{})
		}
		log.Info("milter added a recipient", "id", env.ID, "rcpt", a.Addr)
	}
	return len(renv.To)
}
