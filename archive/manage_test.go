package archive

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// released/ made by root (an admin running "archive release" with sudo)
// gets the archive directory's owner and group, so that serve, running as
// its own user, can still move messages into it from the web page.
func TestSubdirTakesArchiveOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (as CI runs) to create a directory owned by another user")
		}
		t.Skip("needs root to create a directory owned by another user")
	}
	s := newStore(t, Options{StoreSCL: true})
	if err := os.Chown(s.Dir(), 65534, 65534); err != nil {
		t.Fatal(err)
	}
	id, err := s.Write(testEnv, 3, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CheckMove("released"); err != nil {
		t.Fatal(err)
	}
	if err := s.Move(id, "released"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(s.Dir(), "released"))
	if err != nil {
		t.Fatal(err)
	}
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid != 65534 || sys.Gid != 65534 {
		t.Errorf("released/ belongs to %d:%d, want the archive directory's 65534:65534", sys.Uid, sys.Gid)
	}
	// So does an unanswered-release mark, which serve must read.
	b, _ := s.Write(testEnv, 3, strings.NewReader("Subject: y\r\n\r\ny\r\n"))
	if err := s.MarkUnanswered(b, "at noon"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(s.markPath(b)); err != nil || st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("mark: %v %v", st, err)
	}
}

// An unanswered-release mark is kept until the message is moved or
// deleted, and only for valid IDs.
func TestUnansweredMark(t *testing.T) {
	s := newStore(t, Options{StoreSCL: true})
	a, _ := s.Write(testEnv, 3, strings.NewReader("Subject: x\r\n\r\nx\r\n"))
	b, _ := s.Write(testEnv, 4, strings.NewReader("Subject: y\r\n\r\ny\r\n"))
	if _, ok := s.Unanswered(a); ok {
		t.Fatal("mark before any")
	}
	for _, id := range []string{a, b} {
		if err := s.MarkUnanswered(id, "at noon to x@y"); err != nil {
			t.Fatal(err)
		}
	}
	if note, ok := s.Unanswered(a); !ok || note != "at noon to x@y" {
		t.Errorf("mark = %q %v", note, ok)
	}
	if items, err := s.List(); err != nil || len(items) != 2 {
		t.Errorf("List with marks: %d items, %v", len(items), err)
	}
	if err := s.Move(a, "released"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(b); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b} {
		if _, ok := s.Unanswered(id); ok {
			t.Errorf("%s: mark left after move/delete", id)
		}
	}
	// A mark that cannot be read counts: a refused release, not a second
	// copy.
	c, _ := s.Write(testEnv, 5, strings.NewReader("Subject: z\r\n\r\nz\r\n"))
	os.Mkdir(s.markPath(c), 0o700)
	if note, ok := s.Unanswered(c); !ok || !strings.Contains(note, "cannot be read") {
		t.Errorf("unreadable mark: %q %v", note, ok)
	}
	if err := s.MarkUnanswered("../x", "n"); err == nil {
		t.Error("mark for an invalid ID taken")
	}
}
