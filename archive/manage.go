package archive

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sclgate/sclgate/safeio"
	"golang.org/x/sys/unix"
)

// ReleasedDir is the subdirectory of the archive that "sclgate archive
// release" and the web page's Release move delivered messages to.
const ReleasedDir = "released"

// Move moves the message with the given ID into the subdirectory subdir
// of the archive directory (for example "released"), creating it if
// needed. The move is one rename, so the message is always in exactly one
// of the two places, and it is out of List once Move returns. subdir must
// be a plain name, like an ID. Move does not replace a message already in
// subdir under the same name.
func (s *Store) Move(id, subdir string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if why := badName(subdir); why != "" {
		return fmt.Errorf("archive: invalid subdirectory %q: %s", subdir, why)
	}
	dstDir := filepath.Join(s.dir, subdir)
	if err := s.mkSubdir(dstDir); err != nil {
		return err
	}
	src, dst := s.path(id), filepath.Join(dstDir, id+fileExt)
	// rename replaces what it finds, and IMF's names are not unique:
	// renameat2's RENAME_NOREPLACE refuses an existing dst in the same
	// step. Where the file system cannot (EINVAL), look first: two
	// processes moving the same name at the same moment can still race
	// there, which only IMF's names could make happen.
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EOPNOTSUPP) {
		if _, lerr := os.Lstat(dst); lerr == nil {
			err = fs.ErrExist
		} else {
			err = os.Rename(src, dst)
		}
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("archive: move %s: %s: %w", src, dst, fs.ErrExist)
	}
	if err != nil {
		return fmt.Errorf("archive: %w", &fs.PathError{Op: "rename", Path: src, Err: err})
	}
	// The record of whom releases reached goes with the message (kept
	// there only if it can be moved: it is a record, not the message).
	if err := os.Rename(s.releasedPath(id), filepath.Join(dstDir, filepath.Base(s.releasedPath(id)))); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.Remove(s.releasedPath(id))
	}
	if err := safeio.SyncDir(dstDir); err != nil {
		return fmt.Errorf("archive: sync directory %s: %w", dstDir, err)
	}
	if err := safeio.SyncDir(s.dir); err != nil {
		return fmt.Errorf("archive: sync directory %s: %w", s.dir, err)
	}
	s.clearUnanswered(id)
	return nil
}

// mkSubdir makes dir, a subdirectory of the archive directory, unless it
// is there. Made by root (an admin running "archive release" with sudo),
// it gets the archive directory's owner and group: else serve, running as
// its own user, could no longer move messages into it from the web page.
func (s *Store) mkSubdir(dir string) error {
	err := os.Mkdir(dir, 0o750)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return s.ownLikeDir(dir)
}

// ownLikeDir gives path the archive directory's owner and group when root
// made it, so that serve, running as its own user, can use it.
func (s *Store) ownLikeDir(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	st, err := os.Stat(s.dir)
	if err != nil {
		return nil
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(path, int(sys.Uid), int(sys.Gid)); err != nil {
			return fmt.Errorf("archive: %w", err)
		}
	}
	return nil
}

// Unanswered marks: a release that sent the whole message and got no
// answer (a timeout, a dropped connection) may have been delivered; the
// mark, a hidden file beside the message, keeps the next release from
// sending a second copy unasked. Move and Delete remove it.

func (s *Store) markPath(id string) string { return filepath.Join(s.dir, sideName(id, ".unanswered")) }

// sideName is the name of a hidden file kept beside message id: "." + id
// + suffix, or, when that is longer than a file name may be (an IMF
// file's name may be up to 255 bytes long), "." + a hash of id + suffix.
func sideName(id, suffix string) string {
	if n := "." + id + suffix; len(n) <= 255 {
		return n
	}
	sum := sha256.Sum256([]byte(id))
	return ".long-" + hex.EncodeToString(sum[:16]) + suffix
}

// MarkUnanswered records note (when and why) as the message's unanswered
// release.
func (s *Store) MarkUnanswered(id, note string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := safeio.WriteFile(s.markPath(id), []byte(note+"\n"), 0o640); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return s.ownLikeDir(s.markPath(id))
}

// Unanswered returns the note of the message's unanswered release, if it
// has one. A mark that is there but cannot be read counts as one (its
// note says so): better a refused release than a second copy.
func (s *Store) Unanswered(id string) (note string, ok bool) {
	if ValidateID(id) != nil {
		return "", false
	}
	b, err := os.ReadFile(s.markPath(id))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", false
	case err != nil:
		return fmt.Sprintf("unknown: its mark %s cannot be read: %v", s.markPath(id), err), true
	}
	return strings.TrimSpace(string(b)), true
}

// Release records: whom releases of a message reached and when, a hidden
// file beside it (lines "address TAB time"), which Move takes along and
// Delete removes. A message lists all its recipients, and a release with
// another recipient (-to), or one that an LMTP downstream took for some
// recipients and refused for the next, reached only some.

func (s *Store) releasedPath(id string) string {
	return filepath.Join(s.dir, sideName(id, ".released-to"))
}

// RecordRelease adds rcpts, reached at at, to the message's release
// record.
func (s *Store) RecordRelease(id string, rcpts []string, at string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	b, err := os.ReadFile(s.releasedPath(id))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("archive: %w", err)
	}
	for _, r := range rcpts {
		b = append(b, r+"\t"+at+"\n"...)
	}
	if err := safeio.WriteFile(s.releasedPath(id), b, 0o640); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return s.ownLikeDir(s.releasedPath(id))
}

