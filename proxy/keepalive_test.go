package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sclgate/sclgate/internal/syncbuf"
)

// lateNoopDownstream is a scripted SMTP server on 127.0.0.1 that answers
// NOOP only after delay, and counts the messages it takes.
func lateNoopDownstream(t *testing.T, delay time.Duration, delivered *atomic.Int32) string {
	t.Helper()
	return scriptedDownstream(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(20 * time.Second))
		w := func(s string) { c.Write([]byte(s)) }
		r := bufio.NewReader(c)
		w("220 fake ESMTP\r\n")
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(l)); {
			case strings.HasPrefix(cmd, "EHLO"):
				w("250-fake\r\n250 8BITMIME\r\n")
			case cmd == "NOOP":
				time.AfterFunc(delay, func() { w("250 2.0.0 Ok (late noop)\r\n") })
			case cmd == "DATA":
				w("354 go ahead\r\n")
				for {
					if l, err := r.ReadString('\n'); err != nil {
						return
					} else if l == ".\r\n" {
						break
					}
				}
				delivered.Add(1)
				w("250 2.0.0 queued\r\n")
			case cmd == "QUIT":
				w("221 bye\r\n")
				return
			default:
				w("250 2.0.0 Ok\r\n")
			}
		}
	})
}

// A NOOP answered after downstream_timeout must not leave its late 250 to
// be read as the answer to DATA: the client would be told 250 for a
// message the downstream never got. The connection is dropped instead,
// the client gets 451 (and sends again), and the next message goes
// through on a new connection.
func TestLateNoopAnswerIsNotDataAnswer(t *testing.T) {
	var delivered atomic.Int32
	url := lateNoopDownstream(t, 1500*time.Millisecond, &delivered)
	const yaml = "limits: {downstream_timeout: 1s, downstream_idle: 30s}"
	g := startGateway(t, gwSetup{Downstream: url, YAML: yaml})
	p := g.policy(yaml)
	p.Downstream.(*smtpDownstream).keepAlive = 200 * time.Millisecond
	g.srv.SetPolicy(p)
	rc := addressed(t, g.addr)
	rc.expectCode("DATA", "354 ")
	rc.write("From: a@example.org\r\nTo: bob@example.com\r\nSubject: slow\r\n\r\n")
	time.Sleep(2500 * time.Millisecond)
	rc.write("hello\r\n.\r\n")
	if reply := rc.reply(); !strings.HasPrefix(reply[len(reply)-1], "451 4.4.2 ") || delivered.Load() != 0 {
		t.Fatalf("client told %q, downstream got %d messages; want 451 and none", reply, delivered.Load())
	}
	if reply := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("quick", hamPhrase)); !strings.HasPrefix(reply, "250 ") || delivered.Load() != 1 {
		t.Errorf("next message: %q, downstream got %d", reply, delivered.Load())
	}
}

// go-smtp resets the session from its own goroutine while a BDAT transfer
// is still running in another (RSET after a chunk): the transfer finishes
// first, the keepalive stops before the connection is used again, and the
// next transaction on the reused connection is sound (run under -race).
func TestBDATResetDuringKeepAlive(t *testing.T) {
	ds := startDownstream(t, false)
	const yaml = "limits: {downstream_timeout: 5s, downstream_idle: 30s}"
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: yaml})
	p := g.policy(yaml)
	p.Downstream.(*smtpDownstream).keepAlive = 50 * time.Microsecond
	g.srv.SetPolicy(p)
	for i := range 20 {
		rc := addressed(t, g.addr)
		rc.write("BDAT 22\r\nSubject: x\r\n\r\nabcdefgh")
		if got := rc.reply(); !strings.HasPrefix(got[len(got)-1], "250 ") {
			t.Fatalf("chunk: %q", got)
		}
		time.Sleep(2 * time.Millisecond)
		rc.expectCode("RSET", "250 ")
		if r := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage(fmt.Sprint("m", i), hamPhrase)); !strings.HasPrefix(r, "250 ") {
			t.Errorf("after RSET: %q", r)
		}
		rc.c.Close()
	}
}

