package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/sclgate/sclgate/archive"
)

// lmtpRefusing is an LMTP downstream that takes the recipient ok and
// refuses every other one at RCPT; it records what it delivered.
type lmtpRefusing struct {
	ok        string
	mu        sync.Mutex
	delivered []string
}

func (b *lmtpRefusing) NewSession(*smtp.Conn) (smtp.Session, error) { return &lmtpSession{b: b}, nil }

type lmtpSession struct {
	b     *lmtpRefusing
	rcpts []string
}

func (s *lmtpSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *lmtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if to != s.b.ok {
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user"}
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}
func (s *lmtpSession) Data(r io.Reader) error {
	io.Copy(io.Discard, r)
	s.b.mu.Lock()
	s.b.delivered = append(s.b.delivered, s.rcpts...)
	s.b.mu.Unlock()
	return nil
}
func (s *lmtpSession) Reset()        { s.rcpts = nil }
func (s *lmtpSession) Logout() error { return nil }

// A release that reached one recipient over LMTP and was refused for the
// next leaves the file marked: releasing it again without -force would
// send the first a second copy.
func TestArchiveReleasePartialMarked(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	store, err := archive.Open(dir, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	it, _, err := readMessage(store, spam)
	if err != nil || len(it.Envelope.To) < 2 {
		t.Fatalf("%v: %+v", err, it.Envelope)
	}
	first := it.Envelope.To[0]
	b := &lmtpRefusing{ok: first}
	srv := smtp.NewServer(b)
	srv.LMTP = true
	srv.Domain = "lmtp.test"
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "lmtp://"+l.Addr().String(), spam)
	if code != 1 || !strings.Contains(errOut, "already delivered to "+first) || !strings.Contains(errOut, `the others did not get it: send it to them with "sclgate archive release -force -to '`+it.Envelope.To[1]+`'" and the other options you gave this time`) {
		t.Fatalf("partial release: exit %d %s", code, errOut)
	}
	if _, out, _ := archiveRun(t, "show", "-dir", dir, spam); !strings.Contains(out, "Released:    maybe: a release at ") || !strings.Contains(out, "delivered to "+first) {
		t.Errorf("show after a partial release:\n%s", out)
	}
	code, _, errOut = archiveRun(t, "release", "-dir", dir, "-downstream", "lmtp://"+l.Addr().String(), spam)
	if code != 1 || !strings.Contains(errOut, "-force") {
		t.Errorf("second release without -force: exit %d %s", code, errOut)
	}
	b.mu.Lock()
	if fmt.Sprint(b.delivered) != "["+first+"]" {
		t.Errorf("delivered %v, want one copy to %s", b.delivered, first)
	}
	b.mu.Unlock()
	// A forced release to the rest that in turn gets no answer keeps the
	// earlier note: who the first one reached is not forgotten.
	mute := startSink(t, "-q", ".") // hangs up after the final dot
	code, _, errOut = archiveRun(t, "release", "-force", "-dir", dir, "-downstream", "smtp://"+mute.addr, "-to", it.Envelope.To[1], spam)
	if code != 1 || !strings.Contains(errOut, "may have been delivered") {
		t.Fatalf("forced release without an answer: exit %d %s", code, errOut)
	}
	if _, out, _ := archiveRun(t, "show", "-dir", dir, spam); !strings.Contains(out, "no answer came") || !strings.Contains(out, "before that, a release at ") || !strings.Contains(out, "delivered to "+first) {
		t.Errorf("show after a forced release without an answer:\n%s", out)
	}
	// Then a forced release to the rest that goes through: the file moves
	// to released/, and show still says who got it, the first recipient
	// (of the partial release) included.
	sink := startSink(t)
	code, _, errOut = archiveRun(t, "release", "-force", "-dir", dir, "-downstream", "smtp://"+sink.addr, "-to", it.Envelope.To[1], spam)
	if code != 0 {
		t.Fatalf("forced release to the rest: exit %d %s", code, errOut)
	}
	if _, out, _ := archiveRun(t, "show", "-dir", dir, spam); !strings.Contains(out, "Released:    yes") || !strings.Contains(out, "Released to: <"+first+"> at ") || !strings.Contains(out, "Released to: <"+it.Envelope.To[1]+"> at ") {
		t.Errorf("show after the release to the rest:\n%s", out)
	}
}

// A release stopped (SIGTERM, as Ctrl-C) before it sent anything, here
// waiting for a greeting that never comes, leaves no mark: nothing can
// have been delivered, and the next release needs no -force.
func TestArchiveReleaseStoppedBeforeSendingNoMark(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	l, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never greets
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: smtp://%s\narchive:\n  dir: %s\nhostname: gw.test\nlimits:\n  downstream_timeout: 60s\n", l.Addr(), dir)), 0o644)
	cmd := exec.Command(binary(t), "archive", "release", "-config", cfg, spam)
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(time.Second)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errOut.String(), "not released") {
			t.Errorf("stopped release: %v\n%s", err, errOut.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("release did not stop on SIGTERM")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*unanswered")); len(left) != 0 {
		t.Errorf("mark left by a release that sent nothing: %q", left)
	}
	releasesToSink(t, dir, spam, "release after the stopped one")
}

// The web page's advice survives a shell: every path, the recipients
// (chosen by the message's sender) and the file name are quoted, the file
// name comes after "--" and keeps its ".eml" (an IMF ID may end in ".eml").
func TestReleaseAdviceQuoted(t *testing.T) {
	a := releaseAdvice{web: true, wd: "/srv/my gw", config: "conf/it's.yaml"}
	want := `this command on the gateway: "cd '/srv/my gw' && sclgate archive release -config 'conf/it'\''s.yaml' -force -to 'x` + "`touch${IFS}p`" + `@example.com,o'\''brien@example.com' -- '-to=x@y.eml'"`
	if got := a.command("-to=x@y", []string{"x`touch${IFS}p`@example.com", "o'brien@example.com"}); got != want {
		t.Errorf("command = %s\nwant      %s", got, want)
	}
	if got := (releaseAdvice{}).command("id", []string{"b@example.com"}); got != `"sclgate archive release -force -to 'b@example.com'" and the other options you gave this time (this -to in place of any you gave)` {
		t.Errorf("command-line advice = %s", got)
	}
}
