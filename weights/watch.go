package weights

// watch.go keeps a list current while admins edit its file.

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watcher keeps the current List of one file and re-reads it when the file
// changes on disk: written in place, or renamed over (editors, config
// tools), or deleted (→ empty list, i.e. no rules) and re-created. A file
// that fails to parse leaves the previous List in force and logs why.
type Watcher struct {
	path string
	opts WatcherOptions
	log  *slog.Logger
	cur  atomic.Pointer[List]

	reloadMu sync.Mutex  // one reload at a time, watcher or Reload
	lastStat fs.FileInfo // of the file as last read; guarded by reloadMu
	lastSum  [32]byte    // sha256 of the file as last read; guarded by reloadMu

	fsw       *fsnotify.Watcher
	targetDir string // the directory of path's symlink target, if elsewhere and watched; run's alone
	done      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// WatcherOptions configures a Watcher. The zero value is usable.
type WatcherOptions struct {
	// Logger gets reload results and watch problems; nil discards them.
	Logger *slog.Logger
	// Debounce is how long the file must be quiet after a change before it
	// is re-read, so that a file being written is read once, complete.
	// 0 means 200ms.
	Debounce time.Duration
	// OnReload, if set, is called after every reload attempt (not the
	// first load, in NewWatcher: read Current for that), from the
	// watcher's goroutine or from Reload's caller, one call at a time and
	// in order: with the error, nil on success, and the list now in force
	// (the new one, or on error the previous one). It must not call Reload
	// or Close.
	OnReload func(l *List, err error)
}

// NewWatcher loads path once and starts watching it. A missing file gives
// an empty list and a warning, not an error, so that a list can be added
// later; a broken file is an error, so that the caller can refuse to start.
func NewWatcher(path string, opts WatcherOptions) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	w := &Watcher{
		path:    path,
		opts:    opts,
		log:     opts.Logger,
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With(slog.String("file", path))

	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("weights: watching %s: %w", path, err)
	}
	// Watch the directory, not the file: a file watch is lost when the file
	// is renamed over or deleted, which is how most tools save.
	if err := fsw.Add(filepath.Dir(path)); err != nil {
		fsw.Close()
		return nil, fmt.Errorf("weights: watching %s: %w", path, err)
	}
	w.fsw = fsw
	w.watchTarget()
	// Watch first, then load, so that no change can fall in between.
	if err := w.load(); err != nil {
		fsw.Close()
		return nil, err
	}
	go w.run()
	return w, nil
}

// Current returns the list in force. It never blocks.
func (w *Watcher) Current() *List { return w.cur.Load() }

// Reload re-reads the file now, for SIGHUP. If the file does not parse, the
// previous list stays in force and the error is returned. It also watches
// the file's directory again: if that directory was removed and made anew
// (rm -r, a deploy tool), its old watch went with it.
func (w *Watcher) Reload() error {
	if err := w.fsw.Add(filepath.Dir(w.path)); err != nil {
		w.log.Warn("weights: watching the file's directory; changes are noticed only on SIGHUP", slog.Any("err", err))
	}
	return w.reload()
}

// Close stops watching. Current keeps returning the last list.
func (w *Watcher) Close() error {
	w.closeOnce.Do(func() {
		close(w.done)
		w.closeErr = w.fsw.Close()
		<-w.stopped
	})
	return w.closeErr
}

// warnIgnored logs the elements l's file holds that are not entries (a
// misspelt entry is a rule lost).
func (w *Watcher) warnIgnored(l *List) {
	for _, msg := range l.Ignored() {
		w.log.Warn("weights: " + msg) // w.log names the file already
	}
}

// load is the first read, in NewWatcher.
func (w *Watcher) load() error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	l, fi, sum, err := w.read()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		w.log.Warn("weights: file does not exist; no custom weights until it is created")
		l = &List{source: w.path}
	case err != nil:
		return err
	default:
		w.log.Info("weights: loaded", slog.Int("entries", l.Len()))
		w.warnIgnored(l)
	}
	w.lastStat, w.lastSum = fi, sum
	w.cur.Store(l)
	return nil
}

func (w *Watcher) reload() error {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	l, fi, sum, err := w.read()
	return w.reloadLocked(l, fi, sum, err)
}

// reloadIfChanged reloads when the file differs from the one last read:
// a change notification that comes after a SIGHUP (Reload) already read
// the change must not read, log and count it a second time. Content is
// compared, not only size and time: an edit of the same size within a
// coarse file system's time step is still a change.
func (w *Watcher) reloadIfChanged() {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	l, fi, sum, err := w.read()
	if fi != nil && w.lastStat != nil && os.SameFile(fi, w.lastStat) && sum == w.lastSum {
		w.lastStat = fi
		return
	}
	w.reloadLocked(l, fi, sum, err)
}

