package proxyproto

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
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

// listen starts a Listener on loopback with policy p.
func listen(t *testing.T, p Policy) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, p, nil)
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, l net.Listener, send string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if send != "" {
		if _, err := c.Write([]byte(send)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

type acceptResult struct {
	c   net.Conn
	err error
}

// acceptOne accepts in the background.
func acceptOne(l net.Listener) chan acceptResult {
	ch := make(chan acceptResult, 1)
	go func() {
		c, err := l.Accept()
		ch <- acceptResult{c, err}
	}()
	return ch
}

// closedByPeer reports whether c is closed from the other side within 5s.
func closedByPeer(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || strings.Contains(fmtErr(err), "reset")
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func TestListenerTrusted(t *testing.T) {
	l := listen(t, Policy{Enabled: true, Trusted: loopback})
	ch := acceptOne(l)
	// Header and the client's first command in one segment.
	dial(t, l, "PROXY TCP4 203.0.113.7 198.51.100.2 40000 110\r\nCAPA\r\n")
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	if got := r.c.RemoteAddr().String(); got != "203.0.113.7:40000" {
		t.Errorf("RemoteAddr = %s, want the client's 203.0.113.7:40000", got)
	}
	if got := r.c.LocalAddr().String(); got != "198.51.100.2:110" {
		t.Errorf("LocalAddr = %s, want 198.51.100.2:110", got)
	}
	if pa := r.c.(*Conn).ProxyAddr().String(); !strings.HasPrefix(pa, "127.0.0.1:") {
		t.Errorf("ProxyAddr = %s, want the real peer", pa)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(r.c, buf); err != nil || string(buf) != "CAPA\r\n" {
		t.Errorf("first bytes after the header: %q, %v", buf, err)
	}
}

func TestListenerV2Local(t *testing.T) {
	l := listen(t, Policy{Enabled: true, Trusted: loopback})
	ch := acceptOne(l)
	c := dial(t, l, string(v2(0, 0, nil)))
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.c.Close()
	if r.c.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("RemoteAddr of a LOCAL connection = %s, want the real peer %s", r.c.RemoteAddr(), c.LocalAddr())
	}
}

// TestListenerRefuses: an untrusted peer, a missing or bad header, and a
// peer that sends nothing are all closed; none holds up the next one.
func TestListenerRefuses(t *testing.T) {
	l := listen(t, Policy{Enabled: true, Trusted: loopback, Timeout: 500 * time.Millisecond})
	ch := acceptOne(l)
	silent := dial(t, l, "")
	noHeader := dial(t, l, "USER alice\r\n")
	bad := dial(t, l, "PROXY TCP4 1.2.3.4\r\n")
	dial(t, l, "PROXY TCP4 203.0.113.9 198.51.100.2 1 2\r\n")
	r := <-ch
	if r.err != nil || r.c.RemoteAddr().String() != "203.0.113.9:1" {
		t.Fatalf("Accept = %v, %v; want the connection with a good header", r.c, r.err)
	}
	r.c.Close()
	for name, c := range map[string]net.Conn{"without header": noHeader, "bad header": bad, "silent": silent} {
		if !closedByPeer(c) {
			t.Errorf("connection %s not closed", name)
		}
	}

	untrusted := listen(t, Policy{Enabled: true, Trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	ch = acceptOne(untrusted)
	c := dial(t, untrusted, "PROXY TCP4 203.0.113.9 198.51.100.2 1 2\r\n")
	if !closedByPeer(c) {
		t.Errorf("connection from an untrusted peer not closed")
	}
	select {
	case r := <-ch:
		t.Errorf("Accept returned %v, %v for an untrusted peer", r.c, r.err)
	default:
	}
}

// TestListenerDisabled: off, connections pass untouched; SetPolicy turns
// it on for the next ones.
func TestListenerDisabled(t *testing.T) {
	l := listen(t, Policy{})
	ch := acceptOne(l)
	c := dial(t, l, "PROXY TCP4 203.0.113.9 198.51.100.2 1 2\r\n")
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("RemoteAddr with the protocol off = %s, want the real peer %s", r.c.RemoteAddr(), c.LocalAddr())
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r.c, buf); err != nil || string(buf) != "PROXY" {
		t.Errorf("with the protocol off the header is data: %q, %v", buf, err)
	}
	r.c.Close()

	l.SetPolicy(Policy{Enabled: true, Trusted: loopback})
	ch = acceptOne(l)
	dial(t, l, "PROXY TCP4 203.0.113.9 198.51.100.2 1 2\r\n")
	r = <-ch
	if r.err != nil || r.c.RemoteAddr().String() != "203.0.113.9:1" {
		t.Errorf("after SetPolicy: %v, %v", r.c, r.err)
	}
}

// TestListenerClose: Close ends Accept with net.ErrClosed and closes the
// connections whose header was awaited.
func TestListenerClose(t *testing.T) {
	l := listen(t, Policy{Enabled: true, Trusted: loopback, Timeout: time.Minute})
	c := dial(t, l, "PRO")
	ch := acceptOne(l)
	// Wait until the connection is pending.
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		n := len(l.pending)
		l.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	l.Close()
	if r := <-ch; !errors.Is(r.err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", r.err)
	}
	if !closedByPeer(c) {
		t.Errorf("pending connection not closed by Close")
	}
}
