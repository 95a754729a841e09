package proxy

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sclgate/sclgate/config"
)

func TestDataClock(t *testing.T) {
	l := config.Limits{DataTimeout: 10 * time.Minute, DataBlockTimeout: 3 * time.Minute, MinDataRate: 500}
	t0 := time.Unix(1e9, 0)
	// Steady at 600 bytes/s, above the rate: the deadline stays 3
	// minutes ahead until data_timeout bounds it.
	c := newDataClock(l, t0)
	now := t0
	for i := 0; i < 500; i++ {
		now = now.Add(time.Second)
		d := c.next(600, now)
		if want := min(now.Add(3*time.Minute).Unix(), t0.Add(10*time.Minute).Unix()); d.Unix() != want {
			t.Fatalf("steady, %v in: deadline %v, want %v", now.Sub(t0), d.Sub(t0), time.Unix(want, 0).Sub(t0))
		}
	}
	// A byte every 10 s: the credit runs out after about 3 minutes.
	c = newDataClock(l, t0)
	now = t0
	for i := 0; ; i++ {
		now = now.Add(10 * time.Second)
		d := c.next(1, now)
		if !d.After(now) {
			if i < 16 || i > 18 {
				t.Errorf("trickle cut off after %v, want about 3 minutes", now.Sub(t0))
			}
			break
		}
	}
	// A burst earns slack, up to data_block_timeout: 1 MB at once, then
	// silence — cut off 3 minutes later, not 33.
	c = newDataClock(l, t0)
	if d := c.next(1<<20, t0.Add(time.Second)); d.Sub(t0) != 3*time.Minute+time.Second {
		t.Errorf("after a burst: deadline %v", d.Sub(t0))
	}
}

// A slowloris that trickles its message is cut off with 451 4.4.2 once it
// is data_block_timeout behind min_data_rate, long before data_timeout; a
// slow but steady sender above the rate gets 250 though it takes longer
// than data_block_timeout; and data_timeout bounds even a fast enough one.
func TestDataRate(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {data_timeout: 30s, data_block_timeout: 1500ms, min_data_rate: 1000}"})

	start := func() *rawConn {
		rc := addressed(t, g.addr)
		rc.expectCode("DATA", "354 ")
		rc.write("Subject: slow\r\nFrom: alice@example.org\r\n\r\n")
		return rc
	}

	t.Run("slowloris", func(t *testing.T) {
		rc := start()
		t0 := time.Now()
		var reply []string
		for i := 0; i < 100; i++ { // at most 30 s
			rc.c.Write([]byte("x"))
			if r, err := rc.tryReply(300 * time.Millisecond); err == nil {
				reply = r
				break
			}
		}
		if len(reply) != 1 || !strings.HasPrefix(reply[0], "451 4.4.2 ") {
			t.Fatalf("slowloris got %q after %v, want 451 4.4.2", reply, time.Since(t0))
		}
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("slowloris cut off after %v; data_block_timeout is 1.5s", d)
		}
		wantMetric(t, "refusals{data_timeout}", g.m.Rejected.WithLabelValues("data_timeout"), 1)
	})

	t.Run("slow but steady", func(t *testing.T) {
		rc := start()
		line := strings.Repeat("s", 98) + "\r\n"
		t0 := time.Now()
		// 4,000 bytes/s (4 times the minimum) for 3 s: twice
		// data_block_timeout.
		for time.Since(t0) < 3*time.Second {
			rc.write(line)
			time.Sleep(25 * time.Millisecond)
		}
		rc.write(".\r\n")
		if r := rc.reply(); !strings.HasPrefix(r[0], "250 ") {
			t.Fatalf("steady sender: %q", r)
		}
		ds.waitIdle()
		if n := len(ds.messages()); n != 1 {
			t.Errorf("downstream got %d messages, want 1", n)
		}
	})

	t.Run("data_timeout", func(t *testing.T) {
		g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {data_timeout: 2s, data_block_timeout: 1500ms, min_data_rate: 1000}"})
		rc := addressed(t, g.addr)
		rc.expectCode("DATA", "354 ")
		line := strings.Repeat("f", 98) + "\r\n"
		t0 := time.Now()
		var reply []string
		for time.Since(t0) < 15*time.Second {
			if _, err := rc.c.Write([]byte(line)); err != nil {
				break
			}
			if r, err := rc.tryReply(25 * time.Millisecond); err == nil {
				reply = r
				break
			}
		}
		if len(reply) != 1 || !strings.HasPrefix(reply[0], "451 4.4.2 ") {
			t.Fatalf("past data_timeout: %q after %v, want 451 4.4.2", reply, time.Since(t0))
		}
		if d := time.Since(t0); d < 1500*time.Millisecond || d > 8*time.Second {
			t.Errorf("cut off after %v; data_timeout is 2s", d)
		}
	})
}