// maxLoggedErrors bounds the problems one log line lists: a bad save of a
// list of 50,000 entries made one line of megabytes, which journald cuts
// up; `sclgate weights check` lists them all.
const maxLoggedErrors = 20

// brief is err's text, with at most maxLoggedErrors of the problems a
// joined parse error holds.
func brief(err error, path string) string {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok || len(j.Unwrap()) <= maxLoggedErrors {
		return err.Error()
	}
	errs := j.Unwrap()
	var b strings.Builder
	for _, e := range errs[:maxLoggedErrors] {
		b.WriteString(e.Error())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "... and %d more problems (sclgate weights check %s lists them all)", len(errs)-maxLoggedErrors, path)
	return b.String()
}

// reloadLocked puts what read returned in force (or, on error, keeps
// the list in force) and tells OnReload.
func (w *Watcher) reloadLocked(l *List, fi fs.FileInfo, sum [32]byte, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		w.log.Warn("weights: file removed; no custom weights until it is created again")
		l, err = &List{source: w.path}, nil
	case err != nil:
		l = w.cur.Load()
		w.log.Error("weights: reload failed; keeping the previous list",
			slog.Int("entries", l.Len()), slog.String("err", brief(err, w.path)))
	default:
		w.log.Info("weights: reloaded", slog.Int("entries", l.Len()))
		w.warnIgnored(l)
	}
	w.lastStat, w.lastSum = fi, sum
	w.cur.Store(l)
	if w.opts.OnReload != nil {
		w.opts.OnReload(l, err)
	}
	return err
}

// read loads the file and returns it with the FileInfo it was read from
// and the sha256 of what was read (fi is nil when it could not be opened
// or stat'ed).
func (w *Watcher) read() (l *List, fi fs.FileInfo, sum [32]byte, err error) {
	f, fi, err := open(w.path)
	if err != nil {
		return nil, fi, sum, err // fi: the file refused, if any
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, nil, sum, &ParseError{File: w.path, Err: err}
	}
	l, err = Parse(w.path, bytes.NewReader(raw))
	return l, fi, sha256.Sum256(raw), err
}

// run turns fsnotify events into debounced reloads until Close.
func (w *Watcher) run() {
	defer close(w.stopped)
	dir, base := filepath.Dir(w.path), filepath.Base(w.path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Create | fsnotify.Write | fsnotify.Remove | fsnotify.Rename) {
				continue
			}
			if filepath.Clean(ev.Name) == filepath.Clean(dir) {
				// The directory itself went: its watch with it.
				w.log.Warn("weights: the file's directory was removed or renamed; changes are no longer noticed until SIGHUP, which watches it again",
					slog.String("dir", dir))
			}
			// Events for other names in the directory matter when
			// the file is a symlink whose target was swapped (as
			// Kubernetes updates ConfigMap volumes), which shows
			// only as a change in what path resolves to.
			if filepath.Base(ev.Name) != base && !w.statChanged() {
				continue
			}
			timer.Reset(w.opts.Debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("weights: watching the file", slog.Any("err", err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost; one of them may have been ours.
				timer.Reset(w.opts.Debounce)
			}
		case <-timer.C:
			// A SIGHUP (Reload) may have read this change already:
			// read it twice and it is logged and counted twice.
			w.reloadIfChanged()
			w.watchTarget() // the link may point elsewhere now
		}
	}
}

// watchTarget also watches the directory of the file path leads to when
// path is a symbolic link into another directory (a list kept in a
// repository checkout, linked from /etc): edits there show up only in
// that directory. Events there go through statChanged, like those for
// other names next to path.
func (w *Watcher) watchTarget() {
	dir := filepath.Dir(w.path)
	target := ""
	if real, err := filepath.EvalSymlinks(w.path); err == nil {
		if realDir := filepath.Dir(real); realDir != dir {
			if rd, err := filepath.EvalSymlinks(dir); err != nil || rd != realDir {
				target = realDir
			}
		}
	}
	if target == w.targetDir {
		return
	}
	if w.targetDir != "" {
		w.fsw.Remove(w.targetDir)
	}
	w.targetDir = ""
	if target != "" {
		if err := w.fsw.Add(target); err != nil {
			w.log.Warn("weights: watching the symbolic link's target directory; changes there are noticed only on SIGHUP",
				slog.String("dir", target), slog.Any("err", err))
			return
		}
		w.targetDir = target
	}
}

// statChanged reports whether path now resolves to a different file than
// the one last read.
func (w *Watcher) statChanged() bool {
	fi, err := os.Stat(w.path)
	w.reloadMu.Lock()
	last := w.lastStat
	w.reloadMu.Unlock()
	switch {
	case err != nil || last == nil:
		return (err == nil) != (last != nil)
	case !os.SameFile(fi, last):
		return true
	}
	return fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime())
}
