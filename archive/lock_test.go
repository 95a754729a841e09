package archive

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A release holds the lock from before reading the message until it has
// moved it: a second release meanwhile is told the message is busy, and
// one after it that the message is gone, so it is delivered once.
func TestLockOnce(t *testing.T) {
	s := newStore(t, Options{StoreSCL: true})
	id, err := s.Write(testEnv, 9, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := s.Lock(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(id); !errors.Is(err, ErrBusy) {
		t.Errorf("second Lock = %v, want ErrBusy", err)
	}
	if err := s.Delete(id); !errors.Is(err, ErrBusy) {
		t.Errorf("Delete while locked = %v, want ErrBusy", err)
	}
	// The holder moves the message away, then lets go: the lock that a
	// second release then gets would be on the moved file, so it is refused.
	if err := s.Move(id, "released"); err != nil {
		t.Fatal(err)
	}
	unlock()
	if _, err := s.Lock(id); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Lock after the move = %v, want ErrNotExist", err)
	}

	// A name that now holds another message is not the one locked.
	writeFile(t, s.path(id), "X-Sender: <a@b>\r\nX-Receiver: <c@d>\r\n\r\nsecond\r\n")
	unlock, err = s.Lock(id)
	if err != nil {
		t.Fatalf("Lock of the new file: %v", err)
	}
	unlock()
	if err := s.Delete(id); err != nil {
		t.Errorf("Delete after unlock: %v", err)
	}
}

// A FIFO (or device) named *.eml in the archive directory is refused as
// not a regular file; opening it must not block List, Get or Lock.
func TestFIFODoesNotHang(t *testing.T) {
	s := newStore(t, Options{StoreSCL: true})
	if _, err := s.Write(testEnv, 9, strings.NewReader("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(s.Dir(), "fifo.eml"), 0o640); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		items, err := s.List()
		if len(items) != 1 {
			t.Errorf("List: %d items", len(items))
		}
		_, gerr := s.Get("fifo")
		_, lerr := s.Lock("fifo")
		if gerr == nil || lerr == nil {
			t.Errorf("Get, Lock of a FIFO: %v, %v", gerr, lerr)
		}
		done <- err
	}()
	select {
	case err := <-done:
		var sk *SkippedError
		if !errors.As(err, &sk) || len(sk.Errs) != 1 || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("List error = %v, want the FIFO skipped as not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("List, Get or Lock blocked on a FIFO")
	}
	// It cannot be locked, but it can be deleted.
	if err := s.Delete("fifo"); err != nil {
		t.Errorf("Delete of a FIFO: %v", err)
	}
}
