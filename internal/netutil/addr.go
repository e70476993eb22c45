package netutil

import (
	"net"
	"net/netip"
)

// IP returns the IP address of a: a *net.TCPAddr's, or that of anything
// whose String is "host:port" with an IP host. An IPv4-mapped IPv6
// address is returned as IPv4, so that one client counts once. False when
// a has no IP address (nil, a Unix-domain socket).
func IP(a net.Addr) (netip.Addr, bool) {
	switch t := a.(type) {
	case nil:
		return netip.Addr{}, false
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(t.IP)
		return ip.Unmap(), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// IsLoopback reports whether a is in 127.0.0.0/8 or is ::1 (also as an
// IPv4-mapped address): a client on the same host, where a password sent
// in the clear crosses no network.
func IsLoopback(a net.Addr) bool {
	ip, ok := IP(a)
	return ok && ip.IsLoopback()
}
