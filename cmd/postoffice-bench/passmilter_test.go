package main

import (
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/d--j/go-milter"
)

// TestPassMilter speaks the milter protocol to the pass milter over a
// socket, as an MTA would, for two messages on one connection: each is
// accepted with one added field counting that message's body alone.
func TestPassMilter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newPassMilterServer()
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })

	c := milter.NewClient("tcp", ln.Addr().String(), milter.WithAction(milter.OptAddHeader))
	sess, err := c.Session(milter.NewMacroBag())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	for _, p := range []milter.OptProtocol{milter.OptNoConnect, milter.OptNoHelo, milter.OptNoMailFrom, milter.OptNoRcptTo, milter.OptNoData, milter.OptNoHeaders, milter.OptNoEOH, milter.OptNoBody} {
		if sess.ProtocolOption(p) {
			t.Errorf("the pass milter skips a stage (protocol option %v): it must ask for all of them", p)
		}
	}
	cont := func(act *milter.Action, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if act.Type != milter.ActionContinue {
			t.Fatalf("action %v, want continue", act.Type)
		}
	}
	cont(sess.Conn("client.example", milter.FamilyInet, 25, "192.0.2.1"))
	cont(sess.Helo("client.example"))
	for _, body := range []string{strings.Repeat("a line of the body\r\n", 5000), "short\r\n"} {
		cont(sess.Mail("<a@example.com>", ""))
		cont(sess.Rcpt("<b@example.com>", ""))
		cont(sess.DataStart())
		cont(sess.HeaderField("Subject", "test", nil))
		cont(sess.HeaderEnd())
		// Two chunks, as an MTA sends a body of more than one.
		half := len(body) / 2
		cont(sess.BodyChunk([]byte(body[:half])))
		cont(sess.BodyChunk([]byte(body[half:])))
		mods, act, err := sess.End()
		if err != nil {
			t.Fatal(err)
		}
		if act.Type != milter.ActionAccept {
			t.Errorf("end of message: %v, want accept", act.Type)
		}
		want := "pass; body " + strconv.Itoa(len(body)) + " octets"
		if len(mods) != 1 || mods[0].Type != milter.ActionAddHeader || mods[0].HeaderName != passHeader || mods[0].HeaderValue != want {
			t.Errorf("modifications %v, want one: AddHeader %s: %s", mods, passHeader, want)
		}
	}
}
