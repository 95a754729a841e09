// Command latency sends SMTP messages at a fixed rate (open loop: message i
// starts at t0 + i/rate whether or not earlier ones have finished) and
// reports, per message, the time from the end of DATA (the "." line
// written) to the server's 250, and the whole transaction (connect or
// MAIL to the 250 after the dot). Used by bench/latency.sh against
// smtp-sink directly and through sclgate. Loopback only.
package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sclgate/sclgate/bench/internal/smtpload"
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
	body := smtpload.Body(*size, *from, *to)

	var pool chan *smtpload.Conn
	if *reuse > 0 {
		pool = make(chan *smtpload.Conn, *reuse)
		for i := 0; i < *reuse; i++ {
			c, err := smtpload.Dial(*addr, "latency.bench.test", 60*time.Second)
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
			var c *smtpload.Conn
			var err error
			t0 := time.Now()
			if pool != nil {
				c = <-pool
				t0 = time.Now() // queueing for a free connection is not the server's latency
			} else if c, err = smtpload.Dial(*addr, "latency.bench.test", 60*time.Second); err != nil {
				results[i].err = err
				return
			}
			dot, err := c.Send(*from, *to, body)
			results[i] = result{dot: dot, txn: time.Since(t0), err: err}
			if pool != nil && err == nil {
				pool <- c
				return
			}
			if err == nil {
				c.Quit()
			}
			c.Close()
			if pool != nil { // replace a broken pooled connection
				if nc, err := smtpload.Dial(*addr, "latency.bench.test", 60*time.Second); err == nil {
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
			c.Quit()
			c.Close()
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