// Past its bound, Shutdown cuts the sessions still open off, also those
// whose message is being relayed (go-smtp's own Close does nothing once
// its Shutdown has begun), and does not wait for them one by one.
func TestShutdownCutsBusySessionsOff(t *testing.T) {
	ds := startDownstream(t, false)
	ds.setDataHook(func(c *smtp.Conn, r io.Reader) error {
		select { // a downstream that takes long over DATA
		case <-ds.stop:
		case <-time.After(20 * time.Second):
		}
		io.Copy(io.Discard, r)
		return nil
	})
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_timeout: 30s}"})
	var clients []*rawConn
	for i := range 4 {
		rc := addressed(t, g.addr)
		rc.expectCode("DATA", "354 ")
		rc.write(string(testMessage(fmt.Sprint("busy ", i), hamPhrase)) + ".\r\n")
		clients = append(clients, rc)
	}
	// And one still sending its message.
	rc := addressed(t, g.addr)
	rc.expectCode("DATA", "354 ")
	rc.write("Subject: half\r\n\r\nthe first half of the")
	clients = append(clients, rc)
	time.Sleep(300 * time.Millisecond) // all four waiting on the downstream
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	g.srv.Shutdown(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
	for i, rc := range clients {
		if err := rc.expectClosed(3 * time.Second); err != nil {
			t.Errorf("client %d: %v", i, err)
		}
		// Told why, as RFC 5321 section 3.8 asks of a server shut down
		// from outside: the client has had no 250 and tries again.
		if !strings.HasPrefix(rc.seen, "421 4.3.2 ") {
			t.Errorf("client %d got %q before the close, want 421 4.3.2", i, rc.seen)
		}
	}
}

// "BDAT 0" (no bytes, not LAST) then a pipelined RSET: go-smtp starts the
// chunk's Data goroutine and resets the transaction at once; that Data
// belongs to no transaction by the time it runs, and must neither panic
// on it nor act on the next one (here: count toward max_errors).
//
// go-smtp v0.25.1 itself races here (the old chunk's goroutine reads
// Conn.dataResult, which the next BDAT replaces, with nothing ordering
// the two), so the race detector stops the test whatever sclgate does:
// scripts/test.sh runs it again without -race. The same race can hand
// the old transfer's answer to the next one; sclgate makes that answer
// come at once, and a 4xx.
func TestBDATZeroThenRSET(t *testing.T) {
	if raceEnabled {
		t.Skip("go-smtp's own data race on Conn.dataResult; run without -race (scripts/test.sh does)")
	}
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {max_errors: 3}"})
	var logs syncbuf.Buffer
	srv := New(g.policy("limits: {max_errors: 3}"), Options{Metrics: g.m, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rc := ehloed(t, ln.Addr().String())
	const rounds = 200
	for i := range rounds {
		// All pipelined, as a hostile (or hasty) client sends it: the
		// reset transfer's goroutine may come to run during the next
		// transaction, whose answer must still be its own.
		msg := testMessage(fmt.Sprint("round ", i), hamPhrase)
		rc.write(fmt.Sprintf("MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nBDAT 0\r\nRSET\r\n"+
			"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.com>\r\nBDAT %d LAST\r\n%s", len(msg), msg))
		for j, what := range []string{"MAIL", "RCPT", "BDAT 0", "RSET", "MAIL", "RCPT", "BDAT LAST"} {
			l := rc.reply()
			last := l[len(l)-1]
			// go-smtp may give the reset transfer's late answer for the
			// next one (see above): that must be a 4xx, so the client
			// sends again (a duplicate), never a 5xx (a bounce of mail
			// that was delivered).
			if strings.HasPrefix(last, "250 ") || what == "BDAT LAST" && last == "451 4.3.0 Transaction was reset, send the message again" {
				continue
			}
			t.Fatalf("round %d, reply %d (%s): %q", i, j, what, l)
		}
	}
	ds.waitIdle()
	if n := len(ds.messages()); n != rounds {
		t.Errorf("downstream got %d messages, want %d (each delivered once)", n, rounds)
	}
	if strings.Contains(logs.String(), "panic") {
		t.Errorf("panics logged:\n%.2000s", logs.String())
	}
}
