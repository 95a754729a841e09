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
	"slices"
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
	// brokenStat: the file as last read by a change notification that
	// found it broken and left it unreported for now (see Settle), nil
	// when there is none; statChanged compares with it, so that other
	// files written next to a broken one do not put its report off.
	// Guarded by reloadMu.
	brokenStat fs.FileInfo
	lastSum    [32]byte // sha256 of the file as last read; guarded by reloadMu
	missing    bool     // the file was not there when last read; guarded by reloadMu

	fsw     *fsnotify.Watcher
	watchMu sync.Mutex
	// watched: the directories watched, by real name, each with what it
	// was when its watch was added: a watch follows the directory, not
	// its name, so one renamed with an ancestor (a deploy tool swapping
	// /srv/sclgate for a staged copy) must be watched anew. Guarded by
	// watchMu, as is watchErr.
	watched   map[string]fs.FileInfo
	watchErr  string // the watch problem last warned of, "" when none
	starting  bool   // in NewWatcher, which fails if the own directory cannot be watched
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
	// Settle is how much longer a file that fails to parse after a change
	// must stay as it is before the failure is logged and told: a tool
	// that writes in pieces with pauses between them (a slow script, a
	// copy over the network) leaves a half-written file for a while, and
	// an alert on reload errors must not fire on an ordinary edit. SIGHUP
	// (Reload) reports at once. 0 means 1s.
	Settle time.Duration
	// OnReload, if set, is called after every reload attempt (not the
	// first load, in NewWatcher: read Current for that), from the
	// watcher's goroutine or from Reload's caller, one call at a time and
	// in order: with the error, nil on success, and the list now in force
	// (the new one, or on error the previous one). It must not call Reload
	// or Close.
	OnReload func(l *List, err error)
	// Poll is how often the path is checked without a notification: a
	// directory renamed above the file's own (inotify watches follow
	// directories, not names) or one that could not be watched is seen
	// this way, as is a change on a file system that sends no
	// notifications. 0 means 5s.
	Poll time.Duration

	// addWatch, if set, stands in for fsnotify's Add: tests make it
	// fail, as the inotify watch limit would.
	addWatch func(dir string) error
}

