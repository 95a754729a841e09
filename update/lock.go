package update

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sclgate/sclgate/safeio"
)

// lockFile is the file in definitions.dir whose flock(2) serialises the
// changes to the store: installs, rollbacks and prunes from serve's
// automatic updater, the update timer and an admin's command may run at
// the same moment, and without it one's Prune could remove another's
// half-made version, or one's Install a version the other just activated.
const lockFile = ".lock"

// downloadLockFile is the file whose flock(2) serialises downloads,
// which share the partial files in .download/. It is not the store's
// lock: a rollback need not wait for a download (see
// Updater.installFromSource). An install takes it first, then the
// store's, never the other way round, so the two cannot deadlock.
const downloadLockFile = ".download.lock"

// Lock waits until no other process (or goroutine) changes the store,
// polling until ctx ends, and returns the function that lets go. The
// kernel drops the lock when its holder dies, so a killed install leaves
// nothing stale behind.
//
// waiting, if not nil, is called once if the lock is held by someone else,
// so that a command can say why it does not go on.
func (s *Store) Lock(ctx context.Context, waiting func()) (unlock func(), err error) {
	return s.lock(ctx, lockFile, holderStore, waiting)
}

// LockDownload is Lock for downloads (downloadLockFile).
func (s *Store) LockDownload(ctx context.Context, waiting func()) (unlock func(), err error) {
	return s.lock(ctx, downloadLockFile, holderDownload, waiting)
}

func (s *Store) lock(ctx context.Context, name, holder string, waiting func()) (unlock func(), err error) {
	if err := s.mkdir(); err != nil {
		return nil, err
	}
	path := filepath.Join(s.dir, name)
	// Read-only: flock needs no more, and a .lock that root made first
	// (sudo sclgate update rollback) stays usable by the sclgate user.
	f, _, err := safeio.Open(path, os.O_CREATE)
	var nr *safeio.NotRegularError
	switch {
	case errors.As(err, &nr):
		return nil, fmt.Errorf("update: lock: %w: remove it", err)
	case err != nil:
		return nil, fmt.Errorf("update: lock %s: %w", path, err)
	}
	for told := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("update: lock %s: %w", path, err)
		}
		if !told && waiting != nil {
			waiting()
		}
		told = true
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("update: waiting for %s in %s to end: %w", holder, s.dir, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
