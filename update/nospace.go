package update

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// errNoSpace is the write error of a full file system. EDQUOT (the user's
// quota is used up) counts as full too: either way nothing more can be
// written to definitions.dir until someone frees space.
var errNoSpace = syscall.ENOSPC

// noSpace reports whether err is a full file system or a used-up quota.
func noSpace(err error) bool {
	return errors.Is(err, errNoSpace) || errors.Is(err, syscall.EDQUOT)
}

// spaceMargin is the free space a download must leave: definitions.dir
// usually shares its file system with the mail spool, the archive and the
// logs, and a bundle that takes the last bytes stops mail (451) as surely
// as a full disk does.
const spaceMargin = 64 << 20

// errDiskFull: not enough free space for a download (checked before
// anything is written).
var errDiskFull = errors.New("disk full")

// checkSpace refuses to write need more bytes into dir (what is named
// by what: "the download and the installed copy", "the installed copy")
// when its file system has less than need + spaceMargin free for this
// user (a tenth of the file system when that is less: definitions.dir on
// a small volume of its own must stay updatable). Nothing to write needs
// no space. A dir not made yet (the first install) is on the file system
// of its nearest parent that exists.
func checkSpace(dir string, need int64, what string, statfs func(string, *syscall.Statfs_t) error) error {
	if need <= 0 {
		return nil
	}
	if statfs == nil {
		statfs = syscall.Statfs
	}
	var st syscall.Statfs_t
	for {
		err := statfs(dir, &st)
		if err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if !errors.Is(err, fs.ErrNotExist) || parent == dir {
			// Unknown free space is no reason to refuse: the write
			// itself still fails cleanly if the disk is full.
			return nil
		}
		dir = parent
	}
	free := uint64(st.Bavail) * uint64(st.Bsize)
	margin := min(uint64(spaceMargin), uint64(st.Blocks)*uint64(st.Bsize)/10)
	want := uint64(need) + margin
	if free < want {
		return fmt.Errorf("%w: need %d bytes (%d for %s, %d left free for mail and logs), %d free in %s: free space and run install again",
			errDiskFull, want, need, what, margin, free, dir)
	}
	return nil
}
