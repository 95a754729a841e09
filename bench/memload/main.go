// Command memload opens -conns SMTP sessions at once (connect, EHLO),
// keeps them idle for -idle, then has every one send a -size message at the
// same moment (MAIL, RCPT, DATA, body, "."), waits for every 250 and QUITs.
// It prints a line when the sessions are all idle and when all messages are
// accepted, so bench/memory.sh can read the server's memory at each stage.
// Loopback only.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "server `host:port` (127.0.0.1 only)")
	conns := flag.Int("conns", 500, "concurrent sessions")
	size := flag.Int("size", 10240, "body bytes per message")
	idle := flag.Duration("idle", 5*time.Second, "how long the sessions stay idle after EHLO")
	from := flag.String("from", "bench@example.org", "envelope sender")
	to := flag.String("to", "rcpt@example.com", "envelope recipient")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		fmt.Fprintln(os.Stderr, "memload: -addr must be on 127.0.0.1")
		os.Exit(2)
	}
	body := makeBody(*size, *from, *to)

	var ready, ok, failed atomic.Int64
	var connected, sent sync.WaitGroup
	start := make(chan struct{})
	var firstErr atomic.Value
	connected.Add(*conns)
	sent.Add(*conns)
	t0 := time.Now()
	for i := 0; i < *conns; i++ {
		go func() {
			defer sent.Done()
			c, err := dial(*addr)
			connected.Done()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			defer c.c.Close()
			ready.Add(1)
			<-start
			if err := c.send(*from, *to, body); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			ok.Add(1)
			c.cmd("QUIT", 221)
		}()
	}
	connected.Wait()
	fmt.Printf("idle sessions=%d failed=%d after=%s\n", ready.Load(), failed.Load(), time.Since(t0).Round(time.Millisecond))
	time.Sleep(*idle)
	t1 := time.Now()
	fmt.Printf("sending\n")
	close(start)
	sent.Wait()
	fmt.Printf("done ok=%d failed=%d send_phase=%s\n", ok.Load(), failed.Load(), time.Since(t1).Round(time.Millisecond))
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "memload: first error:", e)
	}
	if ok.Load() != int64(*conns) {
		os.Exit(1)
	}
}

// makeBody is a message like smtp-source's: a few header fields, then
// numbered lines of X up to size bytes, ending in ".".
func makeBody(size int, from, to string) []byte {
	var b strings.Builder
	b.Grow(size + size/40 + 256)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: sclgate bench special offer\r\n\r\n", from, to)
	n := 0
	for line := 1; n < size; line++ {
		l := fmt.Sprintf("%d%s", line, strings.Repeat("X", 77))
		if size-n < len(l) {
			l = l[:size-n]
		}
		b.WriteString(l + "\r\n")
		n += len(l)
	}
	b.WriteString(".\r\n")
	return []byte(b.String())
}

type smtpConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func dial(addr string) (*smtpConn, error) {
	c, err := net.DialTimeout("tcp", addr, 30*time.Second)
	if err != nil {
		return nil, err
	}
	s := &smtpConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	c.SetDeadline(time.Now().Add(120 * time.Second))
	if err := s.expect(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := s.cmd("EHLO memload.bench.test", 250); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return s, nil
}

func (s *smtpConn) send(from, to string, body []byte) error {
	s.c.SetDeadline(time.Now().Add(300 * time.Second))
	if err := s.cmd("MAIL FROM:<"+from+">", 250); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := s.cmd("RCPT TO:<"+to+">", 250); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	if err := s.cmd("DATA", 354); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := s.w.Write(body); err != nil {
		return err
	}
	if err := s.w.Flush(); err != nil {
		return err
	}
	if err := s.expect(250); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

func (s *smtpConn) cmd(line string, want int) error {
	s.w.WriteString(line + "\r\n")
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.expect(want)
}

func (s *smtpConn) expect(want int) error {
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 {
			return fmt.Errorf("short reply %q", line)
		}
		var code int
		fmt.Sscanf(line[:3], "%d", &code)
		if code != want {
			return fmt.Errorf("got %q, want %d", strings.TrimSpace(line), want)
		}
		if line[3] != '-' {
			return nil
		}
	}
}
