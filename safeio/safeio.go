// Package safeio writes files so that a crash or power loss leaves either
// the old content or the new, never a mix, and a written file stays
// written: a temporary file in the same directory, fsync'd, renamed over
// the target, then the directory fsync'd. sclgate's stores (the ArchiveDir,
// installed definitions, the Maildir downstream) and its commands that
// write bundles and signatures all rest on it.
package safeio

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// WriteFile replaces path with data, durably and atomically.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
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
		return err
	}
	return SyncDir(filepath.Dir(path))
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
