package archive

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/sclgate/sclgate/safeio"
)

// ErrAmbiguous is wrapped by Write's error for a message whose first line
// would read back as part of the head (an X-Receiver line, or an X-SCL
// line when the store writes none). Stored, such a message would come
// back with recipients or an SCL of its own choosing, and releasing it
// would send it wherever its author wanted. The caller may want to
// answer it with a permanent failure rather than a temporary one.
var ErrAmbiguous = errors.New("message starts with a line that reads as part of the archive head")

// Write stores one message durably and returns its ID. msg is the message
// exactly as received; it is streamed to disk, never held in memory as a
// whole. scl goes into the file only if the store was opened with
// StoreSCL.
//
// When Write returns nil, the message is on disk under its final name and
// the name has been fsynced: the gateway may acknowledge it. When it
// returns an error, no message has been stored and the caller should
// answer with a temporary failure (451); a temporary file may be left
// behind only if removing it failed too, for CleanTemp to take care of.
func (s *Store) Write(env Envelope, scl int, msg io.Reader) (id string, err error) {
	return s.WriteReport(env, scl, "", msg)
}

// WriteReport is Write that also stores report, the explanation of scl
// (the gateway's X-SCL-Report), in the head next to it, where show and the
// web page find what decided the SCL when the message came (the weight
// list and the definitions may have changed since). Like the SCL, it is
// stored only with StoreSCL. Control characters in it become spaces, and
// it is cut at 4 KiB.
func (s *Store) WriteReport(env Envelope, scl int, report string, msg io.Reader) (id string, err error) {
	h := head{env: env, scl: scl, hasSCL: s.opts.StoreSCL}
	if h.hasSCL {
		h.report = cleanReport(report)
	}
	if err := checkHead(h); err != nil {
		return "", err
	}

	// Look at the start of the message before creating anything.
	br := bufio.NewReaderSize(msg, 64<<10)
	p, _ := br.Peek(longestName)
	switch kind, _ := classify(p); {
	case kind == receiverLine, kind == sclLine && !h.hasSCL, kind == reportLine && h.hasSCL && h.report == "":
		return "", fmt.Errorf("archive: %w: %q", ErrAmbiguous, truncate(p))
	}

	id = newID(s.opts.Now())
	final := s.path(id)
	f, err := s.opts.CreateTemp(s.dir, tempPrefix+id+"-*"+tempSuffix)
	if err != nil {
		return "", fmt.Errorf("archive: write %s: %w", final, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()

	// Archived messages are readable by the directory's group, which
	// Open creates as 0750, so that a reviewing tool need not run as the
	// gateway's user. Some file systems (SMB mounts) refuse chmod; the
	// file is still written, with CreateTemp's private 0600.
	_ = f.Chmod(0o640)

	w := bufio.NewWriterSize(f, 64<<10)
	if err := writeHead(w, h); err != nil {
		return "", fmt.Errorf("archive: write %s: %w", tmp, err)
	}
	rd := &errReader{r: br}
	if _, err := io.Copy(w, rd); err != nil {
		if rd.err != nil {
			return "", fmt.Errorf("archive: read message for %s: %w", final, rd.err)
		}
		return "", fmt.Errorf("archive: write %s: %w", tmp, err)
	}
	if err := w.Flush(); err != nil {
		return "", fmt.Errorf("archive: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("archive: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("archive: close %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	if err := safeio.SyncDir(s.dir); err != nil {
		// The caller will answer with a temporary failure, and the client
		// will send the message again: take this copy back, so that it
		// is not archived twice.
		os.Remove(final)
		return "", fmt.Errorf("archive: sync directory %s: %w", s.dir, err)
	}
	return id, nil
}

// errReader remembers the error of its reader, so that Write can tell a
// failing client connection from a failing disk.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.err = err
	}
	return n, err
}
