// Package proxyproto implements the receiving side of HAProxy's PROXY
// protocol, versions 1 (text) and 2 (binary): behind a load balancer or a
// TCP proxy, a connection's RemoteAddr is then the real client's address
// (what limits, logs, the loopback check for plaintext logins and the
// mail journal see), not the proxy's.
//
// The header is accepted only from trusted peers (the proxies' addresses):
// anyone else could claim any address. A connection from an untrusted
// peer, or without a valid header, is to be closed. Policy.Handshake
// reads the header with a deadline on the connection's own goroutine, so
// a peer that sends nothing never holds up the accept loop.
//
// Reference: "The PROXY protocol, Versions 1 & 2", HAProxy
// (doc/proxy-protocol.txt), cited below as "spec section N".
package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/postoffice-mail/postoffice/internal/netutil"
)

// DefaultTimeout bounds the wait for a header.
const DefaultTimeout = 5 * time.Second

// Policy says whether a listener expects headers, and from whom.
type Policy struct {
	// Enabled: every connection must start with a header. When false the
	// listener passes connections through untouched.
	Enabled bool
	// Trusted lists the peers (proxies) allowed to send a header.
	Trusted []netip.Prefix
	// Timeout bounds the wait for the header (DefaultTimeout if 0).
	Timeout time.Duration
}

