package smtpclient

import (
	"context"
	"strings"
	"testing"

	"github.com/postoffice-mail/postoffice/internal/testlib"
)

// The benchmarks send a 4 KiB message to a sink on loopback: over one
// connection that the pool keeps (RSET between messages, pipelined),
// and over a new connection for each message (greeting, EHLO, QUIT
// each time), in plaintext and with STARTTLS.

var benchBody = "From: a@x.test\r\nTo: b@y.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ\r\n", 64)

func benchSink(b *testing.B, withTLS bool) (*testlib.SMTPSink, Options) {
	opts := testlib.SinkOptions{DSN: true}
	level := TLSNone
	if withTLS {
		cert := testCert(b)
		opts.Cert, level = &cert, TLSEncrypt
	}
	return testlib.StartSMTPSink(b, opts), Options{TLS: level}
}

func benchReused(b *testing.B, withTLS bool) {
	sink, opts := benchSink(b, withTLS)
	p := NewPool(testConfig(), PoolConfig{})
	defer p.Close()
	b.ResetTimer()
	for range b.N {
		res, err := p.Send(context.Background(), sinkTarget(sink), opts, msg("a@x.test", benchBody, "b@y.test"))
		if err != nil || res.Delivered() != 1 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if p.Dials() != 1 {
		b.Fatalf("%d connections", p.Dials())
	}
}

func benchNewConn(b *testing.B, withTLS bool) {
	sink, opts := benchSink(b, withTLS)
	b.ResetTimer()
	for range b.N {
		c, err := Dial(context.Background(), testConfig(), sinkTarget(sink), opts)
		if err != nil {
			b.Fatal(err)
		}
		res, err := c.Send(context.Background(), msg("a@x.test", benchBody, "b@y.test"))
		if err != nil || res.Delivered() != 1 {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkSendReused(b *testing.B)     { benchReused(b, false) }
func BenchmarkSendNewConn(b *testing.B)    { benchNewConn(b, false) }
func BenchmarkSendReusedTLS(b *testing.B)  { benchReused(b, true) }
func BenchmarkSendNewConnTLS(b *testing.B) { benchNewConn(b, true) }
