package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// An output that is a FIFO or a device is written into, not replaced by
// a regular file (as root, "-o /dev/null" replaced the machine's device
// node); a symbolic link is followed and kept; a directory or a link to
// nowhere is refused.
func TestWriteOutput(t *testing.T) {
	dir := t.TempDir()

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := os.ReadFile(fifo) // blocks until the writer opens it
		got <- b
	}()
	if err := writeOutput(fifo, []byte("plot"), 0o644); err != nil {
		t.Fatalf("FIFO: %v", err)
	}
	if b := <-got; string(b) != "plot" {
		t.Errorf("FIFO reader got %q", b)
	}
	if st, err := os.Lstat(fifo); err != nil || st.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v %v", st.Mode(), err)
	}

	// A character device of our own (/dev/null's numbers), where the
	// test may make one (root): the same path as the FIFO's otherwise.
	dev := filepath.Join(dir, "null")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o666, 1<<8|3); err == nil {
		if err := writeOutput(dev, []byte("x"), 0o644); err != nil {
			t.Errorf("device: %v", err)
		}
		if st, err := os.Lstat(dev); err != nil || st.Mode()&os.ModeCharDevice == 0 {
			t.Errorf("the device node was replaced: %v %v", st.Mode(), err)
		}
	} else {
		t.Logf("no device node made here (%v): the FIFO case covers the direct write", err)
	}

	real := filepath.Join(dir, "real.svg")
	os.WriteFile(real, []byte("old"), 0o644)
	link := filepath.Join(dir, "latest.svg")
	os.Symlink("real.svg", link)
	if err := writeOutput(link, []byte("new"), 0o644); err != nil {
		t.Fatalf("symlink: %v", err)
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("the link's file holds %q", b)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link was replaced: %v %v", st.Mode(), err)
	}

	os.Symlink("missing", filepath.Join(dir, "dangling"))
	if err := writeOutput(filepath.Join(dir, "dangling"), nil, 0o644); err == nil || !strings.Contains(err.Error(), "leads nowhere") {
		t.Errorf("dangling link: %v", err)
	}
	if err := writeOutput(dir, nil, 0o644); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
	if err := writableOutput(fifo); err != nil {
		t.Errorf("writableOutput(FIFO): %v", err)
	}
}

// "-plot /dev/stdout > out": the output is one of the process's open
// files, a regular file here, written into at its end like a shell
// redirection, never replaced (that lost what was printed before it, and
// all printed after, to the unlinked old file).
func TestWriteOutputRedirection(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("table\n")
	fd := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	link := filepath.Join(t.TempDir(), "stdout")
	os.Symlink(fmt.Sprintf("/dev/fd/%d", f.Fd()), link)
	for _, p := range []string{fd, link} {
		if err := writeOutput(p, []byte("svg\n"), 0o644); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	f.WriteString("more\n") // the process's own fd still writes to it
	if b, _ := os.ReadFile(f.Name()); string(b) != "table\nsvg\nsvg\nmore\n" {
		t.Errorf("the redirection's file holds %q", b)
	}
}