// BDAT (CHUNKING, which go-smtp always offers) keeps the same clock: a
// client that stalls inside a chunk, or trickles tiny chunks, gets the
// temporary 451 4.4.2, never go-smtp's permanent 554 with the socket
// error's text, and nothing is delivered.
func TestDataRateBDAT(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {data_timeout: 4s, data_block_timeout: 1s, min_data_rate: 1000}"})
	start := func() *rawConn { return addressed(t, g.addr) }

	t.Run("stall inside a chunk", func(t *testing.T) {
		rc := start()
		rc.write("BDAT 10000\r\nSubject: stall\r\n\r\n" + strings.Repeat("x", 80))
		got, err := rc.tryReply(10 * time.Second)
		if err != nil || len(got) == 0 || !strings.HasPrefix(got[len(got)-1], "451 4.4.2 ") {
			t.Fatalf("reply %q, %v; want 451 4.4.2", got, err)
		}
	})

	t.Run("trickled chunks", func(t *testing.T) {
		rc := start()
		rc.write("BDAT 30\r\nSubject: trickle\r\n\r\n" + strings.Repeat("y", 10))
		if got := rc.reply(); !strings.HasPrefix(got[len(got)-1], "250 ") {
			t.Fatalf("first chunk: %q", got)
		}
		var last []string
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			time.Sleep(700 * time.Millisecond)
			rc.write("BDAT 1\r\nz")
			got, err := rc.tryReply(5 * time.Second)
			if err != nil {
				break // closed
			}
			last = got
			if !strings.HasPrefix(got[len(got)-1], "250 ") {
				break
			}
		}
		// Cut between two chunks: the connection is closed with a 421
		// (go-smtp's, for a failed command read); cut inside one: 451.
		if len(last) == 0 || !strings.HasPrefix(last[len(last)-1], "451 4.4.2 ") && !strings.HasPrefix(last[len(last)-1], "421 ") {
			t.Fatalf("trickle: last reply %q, want 451 4.4.2 or 421 within data_timeout", last)
		}
	})
	time.Sleep(200 * time.Millisecond)
	if n := len(ds.messages()); n != 0 {
		t.Errorf("%d messages delivered", n)
	}
	wantMetric(t, "refusals{data_timeout}", g.m.Rejected.WithLabelValues("data_timeout"), 2)
}

// A line over the limit inside DATA is refused for good (500 5.5.6), not
// with a temporary "timeout": the same message would fail again.
func TestDataLineTooLong(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL()})
	rc := addressed(t, g.addr)
	rc.expectCode("DATA", "354 ")
	rc.write("Subject: long\r\n\r\n" + strings.Repeat("x", 9000) + "\r\n.\r\n")
	got, err := rc.tryReply(5 * time.Second)
	if err != nil || len(got) == 0 || !strings.HasPrefix(got[0], "500 5.5.6 Line too long") {
		t.Fatalf("reply %q, %v", got, err)
	}
	// Then the connection is closed: no second, unasked reply (go-smtp's
	// "500 5.4.0 Too long line") for the client to take as the answer to
	// its next command.
	if got, err := rc.tryReply(2 * time.Second); err == nil {
		t.Errorf("more after the 500 5.5.6: %q", got)
	}
	wantMetric(t, "refusals{line_length}", g.m.Rejected.WithLabelValues("line_length"), 1)
}

