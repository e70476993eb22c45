// Package mailauth is postoffice's mail authentication: DKIM keys and
// signing (RFC 6376, RFC 8463), and the checks of mail from other hosts
// (SPF, RFC 7208; DKIM verification; DMARC, RFC 7489) with the
// Authentication-Results field that reports them (RFC 8601) and the
// decision that DMARC asks for. It holds no state but parsed keys and
// does no I/O but DNS lookups through a resolver.Resolver and reading
// the message it is given; keys live behind the KeyStore interface that
// the store implements.
//
// The outbound side signs: Signer.Sign returns the DKIM-Signature fields
// to prepend to a message, one per active key of its author's domain.
// The inbound side checks: Checker.SPF at MAIL, Checker.Check at the end
// of the data, then StripAuthResults and the Verdict's AuthResults field
// on the way to the mailbox.
package mailauth
