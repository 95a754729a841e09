package weights

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sclgate/sclgate/internal/syncbuf"
)

// listXML returns a weight list file with one BODY entry per phrase.
func listXML(phrases ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n<CustomWeightEntries>\n")
	for _, p := range phrases {
		fmt.Fprintf(&b, "  <CustomWeightEntry Type=\"BODY\" Change=\"1\" Text=%q/>\n", p)
	}
	b.WriteString("</CustomWeightEntries>\n")
	return b.String()
}

const brokenXML = "<CustomWeightEntries>\n<CustomWeightEntry Type=\"BODDY\" Change=\"1\" Text=\"x\"/>\n</CustomWeightEntries>\n"

// reloads records OnReload calls.
type reloads struct {
	mu   sync.Mutex
	ok   int
	errs []error
}

func (r *reloads) on(_ *List, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, err)
	} else {
		r.ok++
	}
}

func (r *reloads) failed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

// lastErrLine returns the line of the last reload error, if it was a
// ParseError.
func (r *reloads) lastErrLine() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pe *ParseError
	if len(r.errs) == 0 || !errors.As(r.errs[len(r.errs)-1], &pe) {
		return 0
	}
	return pe.Line
}

func (r *reloads) succeeded() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ok
}

// waitFor polls cond until it holds, failing the test after 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// matches reports whether w's current list matches body.
func matches(w *Watcher, body string) bool { return len(w.Current().Match("", body)) > 0 }

func newTestWatcher(t *testing.T, path string, r *reloads) *Watcher {
	t.Helper()
	return newTestWatcherWith(t, path, r, WatcherOptions{})
}

// newTestWatcherWith is newTestWatcher with opts (Poll, Logger, addWatch)
// besides the test timings.
func newTestWatcherWith(t *testing.T, path string, r *reloads, opts WatcherOptions) *Watcher {
	t.Helper()
	opts.Debounce, opts.Settle, opts.OnReload = 10*time.Millisecond, 50*time.Millisecond, r.on
	w, err := NewWatcher(path, opts)
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return w
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// renameOver replaces path the way editors and config tools do: write a
// temporary file next to it, then rename it over.
func renameOver(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatcherLifecycle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w := newTestWatcher(t, path, &r)
	if w.Current().Len() != 1 || !matches(w, "alpha") {
		t.Fatalf("initial list: %v", w.Current().Entries())
	}

	// Written in place.
	writeFile(t, path, listXML("alpha", "beta"))
	waitFor(t, "in-place write", func() bool { return matches(w, "beta") })

	// Renamed over.
	renameOver(t, path, listXML("gamma"))
	waitFor(t, "rename-over", func() bool { return matches(w, "gamma") && !matches(w, "alpha") })

	// A broken edit keeps the last good list, and OnReload hears of it.
	writeFile(t, path, brokenXML)
	waitFor(t, "failed reload", func() bool { return r.lastErrLine() == 2 })
	if !matches(w, "gamma") {
		t.Error("broken edit dropped the last good list")
	}
	if err := w.Reload(); err == nil {
		t.Error("Reload of a broken file: no error")
	}
	if !matches(w, "gamma") {
		t.Error("Reload of a broken file dropped the last good list")
	}

	// Fixed by renaming over.
	renameOver(t, path, listXML("delta"))
	waitFor(t, "fixed file", func() bool { return matches(w, "delta") })

	// Deleted: no rules.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delete", func() bool { return w.Current().Len() == 0 })
	if l := w.Current(); l == nil || l.Source() != path {
		t.Errorf("list after delete: %#v", l)
	}

	// Re-created: rules back.
	writeFile(t, path, listXML("epsilon"))
	waitFor(t, "re-create", func() bool { return matches(w, "epsilon") })

	// Other files in the directory are ignored.
	ok, failed := r.succeeded(), r.failed()
	writeFile(t, path+".bak", brokenXML)
	if err := w.Reload(); err != nil { // and Reload works on demand
		t.Errorf("Reload: %v", err)
	}
	if !matches(w, "epsilon") || r.failed() != failed || r.succeeded() <= ok {
		t.Errorf("after Reload: list %v, %d failures, %d successes", w.Current().Entries(), r.failed(), r.succeeded())
	}
}

func TestWatcherMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	var r reloads
	w := newTestWatcher(t, path, &r)
	if l := w.Current(); l == nil || l.Len() != 0 {
		t.Fatalf("list of a missing file: %v", l)
	}
	renameOver(t, path, listXML("alpha"))
	waitFor(t, "create", func() bool { return matches(w, "alpha") })
}

func TestWatcherBrokenAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, brokenXML)
	w, err := NewWatcher(path, WatcherOptions{})
	if err == nil {
		w.Close()
		t.Fatal("NewWatcher of a broken file: no error")
	}
	if pe := parseErrors(err); len(pe) != 1 || pe[0].File != path || pe[0].Line != 2 {
		t.Errorf("error: %v", err)
	}
}

func TestWatcherNoDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope", "weights.xml")
	if w, err := NewWatcher(path, WatcherOptions{}); err == nil {
		w.Close()
		t.Fatal("NewWatcher in a missing directory: no error")
	}
}

// TestWatcherSymlinkSwap updates the file the way Kubernetes updates a
// mounted ConfigMap: the file is a symlink into a directory that is itself
// a symlink, swapped by renaming a new one over it. No event names the
// file.
func TestWatcherSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for v, p := range []string{"alpha", "beta"} {
		d := filepath.Join(dir, fmt.Sprintf("..v%d", v))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "weights.xml"), listXML(p))
	}
	symlink := func(target, name string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Skipf("symlinks: %v", err)
		}
	}
	symlink("..v0", "..data")
	symlink(filepath.Join("..data", "weights.xml"), "weights.xml")
	var r reloads
	w := newTestWatcher(t, filepath.Join(dir, "weights.xml"), &r)
	if !matches(w, "alpha") {
		t.Fatal("initial list")
	}
	symlink("..v1", "..data_tmp")
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "symlink swap", func() bool { return matches(w, "beta") })
}

// A list linked from another directory (/etc/sclgate/weights.xml ->
// /srv/repo/weights.xml): edits to the target, in place or by rename, are
// noticed, and so is pointing the link at a target in a third directory.
func TestWatcherSymlinkToOtherDirectory(t *testing.T) {
	etc, repo, other := t.TempDir(), t.TempDir(), t.TempDir()
	target := filepath.Join(repo, "real.xml")
	writeFile(t, target, listXML("alpha"))
	link := filepath.Join(etc, "weights.xml")
	if err := os.Symlink(target, link); err != nil {
		t.Skipf("symlinks: %v", err)
	}
	var r reloads
	w := newTestWatcher(t, link, &r)
	if !matches(w, "alpha") {
		t.Fatal("initial list")
	}
	// In place, a longer file (size changes).
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(listXML("bravo", "longer"))
	f.Close()
	waitFor(t, "edit of the target in place", func() bool { return matches(w, "bravo") })
	// Saved by rename, as editors do.
	writeFile(t, target+".tmp", listXML("charlie"))
	if err := os.Rename(target+".tmp", target); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "target renamed over", func() bool { return matches(w, "charlie") })
	// The link now points into a third directory, whose edits count next.
	third := filepath.Join(other, "third.xml")
	writeFile(t, third, listXML("delta"))
	os.Remove(link + ".new")
	if err := os.Symlink(third, link+".new"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(link+".new", link); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "link pointed elsewhere", func() bool { return matches(w, "delta") })
	writeFile(t, third+".tmp", listXML("echo"))
	if err := os.Rename(third+".tmp", third); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "edit in the new target's directory", func() bool { return matches(w, "echo") })
}

