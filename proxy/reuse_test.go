package proxy

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Downstream connections are reused across messages and client sessions,
// as a reused client connection and new client connections both show.
func TestDownstreamConnectionReuse(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_idle: 30s}"})
	rc := ehloed(t, g.addr)
	for i := range 3 {
		if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("reuse", "message on one client connection")); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	rc.cmd("QUIT")
	for i := range 3 {
		rc := ehloed(t, g.addr)
		if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("reuse", "message on a new client connection")); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("new connection %d: %q", i, got)
		}
		rc.cmd("QUIT")
	}
	// An aborted transaction (RSET) leaves the connection reusable too.
	rc = ehloed(t, g.addr)
	rc.expectCode("MAIL FROM:<alice@example.org>", "250 ")
	rc.expectCode("RCPT TO:<bob@example.com>", "250 ")
	rc.expectCode("RSET", "250 ")
	if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("reuse", "after RSET")); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("after RSET: %q", got)
	}
	ds.waitIdle()
	mails, datas, sessions := ds.counts()
	if n := len(ds.messages()); n != 7 || datas != 7 || mails != 8 {
		t.Errorf("downstream got %d messages, %d DATA, %d MAIL; want 7, 7, 8", n, datas, mails)
	}
	if sessions != 1 {
		t.Errorf("downstream saw %d connections for 8 transactions, want 1", sessions)
	}
}

// downstream_idle: 0 turns reuse off: one connection per message, ended
// after it.
func TestDownstreamNoReuse(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_idle: 0s}"})
	rc := ehloed(t, g.addr)
	for i := range 3 {
		if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("no reuse", "one connection each")); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	waitFor(t, "3 downstream sessions ended", func() bool { return ds.ends() == 3 })
	if _, _, sessions := ds.counts(); sessions != 3 {
		t.Errorf("downstream saw %d connections, want 3", sessions)
	}
}

// An idle connection is closed once downstream_idle has passed.
func TestDownstreamIdleExpiry(t *testing.T) {
	ds := startDownstream(t, false)
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_idle: 200ms}"})
	rc := ehloed(t, g.addr)
	if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("idle", "then wait")); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("send: %q", got)
	}
	waitFor(t, "the idle downstream connection closed", func() bool { return ds.ends() == 1 })
	if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("idle", "new connection")); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("send after expiry: %q", got)
	}
	if _, _, sessions := ds.counts(); sessions != 2 {
		t.Errorf("downstream saw %d connections, want 2", sessions)
	}
}

// A cached connection the downstream dropped while it was idle (closed
// without a word, or with its idle-timeout 421) costs nothing: the next
// transaction goes over a new connection, and the client sees only 250s.
func TestDownstreamDroppedIdleConnection(t *testing.T) {
	for _, how := range []string{"close", "421"} {
		t.Run(how, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tl := &trackingListener{Listener: ln}
			var configure []func(*smtp.Server)
			if how == "421" {
				// go-smtp's server answers "421 Idle timeout" and
				// closes when a client stays silent past ReadTimeout.
				configure = append(configure, func(srv *smtp.Server) { srv.ReadTimeout = 300 * time.Millisecond })
			}
			ds := startDownstreamOn(t, false, tl, configure...)
			g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_idle: 1m}"})
			rc := ehloed(t, g.addr)
			if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("dropped", "first")); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("first: %q", got)
			}
			if how == "close" {
				tl.closeAll()
			}
			waitFor(t, "the downstream ended the idle session", func() bool { return ds.ends() == 1 })
			if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("dropped", "second")); !strings.HasPrefix(got, "250 ") {
				t.Fatalf("after the downstream dropped the idle connection: %q", got)
			}
			ds.waitIdle()
			if n := len(ds.messages()); n != 2 {
				t.Errorf("downstream got %d messages, want 2", n)
			}
		})
	}
}

// trackingListener remembers its connections so a test can cut them.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// A downstream that takes only so many messages per connection (Exchange's
// MaxMessagesPerConnection) answers MAIL with a 4xx on a reused
// connection: the transaction goes on over a new one. A 5xx on a reused
// connection is the downstream's answer about the sender, passed on.
func TestDownstreamPerConnectionLimit(t *testing.T) {
	ds := startDownstream(t, false)
	ds.mu.Lock()
	ds.perConn = 2
	ds.mu.Unlock()
	g := startGateway(t, gwSetup{Downstream: ds.URL(), YAML: "limits: {downstream_idle: 30s}"})
	rc := ehloed(t, g.addr)
	for i := range 5 {
		if got := rc.send("alice@example.org", []string{"bob@example.com"}, testMessage("limit", "two per connection")); !strings.HasPrefix(got, "250 ") {
			t.Fatalf("message %d: %q", i, got)
		}
	}
	ds.waitIdle()
	if _, _, sessions := ds.counts(); len(ds.messages()) != 5 || sessions != 3 {
		t.Errorf("downstream got %d messages over %d connections, want 5 over 3", len(ds.messages()), sessions)
	}

	ds.mu.Lock()
	ds.perConn = 0
	ds.mailErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 7, 1}, Message: "Sender refused"}
	ds.mu.Unlock()
	rc.expectCode("MAIL FROM:<spammer@example.org>", "550 5.7.1")
	if _, _, sessions := ds.counts(); sessions != 3 {
		t.Errorf("a 5xx on a reused connection opened another (%d connections)", sessions)
	}
}
