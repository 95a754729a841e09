package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/sclgate/sclgate/archive"
)

// The archive on a real file system that fills up: a 256 KiB tmpfs. The
// write that meets ENOSPC gets 451, never 250; no partial file is left;
// every message answered 250 is in the archive, whole; and once space is
// freed, archiving works again without a restart.
func TestServeArchiveOutOfSpace(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("the out-of-space test mounts a tmpfs and needs root: run CI as root")
		}
		t.Skip("mounting a tmpfs needs root: run the test command as root for the out-of-space test")
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=256k"); err != nil {
		// As root this works but in a container without CAP_SYS_ADMIN.
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs for the out-of-space test: %v", err)
		}
		t.Skipf("cannot mount a tmpfs (%v): the out-of-space test needs CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	archDir := filepath.Join(mnt, "arch")

	s := startSink(t)
	dir := t.TempDir()
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\narchive:\n  dir: %s\n",
		s.addr, weightsFile(t, dir), archDir))
	// About 47 KB each: the fifth or sixth does not fit.
	body := "casino jackpot\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", 600)
	c := dialSMTP(t, g.addr)
	send := func() string {
		t.Helper()
		c.cmd("MAIL FROM:<a@example.org>", "250")
		c.cmd("RCPT TO:<bob@example.com>", "250")
		c.cmd("DATA", "354")
		fmt.Fprintf(c.c, "Subject: big spam\r\n\r\n%s.\r\n", body)
		return c.expect("")
	}
	accepted, deferred := 0, 0
	for i := 0; i < 12 && deferred < 2; i++ {
		switch r := send(); {
		case strings.HasPrefix(r, "250 "):
			accepted++
		case strings.HasPrefix(r, "451 4.3.0"):
			deferred++
		default:
			t.Fatalf("message %d: %q, want 250 or 451 4.3.0", i, r)
		}
	}
	if accepted == 0 || deferred == 0 {
		t.Fatalf("%d accepted, %d deferred: the file system never filled", accepted, deferred)
	}
	store, err := archive.Open(archDir, archive.Options{})
	if err != nil {
		t.Fatal(err)
	}
	items, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != accepted {
		t.Errorf("%d messages answered 250, %d in the archive", accepted, len(items))
	}
	for _, it := range items {
		_, rc, err := store.Open(it.ID)
		if err != nil {
			t.Fatalf("archived %s: %v", it.ID, err)
		}
		b, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || strings.Count(string(b), strings.Repeat("x", 76)+"\r\n") != 600 {
			t.Errorf("archived %s is not whole (%d bytes, %v)", it.ID, len(b), err)
		}
	}
	names, _ := os.ReadDir(archDir)
	for _, e := range names {
		if strings.Contains(e.Name(), "tmp") {
			t.Errorf("partial file left in the archive: %s", e.Name())
		}
	}
	if g.metric(t, `sclgate_relay_failures_total{reason="archive"}`) != float64(deferred) {
		t.Errorf("archive failures not counted as %d", deferred)
	}
	if len(s.messages(t, 0)) != 0 {
		t.Error("spam relayed instead of archived")
	}

	// Space freed: the next message is archived again.
	if err := store.Delete(items[0].ID); err != nil {
		t.Fatal(err)
	}
	if r := send(); !strings.HasPrefix(r, "250 ") {
		t.Errorf("after freeing space: %q", r)
	}
}
