package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// sendOne sends one message with a unique subject on its own connection
// and reports whether the client got 250 for it.
func sendOne(addr, id, body string) bool {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	expect := func(code string) bool {
		for {
			l, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(l, code) {
				return false
			}
			if len(l) < 4 || l[3] != '-' {
				return true
			}
		}
	}
	step := func(cmd, code string) bool {
		fmt.Fprintf(c, "%s\r\n", cmd)
		return expect(code)
	}
	if !expect("220") || !step("EHLO load.test", "250") || !step("MAIL FROM:<a@example.org>", "250") ||
		!step("RCPT TO:<bob@example.com>", "250") || !step("DATA", "354") {
		return false
	}
	fmt.Fprintf(c, "Subject: %s\r\n\r\n%s %s\r\n%s\r\n.\r\n", id, id, body, strings.Repeat("filler line of a message body\r\n", 200))
	return expect("250")
}

// TestServeSIGKILLLosesNothingAccepted kills sclgate with SIGKILL while
// clients are sending: afterwards, every message a client got 250 for is
// at the downstream or, for spam, in the ArchiveDir (sclgate keeps no
// queue: it answers 250 only after the downstream did, or the archive file
// was fsync'd).
func TestServeSIGKILLLosesNothingAccepted(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nlimits:\n  max_connections_per_ip: 100\nfilter:\n  weights_file: %s\n  gateway_action: archive\n",
		s.addr, weightsFile(t, dir)))
	var mu sync.Mutex
	var accepted []string
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 500; i++ { // bounded
				select {
				case <-stop:
					return
				default:
				}
				id, body := fmt.Sprintf("msg-%d-%d", w, i), "hello"
				if w%2 == 1 {
					body = "casino jackpot" // MAX: archived
				}
				if sendOne(g.addr, id, body) {
					mu.Lock()
					accepted = append(accepted, id)
					mu.Unlock()
				}
			}
		}(w)
	}
	// Let some mail through, then kill mid-stream.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(accepted)
		mu.Unlock()
		if n >= 50 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(accepted) < 10 {
		t.Fatalf("only %d messages accepted before the kill", len(accepted))
	}
	at := strings.Join(s.messages(t, 0), "\n")
	archived, _ := filepath.Glob(filepath.Join(g.dir, "archive", "*.eml"))
	for _, f := range archived {
		b, _ := os.ReadFile(f)
		at += "\n" + string(b)
	}
	missing := 0
	for _, id := range accepted {
		if !strings.Contains(at, "Subject: "+id+"\n") && !strings.Contains(at, "Subject: "+id+"\r\n") {
			missing++
			t.Errorf("%s got 250 but is not at the downstream", id)
		}
	}
	t.Logf("%d messages accepted before SIGKILL (%d archived), %d missing", len(accepted), len(archived), missing)
	if len(archived) == 0 {
		t.Error("no spam was archived before the kill: the test did not exercise the archive")
	}
}

// SIGTERM while clients are sending: every transaction that got 250 is at
// the downstream, the process exits within limits.shutdown_timeout, and
// connections after the signal are refused (no 250 after shutdown began).
func TestServeSIGTERMUnderLoad(t *testing.T) {
	s := startSink(t)
	g := startGW(t, "downstream: smtp://"+s.addr+"\nlimits:\n  max_connections_per_ip: 100\n  shutdown_timeout: 5s\n")
	var mu sync.Mutex
	var accepted []string
	var afterSignal int
	var signalled time.Time
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 300; i++ { // bounded
				id := fmt.Sprintf("term-%d-%d", w, i)
				start := time.Now()
				ok := sendOne(g.addr, id, "hello")
				mu.Lock()
				if ok {
					accepted = append(accepted, id)
					if !signalled.IsZero() && start.After(signalled.Add(500*time.Millisecond)) {
						afterSignal++ // a connection begun well after SIGTERM got 250
					}
				}
				done := !signalled.IsZero() && time.Since(signalled) > 2*time.Second
				mu.Unlock()
				if done {
					return
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	signalled = time.Now()
	mu.Unlock()
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
	case <-time.After(8 * time.Second):
		t.Fatal("did not exit within the 5s bound (+3s slack)")
	}
	exitAfter := time.Since(signalled)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	at := strings.Join(s.messages(t, len(accepted)), "\n")
	for _, id := range accepted {
		if !strings.Contains(at, "Subject: "+id+"\n") && !strings.Contains(at, "Subject: "+id+"\r\n") {
			t.Errorf("%s got 250 but is not at the downstream", id)
		}
	}
	if afterSignal > 0 {
		t.Errorf("%d connections begun after SIGTERM got 250", afterSignal)
	}
	if ee, ok := g.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ee.ExitStatus() != 0 {
		t.Errorf("exit status %v", g.cmd.ProcessState)
	}
	t.Logf("%d accepted; exited %v after SIGTERM", len(accepted), exitAfter.Round(time.Millisecond))
}
