// Command corpussend sends a list of message files over SMTP to a server on
// 127.0.0.1, over -c parallel connections that are kept open and reused
// (MAIL, RCPT, DATA for one message after another; a connection is opened
// again only after an error). Files are read into memory before the clock
// starts. Line ends go out as CRLF and lines starting with "." are
// dot-stuffed (net/smtp's DATA writer); the bytes are otherwise unchanged.
//
//	corpussend -addr 127.0.0.1:2525 -c 4 -list files.txt
//
// It prints one line, "sent=N failed=N connections=N seconds=S msgs_per_s=R",
// and exits 1 if any message was not accepted with a 2xx (the first errors
// go to stderr). Used by bench/peers.sh.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:2525", "server `host:port` (127.0.0.1 only)")
	conc := flag.Int("c", 4, "parallel connections")
	list := flag.String("list", "", "`FILE` with one message path per line (required)")
	from := flag.String("from", "bench@example.org", "envelope sender")
	to := flag.String("to", "rcpt@example.com", "envelope recipient")
	helo := flag.String("helo", "corpussend.test", "EHLO name")
	timeout := flag.Duration("timeout", 60*time.Second, "limit per message (connect and whole transaction)")
	flag.Parse()
	if !strings.HasPrefix(*addr, "127.0.0.1:") {
		fatal("-addr must be on 127.0.0.1")
	}
	if *list == "" || *conc < 1 {
		fatal("-list FILE is required and -c must be at least 1")
	}
	msgs, names, err := load(*list)
	if err != nil {
		fatal(err.Error())
	}
	if len(msgs) == 0 {
		fatal("no files in " + *list)
	}

	var sent, failed, dials atomic.Int64
	var errMu sync.Mutex
	var errs []string
	report := func(name string, err error) {
		failed.Add(1)
		errMu.Lock()
		if len(errs) < 10 {
			errs = append(errs, fmt.Sprintf("%s: %v", name, err))
		}
		errMu.Unlock()
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s *session
			for i := range jobs {
				if s == nil {
					dials.Add(1)
					ns, err := dial(*addr, *helo, *timeout)
					if err != nil {
						report(names[i], err)
						continue
					}
					s = ns
				}
				if err := s.send(*from, *to, msgs[i], *timeout); err != nil {
					report(names[i], err)
					s.conn.Close()
					s = nil
					continue
				}
				sent.Add(1)
			}
			if s != nil {
				s.conn.SetDeadline(time.Now().Add(*timeout))
				s.c.Quit()
				s.conn.Close()
			}
		}()
	}
	for i := range msgs {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	secs := time.Since(t0).Seconds()
	for _, e := range errs {
		fmt.Fprintln(os.Stderr, "corpussend:", e)
	}
	fmt.Printf("sent=%d failed=%d connections=%d seconds=%.3f msgs_per_s=%.1f\n",
		sent.Load(), failed.Load(), dials.Load(), secs, float64(sent.Load())/secs)
	if failed.Load() > 0 {
		os.Exit(1)
	}
}

func fatal(msg string) {
	fmt.Fprintln(os.Stderr, "corpussend:", msg)
	os.Exit(2)
}

// load reads every file named in list (one path a line; blank lines skipped).
func load(list string) (msgs [][]byte, names []string, err error) {
	f, err := os.Open(list)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		msgs = append(msgs, b)
		names = append(names, p)
	}
	return msgs, names, sc.Err()
}

type session struct {
	conn net.Conn
	c    *smtp.Client
}

func dial(addr, helo string, timeout time.Duration) (*session, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(timeout))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.Hello(helo); err != nil {
		conn.Close()
		return nil, err
	}
	return &session{conn: conn, c: c}, nil
}

// send runs one transaction; after a 250 to the final dot the session is
// ready for the next MAIL (no RSET needed).
func (s *session) send(from, to string, msg []byte, timeout time.Duration) error {
	s.conn.SetDeadline(time.Now().Add(timeout))
	if err := s.c.Mail(from); err != nil {
		return fmt.Errorf("MAIL: %w", err)
	}
	if err := s.c.Rcpt(to); err != nil {
		return fmt.Errorf("RCPT: %w", err)
	}
	w, err := s.c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA body: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}