// swapLink points the symbolic link name at target by renaming a new link
// over it, as deploy tools and `ln -sfn` with `mv -T` do.
func swapLink(t *testing.T, target, name string) {
	t.Helper()
	os.Remove(name + ".new")
	if err := os.Symlink(target, name+".new"); err != nil {
		t.Skipf("symlinks: %v", err)
	}
	if err := os.Rename(name+".new", name); err != nil {
		t.Fatal(err)
	}
}

// A list reached through a parent directory that is a symbolic link, as a
// deploy tool (Capistrano, Ansible) lays out releases:
// app/current -> releases/1, the list at app/current/weights.xml. Pointing
// current at the next release is noticed though the old one is kept, and
// so are edits in the new release afterwards, and the next swap.
func TestWatcherParentLinkSwap(t *testing.T) {
	app := t.TempDir()
	for i, p := range []string{"alpha", "bravo", "charlie"} {
		d := filepath.Join(app, "releases", fmt.Sprint(i+1))
		os.MkdirAll(d, 0o755)
		writeFile(t, filepath.Join(d, "weights.xml"), listXML(p))
	}
	current := filepath.Join(app, "current")
	swapLink(t, filepath.Join("releases", "1"), current)
	var r reloads
	w := newTestWatcher(t, filepath.Join(current, "weights.xml"), &r)
	if !matches(w, "alpha") {
		t.Fatal("initial list")
	}
	swapLink(t, filepath.Join("releases", "2"), current)
	waitFor(t, "current pointed at release 2", func() bool { return matches(w, "bravo") })
	renameOver(t, filepath.Join(app, "releases", "2", "weights.xml"), listXML("delta"))
	waitFor(t, "an edit in release 2", func() bool { return matches(w, "delta") })
	// Release 1, no longer in use, changes nothing.
	writeFile(t, filepath.Join(app, "releases", "1", "weights.xml"), listXML("echo"))
	swapLink(t, filepath.Join("releases", "3"), current)
	waitFor(t, "current pointed at release 3", func() bool { return matches(w, "charlie") })
	if matches(w, "echo") {
		t.Error("the list of a release no longer in use was read")
	}
}

// A chain of links through a third directory, as /etc/alternatives makes:
// the list's link points at a link that is then pointed elsewhere.
func TestWatcherLinkChain(t *testing.T) {
	etc, alt, t1, t2 := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(t1, "l.xml"), listXML("alpha"))
	writeFile(t, filepath.Join(t2, "l.xml"), listXML("bravo"))
	swapLink(t, filepath.Join(t1, "l.xml"), filepath.Join(alt, "weights"))
	swapLink(t, filepath.Join(alt, "weights"), filepath.Join(etc, "weights.xml"))
	var r reloads
	w := newTestWatcher(t, filepath.Join(etc, "weights.xml"), &r)
	if !matches(w, "alpha") {
		t.Fatal("initial list")
	}
	swapLink(t, filepath.Join(t2, "l.xml"), filepath.Join(alt, "weights"))
	waitFor(t, "the middle link pointed elsewhere", func() bool { return matches(w, "bravo") })
	renameOver(t, filepath.Join(t2, "l.xml"), listXML("charlie"))
	waitFor(t, "an edit at the chain's new end", func() bool { return matches(w, "charlie") })
}

func TestWatcherClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, listXML("alpha"))
	w, err := NewWatcher(path, WatcherOptions{Debounce: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// The last list stays readable, and Reload still works.
	if !matches(w, "alpha") {
		t.Error("list gone after Close")
	}
	writeFile(t, path, listXML("beta"))
	if err := w.Reload(); err != nil || !matches(w, "beta") {
		t.Errorf("Reload after Close: %v", err)
	}
}

// A directory removed and made anew takes its watch with it; the reload
// the removal sets off, or Reload (SIGHUP), reads the new file and
// watches the new directory, so that later edits are noticed again.
func TestWatcherDirectoryReplaced(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "wl")
	os.Mkdir(dir, 0o755)
	path := filepath.Join(dir, "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w := newTestWatcher(t, path, &r)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o755)
	// Let the reload the removal set off (after the debounce) run first,
	// so that what follows is seen only through a watch that works.
	time.Sleep(4 * 200 * time.Millisecond)
	writeFile(t, path, listXML("beta"))
	if err := w.Reload(); err != nil || !matches(w, "beta") {
		t.Fatalf("Reload after the directory was replaced: %v", err)
	}
	renameOver(t, path, listXML("gamma"))
	waitFor(t, "an edit in the new directory", func() bool { return matches(w, "gamma") })
}

// A change that a SIGHUP (Reload) read before the change notification's
// debounce ran out is read, logged and counted once, not twice; a later
// edit of the same size is still a change.
func TestWatcherReloadThenNotificationCountsOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w, err := NewWatcher(path, WatcherOptions{Debounce: 300 * time.Millisecond, OnReload: r.on})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeFile(t, path, listXML("bravo"))
	if err := w.Reload(); err != nil || !matches(w, "bravo") {
		t.Fatalf("Reload: %v", err)
	}
	time.Sleep(800 * time.Millisecond) // the notification's debounce runs out
	if n := r.succeeded(); n != 1 {
		t.Errorf("%d reloads counted for one change, want 1", n)
	}
	writeFile(t, path, listXML("carol"))
	waitFor(t, "same-size edit", func() bool { return matches(w, "carol") })
	if n := r.succeeded(); n != 2 {
		t.Errorf("%d reloads after a second change, want 2", n)
	}
}

// A FIFO put in the list's place is an error at once, on the watcher's
// reload as on SIGHUP's: opening it waited for a writer for ever while
// holding the reload lock, so SIGHUP and the shutdown hung behind it.
func TestWatcherFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w := newTestWatcher(t, path, &r)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- w.Reload() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
			t.Errorf("Reload of a FIFO: %v", err)
		}
	case <-time.After(5 * time.Second):
		// Put a regular file in the FIFO's place and unblock the opens
		// waiting on it (a writer that comes and goes), so that the
		// test ends, then fail.
		os.Rename(path, path+".fifo")
		writeFile(t, path, listXML("alpha"))
		t.Error("Reload of a FIFO hung")
		for range 50 {
			if f, err := os.OpenFile(path+".fifo", os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.FailNow()
	}
	if !matches(w, "alpha") {
		t.Error("a FIFO in the list's place dropped the last good list")
	}
	// Left in place, it is not refused (and logged) again at every change
	// of another file in the directory.
	time.Sleep(100 * time.Millisecond) // the FIFO's own events settle
	failed := r.failed()
	for i := range 3 {
		writeFile(t, filepath.Join(filepath.Dir(path), "other.log"), fmt.Sprint(i))
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := r.failed() - failed; n != 0 {
		t.Errorf("%d more failed reloads for writes to another file", n)
	}
	renameOver(t, path, listXML("beta"))
	waitFor(t, "regular file again", func() bool { return matches(w, "beta") })
}

// A failed reload logs at most maxLoggedErrors problems (a bad save of a
// 50,000-entry list made one line of megabytes), and says where the rest
// are; a short list of problems is logged whole.
func TestBriefReloadError(t *testing.T) {
	var b strings.Builder
	b.WriteString("<CustomWeightEntries>\n")
	for range 50 {
		b.WriteString("<CustomWeightEntry Type=\"BDY\" Change=\"1\" Text=\"x\"/>\n")
	}
	b.WriteString("</CustomWeightEntries>\n")
	_, err := Parse("w.xml", strings.NewReader(b.String()))
	if err == nil {
		t.Fatal("no error")
	}
	got := brief(err, "w.xml")
	if n := strings.Count(got, "unknown Type"); n != maxLoggedErrors || !strings.HasSuffix(got, "... and 30 more problems (sclgate weights check w.xml lists them all)") {
		t.Errorf("%d problems listed:\n%s", n, got)
	}
	_, err = Parse("w.xml", strings.NewReader(brokenXML))
	if got := brief(err, "w.xml"); got != err.Error() {
		t.Errorf("one problem: %q, want %q", got, err.Error())
	}
}

// A tool that writes the file in pieces with a pause between them leaves
// it half-written for longer than the debounce: that is not a failed
// reload, logged and counted (an alert on the error count would fire on an
// ordinary edit), as long as the file is complete within Settle. A file
// still broken after Settle is reported, once.
func TestWatcherSlowWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w, err := NewWatcher(path, WatcherOptions{Debounce: 20 * time.Millisecond, Settle: 2 * time.Second, OnReload: r.on})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	full := listXML("bravo")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(full[:len(full)/2])
	time.Sleep(500 * time.Millisecond) // 25 debounces
	f.WriteString(full[len(full)/2:])
	f.Close()
	waitFor(t, "the slow write", func() bool { return matches(w, "bravo") })
	if n := r.failed(); n != 0 {
		t.Errorf("%d failed reloads reported for a file written in two pieces: %v", n, r.errs)
	}
	// A broken edit is reported once it has settled, and only once.
	writeFile(t, path, brokenXML)
	waitFor(t, "the broken edit reported", func() bool { return r.failed() == 1 })
	time.Sleep(300 * time.Millisecond)
	if n := r.failed(); n != 1 || !matches(w, "bravo") {
		t.Errorf("after a broken edit: %d failures reported, list %v", n, w.Current().Entries())
	}
}

