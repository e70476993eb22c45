package milter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	gomilter "github.com/d--j/go-milter"
)

// chunkSize is the size of the body chunks sent (SMFIC_BODY): 64 KiB less
// the command octet, what every milter takes without negotiation.
const chunkSize = int(gomilter.DataSize64K)

// Transaction is the milters' view of one mail transaction, from MAIL to
// the end of the data (End) or an abort (Abort: RSET, QUIT, a refusal, a
// lost connection).
type Transaction struct {
	s       *Session
	discard *Verdict // a milter asked to discard the message
	done    bool
}

// Mail starts a transaction: the MAIL FROM address (without angle
// brackets; "" for the null reverse path), its ESMTP parameters, and
// the queue id that the macro i gives milters. A Reject or TempFail
// refuses the transaction (the Transaction is nil); a Discard is
// remembered, and End returns it again.
func (s *Session) Mail(ctx context.Context, from string, params []string, queueID string) (*Transaction, Verdict) {
	if s.tx != nil {
		s.tx.Abort(ctx)
	}
	if s.refused != nil {
		return nil, *s.refused
	}
	if !s.helo {
		// A client that sent MAIL without a greeting: the milters get one
		// in its name, the address literal (the protocol has MAIL follow
		// HELO).
		_, _, addr := s.family()
		if v := s.Helo(ctx, "["+addr+"]"); v.Refused() {
			return nil, v
		}
	}
	s.macros.Set(gomilter.MacroQueueId, queueID)
	s.macros.Set(gomilter.MacroMailAddr, from)
	s.macros.Set(gomilter.MacroMailHost, domainOf(from))
	s.macros.Set(gomilter.MacroMailMailer, "smtp")
	tx := &Transaction{s: s}
	s.tx = tx
	for _, m := range s.ms {
		m.txEnd, m.inTx, m.data = false, false, false
	}
	v := s.event(ctx, "mail", true, func(m *msession) (*gomilter.Action, error) {
		m.inTx = true
		return m.cs.Mail(from, strings.Join(params, " "))
	})
	switch v.Action {
	case Reject, TempFail:
		tx.Abort(ctx)
		return nil, v
	case Discard:
		tx.discard = &v
	}
	return tx, v
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// Rcpt sends one recipient the engine has accepted itself (its address
// without angle brackets, its ESMTP parameters). A Reject or TempFail
// refuses this recipient only.
func (t *Transaction) Rcpt(ctx context.Context, to string, params []string) Verdict {
	s := t.s
	if t.discard != nil {
		return Verdict{Action: Continue}
	}
	s.macros.Set(gomilter.MacroRcptAddr, to)
	s.macros.Set(gomilter.MacroRcptHost, domainOf(to))
	s.macros.Set(gomilter.MacroRcptMailer, "smtp")
	v := s.event(ctx, "rcpt", true, func(m *msession) (*gomilter.Action, error) {
		return m.cs.Rcpt(to, strings.Join(params, " "))
	})
	if v.Action == Discard {
		t.discard = &v
	}
	return v
}

// Data sends the DATA command, after the recipients. A Reject or
// TempFail refuses the transaction.
func (t *Transaction) Data(ctx context.Context) Verdict {
	if t.discard != nil {
		return Verdict{Action: Continue}
	}
	v := t.s.event(ctx, "data", true, func(m *msession) (*gomilter.Action, error) {
		m.data = true
		return m.cs.DataStart()
	})
	if v.Action == Discard {
		t.discard = &v
	}
	return v
}

// Abort ends the transaction without a message (SMFIC_ABORT to the
// milters in it): after RSET, a refusal, or before QUIT. It is a no-op
// after End.
func (t *Transaction) Abort(ctx context.Context) {
	if t.done {
		return
	}
	t.done = true
	s := t.s
	for _, m := range s.ms {
		if m.done || !m.inTx {
			continue
		}
		undo := deadline(ctx, m, m.cfg.CommandTimeout)
		err := m.cs.Abort(nil)
		undo()
		if err != nil {
			s.fail(m, "abort", err)
		}
		m.inTx, m.txEnd, m.data = false, false, false
	}
	if s.tx == t {
		s.tx = nil
	}
}

// ChangeKind is a kind of change a milter made at the end of a message.
type ChangeKind string

// The changes of the milter protocol (SMFIR_*).
const (
	AddHeader    ChangeKind = "add-header"    // a field appended
	ChangeHeader ChangeKind = "change-header" // the Index-th field of the name replaced
	DeleteHeader ChangeKind = "delete-header" // the Index-th field of the name removed
	InsertHeader ChangeKind = "insert-header" // a field inserted after Index fields
	ReplaceBody  ChangeKind = "replace-body"
	AddRcpt      ChangeKind = "add-rcpt"
	DelRcpt      ChangeKind = "del-rcpt"
	ChangeFrom   ChangeKind = "change-from"
	Quarantined  ChangeKind = "quarantine"
)

// Change is one change, for the journal.
type Change struct {
	Milter string
	Kind   ChangeKind
	Name   string // header field name
	Value  string // header field value
	Index  int    // header index (see ChangeKind)
	Addr   string // recipient or sender, without angle brackets
	Args   string // its ESMTP parameters
	Reason string // quarantine reason
}

// Address is an envelope address with its ESMTP parameters.
type Address struct {
	Addr string // without angle brackets
	Args string
}

// Result is the outcome of the end of a message: the chain's verdict
// and what the milters changed. The content changes are applied:
// Message reads the message the chain left. The envelope changes are
// for the engine to apply.
type Result struct {
	Verdict
	// Quarantine is the milters' reason to hold the message
	// (SMFIR_QUARANTINE), "" for none: the message is delivered marked.
	Quarantine string
	Changes    []Change // every change, in order
	// Sender is the new envelope sender, nil if unchanged.
	Sender *Address
	// Added and Deleted are the recipients added and removed, net of
	// each other, in order.
	Added   []Address
	Deleted []string

	c       *content
	changed bool
}

// Changed reports whether the header or the body changed.
func (r *Result) Changed() bool { return r.changed }

// Message returns the message after the milters' changes (the original
// when nothing changed). It reads from the message given to End: use it
// before that goes away, and before Close.
func (r *Result) Message() io.Reader {
	if r.c == nil {
		return bytes.NewReader(nil)
	}
	return io.MultiReader(bytes.NewReader(r.c.header()), io.NewSectionReader(r.c.body, 0, r.c.body.Size()))
}

// Close releases a replaced body's temporary file.
func (r *Result) Close() error {
	if r.c != nil {
		r.c.closeReplaced()
	}
	return nil
}

// End sends the message (size octets of msg, in canonical CRLF form) to
// the milters in chain order, each seeing the changes of those before:
// header fields, end of header, body chunks, end of message. The
// returned error is only a failure to read msg; a milter's failure is
// its OnError.
func (t *Transaction) End(ctx context.Context, msg io.ReaderAt, size int64) (*Result, error) {
	s := t.s
	defer func() {
		t.Abort(ctx) // resets the milters that did not see the end
	}()
	if t.discard != nil {
		return &Result{Verdict: *t.discard}, nil
	}
	if s.refused != nil {
		return &Result{Verdict: *s.refused}, nil
	}
	c, err := parseContent(msg, size)
	if err != nil {
		return nil, err
	}
	res := &Result{c: c}
	var quarantine []string
	for _, m := range s.ms {
		if m.done || m.txEnd {
			continue
		}
		held := len(quarantine)
		v, err := t.message(ctx, m, c, res, &quarantine)
		if err != nil {
			var rerr *readError
			if errors.As(err, &rerr) {
				res.Close()
				return nil, rerr.err
			}
			if fv := s.fail(m, "message", err); fv != nil {
				res.Close()
				return &Result{Verdict: *fv}, nil
			}
			continue
		}
		switch v.Action {
		case Reject, TempFail, Discard:
			s.c.observe(m.cfg.Name, "message", v.Action.String())
			res.Close()
			r := &Result{Verdict: v, Changes: res.Changes}
			return r, nil
		}
		action := "continue"
		if len(quarantine) > held {
			action = "quarantine"
		}
		s.c.observe(m.cfg.Name, "message", action)
	}
	res.Quarantine = strings.Join(quarantine, "; ")
	return res, nil
}

// readError marks a failure to read the message, not the milter's.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

// message runs the message through one milter and applies its changes.
func (t *Transaction) message(ctx context.Context, m *msession, c *content, res *Result, quarantine *[]string) (Verdict, error) {
	// step makes one exchange under the command timeout (cmd) or the end
	// timeout; it says whether the milter is done with the message.
	step := func(cmd bool, call func() (*gomilter.Action, error)) (Verdict, bool, error) {
		d := m.cfg.EndTimeout
		if cmd {
			d = m.cfg.CommandTimeout
		}
		undo := deadline(ctx, m, d)
		a, err := call()
		undo()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if err != nil {
			return Verdict{}, true, err
		}
		v := verdictOf(m, a)
		if v.Action != Continue {
			if v.Action == Accept {
				m.txEnd = true
			}
			return v, true, nil
		}
		return v, false, nil
	}
	if !m.data {
		m.data = true
		if v, stop, err := step(true, m.cs.DataStart); stop {
			return v, err
		}
	}
	lead := m.cs.ProtocolOption(gomilter.OptHeaderLeadingSpace)
	for _, f := range c.fields {
		if f.name == "" {
			continue
		}
		if v, stop, err := step(false, func() (*gomilter.Action, error) {
			return m.cs.HeaderField(f.name, f.milterValue(lead), nil)
		}); stop {
			return v, err
		}
	}
	if v, stop, err := step(false, m.cs.HeaderEnd); stop {
		return v, err
	}
	body := io.NewSectionReader(c.body, 0, c.body.Size())
	// A chunk's buffer no larger than the body: most bodies are far below
	// the 64 KiB a chunk may hold. An empty body goes as one empty chunk
	// (SMFIC_BODY of no octets): the client library ends a message only
	// after a chunk, and refused the end of an empty one.
	size := min(int64(chunkSize), c.body.Size())
	if size == 0 {
		if v, stop, err := step(false, func() (*gomilter.Action, error) {
			return m.cs.BodyChunk(nil)
		}); stop {
			return v, err
		}
	}
	if size > 0 {
		buf := make([]byte, size)
		for !m.cs.Skip() {
			n, rerr := io.ReadFull(body, buf)
			if n > 0 {
				if v, stop, err := step(false, func() (*gomilter.Action, error) {
					return m.cs.BodyChunk(buf[:n])
				}); stop {
					return v, err
				}
			}
			if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
				break
			}
			if rerr != nil {
				return Verdict{}, &readError{rerr}
			}
		}
	}

	undo := deadline(ctx, m, m.cfg.EndTimeout)
	m.conn.budget = t.s.c.opts.MaxMessageSize
	mods, a, err := m.cs.End()
	m.conn.budget = -1
	undo()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		return Verdict{}, err
	}
	m.inTx, m.data = false, false // End reset the milter's side

	v := verdictOf(m, a)
	if v.Action == Reject || v.Action == TempFail || v.Action == Discard {
		return v, nil
	}
	var newBody []byte
	replaced := false
	for _, mod := range mods {
		ch := Change{Milter: m.cfg.Name}
		switch mod.Type {
		case gomilter.ActionAddHeader, gomilter.ActionChangeHeader, gomilter.ActionInsertHeader:
			hc, err := c.apply(mod, lead)
			if err != nil {
				t.s.c.log.Warn("milter change ignored", "milter", m.cfg.Name, "err", err)
				continue
			}
			hc.Milter = m.cfg.Name
			ch = hc
			res.changed = true
		case gomilter.ActionReplaceBody:
			newBody = append(newBody, mod.Body...)
			if !replaced {
				replaced = true
				ch.Kind = ReplaceBody
				res.Changes = append(res.Changes, ch)
			}
			continue
		case gomilter.ActionAddRcpt:
			ch.Kind, ch.Addr, ch.Args = AddRcpt, gomilter.RemoveAngle(mod.Rcpt), mod.RcptArgs
			res.addRcpt(ch.Addr, ch.Args)
		case gomilter.ActionDelRcpt:
			ch.Kind, ch.Addr = DelRcpt, gomilter.RemoveAngle(mod.Rcpt)
			res.delRcpt(ch.Addr)
		case gomilter.ActionChangeFrom:
			ch.Kind, ch.Addr, ch.Args = ChangeFrom, gomilter.RemoveAngle(mod.From), mod.FromArgs
			res.Sender = &Address{Addr: ch.Addr, Args: ch.Args}
		case gomilter.ActionQuarantine:
			ch.Kind, ch.Reason = Quarantined, mod.Reason
			reason := mod.Reason
			if reason == "" {
				reason = m.cfg.Name
			}
			*quarantine = append(*quarantine, reason)
		default:
			continue
		}
		res.Changes = append(res.Changes, ch)
	}
	if replaced {
		if err := c.replaceBody(newBody, t.s.c.opts.TempDir, t.s.c.opts.MaxMessageSize); err != nil {
			return Verdict{}, err
		}
		res.changed = true
	}
	if v.Action == Accept {
		v.Action = Continue // accepting at the end is going on
	}
	return v, nil
}

func (r *Result) addRcpt(addr, args string) {
	for i, d := range r.Deleted {
		if strings.EqualFold(d, addr) {
			// Deleted, then added back: no change.
			r.Deleted = append(r.Deleted[:i], r.Deleted[i+1:]...)
			return
		}
	}
	r.Added = append(r.Added, Address{Addr: addr, Args: args})
}

func (r *Result) delRcpt(addr string) {
	for i, a := range r.Added {
		if strings.EqualFold(a.Addr, addr) {
			r.Added = append(r.Added[:i], r.Added[i+1:]...)
			return
		}
	}
	r.Deleted = append(r.Deleted, addr)
}
