package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair: the controlling side and the
// terminal a child gets as its stdin, stdout and stderr.
func openPTY(t *testing.T) (ptm, pts *os.File) {
	t.Helper()
	ptm, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { ptm.Close() })
	if err := unix.IoctlSetPointerInt(int(ptm.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptm.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return ptm, pts
}

// Ctrl-C at the password prompt of defs keygen turns the terminal's echo
// back on (it stayed off: the admin's shell showed nothing typed), says
// nothing was written, and writes nothing.
func TestPasswordPromptInterrupted(t *testing.T) {
	bin := binary(t)
	ptm, pts := openPTY(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "defs", "keygen", "-out", filepath.Join(dir, "k"))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
	cmd.Env = append(os.Environ(), "SCLGATE_KEY_PASSWORD=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait for the prompt (bounded), then type Ctrl-C.
	var out strings.Builder
	buf := make([]byte, 512)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "Password") && time.Now().Before(deadline) {
		ptm.SetReadDeadline(time.Now().Add(time.Second))
		n, _ := ptm.Read(buf)
		out.Write(buf[:n])
	}
	if !strings.Contains(out.String(), "Password") {
		cmd.Process.Kill()
		t.Fatalf("no prompt: %q", out.String())
	}
	time.Sleep(200 * time.Millisecond) // echo turned off by now
	ptm.Write([]byte{3})
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 {
			t.Errorf("exit: %v, want 130", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("keygen did not end after Ctrl-C")
	}
	tio, err := unix.IoctlGetTermios(int(pts.Fd()), unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	if tio.Lflag&unix.ECHO == 0 {
		t.Error("the terminal's echo is still off after Ctrl-C at the prompt")
	}
	if _, err := os.Stat(filepath.Join(dir, "k.key")); !os.IsNotExist(err) {
		t.Errorf("a key was written: %v", err)
	}
}
