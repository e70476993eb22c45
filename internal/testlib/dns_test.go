package testlib

import (
	"context"
	"net"
	"slices"
	"testing"
)

func TestDNSFollowsCNAME(t *testing.T) {
	d := StartDNS(t,
		"alias.a.test. 60 IN CNAME second.a.test.",
		"second.a.test. 60 IN CNAME host.a.test.",
		"host.a.test. 60 IN A 127.0.0.7",
		"loop.a.test. 60 IN CNAME loop.a.test.",
	)
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, d.Addr)
	}}
	addrs, err := r.LookupHost(t.Context(), "alias.a.test")
	if err != nil || !slices.Equal(addrs, []string{"127.0.0.7"}) {
		t.Fatalf("LookupHost through two CNAMEs: %v, %v", addrs, err)
	}
	if _, err := r.LookupHost(t.Context(), "loop.a.test"); err == nil {
		t.Fatal("a CNAME loop resolved")
	}
}
