package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
)

// ErrBusy is Lock's error when another release or delete of the same
// message is under way, in this process or another.
var ErrBusy = errors.New("another release or delete of this message is under way")

// Lock takes an exclusive lock on the message with the given ID, for what
// must happen to it once: a release delivers it, then moves it away, and
// without the lock two releases at once (a double click, two admins, the
// web page and the CLI) would both deliver it. A second Lock of the same
// message fails with ErrBusy until unlock is called. Once held, the lock
// is on the message still in place: if the message was moved or removed
// meanwhile (released by the holder before), Lock fails with an error
// wrapping fs.ErrNotExist.
//
// The lock is flock(2) on the file, so the kernel drops it when the holder
// dies: a crashed release leaves nothing to clean up.
func (s *Store) Lock(id string) (unlock func(), err error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	path := s.path(id)
	f, err := openNoBlock(path)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, fmt.Errorf("archive: %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("archive: %s: %w", id, ErrBusy)
		}
		return nil, fmt.Errorf("archive: lock %s: %w", path, err)
	}
	// The holder before may have moved the file between our open and our
	// lock: then the name is gone, or names another file.
	held, err1 := f.Stat()
	now, err2 := os.Stat(path)
	if err1 != nil || err2 != nil || !os.SameFile(held, now) {
		f.Close()
		return nil, fmt.Errorf("archive: %s: %w (released or deleted meanwhile)", id, fs.ErrNotExist)
	}
	return func() { f.Close() }, nil
}

// openNoBlock opens path for reading without blocking on a FIFO or
// device that someone left in the directory: such files are then refused
// as not regular, instead of hanging every reader. A symbolic link is
// refused too: the archive's files are its own, and a link would be read
// through but moved (to released/) as the link, which then points nowhere.
func openNoBlock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s: a symbolic link, not a file of the archive's own", path)
	}
	return f, err
}
