// Package clientinfo carries facts about the connected client (its
// address) through a context, from the protocol servers to the backends
// that need them (authentication penalties, logs), without widening the
// small backend interfaces.
package clientinfo

import (
	"context"
	"strings"
)

type remoteKey struct{}

// WithRemote returns ctx carrying the client's address (host:port).
func WithRemote(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, remoteKey{}, addr)
}

// Remote returns the client's address, or "" when unknown.
func Remote(ctx context.Context) string {
	s, _ := ctx.Value(remoteKey{}).(string)
	return s
}

// Clip makes text a client sent fit for a log attribute: at most 64
// octets (then "..."), and valid UTF-8 (other bytes become "?"). The log
// handler quotes what is left.
func Clip(s string) string {
	const limit = 64
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