// NewWatcher loads path once and starts watching it. A missing file gives
// an empty list and a warning, not an error, so that a list can be added
// later; a broken file is an error, so that the caller can refuse to start.
func NewWatcher(path string, opts WatcherOptions) (*Watcher, error) {
	if opts.Debounce <= 0 {
		opts.Debounce = 200 * time.Millisecond
	}
	if opts.Settle <= 0 {
		opts.Settle = time.Second
	}
	if opts.Poll <= 0 {
		opts.Poll = 5 * time.Second
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
	w.fsw = fsw
	w.starting = true
	err = w.rewatch(false)
	w.starting = false
	if err != nil {
		fsw.Close()
		return nil, fmt.Errorf("weights: watching %s: %w", path, err)
	}
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
// the file's directories again: if one was removed and made anew (rm -r, a
// deploy tool), its old watch went with it.
func (w *Watcher) Reload() error {
	w.rewatch(true)
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
		w.missing = true
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
	w.brokenStat = nil
	l, fi, sum, err := w.read()
	if w.unchangedLocked(fi, sum) || w.stillMissing(err) {
		return
	}
	w.reloadLocked(l, fi, sum, err)
}

// stillMissing reports whether err says the file is missing and it was
// already when last read: nothing to log or count again.
func (w *Watcher) stillMissing(err error) bool {
	return w.missing && errors.Is(err, fs.ErrNotExist)
}

// unchangedLocked reports whether fi and sum are the file as last read
// (and takes fi as its latest stat, mtime and all).
func (w *Watcher) unchangedLocked(fi fs.FileInfo, sum [32]byte) bool {
	// The type too: a directory, then a FIFO, each unreadable (sum 0)
	// may get the same inode number.
	if fi != nil && w.lastStat != nil && os.SameFile(fi, w.lastStat) && sum == w.lastSum &&
		fi.Mode().Type() == w.lastStat.Mode().Type() {
		w.lastStat = fi
		return true
	}
	return false
}

// reloadUnlessBroken is reloadIfChanged for a change notification: a file
// that does not parse (though it exists) is neither put in force nor
// reported, and true is returned, so that the caller reads it again once
// it has settled (see WatcherOptions.Settle).
func (w *Watcher) reloadUnlessBroken() (broken bool) {
	w.reloadMu.Lock()
	defer w.reloadMu.Unlock()
	w.brokenStat = nil
	l, fi, sum, err := w.read()
	if w.unchangedLocked(fi, sum) || w.stillMissing(err) {
		return false
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		w.brokenStat = fi
		return true
	}
	w.reloadLocked(l, fi, sum, err)
	return false
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
	w.brokenStat = nil // reported now, whatever it was
	w.missing = errors.Is(err, fs.ErrNotExist)
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
// and the sha256 of what was read (fi is nil when there is no file, or it
// could not be stat'ed). A file there but not opened (permission denied)
// comes with its FileInfo as it is, so that statChanged sees other
// files' events as no change to it, rather than report it again at each.
func (w *Watcher) read() (l *List, fi fs.FileInfo, sum [32]byte, err error) {
	f, fi, err := open(w.path)
	if err != nil {
		if fi == nil && !errors.Is(err, fs.ErrNotExist) {
			fi, _ = os.Stat(w.path)
		}
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
	base := filepath.Base(w.path)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	settle := time.NewTimer(time.Hour) // a broken file's second read
	settle.Stop()
	defer settle.Stop()
	poll := time.NewTicker(w.opts.Poll)
	defer poll.Stop()
	for {
		select {
		case <-w.done:
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			if !ev.Has(fsnotify.Create|fsnotify.Write|fsnotify.Remove|fsnotify.Rename) &&
				!(ev.Has(fsnotify.Chmod) && filepath.Base(ev.Name) == base) {
				// A mode change counts for the file itself: chmod 644
				// is how a list sclgate could not read is mended.
				continue
			}
			if ev.Has(fsnotify.Remove | fsnotify.Rename) {
				// A watched directory that went took its watch with it:
				// forgotten, so that rewatch, after the debounce,
				// watches it again if it is back and still on the path
				// (and warns if it cannot). No warning here: Kubernetes
				// removes the old ConfigMap directory right after each
				// update, a directory no longer on the path.
				w.unwatched(ev.Name)
			}
			// Events for other names matter when the file is reached
			// through a symbolic link that was pointed elsewhere (as
			// Kubernetes updates ConfigMap volumes, or a deploy tool
			// its "current" release), which shows only as a change in
			// what path resolves to.
			if filepath.Base(ev.Name) != base && !w.statChanged() {
				continue
			}
			// A change: a broken file's report waits for the file to
			// settle after it.
			settle.Stop()
			timer.Reset(w.opts.Debounce)
		case <-poll.C:
			// What no notification told: a directory on the path
			// renamed or made anew, or a change a file system did not
			// report.
			// A directory that cannot be watched (the inotify limit)
			// is tried again here, quietly, and does not set off a
			// reload by itself: only one newly watched, whose file may
			// have changed unseen, or a changed file does.
			added := false
			if w.dirsMoved() {
				added, _ = w.rewatchAdded(false)
			}
			if added || w.statChanged() {
				settle.Stop()
				timer.Reset(w.opts.Debounce)
			}
		case <-settle.C:
			// Still broken after Settle with no change since (a change
			// stops this timer): the edit is what it is.
			w.reloadIfChanged()
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
			settle.Stop()
			if w.reloadUnlessBroken() {
				settle.Reset(w.opts.Settle)
			}
			// A link may point elsewhere now, a directory be new.
			w.rewatch(false)
		}
	}
}

// rewatch watches the directories watchDirs names for path now, and stops
// watching those it no longer names (a release directory a "current" link
// left). A directory watched already is watched anew when again is set
// (SIGHUP) or when it is no longer the directory its watch was added to
// (made anew, or renamed with an ancestor). The directory holding the file
// must be watchable; when it is not (it is gone, or the watch limit is
// reached) that is warned of once, and the path is then checked every Poll.
// A directory holding a symbolic link on the path is warned of likewise.
func (w *Watcher) rewatch(again bool) error {
	_, err := w.rewatchAdded(again)
	return err
}

// rewatchAdded is rewatch, also saying whether a directory got a watch it
// did not have.
func (w *Watcher) rewatchAdded(again bool) (added bool, ownErr error) {
	dirs, own := watchDirs(w.path)
	w.watchMu.Lock()
	defer w.watchMu.Unlock()
	want := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		want[d] = true
	}
	for d := range w.watched {
		if !want[d] {
			w.fsw.Remove(d)
			delete(w.watched, d)
		}
	}
	if w.watched == nil {
		w.watched = make(map[string]fs.FileInfo)
	}
	var problems []string
	for _, d := range dirs {
		fi, err := os.Stat(d)
		old, had := w.watched[d]
		if had {
			if !again && err == nil && os.SameFile(fi, old) {
				continue
			}
			// The watch is on what the name held before, if anything.
			w.fsw.Remove(d)
			delete(w.watched, d)
		}
		if err == nil {
			if w.opts.addWatch != nil {
				err = w.opts.addWatch(d)
			}
			if err == nil {
				err = w.fsw.Add(d)
			}
		}
		if err != nil {
			if d == own {
				ownErr = err
				problems = append(problems, fmt.Sprintf("cannot watch the file's directory %s: %v", d, err))
			} else {
				problems = append(problems, fmt.Sprintf("cannot watch %s, which holds a symbolic link on the file's path: %v", d, err))
			}
			continue
		}
		w.watched[d] = fi
		added = added || !had || !os.SameFile(fi, old)
	}
	msg := strings.Join(problems, "; ")
	switch {
	case w.starting && ownErr != nil:
		// NewWatcher fails with it: serve does not start.
	case msg != "" && (msg != w.watchErr || again):
		// Once, and again at each SIGHUP: the admin who sent it to
		// mend the watch learns that it still fails.
		w.log.Warn("weights: "+msg+"; the path is checked every "+w.opts.Poll.String()+" and on SIGHUP",
			slog.Duration("poll", w.opts.Poll))
	case msg == "" && w.watchErr != "":
		w.log.Info("weights: watching the file's directories again")
	}
	w.watchErr = msg
	return added, ownErr
}

// dirsMoved reports whether a directory watchDirs names for path is not
// the one watched under its name: renamed away with an ancestor, or made
// anew, or one that could not be watched and now exists.
func (w *Watcher) dirsMoved() bool {
	dirs, _ := watchDirs(w.path)
	w.watchMu.Lock()
	defer w.watchMu.Unlock()
	for _, d := range dirs {
		fi, err := os.Stat(d)
		old, ok := w.watched[d]
		switch {
		case !ok && err == nil:
			return true // there now, and not watched
		case ok && (err != nil || !os.SameFile(fi, old)):
			return true
		}
	}
	return false
}

// unwatched forgets dir when it is one the Watcher watches (it was removed
// or renamed, its watch gone with it), so that the next rewatch watches it
// again if it is back, and reports whether it was.
func (w *Watcher) unwatched(dir string) bool {
	dir = filepath.Clean(dir)
	w.watchMu.Lock()
	defer w.watchMu.Unlock()
	if _, ok := w.watched[dir]; !ok {
		return false
	}
	delete(w.watched, dir)
	return true
}

// maxLinks bounds the symbolic links followed, as the kernel bounds them
// (40 on Linux): a loop ends there.
const maxLinks = 40

// watchDirs returns the directories whose entries decide which file path
// is, by their real names: the one holding the file, and each one holding
// a symbolic link that the path goes through, whether the file itself is
// the link (/etc/sclgate/weights.xml -> /srv/repo/weights.xml), a parent
// is (a deploy tool's "current" release link, swapped by rename), or the
// link points at another (a chain, as /etc/alternatives makes). own is
// the directory path's last name is in, which must be watchable.
func watchDirs(path string) (dirs []string, own string) {
	p, err := filepath.Abs(path)
	if err != nil {
		p = filepath.Clean(path)
	}
	real := func(d string) string {
		if r, err := filepath.EvalSymlinks(d); err == nil {
			return r
		}
		return d
	}
	add := func(d string) {
		d = real(d)
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	own = real(filepath.Dir(p))
	for range maxLinks {
		link, rest, ok := firstLink(p)
		if !ok {
			break
		}
		// link's directory has no link in it (link is the first), so
		// joining a relative target to it by name is what the kernel does.
		add(filepath.Dir(link))
		t, err := os.Readlink(link)
		if err != nil {
			break
		}
		if !filepath.IsAbs(t) {
			t = filepath.Join(filepath.Dir(link), t)
		}
		p = filepath.Join(t, rest)
	}
	add(filepath.Dir(p))
	add(own)
	return dirs, own
}

// firstLink returns the first prefix of the absolute, clean path p that is
// a symbolic link, and the rest of p after it; ok is false when there is
// none (or a prefix does not exist).
func firstLink(p string) (link, rest string, ok bool) {
	sep := string(filepath.Separator)
	for end := 0; end < len(p); {
		next := strings.Index(p[end+1:], sep)
		if next < 0 {
			end = len(p)
		} else {
			end += 1 + next
		}
		prefix := p[:end]
		if prefix == "" {
			continue
		}
		fi, err := os.Lstat(prefix)
		if err != nil {
			return "", "", false
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			return prefix, strings.TrimPrefix(p[end:], sep), true
		}
	}
	return "", "", false
}

// statChanged reports whether path now resolves to a different file than
// the one last read.
func (w *Watcher) statChanged() bool {
	fi, err := os.Stat(w.path)
	w.reloadMu.Lock()
	last := w.lastStat
	if w.brokenStat != nil {
		last = w.brokenStat
	}
	w.reloadMu.Unlock()
	switch {
	case err != nil || last == nil:
		return (err == nil) != (last != nil)
	case !os.SameFile(fi, last):
		return true
	}
	return fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime())
}
