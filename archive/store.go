package archive

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Store is one archive directory. It is safe for concurrent use by many
// sessions and processes: a message is written to a temporary file and
// renamed in whole, and moves and removals are single renames and
// unlinks; what must not run twice at once on one message (a release
// and a delete, two releases) takes its lock (Store.Lock, a flock).
type Store struct {
	dir  string
	opts Options
}

// Options change how a Store writes. The zero value is fine.
type Options struct {
	// StoreSCL writes the X-SCL line into archived files (IMF's
	// ArchiveSCL).
	StoreSCL bool

	// CreateTemp creates the temporary file a message is written to
	// before it is renamed. nil means os.CreateTemp. Tests set it to
	// inject failures such as a full disk.
	CreateTemp func(dir, pattern string) (*os.File, error)

	// Now gives the time a message is archived at, which goes into its
	// name. nil means time.Now. For tests.
	Now func() time.Time
}

// Open returns the Store for dir, creating the directory (mode 0750) if it
// is missing. It does not check that the directory is writable: Write
// reports that, for each message, as an error the caller can turn into a
// temporary SMTP failure.
func Open(dir string, opts Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("archive: no directory given")
	}
	dir = filepath.Clean(dir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("archive: %w", err)
	}
	if opts.CreateTemp == nil {
		opts.CreateTemp = os.CreateTemp
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Store{dir: dir, opts: opts}, nil
}

// Dir returns the store's directory, as given to Open but cleaned.
func (s *Store) Dir() string { return s.dir }

// path returns the file name of the message with the given (valid) ID.
func (s *Store) path(id string) string {
	return filepath.Join(s.dir, id+fileExt)
}

// File is the path of the message with the given ID in the archive
// directory (whether or not it is there).
func (s *Store) File(id string) string { return s.path(id) }

// ReleasedFile is the path the message with the given ID has once
// released, in ReleasedDir (whether or not it is there).
func (s *Store) ReleasedFile(id string) string {
	return filepath.Join(s.dir, ReleasedDir, id+fileExt)
}