// A ConfigMap update as Kubernetes' AtomicWriter makes it (a new ..TS
// directory, a ..data_tmp link renamed over ..data, then the old ..TS
// removed) is read, and logs no warning: the directory removed is no
// longer on the path.
func TestWatcherConfigMapUpdateQuiet(t *testing.T) {
	dir := t.TempDir()
	for v, p := range []string{"alpha", "beta", "gamma"} {
		d := filepath.Join(dir, fmt.Sprintf("..v%d", v))
		os.Mkdir(d, 0o755)
		writeFile(t, filepath.Join(d, "weights.xml"), listXML(p))
	}
	os.Symlink("..v0", filepath.Join(dir, "..data"))
	os.Symlink(filepath.Join("..data", "weights.xml"), filepath.Join(dir, "weights.xml"))
	var buf syncbuf.Buffer
	var r reloads
	w, err := NewWatcher(filepath.Join(dir, "weights.xml"), WatcherOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil)), OnReload: r.on})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for v, p := range []string{"beta", "gamma"} {
		os.Symlink(fmt.Sprintf("..v%d", v+1), filepath.Join(dir, "..data_tmp"))
		os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data"))
		os.RemoveAll(filepath.Join(dir, fmt.Sprintf("..v%d", v)))
		waitFor(t, p, func() bool { return matches(w, p) })
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("log:\n%s", buf.String())
	if strings.Contains(buf.String(), "level=WARN") {
		t.Errorf("a routine ConfigMap update logged a warning")
	}
}

// A change that arrives while a broken file's report waits (Settle), even
// within Debounce of its end, puts the report off: the file is reported
// only once it stayed unchanged for Debounce + Settle.
func TestWatcherSettleRestartsOnChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	const D, S = 200 * time.Millisecond, 300 * time.Millisecond
	w, err := NewWatcher(path, WatcherOptions{Debounce: D, Settle: S, OnReload: r.on})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	full := listXML("bravo")
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	f.WriteString(full[:len(full)/3]) // t=0; debounce read at 200, settle due at 500
	time.Sleep(420 * time.Millisecond)
	f.WriteString(full[len(full)/3 : 2*len(full)/3]) // t=420 < D+S: a change within Settle of the read
	time.Sleep(380 * time.Millisecond)
	f.WriteString(full[2*len(full)/3:]) // t=800, complete
	f.Close()
	waitFor(t, "complete", func() bool { return matches(w, "bravo") })
	if n := r.failed(); n != 0 {
		t.Errorf("%d failed reloads reported for a file that never stayed unchanged D+S=%v: %v", n, D+S, r.errs)
	}
}

