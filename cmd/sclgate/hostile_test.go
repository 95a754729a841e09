package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// smugglingSequences are the published SMTP smuggling end-of-data variants
// (SEC Consult 2023): each would end DATA for some downstream.
var smugglingSequences = []string{
	"\n.\n", "\n.\r", "\r.\n", "\r.\r", "\n.\r\n", "\r.\r\n", "\r\n\x00.\r\n",
	"\r\n.\r\r\n", "\r\r\n.\r\r\n", "\r\n.\n", "\r\n.\r",
	"\r\n.\x00\r\n",
}

// smuggle is a first message, a smuggling end-of-data, and a second,
// spoofed message that a vulnerable downstream would deliver separately.
func smuggle(seq string) string {
	return "From: alice@example.org\r\nTo: bob@example.com\r\nSubject: first\r\n\r\nfirst message" + seq +
		"MAIL FROM:<ceo@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nFrom: ceo@example.com\r\nSubject: spoofed\r\n\r\nwire the money\r\n"
}

func TestServeSMTPSmuggling(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\n")
	dir := t.TempDir()
	for i, seq := range smugglingSequences {
		t.Run(fmt.Sprintf("%q", seq), func(t *testing.T) {
			f := filepath.Join(dir, fmt.Sprintf("smuggle-%d.eml", i))
			// -ndf sends the file as it is: the final dot is ours to write.
			os.WriteFile(f, []byte(smuggle(seq)+"\r\n.\r\n"), 0o644)
			// -ndf: no data fixup, the bytes go out as they are.
			out := swaks(t, g.addr, "--to", "bob@example.com", "-ndf", "--data", "@"+f)
			if !reply(out, "550 5.5.2") {
				t.Errorf("not refused with 550 5.5.2:\n%s", out)
			}
		})
	}
	if msgs := s.messages(t, 0); len(msgs) != 0 {
		t.Errorf("%d messages reached the downstream:\n%s", len(msgs), strings.Join(msgs, "\n----\n"))
	}
	if got := g.metric(t, `sclgate_smtp_refusals_total{reason="bare_line_end"}`); got != float64(len(smugglingSequences)) {
		t.Errorf("bare_line_end refusals = %v, want %d", got, len(smugglingSequences))
	}

	// After a refusal the session is still sane: the next transaction on
	// the same connection goes through, and only it reaches the downstream.
	c := dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<bob@example.com>", "250")
	c.cmd("DATA", "354")
	fmt.Fprint(c.c, smuggle("\n.\n")+"\r\n.\r\n")
	c.expect("550 5.5.2")
	c.send("a clean message", "250")
	c.cmd("QUIT", "221")
	msgs := s.messages(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "a clean message") || strings.Contains(msgs[0], "spoofed") {
		t.Errorf("after a refusal: %q", msgs)
	}
}

func TestServeBareLFNormalize(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nsmtp:\n  bare_lf: normalize\n")
	c := dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<bob@example.com>", "250")
	c.cmd("DATA", "354")
	fmt.Fprint(c.c, "Subject: unix mailer\nX-Test: 1\n\nline one\nline two\r\n.\r\n")
	c.expect("250")
	// Bare CR stays refused.
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<bob@example.com>", "250")
	c.cmd("DATA", "354")
	fmt.Fprint(c.c, "Subject: x\r\n\r\nold mac\rline\r\n.\r\n")
	c.expect("550 5.5.2")
	msgs := s.messages(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0], "line one") || !strings.Contains(msgs[0], "X-Test: 1") {
		t.Errorf("normalized message: %q", msgs)
	}
}

