package e2e

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/smtp"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// crashLedger is what the clients saw: which messages were acknowledged
// with 250, which were retrieved and deleted by a QUIT that answered +OK,
// and which were in a session whose QUIT went unanswered (the deletion may
// or may not have been committed when the server died).
type crashLedger struct {
	mu        sync.Mutex
	acked     map[string]bool
	deleted   map[string]bool
	uncertain map[string]bool
}

var idRE = regexp.MustCompile(`Subject: crash-(\d+)-(\d+)`)

// TestSIGKILLUnderLoad kills the server repeatedly while SMTP clients
// deliver and POP3 clients retrieve and delete, then checks that every
// acknowledged message was either deleted by a completed QUIT or is still
// in the mailbox, exactly once, and that no completed deletion came back.
func TestSIGKILLUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: kills and restarts the server several times")
	}
	in := newInstance(t, "")
	users := []string{"k1@example.org", "k2@example.org"}
	for _, u := range users {
		in.addUser(u, "pw")
	}
	led := &crashLedger{acked: map[string]bool{}, deleted: map[string]bool{}, uncertain: map[string]bool{}}
	const rounds = 5
	for round := range rounds {
		in.start()
		smtpAddr, popAddr := in.addr("smtp"), in.addr("pop3")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("%d-%d", round*100+w, n)
					rcpt := users[n%len(users)]
					msg := "From: load@example.net\r\nSubject: crash-" + id + "\r\n\r\n" + strings.Repeat("payload line\r\n", 50)
					if sendPlain(smtpAddr, "load@example.net", rcpt, msg) == nil {
						led.mu.Lock()
						led.acked[id] = true
						led.mu.Unlock()
					}
				}
			}()
		}
		for _, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					popDrain(popAddr, u, led)
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		time.Sleep(time.Duration(300+rand.IntN(700)) * time.Millisecond)
		in.kill()
		close(stop)
		wg.Wait()
	}

	// Afterwards: read what is left without deleting anything.
	in.start()
	left := map[string]int{}
	for _, u := range users {
		for _, m := range retrieveAll(t, in, u, "pw") {
			if sm := idRE.FindStringSubmatch(m); sm != nil {
				left[sm[1]+"-"+sm[2]]++
			}
		}
	}
	if len(led.acked) == 0 {
		t.Fatal("no message was acknowledged: the load did not run")
	}
	for id, n := range left {
		if n > 1 {
			t.Errorf("message %s is in the mailbox %d times", id, n)
		}
		if led.deleted[id] {
			t.Errorf("message %s was deleted by a completed QUIT but came back", id)
		}
	}
	lost := 0
	for id := range led.acked {
		if left[id] == 0 && !led.deleted[id] && !led.uncertain[id] {
			lost++
			t.Errorf("acknowledged message %s was lost", id)
		}
	}
	t.Logf("%d acknowledged, %d deleted by completed QUITs, %d in sessions cut at QUIT, %d left, %d lost",
		len(led.acked), len(led.deleted), len(led.uncertain), len(left), lost)
}

// popDrain retrieves and deletes every message of one mailbox and records
// the outcome of QUIT in the ledger. Any error just ends the session (the
// server may have been killed).
func popDrain(addr, user string, led *crashLedger) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line := func() (string, bool) {
		l, err := r.ReadString('\n')
		return l, err == nil && strings.HasPrefix(l, "+OK")
	}
	if _, ok := line(); !ok {
		return
	}
	fmt.Fprintf(c, "USER %s\r\n", user)
	if _, ok := line(); !ok {
		return
	}
	fmt.Fprintf(c, "PASS pw\r\n")
	if _, ok := line(); !ok {
		return
	}
	fmt.Fprintf(c, "STAT\r\n")
	st, ok := line()
	if !ok {
		return
	}
	var n int
	fmt.Sscanf(st, "+OK %d", &n)
	var ids []string
	for i := 1; i <= n; i++ {
		fmt.Fprintf(c, "RETR %d\r\n", i)
		if _, ok := line(); !ok {
			return
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if l == ".\r\n" {
				break
			}
			if sm := idRE.FindStringSubmatch(l); sm != nil {
				ids = append(ids, sm[1]+"-"+sm[2])
			}
		}
		fmt.Fprintf(c, "DELE %d\r\n", i)
		if _, ok := line(); !ok {
			return
		}
	}
	fmt.Fprintf(c, "QUIT\r\n")
	_, ok = line()
	led.mu.Lock()
	defer led.mu.Unlock()
	for _, id := range ids {
		if ok {
			led.deleted[id] = true
		} else {
			led.uncertain[id] = true
		}
	}
}

// sendPlain sends one message with net/smtp, without STARTTLS (which
// smtp.SendMail would try, and fail on the self-signed certificate). It
// returns nil only when the server acknowledged the data with 250.
func sendPlain(addr, from, to, msg string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c, err := smtp.NewClient(conn, "mail.test")
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()
	if err := c.Hello("load.test"); err != nil {
		return err
	}
	if err := c.Mail(from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte(msg)); err != nil {
		return err
	}
	if err := w.Close(); err != nil { // reads the reply to the data
		return err
	}
	c.Quit() // the 250 above is the acknowledgement; QUIT may meet a kill
	return nil
}
