package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// An HTTP method is taken for a cross-protocol attack only when go-smtp
// refused it as a command line: text of a message, in DATA or in a BDAT
// chunk (also one that ends inside a line, leaving the rest of it in
// go-smtp's buffer), never counts, and a BDAT chunk without a final line
// end is no unfinished command.
func TestCrossProtocolOnlyCommands(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {command_timeout: 1s}"})

	// A body line that reads as an HTTP request: delivered.
	rc := ehloed(t, g.addr)
	if r := rc.send("alice@example.org", []string{"bob@example.com"}, []byte("Subject: x\r\n\r\nGET / HTTP/1.1\r\nPOST /x HTTP/1.0\r\n")); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("a message with HTTP-looking lines: %q", r)
	}
	if m := ds.only(); !strings.Contains(string(m.Data), "\r\nGET / HTTP/1.1\r\n") {
		t.Errorf("delivered %q", m.Data)
	}

	// A chunk ending in "GET ", then an unknown command: answered as
	// one, and the session goes on.
	rc = ehloed(t, g.addr)
	rc.expectCode("MAIL FROM:<alice@example.org>", "250")
	rc.expectCode("RCPT TO:<bob@example.com>", "250")
	rc.write("BDAT 4\r\nGET XCLIENT\r\n")
	if l := rc.reply(); !strings.HasPrefix(l[0], "250 ") {
		t.Fatalf("BDAT 4: %q", l)
	}
	if l := rc.reply(); !strings.HasPrefix(l[0], "50") || strings.HasPrefix(l[0], "221") {
		t.Errorf("XCLIENT after a chunk ending in GET: %q", l)
	}
	rc.expectCode("NOOP", "250")
	rc.expectCode("RSET", "250")

	// A last chunk without a final line end, then nothing: go-smtp's idle
	// 421, not "command not finished".
	rc = ehloed(t, g.addr)
	rc.expectCode("MAIL FROM:<alice@example.org>", "250")
	rc.expectCode("RCPT TO:<bob@example.com>", "250")
	body := "Subject: y\r\n\r\nno line end"
	rc.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(body), body))
	if l := rc.reply(); !strings.HasPrefix(l[0], "250 ") {
		t.Fatalf("BDAT LAST: %q", l)
	}
	l, err := rc.tryReply(5 * time.Second)
	if err != nil || len(l) != 1 || !strings.HasPrefix(l[0], "421 4.4.2") || strings.Contains(l[0], "not finished") {
		t.Errorf("idle after BDAT LAST: %q, %v", l, err)
	}
	wantMetric(t, "refusals{cross_protocol}", g.m.Rejected.WithLabelValues("cross_protocol"), 0)
	wantMetric(t, "refusals{command_timeout}", g.m.Rejected.WithLabelValues("command_timeout"), 0)
}