func TestServeRelayTricks(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\naccepted_domains: [example.com]\n")
	for _, rcpt := range []string{
		"user%elsewhere.test@example.com",
		"elsewhere.test!user",
		"elsewhere.test!user@example.com",
		`"user@elsewhere.test"@example.com`,
		"user@elsewhere.test@example.com",
		"@example.com:user@elsewhere.test",
		"user@[192.0.2.1]",
		"user@[127.0.0.1]",
		strings.Repeat("a", 300) + "@example.com",
	} {
		c := dialSMTP(t, g.addr)
		c.cmd("MAIL FROM:<a@example.org>", "250")
		fmt.Fprintf(c.c, "RCPT TO:<%s>\r\n", rcpt)
		r := c.expect("5")
		c.cmd("QUIT", "221")
		t.Logf("%s → %s", rcpt, strings.TrimSpace(r))
	}
	// The empty address is refused as a recipient too.
	c := dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<>", "5")
	if msgs := s.messages(t, 0); len(msgs) != 0 {
		t.Errorf("relayed: %v", msgs)
	}
}

func TestServeCrossProtocolDisconnect(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\n")
	for _, req := range []string{"GET / HTTP/1.1\r\nHost: mx\r\n\r\n", "POST /x HTTP/1.1\r\nContent-Length: 40\r\n\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@example.com>\r\n", "CONNECT example.com:25 HTTP/1.1\r\n\r\n"} {
		c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "220 ") {
			t.Fatalf("greeting %q", l)
		}
		fmt.Fprint(c, req)
		if l, err := r.ReadString('\n'); err == nil {
			t.Errorf("%q: got reply %q, want the connection closed", strings.Fields(req)[0], l)
		}
		c.Close()
	}
	// Later in the session, and a bare method with nothing after it (as
	// Postfix's smtpd_forbidden_commands): 221, then the connection is
	// closed; nothing of what followed in the same write is run.
	for _, lines := range [][]string{
		{"EHLO client.test", "POST / HTTP/1.0", "Content-Length: 5"},
		{"EHLO client.test", "MAIL FROM:<a@example.org>", "get / HTTP/1.0"},
		{"GET"},
		{"HELO client.test", "CONNECT", "RCPT TO:<c@example.com>"},
	} {
		c, err := net.DialTimeout("tcp", g.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprint(c, strings.Join(lines, "\r\n")+"\r\n")
		all, _ := io.ReadAll(c)
		if !strings.HasSuffix(string(all), "221 2.7.0 Error: an HTTP command is no SMTP; closing connection\r\n") || strings.Contains(string(all), "500") {
			t.Errorf("%q: got %q, want 221 and the connection closed", lines, all)
		}
		c.Close()
	}
	if got := g.metric(t, `sclgate_smtp_refusals_total{reason="cross_protocol"}`); got != 7 {
		t.Errorf("cross_protocol = %v", got)
	}
}

func TestServeHeaderTooLarge(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  max_header_bytes: 2000\n")
	var hdr strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&hdr, "X-Filler-%d: %s\r\n", i, strings.Repeat("x", 40))
	}
	c := dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<bob@example.com>", "250")
	c.cmd("DATA", "354")
	fmt.Fprintf(c.c, "%s\r\nbody\r\n.\r\n", hdr.String())
	c.expect("552 5.3.4")
	c.send("small one", "250")
	if n := len(s.messages(t, 1)); n != 1 {
		t.Errorf("%d relayed", n)
	}
}

func TestServeTooManyErrorsDisconnects(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  max_errors: 3\n")
	c := dialSMTP(t, g.addr)
	c.cmd("MAIL FROM:<a@example.org>", "250")
	c.cmd("RCPT TO:<x@elsewhere.test>", "550")
	c.cmd("RCPT TO:<y@elsewhere.test>", "550")
	c.cmd("RCPT TO:<z@elsewhere.test>", "421 4.7.0")
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if l, err := c.r.ReadString('\n'); err == nil {
		fmt.Fprint(c.c, "NOOP\r\n")
		if l2, err := c.r.ReadString('\n'); err == nil {
			t.Errorf("connection still open after 421: %q %q", l, l2)
		}
	}
	if got := g.metric(t, `sclgate_smtp_refusals_total{reason="too_many_errors"}`); got != 1 {
		t.Errorf("too_many_errors = %v", got)
	}
}
