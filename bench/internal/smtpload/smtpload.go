// Package smtpload is the small SMTP client the load generators under bench/
// share: it speaks just enough SMTP to send a message and time it, with
// deadlines on every step, and builds test messages like smtp-source's.
// It is not a general client: a reply other than the one expected is an
// error, and there is no TLS or pipelining.
package smtpload

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"time"
)

// Body is a message like smtp-source's: a few header fields, then numbered
// lines of X up to size bytes, ending in the "." line (no line starts with
// a dot, so none needs stuffing).
func Body(size int, from, to string) []byte {
	var b strings.Builder
	b.Grow(size + size/40 + 256)
	fmt.Fprintf(&b, "From: <%s>\r\nTo: <%s>\r\nSubject: sclgate bench special offer\r\nMessage-Id: <load.%d@bench.test>\r\n\r\n",
		from, to, time.Now().UnixNano())
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

// Conn is one SMTP session.
type Conn struct {
	c       net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
}

// Dial connects to addr, reads the greeting and says EHLO helo. Each
// step, and each later transaction, must finish within timeout.
func Dial(addr, helo string, timeout time.Duration) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	s := &Conn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), timeout: timeout}
	c.SetDeadline(time.Now().Add(timeout))
	if err := s.expect(220); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if err := s.cmd("EHLO "+helo, 250); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	return s, nil
}

// Send runs one transaction for body (as made by Body: ending in the "."
// line) and returns the time from writing the "." line to the 250: the
// server's latency, without the time the body takes to send.
func (s *Conn) Send(from, to string, body []byte) (time.Duration, error) {
	s.c.SetDeadline(time.Now().Add(s.timeout))
	if err := s.cmd("MAIL FROM:<"+from+">", 250); err != nil {
		return 0, fmt.Errorf("MAIL: %w", err)
	}
	if err := s.cmd("RCPT TO:<"+to+">", 250); err != nil {
		return 0, fmt.Errorf("RCPT: %w", err)
	}
	if err := s.cmd("DATA", 354); err != nil {
		return 0, fmt.Errorf("DATA: %w", err)
	}
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

// Quit says QUIT, waiting at most 5 s for the answer; Close closes.
func (s *Conn) Quit() {
	s.c.SetDeadline(time.Now().Add(5 * time.Second))
	s.cmd("QUIT", 221)
}

// Close closes the connection.
func (s *Conn) Close() { s.c.Close() }

func (s *Conn) cmd(line string, want int) error {
	s.w.WriteString(line + "\r\n")
	if err := s.w.Flush(); err != nil {
		return err
	}
	return s.expect(want)
}

// expect reads a (multi-line) reply and checks its code.
func (s *Conn) expect(want int) error {
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