// A broken file next to another file that is written every 400ms (a busy
// directory) is reported once it has settled: the other file's events do
// not put the report off.
func TestWatcherBrokenInBusyDirectoryReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w, err := NewWatcher(path, WatcherOptions{OnReload: r.on}) // defaults: 200ms, 1s
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	writeFile(t, path, brokenXML)
	for i := 0; i < 10; i++ { // 4 s
		time.Sleep(400 * time.Millisecond)
		writeFile(t, filepath.Join(dir, "other.state"), fmt.Sprint(i))
	}
	if n := r.failed(); n == 0 {
		t.Errorf("a broken list, unchanged for 4 s, was not reported (Settle 1s)")
	}
}

// A list sclgate may not read (a root-owned 0600 file where serve runs as
// its own user) is reported once, however busy its directory, and a chmod
// that mends it is a change. Root reads any file, so as root the test runs
// itself again as nobody.
func TestWatcherUnreadableReportedOnce(t *testing.T) {
	dir := os.Getenv("SCLGATE_TEST_NOBODY_DIR")
	if dir == "" && os.Geteuid() == 0 {
		dir = t.TempDir()
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's parent is 0700
		// The test binary, where nobody may run it (go test's build
		// directory is root's alone).
		bin, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		self := filepath.Join(dir, "weights.test")
		if err := os.WriteFile(self, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(self, "-test.run=^TestWatcherUnreadableReportedOnce$", "-test.v")
		cmd.Env = append(os.Environ(), "SCLGATE_TEST_NOBODY_DIR="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestWatcherUnreadableReportedOnce") {
			t.Fatalf("as nobody: %v\n%s", err, out)
		}
		return
	}
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	w, err := NewWatcher(path, WatcherOptions{Debounce: 20 * time.Millisecond, Settle: 200 * time.Millisecond, OnReload: r.on})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := os.ReadFile(path); err == nil {
		t.Fatal("the file is still readable: run as a user other than root")
	}
	for i := range 15 { // 1.5 s of another file written every 100 ms
		time.Sleep(100 * time.Millisecond)
		writeFile(t, filepath.Join(dir, "other.state"), fmt.Sprint(i))
	}
	time.Sleep(400 * time.Millisecond)
	if n := r.failed(); n != 1 || !matches(w, "alpha") {
		t.Errorf("an unreadable list in a busy directory: reported %d times, want 1 (list in force %v)", n, w.Current().Entries())
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "x"), "")
	waitFor(t, "the list read again after chmod 644", func() bool { return r.succeeded() >= 1 })
}

