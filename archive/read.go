package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"
)

// Item is one archived message as read back.
type Item struct {
	ID   string
	Path string

	// Received is when the message was archived: from the file name for
	// the files we named, the file's modification time for others (such
	// as IMF's).
	Received time.Time

	Envelope Envelope
	SCL      int   // the X-SCL value; 0 when HasSCL is false
	HasSCL   bool  // whether the file has an X-SCL line
	Size     int64 // size of the message, without the head

	// Report is the explanation of the SCL when the message was
	// archived (see WriteReport); "" when the file has none (IMF's
	// files, and those archived before sclgate stored it).
	Report string
}

// Get reads the head of the message with the given ID. If there is no
// such message, the error wraps fs.ErrNotExist.
func (s *Store) Get(id string) (Item, error) {
	it, f, _, err := s.open(id)
	if err != nil {
		return Item{}, err
	}
	f.Close()
	return it, nil
}

// Open reads the head of the message with the given ID and returns a
// reader for the message itself, after the head. The caller must close
// it. If there is no such message, the error wraps fs.ErrNotExist.
func (s *Store) Open(id string) (Item, io.ReadCloser, error) {
	it, f, headSize, err := s.open(id)
	if err != nil {
		return Item{}, nil, err
	}
	// The head was read through a buffer that went past it; go back to
	// where it ended.
	if _, err := f.Seek(headSize, io.SeekStart); err != nil {
		f.Close()
		return Item{}, nil, fmt.Errorf("archive: %w", err)
	}
	return it, f, nil
}

// open opens the message with the given ID and reads its head, returning
// the open file and the size of the head.
func (s *Store) open(id string) (Item, *os.File, int64, error) {
	if err := ValidateID(id); err != nil {
		return Item{}, nil, 0, err
	}
	path := s.path(id)
	f, err := openNoBlock(path)
	if err != nil {
		return Item{}, nil, 0, fmt.Errorf("archive: %w", err)
	}
	it, n, err := readItem(f, id, path)
	if err != nil {
		f.Close()
		return Item{}, nil, 0, err
	}
	return it, f, n, nil
}

// readItem reads the head of the archived message open in f, and returns
// it with the size of the head.
func readItem(f *os.File, id, path string) (Item, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return Item{}, 0, fmt.Errorf("archive: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Item{}, 0, fmt.Errorf("archive: %s: not a regular file", path)
	}
	h, n, err := readHead(bufio.NewReader(f))
	if err != nil {
		return Item{}, 0, fmt.Errorf("archive: %s: %w", path, err)
	}
	received, ok := receivedFromName(id)
	if !ok {
		received = fi.ModTime().UTC()
	}
	return Item{
		ID:       id,
		Path:     path,
		Received: received,
		Envelope: h.env,
		SCL:      h.scl,
		HasSCL:   h.hasSCL,
		Size:     fi.Size() - n,
		Report:   h.report,
	}, n, nil
}

// SkippedError is the error List returns, together with the messages it
// could read, when some files in the directory could not be read or did
// not hold an archived message. Errs has one error per such file, and IDs
// its name without ".eml", in the same order.
type SkippedError struct {
	Errs []error
	IDs  []string
}

func (e *SkippedError) Error() string {
	if len(e.Errs) == 1 {
		return "archive: skipped 1 file: " + e.Errs[0].Error()
	}
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("archive: skipped %d files: %s", len(e.Errs), strings.Join(msgs, "; "))
}

func (e *SkippedError) Unwrap() []error { return e.Errs }

// List returns every message in the archive directory (every *.eml file
// directly in it, whoever wrote it), newest first.
//
// A file that cannot be read or is not an archived message does not stop
// the listing: List returns the messages it could read together with a
// *SkippedError that names the others. Any other error means the
// directory itself could not be read, and comes with no items. Files that
// disappear while List runs (released or deleted by someone else) are
// left out silently.
func (s *Store) List() ([]Item, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	items := []Item{}
	var skipped []error
	var skippedIDs []string
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, fileExt)
		if !ok || strings.HasPrefix(name, ".") || e.IsDir() {
			continue
		}
		it, err := s.Get(id)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			skipped = append(skipped, err)
			skippedIDs = append(skippedIDs, id)
			continue
		}
		items = append(items, it)
	}
	sort.Slice(items, func(i, j int) bool {
		a, b := items[i], items[j]
		if !a.Received.Equal(b.Received) {
			return a.Received.After(b.Received)
		}
		return a.ID > b.ID
	})
	if len(skipped) > 0 {
		return items, &SkippedError{Errs: skipped, IDs: skippedIDs}
	}
	return items, nil
}
