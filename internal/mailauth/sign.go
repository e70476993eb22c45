package mailauth

import (
	"bytes"
	"context"
	"crypto"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/postoffice-mail/postoffice/internal/bufpool"
)

// The header fields signed (RFC 6376 section 5.4). Section 5.4.1 lists
// those that SHOULD be signed; the rest are what a change of would change
// what the reader sees or the message's structure. Trace fields
// (Received, Return-Path) are never signed: relays add them (section
// 5.4.1: "SHOULD NOT be included").
//
// Oversigning: a name listed once more than the fields present makes the
// signature fail when a field of that name is added later (names without
// a field contribute nothing to the hash, RFC 6376 section 3.5, h=; see
// section 5.4.2 on several instances of a field and section 8.15 on
// added ones). oversignAlways are listed even when absent: an added
// Reply-To, Cc or second Subject breaks the signature; oversignPresent
// are oversigned only when present, so that a submission server adding a
// missing Date or Message-ID (RFC 6409 section 8) does not.
var (
	oversignAlways  = []string{"From", "Reply-To", "Subject", "To", "Cc"}
	oversignPresent = []string{"Date", "Message-ID", "Sender", "In-Reply-To", "References",
		"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
		// RFC 8058 section 4: one-click unsubscription needs both signed.
		"List-Unsubscribe", "List-Unsubscribe-Post"}
	signPresent = []string{"Resent-Date", "Resent-From", "Resent-To", "Resent-Cc",
		"Resent-Sender", "Resent-Message-ID", "List-Id", "List-Help", "List-Subscribe",
		"List-Post", "List-Owner", "List-Archive", "Content-ID", "Content-Description",
		"Autocrypt", "OpenPGP"}
)

// headerKeys returns the h= list for a message with these fields.
func headerKeys(fields []field) []string {
	count := func(name string) int {
		n := 0
		for _, f := range fields {
			if strings.EqualFold(f.name, name) {
				n++
			}
		}
		return n
	}
	var keys []string
	add := func(name string, n int) {
		for range n {
			keys = append(keys, name)
		}
	}
	for _, name := range oversignAlways {
		add(name, count(name)+1)
	}
	for _, name := range oversignPresent {
		if n := count(name); n > 0 {
			add(name, n+1)
		}
	}
	for _, name := range signPresent {
		add(name, count(name))
	}
	return keys
}

// Signer signs outgoing messages with the active DKIM keys of their
// author's domain (the domain of the From field: what DMARC aligns with,
// RFC 7489 section 3.1). It is safe for concurrent use; parsed private
// keys are kept between messages.
type Signer struct {
	Keys KeyStore // only DKIMKeys is used

	mu     sync.Mutex
	parsed map[string]parsedKey // by domain and selector
}

type parsedKey struct {
	pem    []byte
	signer crypto.Signer
}

func (s *Signer) signerFor(k Key) (crypto.Signer, error) {
	id := k.Domain + " " + k.Selector
	s.mu.Lock()
	p, ok := s.parsed[id]
	s.mu.Unlock()
	if ok && bytes.Equal(p.pem, k.PrivateKey) {
		return p.signer, nil
	}
	signer, err := k.Signer()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.parsed == nil {
		s.parsed = map[string]parsedKey{}
	}
	s.parsed[id] = parsedKey{pem: k.PrivateKey, signer: signer}
	s.mu.Unlock()
	return signer, nil
}

// Sign reads the message (in canonical form: CRLF line endings, as
// postoffice stores messages) once, streaming, and returns the
// DKIM-Signature fields to prepend to it, each ending in CRLF: one per
// active key of each From domain. It returns "" when no From domain has
// an active key. Canonicalization is relaxed/relaxed (RFC 6376 section
// 3.4.2 and 3.4.4), which survives the folding and whitespace changes of
// relays; the hash is SHA-256.
func (s *Signer) Sign(ctx context.Context, msg io.Reader) (string, error) {
	sigs, _, err := s.SignKeys(ctx, msg)
	return sigs, err
}

// SignKeys is Sign that also returns the keys it signs with (the active
// keys of the From domains), also when signing with them failed: nil
// when there are none, or when looking them up failed.
func (s *Signer) SignKeys(ctx context.Context, msg io.Reader) (string, []Key, error) {
	br := bufpool.Reader(msg)
	defer bufpool.Put(br) // readHeader copies what it keeps
	consumed, fields, err := readHeader(br)
	if err != nil {
		return "", nil, err
	}
	domains, _ := fromDomains(fields)
	var keys []Key
	for _, d := range domains {
		all, err := s.Keys.DKIMKeys(ctx, d)
		if err != nil {
			return "", nil, fmt.Errorf("dkim keys of %s: %w", d, err)
		}
		for _, k := range all {
			if k.Active() {
				keys = append(keys, k)
			}
		}
	}
	if len(keys) == 0 {
		return "", nil, nil
	}
	hkeys := headerKeys(fields)
	signers := make([]*dkim.Signer, 0, len(keys))
	writers := make([]io.Writer, 0, len(keys))
	defer func() {
		for _, sg := range signers {
			sg.Close()
		}
	}()
	for _, k := range keys {
		priv, err := s.signerFor(k)
		if err != nil {
			return "", keys, err
		}
		sg, err := dkim.NewSigner(&dkim.SignOptions{
			Domain:                 k.Domain,
			Selector:               k.Selector,
			Signer:                 priv,
			Hash:                   crypto.SHA256,
			HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization:   dkim.CanonicalizationRelaxed,
			HeaderKeys:             hkeys,
		})
		if err != nil {
			return "", keys, err
		}
		signers = append(signers, sg)
		writers = append(writers, sg)
	}
	w := io.MultiWriter(writers...)
	if _, err := w.Write(consumed); err != nil {
		return "", keys, err
	}
	if _, err := br.WriteTo(w); err != nil {
		return "", keys, err
	}
	var out strings.Builder
	for i, sg := range signers {
		if err := sg.Close(); err != nil {
			return "", keys, fmt.Errorf("dkim signature with %s: %w", keys[i].Selector, err)
		}
		out.WriteString(sg.Signature())
	}
	return out.String(), keys, nil
}
