package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/d--j/go-milter"
)

// The pass milter (`postoffice-bench milter-pass --listen ADDR`, compare
// --checks-milter=pass) is a milter that costs its MTA everything the
// milter protocol does and itself next to nothing: it asks for every
// stage of every message (connection, HELO, envelope, each header field,
// the body, end of message), counts the body's octets, and at the end of
// the message adds one header field with that count and accepts. Put
// behind both servers, it measures what their milter clients cost
// them, apart from what a filter that scans mail (rspamd) costs itself.
// It runs as a process of its own, so that its CPU is counted with the
// filters', not with the load generator's.

// passHeader is the field the pass milter adds.
const passHeader = "X-Bench-Milter"

type passMilter struct {
	milter.NoOpMilter
	octets int
}

func (p *passMilter) MailFrom(string, string, milter.Modifier) (*milter.Response, error) {
	p.octets = 0
	return milter.RespContinue, nil
}

func (p *passMilter) BodyChunk(chunk []byte, _ milter.Modifier) (*milter.Response, error) {
	p.octets += len(chunk)
	return milter.RespContinue, nil
}

func (p *passMilter) EndOfMessage(m milter.Modifier) (*milter.Response, error) {
	if err := m.AddHeader(passHeader, "pass; body "+strconv.Itoa(p.octets)+" octets"); err != nil {
		return nil, err
	}
	return milter.RespAccept, nil
}

// newPassMilterServer is the pass milter's server: every stage asked for
// (no OptNo* protocol flags), adding a header field the one action.
func newPassMilterServer() *milter.Server {
	return milter.NewServer(
		milter.WithMilter(func() milter.Milter { return &passMilter{} }),
		milter.WithAction(milter.OptAddHeader),
	)
}

// cmdMilterPass serves the pass milter on --listen until ctx is done.
func cmdMilterPass(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("milter-pass", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve the milter protocol on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "pass milter on %s\n", ln.Addr())
	s := newPassMilterServer()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(sctx)
	}()
	if err := s.Serve(ln); err != nil && !errors.Is(err, milter.ErrServerClosed) {
		return err
	}
	return nil
}
