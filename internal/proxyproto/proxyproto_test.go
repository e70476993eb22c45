package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// v2 builds a version 2 header: command, family<<4|transport, the address
// bytes and any TLVs.
func v2(cmd, famProto byte, body []byte) []byte {
	h := append([]byte{}, v2sig...)
	h = append(h, 0x20|cmd, famProto)
	h = binary.BigEndian.AppendUint16(h, uint16(len(body)))
	return append(h, body...)
}

func inet4(src, dst string, sport, dport uint16) []byte {
	var b []byte
	b = append(b, netip.MustParseAddr(src).AsSlice()...)
	b = append(b, netip.MustParseAddr(dst).AsSlice()...)
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func TestReadHeader(t *testing.T) {
	tlv := []byte{0x20, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00} // PP2_TYPE_SSL, skipped
	for _, c := range []struct {
		name     string
		in       []byte
		src, dst string // "" for none
		version  int
	}{
		{"v1 tcp4", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 110\r\n"), "192.0.2.1:56324", "198.51.100.2:110", 1},
		{"v1 tcp6", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 65535 995\r\n"), "[2001:db8::1]:65535", "[2001:db8::2]:995", 1},
		{"v1 port 0", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 0 25\r\n"), "192.0.2.1:0", "198.51.100.2:25", 1},
		{"v1 unknown", []byte("PROXY UNKNOWN\r\n"), "", "", 1},
		{"v1 unknown with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), "", "", 1},
		{"v1 longest", []byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
			"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535", 1},
		{"v2 inet", v2(1, 0x11, inet4("192.0.2.1", "198.51.100.2", 56324, 25)), "192.0.2.1:56324", "198.51.100.2:25", 2},
		{"v2 inet with tlv", v2(1, 0x11, append(inet4("192.0.2.1", "198.51.100.2", 1, 2), tlv...)), "192.0.2.1:1", "198.51.100.2:2", 2},
		{"v2 inet6", v2(1, 0x21, append(append(append(netip.MustParseAddr("2001:db8::1").AsSlice(),
			netip.MustParseAddr("2001:db8::2").AsSlice()...), 0x01, 0xbb), 0x00, 0x6e)), "[2001:db8::1]:443", "[2001:db8::2]:110", 2},
		{"v2 local", v2(0, 0x00, nil), "", "", 2},
		{"v2 local with addresses", v2(0, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)), "", "", 2},
		{"v2 unspec", v2(1, 0x00, nil), "", "", 2},
		{"v2 unix", v2(1, 0x31, make([]byte, 216)), "", "", 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			after := []byte("USER alice\r\n")
			r := bufio.NewReader(bytes.NewReader(append(append([]byte{}, c.in...), after...)))
			h, err := ReadHeader(r)
			if err != nil {
				t.Fatalf("ReadHeader: %v", err)
			}
			if h.Version != c.version {
				t.Errorf("version %d, want %d", h.Version, c.version)
			}
			str := func(a *net.TCPAddr) string {
				if a == nil {
					return ""
				}
				return a.String()
			}
			if str(h.Source) != c.src || str(h.Destination) != c.dst {
				t.Errorf("source %q destination %q, want %q %q", str(h.Source), str(h.Destination), c.src, c.dst)
			}
			if rest, _ := io.ReadAll(r); !bytes.Equal(rest, after) {
				t.Errorf("after the header: %q, want %q (nothing more consumed)", rest, after)
			}
		})
	}
}

func TestReadHeaderMalformed(t *testing.T) {
	long := "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 655350\r\n"
	for _, c := range []struct {
		name string
		in   []byte
		want error
	}{
		{"no header", []byte("USER alice\r\n"), ErrNoHeader},
		{"smtp", []byte("EHLO x\r\n"), ErrNoHeader},
		{"v1 not PROXY", []byte("PASS secret\r\n"), ErrNoHeader},
		{"v1 bare LF", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n"), ErrMalformed},
		{"v1 too long", []byte(long), ErrMalformed},
		{"v1 no end", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2"), io.ErrUnexpectedEOF},
		{"v1 unknown protocol", []byte("PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n"), ErrMalformed},
		{"v1 missing port", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n"), ErrMalformed},
		{"v1 extra field", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n"), ErrMalformed},
		{"v1 double space", []byte("PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n"), ErrMalformed},
		{"v1 v6 address in TCP4", []byte("PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n"), ErrMalformed},
		{"v1 v4 address in TCP6", []byte("PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n"), ErrMalformed},
		{"v1 bad address", []byte("PROXY TCP4 192.0.2.256 198.51.100.2 1 2\r\n"), ErrMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 2001:db8::2 1 2\r\n"), ErrMalformed},
		{"v1 port too large", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n"), ErrMalformed},
		{"v1 port leading zero", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 0110 2\r\n"), ErrMalformed},
		{"v1 port sign", []byte("PROXY TCP4 192.0.2.1 198.51.100.2 +1 2\r\n"), ErrMalformed},
		{"v2 bad signature", append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), ErrNoHeader},
		{"v2 version 1", func() []byte { h := v2(1, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)); h[12] = 0x11; return h }(), ErrMalformed},
		{"v2 bad command", func() []byte { h := v2(1, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)); h[12] = 0x2f; return h }(), ErrMalformed},
		{"v2 datagram", v2(1, 0x12, inet4("192.0.2.1", "198.51.100.2", 1, 2)), ErrMalformed},
		{"v2 bad family", v2(1, 0x41, make([]byte, 40)), ErrMalformed},
		{"v2 short addresses", v2(1, 0x11, make([]byte, 11)), ErrMalformed},
		{"v2 short inet6", v2(1, 0x21, make([]byte, 12)), ErrMalformed},
		{"v2 truncated", v2(1, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2))[:20], io.ErrUnexpectedEOF},
		{"v2 truncated fixed part", v2sig[:10], io.ErrUnexpectedEOF},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadHeader(bufio.NewReader(bytes.NewReader(c.in)))
			if !errors.Is(err, c.want) {
				t.Errorf("ReadHeader(%q): %v, want %v", c.in, err, c.want)
			}
		})
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 56324 110\r\nrest"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(1, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)))
	f.Add(v2(0, 0x00, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bufio.NewReader(bytes.NewReader(in))
		h, err := ReadHeader(r)
		if err != nil {
			return
		}
		if (h.Source == nil) != (h.Destination == nil) {
			t.Fatalf("one address without the other: %+v", h)
		}
		rest, _ := io.ReadAll(r)
		if !bytes.HasSuffix(in, rest) || len(in)-len(rest) > 16+65535 {
			t.Fatalf("consumed %d of %d bytes", len(in)-len(rest), len(in))
		}
		if h.Version == 1 && len(in)-len(rest) > v1MaxLen {
			t.Fatalf("v1 header of %d bytes", len(in)-len(rest))
		}
	})
}

func TestParsePrefixes(t *testing.T) {
	got, err := ParsePrefixes([]string{"127.0.0.1", "10.1.2.3/8", "::1", "2001:db8::/32", "::ffff:192.0.2.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1/32", "10.0.0.0/8", "::1/128", "2001:db8::/32", "192.0.2.1/32"}
	for i, p := range got {
		if p.String() != want[i] {
			t.Errorf("prefix %d = %s, want %s", i, p, want[i])
		}
	}
	if _, err := ParsePrefixes([]string{"localhost"}); err == nil {
		t.Errorf("ParsePrefixes(localhost) succeeded")
	}
}

// accepted applies p to a connection accepted on loopback from a client
// that sent send; it returns Handshake's connection, the client's end and Handshake's error.
func accepted(t *testing.T, p Policy, send string) (c, client net.Conn, err error) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if send != "" {
		if _, err := client.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	c, err = p.Handshake(server)
	return c, client, err
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestHandshakeTrusted(t *testing.T) {
	// Header and the client's first command in one segment.
	c, _, err := accepted(t, Policy{Enabled: true, Trusted: loopback}, "PROXY TCP4 203.0.113.7 198.51.100.2 40000 110\r\nCAPA\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RemoteAddr().String(); got != "203.0.113.7:40000" {
		t.Errorf("RemoteAddr = %s, want the client's 203.0.113.7:40000", got)
	}
	if got := c.LocalAddr().String(); got != "198.51.100.2:110" {
		t.Errorf("LocalAddr = %s, want 198.51.100.2:110", got)
	}
	if pa := c.(*Conn).ProxyAddr().String(); !strings.HasPrefix(pa, "127.0.0.1:") {
		t.Errorf("ProxyAddr = %s, want the real peer", pa)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "CAPA\r\n" {
		t.Errorf("first bytes after the header: %q, %v", buf, err)
	}
}

func TestHandshakeV2Local(t *testing.T) {
	c, client, err := accepted(t, Policy{Enabled: true, Trusted: loopback}, string(v2(0, 0, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("RemoteAddr of a LOCAL connection = %s, want the real peer %s", c.RemoteAddr(), client.LocalAddr())
	}
}

// TestHandshakeRefuses: a missing or bad header, a peer that sends
// nothing within the timeout, and an untrusted peer are refused.
func TestHandshakeRefuses(t *testing.T) {
	p := Policy{Enabled: true, Trusted: loopback, Timeout: 300 * time.Millisecond}
	for _, tc := range []struct {
		name, send string
		want       error
	}{
		{"without header", "USER alice\r\n", ErrNoHeader},
		{"bad header", "PROXY TCP4 1.2.3.4\r\n", ErrMalformed},
		{"silent", "", os.ErrDeadlineExceeded},
	} {
		if c, _, err := accepted(t, p, tc.send); !errors.Is(err, tc.want) || c != nil {
			t.Errorf("%s: %v, %v; want %v", tc.name, c, err, tc.want)
		}
	}
	untrusted := Policy{Enabled: true, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if c, _, err := accepted(t, untrusted, "PROXY TCP4 203.0.113.9 198.51.100.2 1 2\r\n"); !errors.Is(err, ErrUntrusted) || c != nil {
		t.Errorf("untrusted peer: %v, %v", c, err)
	}
}

// TestHandshakeDisabled: off, connections pass untouched, a header
// included.
func TestHandshakeDisabled(t *testing.T) {
	c, client, err := accepted(t, Policy{}, "PROXY TCP4 203.0.113.9 198.51.100.2 1 2\r\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.RemoteAddr().String() != client.LocalAddr().String() {
		t.Errorf("RemoteAddr with the protocol off = %s, want the real peer %s", c.RemoteAddr(), client.LocalAddr())
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "PROXY" {
		t.Errorf("with the protocol off the header is data: %q, %v", buf, err)
	}
}
