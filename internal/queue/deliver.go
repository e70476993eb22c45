package queue

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/postoffice-mail/postoffice/internal/smtpclient"
	"github.com/postoffice-mail/postoffice/internal/store"
)

// outcome is one recipient's result of an attempt.
type outcome struct {
	delivered bool
	perm      bool   // a failure that will not change: bounce
	status    string // RFC 3463
	// reply is the remote host's reply that decided (the 250 to the end
	// of the data for a delivery), with its command and host; text is
	// the reason in our own words when there is no reply, or beside it.
	reply store.RemoteReply
	text  string
	// remote names the host that decided, "" if none did.
	remote string
	// dsnPassed: the next hop offers DSN and took NOTIFY and ORCPT on
	// (RFC 3461 section 5.2.1).
	dsnPassed bool
	// note is worth reporting beside the result: what an MTA-STS policy
	// in testing mode would have refused.
	note string
}

// detail is the outcome in words, for the log: the reason, the reply,
// the note.
func (o outcome) detail() string { return joinNonEmpty(o.text, o.reply.String(), o.note) }

// words is what the outcome says besides the reply: the reason, the note.
func (o outcome) words() string { return joinNonEmpty(o.text, o.note) }

func joinNonEmpty(ss ...string) string {
	var parts []string
	for _, s := range ss {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

func permFailure(status, format string, a ...any) *outcome {
	return &outcome{perm: true, status: status, text: fmt.Sprintf(format, a...)}
}

func tempFailure(status, format string, a ...any) *outcome {
	return &outcome{status: status, text: fmt.Sprintf(format, a...)}
}

// clientOutcome is the outcome the SMTP client reported for a recipient
// at target t: a delivery when e is nil, else e's failure, the peer's
// reply kept as it came.
func clientOutcome(t smtpclient.Target, res *smtpclient.Result, e *smtpclient.Error) outcome {
	if e == nil {
		o := outcome{delivered: true, status: "2.0.0", remote: t.Host, dsnPassed: res.DSN,
			reply: store.RemoteReply{Reply: res.Final, Command: "end of data", Host: t.String()}}
		if st := res.Final.Status; st.Class == 2 {
			o.status = st.String()
		}
		return o
	}
	o := outcome{perm: e.Permanent, status: e.Status.String(), remote: t.Host}
	if o.status == "" {
		o.status = "4.0.0"
	}
	if e.HasReply() {
		o.reply = store.RemoteReply{Reply: e.Reply, Command: e.Command, Host: e.Host}
	} else {
		o.text = e.Error()
	}
	return o
}

// setupCommands are where a session fails before any message is in it:
// another host of the destination is tried then.
var setupCommands = map[string]bool{"connect": true, "greeting": true, "EHLO": true, "HELO": true, "STARTTLS": true, "AUTH": true}

// deliverGroup makes one attempt for the recipients of one destination:
// it finds the hosts to try and tries them in turn until one takes the
// transaction (RFC 5321 section 5.1). Connection and session failures
// move on to the next host; once a host has answered MAIL FROM, its
// replies decide.
func (r *Runner) deliverGroup(ctx context.Context, info *msgInfo, m store.QueuedMessage, g group) map[string]outcome {
	all := func(o outcome) map[string]outcome {
		res := make(map[string]outcome, len(g.rcpts))
		for _, rc := range g.rcpts {
			res[rc.Address] = o
		}
		return res
	}
	if g.dest.err != nil {
		return all(*g.dest.err)
	}
	targets, f := r.targets(ctx, g.dest)
	if f != nil {
		return all(*f)
	}
	level := g.dest.tls
	var sts stsPlan
	if g.dest.domain != "" {
		// MX delivery: the domain's MTA-STS policy (RFC 8461) applies.
		sts = r.policy(ctx, g.dest.domain)
		if targets, level, f = sts.enforce(targets, level); f != nil {
			r.log.Warn("MTA-STS policy refuses every MX host", "domain", g.dest.domain, "err", f.text)
			return all(*f)
		}
	}
	opts := smtpclient.Options{TLS: level}
	if rl := g.dest.relay; rl != nil && rl.User != "" {
		opts.Auth = &smtpclient.Auth{User: rl.User, Password: rl.Password}
	}
	var last *outcome
	for _, t := range targets {
		if ctx.Err() != nil {
			break
		}
		res, err := r.send(ctx, info, m, g, t, opts)
		e, isClient := smtpclient.AsError(err)
		if isClient && setupCommands[e.Command] {
			o := clientOutcome(t, nil, e)
			last = &o
			r.log.Info("host failed, trying the next", "host", t.String(), "err", e.Error())
			continue
		}
		if err != nil && !isClient {
			// Not the peer's doing: the message could not be read, or
			// the runner is shutting down.
			if ctx.Err() != nil {
				break
			}
			return all(*tempFailure("4.3.0", "%v", err))
		}
		note := sts.testingNote(t, res.TLS)
		if note != "" {
			r.log.Warn("MTA-STS testing", "host", t.String(), "note", note)
		}
		out := make(map[string]outcome, len(g.rcpts))
		for i, rc := range g.rcpts {
			o := clientOutcome(t, res, res.Rcpts[i].Err)
			o.note = note
			out[rc.Address] = o
		}
		return out
	}
	if ctx.Err() != nil {
		return all(*tempFailure("4.3.2", "delivery interrupted by shutdown"))
	}
	if last == nil {
		last = tempFailure("4.4.4", "no host to deliver to")
	}
	last.perm = false // another host, or the same later, may do better
	return all(*last)
}

// send runs one transaction for the group's recipients at t, on a
// connection of the pool.
func (r *Runner) send(ctx context.Context, info *msgInfo, m store.QueuedMessage, g group, t smtpclient.Target, opts smtpclient.Options) (*smtpclient.Result, error) {
	body, err := r.cfg.Store.OpenQueued(ctx, m.ID)
	if err != nil {
		return nil, fmt.Errorf("reading the queued message: %w", err)
	}
	defer body.Close()
	msg := &smtpclient.Message{From: m.From, Size: m.Size, EightBit: info.eightBit, UTF8Header: info.utf8Header,
		Ret: m.Ret, EnvID: m.EnvID, Body: body}
	for _, rc := range g.rcpts {
		msg.Rcpts = append(msg.Rcpts, smtpclient.Recipient{Addr: rc.Address, Notify: rc.DSN.Notify, ORcpt: rc.DSN.ORcpt, ORcptType: rc.DSN.ORcptType})
	}
	return r.pool.Send(ctx, t, opts, msg)
}

// targets resolves a destination into addresses to try, in order.
func (r *Runner) targets(ctx context.Context, d destination) ([]smtpclient.Target, *outcome) {
	if d.addr != "" {
		host, portStr, err := net.SplitHostPort(d.addr)
		if err != nil {
			return nil, tempFailure("4.3.5", "bad route %q: %v", d.addr, err)
		}
		port, _ := strconv.Atoi(portStr)
		if ip := net.ParseIP(host); ip != nil {
			return []smtpclient.Target{{Host: host, IP: ip, Port: port}}, nil
		}
		ips, err := r.cfg.Resolver.LookupIP(ctx, host)
		if err != nil {
			// The relay or route is configuration: a name that does not
			// resolve is a problem to fix, not a reason to bounce.
			return nil, tempFailure("4.4.3", "address lookup for %s failed: %v", host, err)
		}
		var ts []smtpclient.Target
		for _, ip := range sortAddrs(ips) {
			ts = append(ts, smtpclient.Target{Host: host, IP: ip, Port: port})
		}
		return capTargets(ts), nil
	}

	mx, f := lookupMX(ctx, r.cfg.Resolver, d.domain)
	if f != nil {
		return nil, f
	}
	var ts []smtpclient.Target
	var lookupErr error
	for _, h := range mx.hosts {
		ips, err := r.cfg.Resolver.LookupIP(ctx, h)
		if err != nil {
			lookupErr = err
			continue
		}
		for _, ip := range sortAddrs(ips) {
			ts = append(ts, smtpclient.Target{Host: h, IP: ip, Port: r.cfg.MXPort})
		}
	}
	if len(ts) == 0 {
		// RFC 3463 section 3.5: X.4.4 unable to route.
		return nil, tempFailure("4.4.4", "no address for the mail hosts of %s (%s): %v", d.domain, strings.Join(mx.hosts, ", "), lookupErr)
	}
	return capTargets(ts), nil
}

func capTargets(ts []smtpclient.Target) []smtpclient.Target {
	if len(ts) > maxTargets {
		return ts[:maxTargets]
	}
	return ts
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
