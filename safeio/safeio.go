// Package safeio writes files so that a crash or power loss leaves either
// the old content or the new, never a mix, and a written file stays
// written: a temporary file in the same directory, fsync'd, renamed over
// the target, then the directory fsync'd. The installed definitions and
// the commands that write bundles and signatures use WriteFile; the
// ArchiveDir and the Maildir downstream stream their files the same way
// and use SyncDir. ReadFile is its other half: it reads a file an admin
// names (the configuration, a key) without ever waiting on a FIFO put in
// its place.
package safeio

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data, durably and atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return named(err, path)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return named(err, path)
	}
	return SyncDir(filepath.Dir(path))
}

// named makes an error about the temporary file name path, the file the
// caller asked for: "open /x/.p.svg.tmp3425412567: ..." names a file the
// user never heard of.
func named(err error, path string) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return &os.PathError{Op: pe.Op, Path: path, Err: pe.Err}
	}
	var le *os.LinkError // the rename
	if errors.As(err, &le) {
		return &os.PathError{Op: le.Op, Path: path, Err: le.Err}
	}
	return err
}

// SyncDir fsyncs a directory, so that the names created, renamed or
// removed in it survive a power loss. File systems that cannot fsync a
// directory at all (some FUSE and SMB mounts) are accepted: there is
// nothing more to do there, and failing every write for it would make
// them unusable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		err = nil
	}
	return err
}

// Open opens the regular file at path for reading (flag may add
// os.O_CREATE). It opens without blocking: a FIFO in the file's place
// would otherwise wait for a writer for ever, and whatever waits on the
// read with it (a SIGHUP's reload, the shutdown behind that, a command
// deaf to Ctrl-C). What is not a regular file (a directory, a FIFO, a
// device) is a *NotRegularError, returned with its FileInfo.
func Open(path string, flag int) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|flag, 0o644)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fi, &NotRegularError{Path: path, Mode: fi.Mode()}
	}
	return f, fi, nil
}

// NotRegularError is Open's error for what is not a regular file.
type NotRegularError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotRegularError) Error() string { return e.Path + ": " + e.Reason() }

// Reason is the error without the path.
func (e *NotRegularError) Reason() string {
	if e.Mode.IsDir() {
		return "is a directory, not a file"
	}
	return fmt.Sprintf("is not a regular file (%s)", e.Mode.Type())
}

// ReadFile reads the regular file at path (see Open), at most max bytes.
// A file larger than max is an error naming path.
func ReadFile(path string, max int64) ([]byte, error) {
	f, fi, err := Open(path, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi.Size() > max {
		return nil, fmt.Errorf("%s: file is larger than %d bytes", path, max)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err == nil && int64(len(data)) > max {
		err = fmt.Errorf("%s: file is larger than %d bytes", path, max) // it grew
	}
	return data, err
}