// ParsePrefixes parses addresses ("192.0.2.1", "2001:db8::1") and
// prefixes ("10.0.0.0/8") into prefixes.
func ParsePrefixes(ss []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a prefix", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// trusts reports whether a (a peer's address) is in one of the prefixes.
func (p *Policy) trusts(a net.Addr) bool {
	ip, ok := netutil.IP(a)
	if !ok {
		return false
	}
	for _, pr := range p.Trusted {
		if pr.Contains(ip) {
			return true
		}
	}
	return false
}

// ErrUntrusted is returned by Handshake for a peer that is not one of the
// trusted proxies.
var ErrUntrusted = errors.New("PROXY protocol expected, peer not trusted")

// Handshake applies p to a newly accepted connection, on the goroutine
// that will serve it: with the protocol off it returns c untouched;
// otherwise it refuses an untrusted peer (ErrUntrusted) and reads the
// header within p.Timeout, returning the connection with the addresses it
// gives. On error the caller closes c.
func (p Policy) Handshake(c net.Conn) (net.Conn, error) {
	if !p.Enabled {
		return c, nil
	}
	if !p.trusts(c.RemoteAddr()) {
		return nil, ErrUntrusted
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	pc, err := handshake(c, timeout)
	if err != nil {
		return nil, err
	}
	return pc, nil
}

// Conn is a connection that came through a proxy: RemoteAddr and
// LocalAddr are those the header gave (the client's, and the address it
// connected to), or the real ones for a LOCAL or UNKNOWN header.
type Conn struct {
	net.Conn
	remote, local net.Addr
	rest          []byte // read past the header, returned first
}

// RemoteAddr is the client's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// LocalAddr is the address the client connected to.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// ProxyAddr is the proxy's address: the real peer of the connection.
func (c *Conn) ProxyAddr() net.Addr { return c.Conn.RemoteAddr() }

func (c *Conn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handshake reads the header of c within timeout.
func handshake(c net.Conn, timeout time.Duration) (*Conn, error) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(c, 256)
	h, err := ReadHeader(br)
	if err != nil {
		return nil, err
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	pc := &Conn{Conn: c, remote: c.RemoteAddr(), local: c.LocalAddr()}
	if h.Source != nil {
		pc.remote, pc.local = h.Source, h.Destination
	}
	if n := br.Buffered(); n > 0 {
		// The client's first bytes, if it did not wait for a greeting.
		rest, _ := br.Peek(n)
		pc.rest = bytes.Clone(rest)
	}
	return pc, nil
}

// Header is a parsed PROXY header.
type Header struct {
	Version int // 1 or 2
	// Source and Destination are the client's address and the one it
	// connected to; both nil for a v1 UNKNOWN or a v2 LOCAL or UNSPEC
	// header (the proxy's own connection, e.g. a health check), when the
	// real endpoints apply.
	Source, Destination *net.TCPAddr
}

// v2sig starts every version 2 header (spec section 2.2).
var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

// Errors of ReadHeader, wrapped with details.
var (
	ErrNoHeader  = errors.New("no PROXY protocol header")
	ErrMalformed = errors.New("malformed PROXY protocol header")
)

// ReadHeader reads one header from r, and nothing past it.
func ReadHeader(r *bufio.Reader) (Header, error) {
	first, err := r.Peek(1)
	if err != nil {
		return Header{}, err
	}
	switch first[0] {
	case 'P':
		return readV1(r)
	case '\r':
		return readV2(r)
	}
	return Header{}, ErrNoHeader
}

// v1MaxLen is the longest version 1 header, CRLF included (spec section
// 2.1: "a receiver ... must not try to read more than 107 bytes").
const v1MaxLen = 107

// readV1 parses "PROXY TCP4 192.0.2.1 192.0.2.2 56324 443\r\n"
// (spec section 2.1).
func readV1(r *bufio.Reader) (Header, error) {
	line := make([]byte, 0, v1MaxLen)
	for {
		b, err := r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return Header{}, err
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
		if len(line) == v1MaxLen {
			return Header{}, fmt.Errorf("%w: v1 line longer than %d bytes", ErrMalformed, v1MaxLen)
		}
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return Header{}, fmt.Errorf("%w: v1 line does not end in CRLF", ErrMalformed)
	}
	fields := bytes.Split(line[:len(line)-2], []byte(" "))
	if string(fields[0]) != "PROXY" || len(fields) < 2 {
		return Header{}, fmt.Errorf("%w: v1 line %q", ErrNoHeader, truncate(line))
	}
	h := Header{Version: 1}
	switch proto := string(fields[1]); proto {
	case "UNKNOWN":
		// The rest of the line is to be ignored.
		return h, nil
	case "TCP4", "TCP6":
		if len(fields) != 6 {
			return Header{}, fmt.Errorf("%w: v1 %s with %d fields", ErrMalformed, proto, len(fields))
		}
		src, err := v1Addr(fields[2], fields[4], proto == "TCP6")
		if err != nil {
			return Header{}, err
		}
		dst, err := v1Addr(fields[3], fields[5], proto == "TCP6")
		if err != nil {
			return Header{}, err
		}
		h.Source, h.Destination = src, dst
		return h, nil
	default:
		return Header{}, fmt.Errorf("%w: v1 protocol %q", ErrMalformed, truncate(fields[1]))
	}
}

func v1Addr(ip, port []byte, six bool) (*net.TCPAddr, error) {
	a, err := netip.ParseAddr(string(ip))
	if err != nil || a.Zone() != "" || a.Is4() == six {
		return nil, fmt.Errorf("%w: v1 address %q", ErrMalformed, truncate(ip))
	}
	p, err := strconv.ParseUint(string(port), 10, 16)
	if err != nil || (len(port) > 1 && port[0] == '0') {
		return nil, fmt.Errorf("%w: v1 port %q", ErrMalformed, truncate(port))
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(p))), nil
}

func truncate(b []byte) string {
	if len(b) > 40 {
		b = b[:40]
	}
	return string(b)
}

// readV2 parses the binary header (spec section 2.2): the signature, the
// version and command, the family and transport, the length of what
// follows, the addresses, then TLVs, which are skipped.
func readV2(r *bufio.Reader) (Header, error) {
	fixed := make([]byte, 16)
	if _, err := io.ReadFull(r, fixed); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, err
	}
	if !bytes.Equal(fixed[:12], v2sig) {
		return Header{}, ErrNoHeader
	}
	if v := fixed[12] >> 4; v != 2 {
		return Header{}, fmt.Errorf("%w: v2 version %d", ErrMalformed, v)
	}
	cmd, fam, proto := fixed[12]&0x0f, fixed[13]>>4, fixed[13]&0x0f
	rest := make([]byte, binary.BigEndian.Uint16(fixed[14:16]))
	if _, err := io.ReadFull(r, rest); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, err
	}
	h := Header{Version: 2}
	switch cmd {
	case 0x0:
		// LOCAL: the proxy's own connection; addresses are ignored.
		return h, nil
	case 0x1: // PROXY
	default:
		return Header{}, fmt.Errorf("%w: v2 command %#x", ErrMalformed, cmd)
	}
	if fam == 0x0 || fam == 0x3 {
		// UNSPEC, or AF_UNIX: no TCP address to show; the real
		// endpoints apply.
		return h, nil
	}
	if proto != 0x1 {
		return Header{}, fmt.Errorf("%w: v2 transport %#x is not a stream", ErrMalformed, proto)
	}
	var n int
	switch fam {
	case 0x1: // AF_INET
		n = 4
	case 0x2: // AF_INET6
		n = 16
	default:
		return Header{}, fmt.Errorf("%w: v2 address family %#x", ErrMalformed, fam)
	}
	if len(rest) < 2*n+4 {
		return Header{}, fmt.Errorf("%w: v2 addresses need %d bytes, length is %d", ErrMalformed, 2*n+4, len(rest))
	}
	srcIP, _ := netip.AddrFromSlice(rest[:n])
	dstIP, _ := netip.AddrFromSlice(rest[n : 2*n])
	srcPort := binary.BigEndian.Uint16(rest[2*n:])
	dstPort := binary.BigEndian.Uint16(rest[2*n+2:])
	h.Source = net.TCPAddrFromAddrPort(netip.AddrPortFrom(srcIP.Unmap(), srcPort))
	h.Destination = net.TCPAddrFromAddrPort(netip.AddrPortFrom(dstIP.Unmap(), dstPort))
	return h, nil
}