// A command line the client does not finish within command_timeout ends
// the session: go-smtp would otherwise run the part received as a whole
// command and wait again, so that a client trickling a command held the
// session for several timeouts. It is told so with 421 (RFC 5321 section
// 3.8), the part it sent never run. An idle client still gets go-smtp's
// 421.
func TestCommandTimeoutCutsPartialLine(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {command_timeout: 1s}"})

	rc := ehloed(t, g.addr)
	rc.write("MAIL FROM:<alice@exam")
	start := time.Now()
	if got, err := rc.tryReply(5 * time.Second); err != nil || len(got) != 1 || got[0] != "421 4.4.2 Command not finished in time, closing connection" {
		t.Errorf("a partial command: %q, %v", got, err)
	}
	if got, err := rc.tryReply(2 * time.Second); err == nil {
		t.Errorf("more after the 421: %q", got)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("closed after %v", el)
	}
	wantMetric(t, "refusals{command_timeout}", g.m.Rejected.WithLabelValues("command_timeout"), 1)

	idle := ehloed(t, g.addr)
	got, err := idle.tryReply(5 * time.Second)
	if err != nil || len(got) == 0 || !strings.HasPrefix(got[0], "421 4.4.2") {
		t.Errorf("idle client: %q, %v; want go-smtp's 421 4.4.2", got, err)
	}
}

// After a timeout inside DATA or BDAT, where the message would have ended
// is not known: the rest of it must not be read as commands. A slow
// relay's message body made to carry "MAIL FROM" would otherwise be run
// as a second, spoofed transaction (SMTP smuggling). The 451 is the
// session's last reply; the connection closes, and nothing is relayed.
func TestDataTimeoutEndsSession(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {data_timeout: 30s, data_block_timeout: 1s, min_data_rate: 1000}"})
	smuggled := "MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n"
	for name, start := range map[string]func(*rawConn){
		"DATA": func(rc *rawConn) {
			rc.expectCode("DATA", "354 ")
			rc.write("Subject: slow\r\nFrom: alice@example.org\r\n\r\n")
		},
		"BDAT": func(rc *rawConn) {
			rc.write("BDAT 5000 LAST\r\nSubject: slow\r\nFrom: alice@example.org\r\n\r\n")
		},
	} {
		t.Run(name, func(t *testing.T) {
			rc := addressed(t, g.addr)
			start(rc)
			got, err := rc.tryReply(10 * time.Second) // the stall is cut
			if err != nil || !strings.HasPrefix(got[len(got)-1], "451 4.4.2 ") {
				t.Fatalf("stalled message: %q, %v; want 451 4.4.2", got, err)
			}
			// The rest of the "message" comes: commands, for a server
			// that lost its place.
			rc.c.SetWriteDeadline(time.Now().Add(time.Second))
			rc.c.Write([]byte("\r\n" + smuggled))
			if err := rc.expectClosed(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(rc.seen, "250") || strings.Contains(rc.seen, "354") {
				t.Errorf("commands after the timeout were answered: %q", rc.seen)
			}
		})
	}
	time.Sleep(200 * time.Millisecond)
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if len(ds.mails) != 2 || slices.Contains(ds.mails, "ceo@bank.test") || ds.dataSeen != 0 {
		t.Errorf("the downstream got MAIL from %q and %d messages; want only the two cut off", ds.mails, ds.dataSeen)
	}
}

// A BDAT chunk is read under the data clock, not under command_timeout,
// which go-smtp set when it read the BDAT line: a steady sender of a
// chunk that takes longer than command_timeout gets its 250 (it got
// go-smtp's permanent 554 "i/o timeout", and the rest of the chunk, read
// as commands, ran: a sender's message body carrying MAIL/RCPT/DATA was
// relayed as a second message).
func TestBDATChunkNotCutByCommandTimeout(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {command_timeout: 1s, data_timeout: 30s, data_block_timeout: 5s, min_data_rate: 100}"})
	rc := addressed(t, g.addr)
	body := "Subject: steady\r\n\r\n" + strings.Repeat("NOOP\r\n", 100) +
		"MAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nsmuggled\r\n.\r\n"
	rc.write(fmt.Sprintf("BDAT %d LAST\r\n", len(body)))
	// About 2.5 s for the chunk, over twice command_timeout, at some
	// 300 bytes/s, three times min_data_rate.
	for i := 0; i < len(body); i += 30 {
		rc.write(body[i:min(i+30, len(body))])
		time.Sleep(100 * time.Millisecond)
	}
	if got, err := rc.tryReply(10 * time.Second); err != nil || !strings.HasPrefix(got[len(got)-1], "250 ") {
		t.Fatalf("steady chunk: %q, %v; want 250", got, err)
	}
	rc.expectCode("NOOP", "250 ")
	// A pause inside a chunk longer than command_timeout, within the
	// data clock's slack, as inside DATA.
	rc = addressed(t, g.addr)
	msg := testMessage("pause", hamPhrase)
	rc.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(msg), msg[:len(msg)/2]))
	time.Sleep(2 * time.Second)
	rc.write(string(msg[len(msg)/2:]))
	if got, err := rc.tryReply(10 * time.Second); err != nil || !strings.HasPrefix(got[len(got)-1], "250 ") {
		t.Fatalf("chunk with a pause: %q, %v; want 250", got, err)
	}
	ds.waitIdle()
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if slices.Contains(ds.mails, "ceo@bank.test") || ds.dataSeen != 2 {
		t.Errorf("downstream got MAIL from %q and %d messages; want the two", ds.mails, ds.dataSeen)
	}
}

