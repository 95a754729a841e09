// Command latency sends SMTP messages at a fixed rate (open loop: message i
// starts at t0 + i/rate whether or not earlier ones have finished) and
// reports, per message, the time from the end of DATA (the "." line
// written) to the server's 250, and the whole transaction (connect or
// MAIL to the 250 after the dot). Used by bench/latency.sh against
// smtp-sink directly and through sclgate. Loopback only.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "server `host:port` (127.0.0.1 only)")
	rate := flag.Float64("rate", 200, "messages per second")
	count := flag.Int("n", 4000, "messages to send")
	size := flag.Int("size", 10240, "body bytes")
	reuse := flag.Int("reuse", 0, "keep this many connections open and reuse them (0: new connection per message)")
	maxInFlight := flag.Int("max-inflight", 500, "give up on a message that would exceed this many in flight")
	from := flag.String("from", "bench@example.org", "envelope sender")
	to := flag.String("to", "rcpt@example.com", "envelope recipient")
	label := flag.String("label", "", "label for the output line")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		fmt.Fprintln(os.Stderr, "latency: -addr must be on 127.0.0.1")
		os.Exit(2)
	}
	body := makeBody(*size, *from, *to)

	var pool chan *smtpConn
	if *reuse > 0 {
		pool = make(chan *smtpConn, *reuse)
		for i := 0; i < *reuse; i++ {
			c, err := dial(*addr)
			if err != nil {
				fmt.Fprintln(os.Stderr, "latency:", err)
				os.Exit(1)
			}
			pool <- c
		}
	}

	type result struct {
		dot, txn time.Duration
		err      error
	}
	results := make([]result, *count)
	var wg sync.WaitGroup
	sem := make(chan struct{}, *maxInFlight)
	skipped := 0
	interval := time.Duration(float64(time.Second) / *rate)
	start := time.Now()
	for i := 0; i < *count; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case sem <- struct{}{}:
		default:
			skipped++
			results[i].err = fmt.Errorf("skipped: %d in flight", *maxInFlight)
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			var c *smtpConn
			var err error
			t0 := time.Now()
			if pool != nil {
				c = <-pool
				t0 = time.Now() // queueing for a free connection is not the server's latency
			} else if c, err = dial(*addr); err != nil {
				results[i].err = err
				return
			}
			dot, err := c.send(*from, *to, body)
			results[i] = result{dot: dot, txn: time.Since(t0), err: err}
			if pool != nil && err == nil {
				pool <- c
				return
			}
			if err == nil {
				c.quit()
			}
			c.close()
			if pool != nil { // replace a broken pooled connection
				if nc, err := dial(*addr); err == nil {
					pool <- nc
				}
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start)
	if pool != nil {
		close(pool)
		for c := range pool {
			c.quit()
			c.close()
		}
	}

	var dots, txns []time.Duration
	var errs []string
	for _, r := range results {
		if r.err != nil {
			if len(errs) < 5 {
				errs = append(errs, r.err.Error())
			}
			continue
		}
		dots = append(dots, r.dot)
		txns = append(txns, r.txn)
	}
	mode := "new"
	if *reuse > 0 {
		mode = fmt.Sprintf("reused(%d)", *reuse)
	}
	fmt.Printf("label=%s addr=%s size=%d rate=%.0f mode=%s sent=%d ok=%d failed=%d skipped=%d achieved_rate=%.1f "+
		"dot_p50_us=%d dot_p90_us=%d dot_p99_us=%d dot_max_us=%d txn_p50_us=%d txn_p99_us=%d\n",
		*label, *addr, *size, *rate, mode, *count, len(dots), *count-len(dots)-skipped, skipped,
		float64(len(dots))/elapsed.Seconds(),
		pct(dots, 50), pct(dots, 90), pct(dots, 99), pct(dots, 100), pct(txns, 50), pct(txns, 99))
	for _, e := range errs {
		fmt.Fprintln(os.Stderr, "latency: error:", e)
	}
	if len(dots) < *count {
		os.Exit(1)
	}
}

// pct is the p-th percentile (nearest rank) in microseconds.
func pct(d []time.Duration, p int) int64 {
	if len(d) == 0 {
		return -1
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	i = max(0, min(len(s)-1, i))
	return s[i].Microseconds()
}

// makeBody is a message like smtp-source's: a few header fields, then
// numbered lines of X up to size bytes, dot-stuffed and ending in ".".
func makeBody(size int, from, to string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: sclgate bench special offer\r\nMessage-Id: <lat.%d@bench.test>\r\n\r\n", from, to, time.Now().UnixNano())
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
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	s := &smtpConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := s.expect(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := s.cmd("EHLO latency.bench.test", 250); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return s, nil
}

// send runs one transaction and returns the time from the final "." to 250.
func (s *smtpConn) send(from, to string, body []byte) (time.Duration, error) {
	s.c.SetDeadline(time.Now().Add(60 * time.Second))
	if err := s.cmd("MAIL FROM:<"+from+">", 250); err != nil {
		return 0, fmt.Errorf("MAIL: %w", err)
	}
	if err := s.cmd("RCPT TO:<"+to+">", 250); err != nil {
		return 0, fmt.Errorf("RCPT: %w", err)
	}
	if err := s.cmd("DATA", 354); err != nil {
		return 0, fmt.Errorf("DATA: %w", err)
	}
	// The body up to the final dot line goes first; the clock starts when
	// the dot line itself is written.
	end := len(body) - len(".\r\n")
	if _, err := s.w.Write(body[:end]); err != nil {
		return 0, err
	}
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	t := time.Now()
	s.w.WriteString(".\r\n")
	if err := s.w.Flush(); err != nil {
		return 0, err
	}
	if err := s.expect(250); err != nil {
		return 0, fmt.Errorf("end of DATA: %w", err)
	}
	return time.Since(t), nil
}

func (s *smtpConn) cmd(line string, want int) error {
	s.w.WriteString(line + "\r\n")
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.expect(want)
}

// expect reads a (multi-line) reply and checks its code.
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

func (s *smtpConn) quit() {
	s.c.SetDeadline(time.Now().Add(5 * time.Second))
	s.cmd("QUIT", 221)
}

func (s *smtpConn) close() { s.c.Close() }
