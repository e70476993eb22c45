// Package smtpclient is postoffice's outbound SMTP client (RFC 5321): it
// opens a connection to a next hop (an MX host, a route or a relay host),
// greets it with one EHLO, starts TLS as a policy asks (RFC 3207),
// authenticates to a relay (RFC 4954), and runs mail transactions with
// the extensions the peer offers: SIZE (RFC 1870), 8BITMIME (RFC 6152),
// SMTPUTF8 (RFC 6531), PIPELINING (RFC 2920), DSN (RFC 3461) and
// ENHANCEDSTATUSCODES (RFC 2034). A Pool keeps connections open between
// messages to the same destination, RSET between transactions, within a
// limit of connections per destination.
//
// The protocol code is our own, as mox, chasquid and Postfix own theirs:
// SMTP is the product here. A general-purpose client library could not say
// EHLO once and then decide about STARTTLS, pipeline a transaction, tell
// the reply to each RCPT apart from the one to the data, or keep a reply
// structured for bounces; the code that worked around it (a replayed
// greeting, a second EHLO, replies rendered as prose and parsed back) cost
// more than this engine.
//
// Every reply stays an smtpreply.Reply; every failure is an *Error that
// says which host, which command, whether a reply came and whether the
// failure is permanent.
package smtpclient