// Whatever read a deadline cuts — a chunk's first byte, a chunk go-smtp
// discards (no recipient, or over the size limit) — the session ends with
// that read's reply: the rest of the chunk, read as commands, would run
// as a second transaction (SMTP smuggling). (Found by a review.)
func TestChunkCutByDeadlineEndsSession(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {command_timeout: 1s, data_timeout: 30s, data_block_timeout: 10s, max_message_bytes: 2000}"})
	rest := "Subject: x\r\n\r\nRSET\r\nMAIL FROM:<ceo@bank.test>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\nFrom: ceo@bank.test\r\n\r\nsmuggled\r\n.\r\n"
	for name, start := range map[string]func() *rawConn{
		"before the first byte": func() *rawConn {
			rc := addressed(t, g.addr)
			rc.write("BDAT 600 LAST\r\n")
			return rc
		},
		"discarded, no recipient": func() *rawConn {
			rc := ehloed(t, g.addr)
			rc.expectCode("MAIL FROM:<alice@example.org>", "250 ")
			rc.expectCode("RCPT TO:<x@elsewhere.test>", "550 ")
			rc.write("BDAT 600 LAST\r\nSubject: y\r\n")
			return rc
		},
		"discarded, too big": func() *rawConn {
			rc := addressed(t, g.addr)
			rc.write("BDAT 6000 LAST\r\nSubject: y\r\n")
			return rc
		},
	} {
		t.Run(name, func(t *testing.T) {
			rc := start()
			time.Sleep(1500 * time.Millisecond) // past command_timeout
			rc.c.SetWriteDeadline(time.Now().Add(time.Second))
			rc.c.Write([]byte(rest))
			if err := rc.expectClosed(5 * time.Second); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(rc.seen, "250 ") || strings.Contains(rc.seen, "354 ") {
				t.Errorf("the rest of the chunk was run as commands: %q", rc.seen)
			}
		})
	}
	// A transfer reset before it ran (BDAT 0, RSET pipelined) leaves no
	// transfer open: an idle client then gets go-smtp's idle 421.
	rc := addressed(t, g.addr)
	rc.write("BDAT 0\r\nRSET\r\n")
	rc.reply()
	rc.reply()
	if err := rc.expectClosed(5 * time.Second); err != nil || !strings.HasPrefix(rc.seen, "421 4.4.2 ") {
		t.Errorf("idle after a reset transfer: %v, %q; want go-smtp's 421 4.4.2", err, rc.seen)
	}
	// The cut before a chunk's first byte is logged and counted; the
	// chunks go-smtp throws away never reach the session.
	wantMetric(t, "refusals{data_timeout}", g.m.Rejected.WithLabelValues("data_timeout"), 1)
	time.Sleep(200 * time.Millisecond)
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if slices.Contains(ds.mails, "ceo@bank.test") || ds.dataSeen != 0 {
		t.Errorf("downstream got MAIL from %q and %d messages", ds.mails, ds.dataSeen)
	}
}