// A directory renamed above the file's own takes the own directory's watch
// with it (inotify watches follow directories, not names), and sends no
// event for the path: a deploy tool swapping /srv/sclgate for a staged
// copy. The poll sees the new directory, watches it, and reads the file
// there; the removal of the whole tree means no rules; each is logged
// once, not at every poll.
func TestWatcherAncestorRenamed(t *testing.T) {
	root := t.TempDir()
	mk := func(top, phrase string) {
		t.Helper()
		d := filepath.Join(root, top, "lists")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(d, "weights.xml"), listXML(phrase))
	}
	mk("gp", "alpha")
	path := filepath.Join(root, "gp", "lists", "weights.xml")
	var r reloads
	var logs syncbuf.Buffer
	w := newTestWatcherWith(t, path, &r, WatcherOptions{Poll: 50 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil))})

	mk("gp.new", "beta")
	if err := os.Rename(filepath.Join(root, "gp"), filepath.Join(root, "gp.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(root, "gp.new"), filepath.Join(root, "gp")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the list in the swapped-in tree", func() bool { return matches(w, "beta") })

	// Watched now by notification: an edit there is read, and one in the
	// tree moved away is not.
	ok := r.succeeded()
	renameOver(t, path, listXML("gamma"))
	waitFor(t, "an edit in the swapped-in tree", func() bool { return matches(w, "gamma") })
	writeFile(t, filepath.Join(root, "gp.old", "lists", "weights.xml"), listXML("delta"))
	time.Sleep(300 * time.Millisecond)
	if matches(w, "delta") || r.succeeded() != ok+1 {
		t.Errorf("after an edit in the new tree and one in the old: %d reloads (want 1), delta in force %v", r.succeeded()-ok, matches(w, "delta"))
	}

	if err := os.RemoveAll(filepath.Join(root, "gp")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no rules once the tree is gone", func() bool { return w.Current().Len() == 0 })
	time.Sleep(500 * time.Millisecond) // ten polls with the tree gone
	if n := strings.Count(logs.String(), "file removed"); n != 1 {
		t.Errorf("%d \"file removed\" lines (want 1):\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "cannot watch the file's directory"); n != 1 {
		t.Errorf("%d \"cannot watch\" lines (want 1):\n%s", n, logs.String())
	}
	mk("gp", "epsilon")
	waitFor(t, "the tree made again", func() bool { return matches(w, "epsilon") })
	if !strings.Contains(logs.String(), "watching the file's directories again") {
		t.Errorf("no log line for watching again:\n%s", logs.String())
	}
}

// A directory that exists but cannot be watched (the inotify watch limit
// reached) is warned of once and tried again at each poll, quietly: the
// poll neither logs again nor reloads the file every time.
func TestWatcherUnwatchableDirectoryQuiet(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "wl")
	os.Mkdir(dir, 0o755)
	path := filepath.Join(dir, "weights.xml")
	writeFile(t, path, listXML("alpha"))
	var r reloads
	var logs syncbuf.Buffer
	var fail sync.Map // directories whose watch fails
	w := newTestWatcherWith(t, path, &r, WatcherOptions{Poll: 30 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		addWatch: func(d string) error {
			if _, ok := fail.Load(d); ok {
				return syscall.ENOSPC // what inotify_add_watch says at the limit
			}
			return nil
		}})
	fail.Store(dir, true)
	// The directory made anew, with the file: its new watch fails.
	os.Rename(dir, dir+".old")
	os.Mkdir(dir, 0o755)
	writeFile(t, path, listXML("beta"))
	waitFor(t, "the file in the new directory, read by the poll", func() bool { return matches(w, "beta") })
	ok := r.succeeded()
	time.Sleep(600 * time.Millisecond) // 20 polls
	if n := r.succeeded() - ok + r.failed(); n != 0 {
		t.Errorf("%d reloads while nothing changed", n)
	}
	if n := strings.Count(logs.String(), "cannot watch the file's directory"); n != 1 {
		t.Errorf("%d \"cannot watch\" lines (want 1):\n%s", n, logs.String())
	}
	// Without notifications, an edit is still seen by the poll.
	renameOver(t, path, listXML("gamma"))
	waitFor(t, "an edit seen by the poll", func() bool { return matches(w, "gamma") })
	// The file removed: said once, not at every poll after.
	os.Remove(path)
	waitFor(t, "no rules once the file is gone", func() bool { return w.Current().Len() == 0 })
	time.Sleep(600 * time.Millisecond)
	if n := strings.Count(logs.String(), "file removed"); n != 1 {
		t.Errorf("%d \"file removed\" lines (want 1):\n%s", n, logs.String())
	}
	// Once it can be watched, it is, and said.
	fail.Delete(dir)
	waitFor(t, "watched again", func() bool { return strings.Contains(logs.String(), "watching the file's directories again") })
}