// Released returns the message's release record: "<address> at time",
// one for each recipient a release reached, oldest first.
func (s *Store) Released(id string) []string {
	if ValidateID(id) != nil {
		return nil
	}
	b, err := os.ReadFile(s.releasedPath(id))
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if to, at, ok := strings.Cut(l, "\t"); ok {
			out = append(out, "<"+to+"> at "+at)
		}
	}
	return out
}

// ClearUnanswered removes the message's unanswered mark, if any.
func (s *Store) ClearUnanswered(id string) {
	if ValidateID(id) == nil {
		s.clearUnanswered(id)
	}
}

func (s *Store) clearUnanswered(id string) {
	if err := os.Remove(s.markPath(id)); err == nil {
		safeio.SyncDir(s.dir)
	}
}

// RemoveSkipped removes a file List skipped (SkippedError.IDs): one that
// holds no readable message, whose name need not be a valid ID (a name
// with a backslash or a control character, copied in from elsewhere), so
// that it can still expire. name is what List reported, a directory entry
// of the archive directory without ".eml".
func (s *Store) RemoveSkipped(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("archive: %w %q", ErrInvalidID, name)
	}
	if ValidateID(name) == nil {
		return s.Delete(name)
	}
	if err := os.Remove(filepath.Join(s.dir, name+fileExt)); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return safeio.SyncDir(s.dir)
}

// CheckMove reports whether Move can put messages in subdir: subdir is (or
// can be made) a directory, and both it and the archive directory take
// new entries (a rename needs both). Release checks it before it
// delivers, so that a message is not delivered and then left in place, to
// be delivered again by the next release.
func (s *Store) CheckMove(subdir string) error {
	if why := badName(subdir); why != "" {
		return fmt.Errorf("archive: invalid subdirectory %q: %s", subdir, why)
	}
	dstDir := filepath.Join(s.dir, subdir)
	if err := s.mkSubdir(dstDir); err != nil {
		return err
	}
	if st, err := os.Stat(dstDir); err != nil || !st.IsDir() {
		return fmt.Errorf("archive: %s is not a directory", dstDir)
	}
	// Do what Move does with a file of our own: made in the archive
	// directory (named as a temporary file, which CleanTemp removes if a
	// crash leaves it there), renamed into dstDir (which fails across
	// file systems), removed there.
	f, err := os.CreateTemp(s.dir, tempPrefix+"move-check-*"+tempSuffix)
	if err != nil {
		return fmt.Errorf("archive: %s takes no new files: %w", s.dir, err)
	}
	f.Close()
	moved := filepath.Join(dstDir, filepath.Base(f.Name()))
	if err := os.Rename(f.Name(), moved); err != nil {
		os.Remove(f.Name())
		hint := ""
		if errors.Is(err, fs.ErrPermission) {
			hint = fmt.Sprintf(" (give it the owner and group of %s, the user serve runs as)", s.dir)
		}
		return fmt.Errorf("archive: files cannot be moved into %s: %w%s", dstDir, err, hint)
	}
	if err := os.Remove(moved); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	return nil
}

// Delete removes the message with the given ID. If there is no such
// message, the error wraps fs.ErrNotExist; if it is being released, the
// error wraps ErrBusy (see Lock).
func (s *Store) Delete(id string) error {
	unlock, err := s.Lock(id)
	switch {
	case errors.Is(err, ErrBusy), errors.Is(err, fs.ErrNotExist), errors.Is(err, ErrInvalidID):
		return err
	case err == nil:
		defer unlock()
	}
	// Else the file cannot be locked (a FIFO, or unreadable): nothing
	// can release it either, so it is removed without the lock. A
	// directory named like a message is no message, and not removed.
	if fi, err := os.Lstat(s.path(id)); err == nil && fi.IsDir() {
		return fmt.Errorf("archive: %s is a directory, not an archived message", s.path(id))
	}
	if err := os.Remove(s.path(id)); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	s.clearUnanswered(id)
	os.Remove(s.releasedPath(id))
	if err := safeio.SyncDir(s.dir); err != nil {
		return fmt.Errorf("archive: sync directory %s: %w", s.dir, err)
	}
	return nil
}

// CleanTemp removes the temporary files that crashed writes left in the
// archive directory, if they were last modified more than olderThan ago,
// and returns how many it removed. olderThan must be longer than any
// write takes, since another process may be writing into the same
// directory right now; an hour is plenty. Errors for single files do not
// stop it; they come back joined.
func (s *Store) CleanTemp(olderThan time.Duration) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("archive: %w", err)
	}
	cutoff := s.opts.Now().Add(-olderThan)
	removed := 0
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, tempPrefix) || !strings.HasSuffix(name, tempSuffix) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // renamed or cleaned by someone else meanwhile
		} else if err != nil {
			errs = append(errs, fmt.Errorf("archive: %w", err))
			continue
		}
		if !fi.ModTime().Before(cutoff) {
			continue
		}
		err = os.Remove(filepath.Join(s.dir, name))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			errs = append(errs, fmt.Errorf("archive: %w", err))
		default:
			removed++
		}
	}
	return removed, errors.Join(errs...)
}
