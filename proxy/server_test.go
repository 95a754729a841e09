package proxy

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Accept failures (out of descriptors) are retried every 50 ms; the log
// gets one line for a burst of them, not twenty a second.
func TestAcceptErrorLogThrottled(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	logf := acceptErrorLog(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	for range 100 {
		logf(errors.New("accept4: too many open files"))
	}
	if n := strings.Count(buf.String(), "accept failed"); n != 1 {
		t.Fatalf("%d lines for 100 failures in a burst:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "too many open files") || !strings.Contains(buf.String(), "failures=1") {
		t.Errorf("line lacks the error or the count: %s", buf.String())
	}
	// The burst ends: its count, which no throttled line showed, is told.
	now = now.Add(5 * time.Second)
	logf(nil)
	if !strings.Contains(buf.String(), "accepting connections again") || !strings.Contains(buf.String(), "failures=100") {
		t.Errorf("no line with the burst's count when accepting works again:\n%s", buf.String())
	}
	// A lasting shortage, where accepting fails and works by turns: no
	// more lines within the minute, either kind.
	lines := strings.Count(buf.String(), "\n")
	for range 100 {
		logf(errors.New("accept4: too many open files"))
		logf(nil)
	}
	if n := strings.Count(buf.String(), "\n") - lines; n != 0 {
		t.Errorf("%d more lines for 100 failures and recoveries within a minute:\n%s", n, buf.String())
	}
	// A minute on, a failure is logged; when accepting works again, that
	// is said at once, though the last "again" line is less than a minute
	// old: a failure that is over must not be the log's last word.
	now = now.Add(55 * time.Second) // a minute after the first failure line
	logf(errors.New("accept4: too many open files"))
	now = now.Add(time.Second)
	logf(nil)
	tail := buf.String()[strings.LastIndex(strings.TrimSuffix(buf.String(), "\n"), "\n")+1:]
	if !strings.Contains(tail, "accepting connections again") || !strings.Contains(tail, "failures=101") {
		t.Errorf("last line %q, want accepting again with the 101 failures since the last such line", tail)
	}
}

// errOnceListener fails its first Accept (as accept4 does out of
// descriptors) and then waits, as on an idle listener, until closed.
type errOnceListener struct {
	net.Listener
	calls  atomic.Int32
	closed chan struct{}
}

func (l *errOnceListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) == 1 {
		return nil, syscall.EMFILE
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *errOnceListener) Close() error { close(l.closed); return nil }

// When accepting failed and descriptors are free again, the recovery is
// told at once, not only when the next client comes: on an idle listener
// "accept failed" stayed the log's last word on it.
func TestAcceptRecoveryToldWhenIdle(t *testing.T) {
	got := make(chan error, 4)
	hooks := limitHooks{refused: func(netip.Addr, string) {}, acceptError: func(err error) { got <- err }, http: func() {}, cutCommand: func() {},
		opened: func() {}, closed: func() {}, protocolError: func(*limitConn, []byte) bool { return false }}
	ll := newLimitListener(&errOnceListener{closed: make(chan struct{})}, 10, 10, "gw.test", hooks)
	defer ll.Close()
	for i, want := range []bool{true, false} {
		select {
		case err := <-got:
			if (err != nil) != want {
				t.Fatalf("report %d: %v", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("report %d (failure, then recovery) never came", i)
		}
	}
}

// go-smtp's "error handling" line for a client that reset its connection
// is logged at info level, at most once a minute with a count (a burst of
// them, one warning each, buried the journal); its other lines stay
// warnings, each one.
func TestSlogLoggerQuietsClientResets(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := newSlogLogger(slog.New(slog.NewTextHandler(&buf, nil)), func() time.Time { return now })
	for range 50 {
		l.Printf("error handling %v: %s", "127.0.0.1:5000", "read tcp 127.0.0.1:25->127.0.0.1:5000: read: connection reset by peer")
		l.Printf("error handling %v: %s", "127.0.0.1:5001", "write tcp 127.0.0.1:25->127.0.0.1:5001: write: broken pipe")
		now = now.Add(time.Second)
	}
	if n := strings.Count(buf.String(), "client went away"); n != 1 || strings.Contains(buf.String(), "WARN") {
		t.Errorf("%d lines for 100 resets within a minute:\n%s", n, buf.String())
	}
	now = now.Add(time.Minute)
	l.Printf("error handling %v: %s", "127.0.0.1:5002", "read tcp 127.0.0.1:25->127.0.0.1:5002: read: connection reset by peer")
	if !strings.Contains(buf.String(), "level=INFO msg=\"smtp: client went away: 127.0.0.1:5002: read tcp") || !strings.Contains(buf.String(), "since_last_line=100") {
		t.Errorf("the next minute's line lacks the address or the count:\n%s", buf.String())
	}
	l.Printf("error handling %v: %s", "127.0.0.1:5003", "tls: first record does not look like a TLS handshake")
	l.Printf("panic serving %v: %v\n%s", "127.0.0.1:5004", "boom", "stack")
	if n := strings.Count(buf.String(), "level=WARN"); n != 2 {
		t.Errorf("%d warnings, want 2:\n%s", n, buf.String())
	}
}

// pipeListener hands out one end of a net.Pipe per Accept: connections
// whose remote address is no IP address (as a balancer's PROXY header
// naming a unix socket gives).
type pipeListener struct {
	net.Listener
	conns  chan net.Conn
	closed chan struct{}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error { close(l.closed); return nil }

// Connections without an IP address are not counted per address: each
// closed one was left counted, until max_connections_per_ip of them
// had the rest refused for good.
func TestPerIPCapWithoutAddress(t *testing.T) {
	refused := make(chan string, 10)
	hooks := limitHooks{refused: func(_ netip.Addr, limit string) { refused <- limit }, acceptError: func(error) {}, http: func() {}, cutCommand: func() {},
		opened: func() {}, closed: func() {}, protocolError: func(*limitConn, []byte) bool { return false }}
	pl := &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
	ll := newLimitListener(pl, 10, 2, "gw.test", hooks)
	defer ll.Close()
	for i := range 5 {
		server, client := net.Pipe()
		go io.Copy(io.Discard, client) // a refusal's 421 is written, and must be read
		pl.conns <- server
		select {
		case c := <-ll.ready:
			c.Close()
		case limit := <-refused:
			t.Fatalf("connection %d refused (%s) with none other open", i, limit)
		case <-time.After(5 * time.Second):
			t.Fatalf("connection %d neither admitted nor refused", i)
		}
		client.Close()
	}
}
