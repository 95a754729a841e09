package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/sclgate/sclgate/safeio"
)

// outputTarget is where a file the user names as an output (defs train
// -o, defs eval -plot, a .minisig) is written: a regular file (or none
// yet) is replaced whole, atomically; a device or FIFO (-o /dev/null,
// -plot /dev/stdout) is written into, as a shell redirection would, not
// replaced by a regular file (as root, renaming over /dev/null replaced
// the machine's device node); a symbolic link is followed, so that the
// file it names is written and the link kept.
type outputTarget struct {
	path   string // the file to write: path, or what its links lead to
	direct bool   // not a regular file: written into, not replaced
	fd     int    // > 0: one of this process's descriptors, written through
}

// ownFD returns the descriptor number when p names one of this process's
// open files (/dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N): a
// shell redirection's file, which is written through that descriptor,
// at its offset, as the process's other output is (opened anew, it would
// be written at offset 0, and then over), and never replaced.
func ownFD(p string) (int, bool) {
	switch p {
	case "/dev/stdout":
		return 1, true
	case "/dev/stderr":
		return 2, true
	}
	var n string
	if rest, ok := strings.CutPrefix(p, "/dev/fd/"); ok {
		n = rest
	} else if rest, ok := strings.CutPrefix(p, "/proc/self/fd/"); ok {
		n = rest
	} else if rest, ok := strings.CutPrefix(p, "/proc/"+strconv.Itoa(os.Getpid())+"/fd/"); ok {
		n = rest
	}
	fd, err := strconv.Atoi(n)
	return fd, err == nil && fd >= 0
}

func resolveOutput(path string) (outputTarget, error) {
	if fd, ok := ownFD(path); ok {
		return outputTarget{path: path, fd: fd}, nil
	}
	if to, err := os.Readlink(path); err == nil {
		if fd, ok := ownFD(to); ok {
			return outputTarget{path: path, fd: fd}, nil
		}
	}
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return outputTarget{path: path}, nil
	}
	if err != nil {
		return outputTarget{}, err
	}
	if st.Mode()&fs.ModeSymlink != 0 {
		// Stat follows the kernel's way, which also opens /proc's
		// links (another process's fd/N, to a pipe, which EvalSymlinks
		// cannot name): a device or FIFO is written through the link
		// itself.
		if st, err = os.Stat(path); err != nil {
			return outputTarget{}, fmt.Errorf("%s: a symbolic link that leads nowhere: %w", path, err)
		}
		if st.Mode().IsRegular() {
			real, err := filepath.EvalSymlinks(path)
			if err != nil {
				return outputTarget{}, err
			}
			path = real
		}
	}
	switch {
	case st.IsDir():
		return outputTarget{}, fmt.Errorf("%s: is a directory", path)
	case st.Mode().IsRegular():
		return outputTarget{path: path}, nil
	case st.Mode()&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe) != 0:
		return outputTarget{path: path, direct: true}, nil
	}
	return outputTarget{}, fmt.Errorf("%s: not a file, device or FIFO that can be written (%v)", path, st.Mode().Type())
}

// writeOutput writes data to the output path names (see outputTarget).
func writeOutput(path string, data []byte, perm os.FileMode) error {
	t, err := resolveOutput(path)
	if err != nil {
		return err
	}
	var f *os.File
	switch {
	case t.fd > 0:
		// A duplicate shares the descriptor's offset; closing it leaves
		// the descriptor open.
		d, err := syscall.Dup(t.fd)
		if err != nil {
			return fmt.Errorf("%s: %w", t.path, err)
		}
		f = os.NewFile(uintptr(d), t.path)
	case !t.direct:
		return safeio.WriteFile(t.path, data, perm)
	default:
		if f, err = os.OpenFile(t.path, os.O_WRONLY, 0); err != nil {
			return err
		}
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
