// Command memload opens -conns SMTP sessions at once (connect, EHLO),
// keeps them idle for -idle, then has every one send a -size message at the
// same moment (MAIL, RCPT, DATA, body, "."), waits for every 250 and QUITs.
// It prints a line when the sessions are all idle and when all messages are
// accepted, so bench/memory.sh can read the server's memory at each stage.
// Loopback only.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sclgate/sclgate/bench/internal/smtpload"
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
	body := smtpload.Body(*size, *from, *to)

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
			c, err := smtpload.Dial(*addr, "memload.bench.test", 300*time.Second)
			connected.Done()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			defer c.Close()
			ready.Add(1)
			<-start
			if _, err := c.Send(*from, *to, body); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			ok.Add(1)
			c.Quit()
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
