package update

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sclgate/sclgate/defs"
)

type fixture struct {
	t         *testing.T
	pub, priv []byte
	srcDir    string // published files
	url       string // http://127.0.0.1:PORT/ serving srcDir
	store     *Store
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pub, priv, err := defs.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, pub: pub, priv: priv, srcDir: t.TempDir()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(f.srcDir))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f.url = "http://" + ln.Addr().String() + "/"
	if f.store, err = OpenStore(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return f
}

// bundle writes a bundle file for version and returns its path.
func (f *fixture) bundle(version string) string {
	f.t.Helper()
	return f.bundleNeeding(version, "")
}

// bundleNeeding is bundle with the manifest's min_sclgate.
func (f *fixture) bundleNeeding(version, minSclgate string) string {
	f.t.Helper()
	var buf bytes.Buffer
	b := &defs.Bundle{
		Manifest: defs.Manifest{Version: version, Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), TrainingData: "test",
			MinSclgate: minSclgate},
		Model: append([]byte("model "+version), noise(50000)...), // incompressible: a real download size
	}
	if err := defs.Write(&buf, b); err != nil {
		f.t.Fatal(err)
	}
	p := filepath.Join(f.t.TempDir(), defs.FileName(version))
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

func (f *fixture) publish(versions ...string) {
	f.t.Helper()
	var paths []string
	for _, v := range versions {
		paths = append(paths, f.bundle(v))
	}
	if _, err := Publish(f.srcDir, f.priv, "", paths); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) updater() *Updater {
	src, err := NewSource(f.url)
	if err != nil {
		f.t.Fatal(err)
	}
	return &Updater{Store: f.store, Keys: [][]byte{f.pub}, Source: src, Builtin: "2026.01.1"}
}

func (f *fixture) active() string {
	v, _ := f.store.Active()
	return v
}

func TestPublishDetectInstallRollback(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	u := f.updater()
	d, err := u.Detect(context.Background())
	if err != nil || !d.Available || d.Newest.Version != "2026.10.1" || d.InUse != "2026.01.1" || d.Installed {
		t.Fatalf("detect: %+v %v", d, err)
	}
	if out, err := u.Install(context.Background(), "", false); err != nil || out.Version != "2026.10.1" {
		t.Fatalf("install: %+v %v", out, err)
	}
	if f.active() != "2026.10.1" {
		t.Fatal("not active")
	}
	if out, err := u.Install(context.Background(), "", false); err != nil || !out.Already {
		t.Errorf("second install is not a no-op: %+v %v", out, err)
	}
	if d, _ := u.Detect(context.Background()); d.Available {
		t.Errorf("up to date, yet available: %+v", d)
	}
	if st := f.store.LoadState(); st.LastCheckResult != "current" || st.LastCheck.IsZero() {
		t.Errorf("state %+v", st)
	}

	f.publish("2026.11.1")
	if d, _ := u.Detect(context.Background()); !d.Available || d.Newest.Version != "2026.11.1" {
		t.Errorf("new version not detected: %+v", d)
	}
	u.Install(context.Background(), "", false)
	if from, to, err := f.store.Rollback(nil); err != nil || from != "2026.11.1" || to != "2026.10.1" {
		t.Fatalf("rollback %s → %s %v", from, to, err)
	}
	// After a rollback, the version rolled back from is not offered again,
	// and a plain install (the update timer's) does not undo the rollback.
	if d, _ := u.Detect(context.Background()); d.Available {
		t.Errorf("rolled-back version offered again: %+v", d)
	}
	if out, err := u.Install(context.Background(), "", false); err != nil || !out.UpToDate || !strings.Contains(out.Note, "rolled back or downgraded from") || f.active() != "2026.10.1" {
		t.Errorf("plain install after a rollback: %+v %v, active %s", out, err, f.active())
	}
	// Older than in use: refused without -force.
	if _, err := u.Install(context.Background(), "2026.10.1", false); err != nil {
		t.Errorf("installing the active version: %v", err)
	}
	f.publish("2026.09.1")
	if _, err := u.Install(context.Background(), "2026.09.1", false); !errors.Is(err, ErrOlder) {
		t.Errorf("older without force: %v", err)
	}
	if _, err := u.Install(context.Background(), "2026.09.1", true); err != nil || f.active() != "2026.09.1" {
		t.Errorf("older with force: %v", err)
	}
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(f *fixture)
		want   error
		msg    string
	}{
		{"tampered bundle", func(f *fixture) {
			p := filepath.Join(f.srcDir, defs.FileName("2026.10.1"))
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			os.WriteFile(p, b, 0o644)
		}, defs.ErrChecksum, "sclgate-defs-2026.10.1.tar.gz"},
		{"tampered index", func(f *fixture) {
			p := filepath.Join(f.srcDir, IndexFile)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(b, []byte(`"size"`), []byte(`"size" `), 1), 0o644)
		}, defs.ErrBadSignature, "index.json"},
		{"wrong key", func(f *fixture) {
			_, other, _ := defs.GenerateKey("")
			Publish(f.srcDir, other, "", nil)
		}, defs.ErrUnknownKey, "not a trusted key"},
		{"truncated download", func(f *fixture) {
			p := filepath.Join(f.srcDir, defs.FileName("2026.10.1"))
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, defs.ErrChecksum, "bytes"},
		{"unreachable", func(f *fixture) { f.url = "http://127.0.0.1:1/" }, ErrUnreachable, "127.0.0.1:1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.publish("2026.10.1")
			c.tamper(f)
			_, err := f.updater().Install(context.Background(), "", false)
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("err = %v, want %v mentioning %q", err, c.want, c.msg)
			}
			if f.active() != "" {
				t.Errorf("active version changed to %q", f.active())
			}
			list, _ := f.store.List()
			if len(list) != 0 {
				t.Errorf("installed: %v", list)
			}
		})
	}
}

// An index that offers only older versions than the one installed (an old
// index replayed, or a downgrade) is refused, and nothing changes.
func TestDowngradeRefused(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1", "2026.11.1")
	u := f.updater()
	if _, err := u.Install(context.Background(), "", false); err != nil {
		t.Fatal(err)
	}
	oldIndex := t.TempDir() // an attacker serves an older, validly signed index
	g := &fixture{t: t, pub: f.pub, priv: f.priv, srcDir: oldIndex}
	g.url = f.url
	os.RemoveAll(filepath.Join(f.srcDir, defs.FileName("2026.11.1")))
	os.RemoveAll(filepath.Join(f.srcDir, defs.FileName("2026.11.1")+".minisig"))
	Publish(f.srcDir, f.priv, "", nil) // index now lists only 2026.10.1
	if _, err := u.Detect(context.Background()); !errors.Is(err, ErrDowngrade) {
		t.Errorf("detect: %v", err)
	}
	if _, err := u.Install(context.Background(), "", false); !errors.Is(err, ErrDowngrade) {
		t.Errorf("install: %v", err)
	}
	if f.active() != "2026.11.1" {
		t.Errorf("active %s", f.active())
	}
}

// Offline: a bundle file with its .minisig beside it, no source at all.
func TestInstallFile(t *testing.T) {
	f := newFixture(t)
	p := f.bundle("2026.10.1")
	data, _ := os.ReadFile(p)
	sig, _ := defs.Sign(f.priv, "", data, defs.TrustedComment("2026.10.1", p, time.Now()))
	os.WriteFile(p+".minisig", sig, 0o644)
	u := &Updater{Store: f.store, Keys: [][]byte{f.pub}, Builtin: "1"}
	if out, err := u.InstallFile(context.Background(), p, false); err != nil || out.Version != "2026.10.1" || f.active() != "2026.10.1" {
		t.Fatalf("%+v %v", out, err)
	}
	in, _ := f.store.List()
	if len(in) != 1 || in[0].Origin != p {
		t.Errorf("origin %+v", in)
	}
	// An older file needs -force, as from a source; with it, it installs.
	older := f.bundle("2026.09.1")
	data, _ = os.ReadFile(older)
	sig, _ = defs.Sign(f.priv, "", data, defs.TrustedComment("2026.09.1", older, time.Now()))
	os.WriteFile(older+".minisig", sig, 0o644)
	if _, err := u.InstallFile(context.Background(), older, false); !errors.Is(err, ErrOlder) {
		t.Errorf("older file without force: %v", err)
	}
	if out, err := u.InstallFile(context.Background(), older, true); err != nil || out.Version != "2026.09.1" || f.active() != "2026.09.1" {
		t.Errorf("older file with force: %+v %v", out, err)
	}
	os.Remove(p + ".minisig")
	if _, err := u.InstallFile(context.Background(), p, false); err == nil || !strings.Contains(err.Error(), ".minisig") {
		t.Errorf("missing signature: %v", err)
	}
}

// The built-in definitions may be newer than anything published (just
// after an upgrade): a plain install is then up to date, as detect says,
// not a refusal.
func TestInstallWhenBuiltinIsNewer(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	u := f.updater()
	u.Builtin = "2026.12.1"
	if d, err := u.Detect(context.Background()); err != nil || d.Available {
		t.Fatalf("detect: %+v %v", d, err)
	}
	out, err := u.Install(context.Background(), "", false)
	if err != nil || !out.UpToDate || out.Version != "2026.12.1" || !strings.Contains(out.Note, "older than 2026.12.1 in use") {
		t.Errorf("install: %+v %v", out, err)
	}
	if _, err := f.store.Active(); !errors.Is(err, ErrNoneInstalled) {
		t.Errorf("something was installed: %v", err)
	}
	// The same version as the built-in one: up to date too, as detect says.
	u.Builtin = "2026.10.1"
	if d, err := u.Detect(context.Background()); err != nil || d.Available {
		t.Fatalf("detect: %+v %v", d, err)
	}
	if out, err := u.Install(context.Background(), "", false); err != nil || !out.UpToDate || !strings.Contains(out.Note, "is the built-in one in use") {
		t.Errorf("install of the built-in version: %+v %v", out, err)
	}
	if _, err := f.store.Active(); !errors.Is(err, ErrNoneInstalled) {
		t.Errorf("something was installed: %v", err)
	}
}

// Installs in several processes at once (serve's updater, the timer, an
// admin) take turns: every one ends well, and the active version is whole.
func TestConcurrentInstalls(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1", "2026.11.1")
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each its own Store and Updater, as separate processes have.
			st, err := OpenStore(f.store.Dir())
			if err != nil {
				errs <- err
				return
			}
			u := f.updater()
			u.Store = st
			version := "2026.11.1"
			if i%2 == 1 {
				version = "" // the newest: the same one
			}
			if _, err := u.Install(context.Background(), version, false); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("install: %v", err)
	}
	if f.active() != "2026.11.1" {
		t.Fatalf("active %q", f.active())
	}
	if _, err := os.Stat(f.store.BundlePath("2026.11.1")); err != nil {
		t.Errorf("active version without its bundle: %v", err)
	}
	// A lock held elsewhere makes a rollback or install wait, and a
	// cancelled wait says what it waited for.
	unlock, err := f.store.Lock(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	u := f.updater()
	told := 0
	u.Waiting = func(holder string) {
		if holder == "another install or rollback" {
			told++
		}
	}
	if _, err := u.Install(ctx, "2026.10.1", true); err == nil || !strings.Contains(err.Error(), "waiting for another install or rollback") || told != 1 {
		t.Errorf("install while locked: %v, told %d times it waits", err, told)
	}
	// An offline install waits the same way, and gives up with its ctx.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel2()
	if _, err := u.InstallFile(ctx2, "no-such-file", false); err == nil || !strings.Contains(err.Error(), "waiting for another install or rollback") {
		t.Errorf("install of a file while locked: %v", err)
	}
	unlock()
}

// A download cut off part-way resumes from where it stopped.
func TestDownloadResumes(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	name := defs.FileName("2026.10.1")
	full, _ := os.ReadFile(filepath.Join(f.srcDir, name))
	os.MkdirAll(filepath.Join(f.store.Dir(), ".download"), 0o755)
	os.WriteFile(filepath.Join(f.store.Dir(), ".download", name+".part"), full[:1000], 0o644)
	var first int64 = -1
	u := f.updater()
	u.Progress = func(done, total int64) {
		if first < 0 {
			first = done
		}
	}
	if _, err := u.Install(context.Background(), "", false); err != nil {
		t.Fatal(err)
	}
	// The first report is where this run starts: 1000, not 0.
	if first != 1000 {
		t.Errorf("download started at %d instead of resuming at 1000", first)
	}
	b, _ := os.ReadFile(f.store.BundlePath("2026.10.1"))
	if !bytes.Equal(b, full) {
		t.Error("installed bundle differs")
	}
}

// A source that stops sending mid-download is given up after the stall
// timeout, and the error says so (not just "context canceled"); the part
// that came is kept for the next run.
func TestDownloadStalls(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	name := defs.FileName("2026.10.1")
	release := make(chan struct{})
	defer close(release) // nothing more comes until the test ends
	srv := holdingServer(t, f, name, nil, release)
	src, err := NewSource(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	u := &Updater{Store: f.store, Keys: [][]byte{f.pub}, Source: src, Builtin: "2026.01.1", StallTimeout: 300 * time.Millisecond}
	_, err = u.Install(context.Background(), "", false)
	if err == nil || !strings.Contains(err.Error(), "the source stopped sending (stalled): nothing came for 300ms") ||
		!strings.Contains(err.Error(), "run install again to resume") {
		t.Fatalf("install from a stalled source: %v", err)
	}
	if st, err := os.Stat(filepath.Join(f.store.Dir(), ".download", name+".part")); err != nil || st.Size() != 5000 {
		t.Errorf("partial download: %v %v", st, err)
	}
}

// A rollback does not wait for an install's download: the admin's way
// out of bad definitions works while a slow source trickles the next
// version in. The install then goes on with what it chose, which the
// rollback did not touch.
func TestRollbackDuringDownload(t *testing.T) {
	f, _ := installedTwo(t)
	f.publish("2026.12.1")
	from, to, err, o, ierr := rollBackDuringDownload(t, f, "2026.12.1")
	if err != nil || from != "2026.10.2" || to != "2026.10.1" {
		t.Errorf("rollback during a download: %s → %s, %v", from, to, err)
	}
	if ierr != nil || o.Version != "2026.12.1" || f.active() != "2026.12.1" {
		t.Errorf("install after the rollback: %+v %v, active %s", o, ierr, f.active())
	}
	if in, err := f.store.Record("2026.12.1"); err != nil || in.Previous != "2026.10.1" {
		t.Errorf("record %+v %v: its previous is the version the rollback left active", in, err)
	}
}

// A rollback during a plain install's download (serve's updater and the
// timer install so) from the very version being downloaded sticks: here
// the version in use is damaged, the install downloads it again to mend
// it, and the admin meanwhile rolls back from it. The install, choosing
// again under the store's lock, leaves the rollback alone.
func TestRollbackDuringRepairSticks(t *testing.T) {
	f, _ := installedTwo(t)
	os.WriteFile(f.store.BundlePath("2026.10.2"), []byte("junk"), 0o644)
	if d, err := f.updater().Detect(context.Background()); err != nil || !d.Damaged || d.Newest.Version != "2026.10.2" {
		t.Fatalf("detect: %+v %v", d, err)
	}
	from, to, err, o, ierr := rollBackDuringDownload(t, f, "2026.10.2")
	if err != nil || from != "2026.10.2" || to != "2026.10.1" {
		t.Errorf("rollback: %s → %s, %v", from, to, err)
	}
	if ierr != nil || !o.UpToDate || f.active() != "2026.10.1" {
		t.Errorf("install after the rollback: %+v %v, active %s", o, ierr, f.active())
	}
}

// rollBackDuringDownload runs a plain install from a source that holds
// version's bundle back after its first bytes, rolls back meanwhile
// (failing the test if the rollback has to wait), then lets the download
// finish, and returns what the rollback and the install did.
func rollBackDuringDownload(t *testing.T, f *fixture, version string) (from, to string, err error, o Outcome, ierr error) {
	t.Helper()
	started, release := make(chan struct{}), make(chan struct{})
	srv := holdingServer(t, f, defs.FileName(version), started, release)
	src, err := NewSource(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	slow := &Updater{Store: f.store, Keys: [][]byte{f.pub}, Source: src, Builtin: "2026.01.1"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		o, ierr = slow.Install(context.Background(), "", false)
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("the download did not start")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := f.store.Lock(ctx, func() { t.Error("the rollback waited for the download") })
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	from, to, err = f.store.Rollback(nil)
	unlock()
	close(release)
	<-done
	return from, to, err, o, ierr
}

// An install that downloaded the bundle but then gives up waiting for
// the store keeps the download: the next run installs it without
// fetching it again.
func TestDownloadKeptWhenStoreWaitGivesUp(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	unlock, err := f.store.Lock(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := f.updater()
	u.Waiting = func(holder string) {
		if holder == holderStore {
			cancel()
		}
	}
	if _, err := u.Install(ctx, "", false); err == nil || !strings.Contains(err.Error(), "the download is kept") {
		t.Fatalf("install that gave up: %v", err)
	}
	unlock()
	part := u.partPath(Offer{File: defs.FileName("2026.10.1")})
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("download not kept: %v", err)
	}
	// Served no more: the next install must take the kept file.
	os.Remove(filepath.Join(f.srcDir, defs.FileName("2026.10.1")))
	u.Waiting = nil
	if o, err := u.Install(context.Background(), "", false); err != nil || o.Version != "2026.10.1" || f.active() != "2026.10.1" {
		t.Fatalf("install from the kept download: %+v %v", o, err)
	}
	if _, err := os.Stat(part); err == nil {
		t.Error("the download was not removed once installed")
	}
}

// holdingServer serves f's source, but the file name stops after its
// first 5,000 bytes, which started (if not nil) is closed to say, and the
// rest comes when release is closed.
func holdingServer(t *testing.T, f *fixture, name string, started, release chan struct{}) *httptest.Server {
	full, _ := os.ReadFile(filepath.Join(f.srcDir, name))
	files := http.FileServer(http.Dir(f.srcDir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, name) {
			files.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(full)))
		w.Write(full[:5000])
		w.(http.Flusher).Flush()
		if started != nil {
			close(started)
		}
		select {
		case <-release:
			w.Write(full[5000:])
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A cancelled install (Ctrl-C) leaves nothing half-installed.
func TestCancelLeavesNothing(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.updater().Install(ctx, "", false); err == nil {
		t.Fatal("cancelled install succeeded")
	}
	if f.active() != "" {
		t.Error("something active")
	}
}

func noise(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// A partial file that is not a prefix of the bundle (stale, or from a
// republished version) costs one fresh download, not a failed install.
func TestDownloadBadPartialStartsOver(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	name := defs.FileName("2026.10.1")
	os.MkdirAll(filepath.Join(f.store.Dir(), ".download"), 0o755)
	os.WriteFile(filepath.Join(f.store.Dir(), ".download", name+".part"), bytes.Repeat([]byte{0xAA}, 1000), 0o644)
	if _, err := f.updater().Install(context.Background(), "", false); err != nil {
		t.Fatalf("install over a bad partial: %v", err)
	}
	if f.active() != "2026.10.1" {
		t.Error("not active")
	}
}

// A genuine bundle that Usable refuses is not installed, from a source
// either, and the version in use stays.
func TestUnusableRefused(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	u := f.updater()
	if _, err := u.Install(context.Background(), "", false); err != nil {
		t.Fatal(err)
	}
	f.publish("2026.11.1")
	why := errors.New("model: built for feature set 9")
	u.Usable = func(b *defs.Bundle) error {
		if b.Manifest.Version == "2026.11.1" {
			return why
		}
		return nil
	}
	_, err := u.Install(context.Background(), "", false)
	if !errors.Is(err, ErrUnusable) || !errors.Is(err, why) || !strings.Contains(err.Error(), "2026.11.1") {
		t.Errorf("install of an unusable bundle: %v", err)
	}
	if f.active() != "2026.10.1" {
		t.Errorf("active %s after a refused install", f.active())
	}
	if vs, _ := f.store.List(); len(vs) != 1 {
		t.Errorf("installed versions %v", vs)
	}
}

// A version installed while this build could use it, and no longer can
// (an upgrade of sclgate changed the model's features): serve scores with
// the built-in definitions, so Detect does not call it up to date, and a
// rollback does not switch to such a version.
func TestInstalledButUnusableHere(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1", "2026.11.1")
	u := f.updater()
	for _, v := range []string{"2026.10.1", "2026.11.1"} {
		if _, err := u.Install(context.Background(), v, false); err != nil {
			t.Fatal(err)
		}
	}
	// The sclgate upgrade: neither reads for it now.
	why := errors.New("model: built for feature set 15, this build extracts 16")
	u.Usable = func(*defs.Bundle) error { return why }
	if err := u.InUseUnusable("2026.11.1"); !errors.Is(err, why) {
		t.Errorf("InUseUnusable: %v", err)
	}
	_, err := u.Detect(context.Background())
	if !errors.Is(err, ErrUnusable) || !errors.Is(err, why) || !strings.Contains(err.Error(), "scores with the built-in definitions") {
		t.Errorf("detect with the version in use unusable: %v", err)
	}
	if _, _, err := f.store.Rollback(u.UsableHere); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "rollback to 2026.10.1 refused, 2026.11.1 stays in use") {
		t.Errorf("rollback to an unusable version: %v", err)
	}
	if f.active() != "2026.11.1" {
		t.Errorf("active %s after a refused rollback", f.active())
	}
	// A min_sclgate this build does not meet is the same.
	f2 := newFixture(t)
	paths := []string{f2.bundleNeeding("2026.10.1", "2.0")}
	if _, err := Publish(f2.srcDir, f2.priv, "", paths); err != nil {
		t.Fatal(err)
	}
	u2 := f2.updater()
	if _, err := u2.Install(context.Background(), "", false); err != nil {
		t.Fatal(err)
	}
	u2.Sclgate = "1.0" // an older sclgate, put back over the newer one
	if _, err := u2.Detect(context.Background()); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "needs sclgate 2.0") {
		t.Errorf("detect with the version in use too new for this build: %v", err)
	}
}

// An offer for a newer sclgate is passed over, by Detect and by Install of
// the newest, in favour of the newest this build can use.
func TestTooNewPassedOver(t *testing.T) {
	f := newFixture(t)
	paths := []string{f.bundle("2026.10.1"), f.bundleNeeding("2026.11.1", "2.0")}
	if _, err := Publish(f.srcDir, f.priv, "", paths); err != nil {
		t.Fatal(err)
	}
	u := f.updater()
	u.Sclgate = "1.4.0-dev"
	d, err := u.Detect(context.Background())
	if err != nil || !d.Available || d.Newest.Version != "2026.10.1" || d.TooNew.Version != "2026.11.1" || d.TooNew.MinSclgate != "2.0" {
		t.Fatalf("detect: %+v %v", d, err)
	}
	if out, err := u.Install(context.Background(), "", false); err != nil || out.Version != "2026.10.1" {
		t.Fatalf("install of the newest usable: %+v %v", out, err)
	}
	if d, err := u.Detect(context.Background()); err != nil || d.Available {
		t.Errorf("after install: %+v %v", d, err)
	}
	// Only a too-new version offered: nothing to install, and why.
	g := newFixture(t)
	if _, err := Publish(g.srcDir, g.priv, "", []string{g.bundleNeeding("2026.11.1", "2.0")}); err != nil {
		t.Fatal(err)
	}
	v := g.updater()
	v.Sclgate = "1.4.0"
	if d, err := v.Detect(context.Background()); err != nil || d.Available || d.Newest.Version != "" {
		t.Errorf("detect, only too new: %+v %v", d, err)
	}
	// A plain install agrees with detect: up to date, not an error (an
	// update timer would otherwise fail at every run).
	if out, err := v.Install(context.Background(), "", false); err != nil || !out.UpToDate || !strings.Contains(out.Note, "needs sclgate 2.0") {
		t.Errorf("install, only too new: %+v %v", out, err)
	}
	if _, err := v.Install(context.Background(), "2026.11.1", false); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "needs sclgate 2.0") {
		t.Errorf("install -version of a too new one: %v", err)
	}
	// Refused from the signed index, before any download.
	if ents, _ := os.ReadDir(filepath.Join(g.store.Dir(), ".download")); len(ents) != 0 {
		t.Errorf("a refused version was downloaded: %v", ents)
	}
	// A new enough build takes it.
	v.Sclgate = "2.0.1"
	if d, err := v.Detect(context.Background()); err != nil || !d.Available || d.Newest.Version != "2026.11.1" {
		t.Errorf("detect with sclgate 2.0.1: %+v %v", d, err)
	}
}

// An install asks the source as detect does, so its outcome is the last
// check that status shows: what a timer running "update install" leaves.
func TestInstallRecordsTheCheck(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	u := f.updater()
	result := func() string { return f.store.LoadState().LastCheckResult }
	if _, err := u.Install(context.Background(), "", false); err != nil || result() != "installed 2026.10.1" {
		t.Errorf("install: %v, last check %q", err, result())
	}
	if _, err := u.Install(context.Background(), "", false); err != nil || result() != "current" {
		t.Errorf("install again: %v, last check %q", err, result())
	}
	src, _ := NewSource("http://127.0.0.1:1/")
	u.Source = src
	if _, err := u.Install(context.Background(), "", false); err == nil || !strings.HasPrefix(result(), "error: ") {
		t.Errorf("unreachable source: %v, last check %q", err, result())
	}
	if st := f.store.LoadState(); st.LastCheck.IsZero() || st.LastCheckSource != "http://127.0.0.1:1/" {
		t.Errorf("state %+v", st)
	}
}

// A source URL that answers every path with a web page (a front page or a
// "not found" page sent with 200) is told apart from a bad signature: the
// admin is sent to the URL, not looking for tampering.
func TestSourceServingWebPage(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "\n<!DOCTYPE html>\n<html><body>Welcome</body></html>\n")
	}))
	defer srv.Close()
	src, err := NewSource(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	u := &Updater{Store: f.store, Keys: [][]byte{f.pub}, Source: src, Builtin: "2026.01.1"}
	_, err = u.Install(context.Background(), "", false)
	if !errors.Is(err, ErrNotIndex) || errors.Is(err, defs.ErrBadSignature) ||
		!strings.Contains(err.Error(), srv.URL+"/index.json: not a definitions index: the source answered with a web page") {
		t.Fatalf("install from a web page: %v", err)
	}
	if _, err := f.store.Active(); err == nil {
		t.Error("something was installed")
	}
}

// A forced downgrade is kept as a rollback is: the timer's plain install
// and automatic updates do not put the newer version back; -version does.
func TestForcedDowngradeKept(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1", "2026.11.1")
	u := f.updater()
	ctx := context.Background()
	if _, err := u.Install(ctx, "", false); err != nil || f.active() != "2026.11.1" {
		t.Fatalf("install: %v, active %s", err, f.active())
	}
	if _, err := u.Install(ctx, "2026.10.1", true); err != nil || f.active() != "2026.10.1" {
		t.Fatalf("forced downgrade: %v, active %s", err, f.active())
	}
	if d, err := u.Detect(ctx); err != nil || d.Available {
		t.Errorf("detect after a forced downgrade: %+v %v", d, err)
	}
	if out, err := u.Install(ctx, "", false); err != nil || !out.UpToDate || !strings.Contains(out.Note, "rolled back or downgraded from") || f.active() != "2026.10.1" {
		t.Errorf("plain install after a forced downgrade: %+v %v, active %s", out, err, f.active())
	}
	// A newer release than the one left is offered as usual.
	f.publish("2026.12.1")
	if d, err := u.Detect(ctx); err != nil || !d.Available || d.Newest.Version != "2026.12.1" {
		t.Errorf("detect with a newer release: %+v %v", d, err)
	}
	// A rollback goes back to the version before, the one left.
	if from, to, err := f.store.Rollback(nil); err != nil || from != "2026.10.1" || to != "2026.11.1" || u.rolledBack("2026.11.1") {
		t.Errorf("rollback after a forced downgrade: %s -> %s, %v", from, to, err)
	}
	// Downgraded again, then asked for by name: it comes back, no longer
	// marked.
	if _, err := u.Install(ctx, "2026.10.1", true); err != nil || f.active() != "2026.10.1" || !u.rolledBack("2026.11.1") {
		t.Fatalf("second forced downgrade: %v, active %s", err, f.active())
	}
	if _, err := u.Install(ctx, "2026.11.1", false); err != nil || f.active() != "2026.11.1" || u.rolledBack("2026.11.1") {
		t.Errorf("explicit reinstall: %v, active %s", err, f.active())
	}
}

// resignIndex rewrites the source's index with change applied and signs
// it again with the publisher's key: an index as a publisher could sign it.
func (f *fixture) resignIndex(change func(*Index)) {
	f.t.Helper()
	b, err := os.ReadFile(filepath.Join(f.srcDir, IndexFile))
	if err != nil {
		f.t.Fatal(err)
	}
	ix, err := ParseIndex(b)
	if err != nil {
		f.t.Fatal(err)
	}
	change(ix)
	out, _ := json.MarshalIndent(ix, "", "  ")
	sig, err := defs.Sign(f.priv, "", out, "sclgate-index test")
	if err != nil {
		f.t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.srcDir, IndexFile), out, 0o644)
	os.WriteFile(filepath.Join(f.srcDir, IndexFile+".minisig"), sig, 0o644)
}

// A bundle larger than the free space (less a margin for mail) is refused
// before a byte of it is written: a download must not fill the disk the
// mail spool is on.
func TestDownloadRefusedWhenDiskFull(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	u := f.updater()
	u.statfs = smallDisk(1<<30, 1<<10) // 1 KiB free
	_, err := u.Install(context.Background(), "", false)
	if err == nil || !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "free in "+f.store.Dir()) ||
		!strings.Contains(err.Error(), "free space and run install again") {
		t.Fatalf("install of a bundle larger than the disk: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.store.Dir(), ".download")); len(ents) != 0 {
		t.Errorf("something was written to .download/: %v", ents)
	}
	if f.active() != "" {
		t.Error("something active")
	}
}

// smallDisk is a file system of total bytes with free of them free, for
// Updater.statfs.
func smallDisk(total, free int64) func(string, *syscall.Statfs_t) error {
	return func(_ string, st *syscall.Statfs_t) error {
		*st = syscall.Statfs_t{Bsize: 1, Blocks: uint64(total), Bavail: uint64(free)}
		return nil
	}
}

// The free-space check counts the installed copy the download is written
// into, not only the download (which stays until the copy is in place):
// a bundle whose download fits but whose copy would not is refused before
// a byte is written. An offline install is checked too.
func TestInstallSpaceCountsTheCopy(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	st, err := os.Stat(filepath.Join(f.srcDir, defs.FileName("2026.10.1")))
	if err != nil {
		t.Fatal(err)
	}
	size := st.Size()
	total := 20 * size
	margin := total / 10
	u := f.updater()
	// Room for the download and the margin, not for the copy as well.
	u.statfs = smallDisk(total, size+margin+size/2)
	_, err = u.Install(context.Background(), "", false)
	if !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), fmt.Sprintf("%d for the download and the installed copy", 2*size)) {
		t.Fatalf("download and copy past the free space: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.store.Dir(), ".download")); len(ents) != 0 {
		t.Errorf("something was written to .download/: %v", ents)
	}
	// Offline: the file is already on disk, its copy is what must fit.
	u.statfs = smallDisk(total, size+margin/2)
	p := f.bundle("2026.10.2")
	data, _ := os.ReadFile(p)
	sig, _ := defs.Sign(f.priv, "", data, defs.TrustedComment("2026.10.2", p, time.Now()))
	os.WriteFile(p+".minisig", sig, 0o644)
	_, err = u.InstallFile(context.Background(), p, false)
	if !errors.Is(err, errDiskFull) || !strings.Contains(err.Error(), "for the installed copy") ||
		!strings.Contains(err.Error(), "nothing was installed") {
		t.Fatalf("offline install past the free space: %v", err)
	}
	if f.active() != "" {
		t.Errorf("active %q", f.active())
	}
	// With room for both, it installs.
	u.statfs = smallDisk(total, 2*size+margin+1024)
	if _, err := u.Install(context.Background(), "", false); err != nil || f.active() != "2026.10.1" {
		t.Fatalf("install with room: %v, active %q", err, f.active())
	}
	// Switching back to a version installed intact writes no copy: no
	// room is needed for one.
	if _, err := u.InstallFile(context.Background(), p, false); err != nil || f.active() != "2026.10.2" {
		t.Fatalf("offline install with room: %v, active %q", err, f.active())
	}
	u.statfs = smallDisk(total, 0)
	if _, err := u.Install(context.Background(), "2026.10.1", true); err != nil || f.active() != "2026.10.1" {
		t.Errorf("switch back to an installed version on a full disk: %v, active %q", err, f.active())
	}
}

// A definitions.dir not made yet is on the file system of its nearest
// parent: the check is not skipped for a first install.
func TestCheckSpaceMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not", "yet")
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(filepath.Dir(dir)), &st); err != nil {
		t.Fatal("statfs:", err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if err := checkSpace(dir, free+1, "x", nil); !errors.Is(err, errDiskFull) {
		t.Errorf("more than is free, dir not made yet: %v", err)
	}
}

// A download that meets a full disk removes its partial file (which
// cannot grow, and keeps the disk full) and says so. The partial is a
// link to /dev/full, whose writes fail with ENOSPC as a full file system's
// do.
func TestDownloadOutOfSpaceRemovesPartial(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("no /dev/full (every Linux has it):", err)
		}
		t.Skip("no /dev/full:", err)
	}
	f := newFixture(t)
	f.publish("2026.10.1")
	part := filepath.Join(f.store.Dir(), ".download", defs.FileName("2026.10.1")+".part")
	os.MkdirAll(filepath.Dir(part), 0o755)
	if err := os.Symlink("/dev/full", part); err != nil {
		t.Fatal(err)
	}
	_, err := f.updater().Install(context.Background(), "", false)
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "disk full") ||
		!strings.Contains(err.Error(), "partial download was removed") || strings.Contains(err.Error(), "partial download kept") {
		t.Fatalf("install onto a full disk: %v", err)
	}
	if _, err := os.Lstat(part); !os.IsNotExist(err) {
		t.Errorf("the partial download is still there: %v", err)
	}
	if st := f.store.LoadState(); !strings.Contains(st.LastCheckResult, "disk full") {
		t.Errorf("last check %q", st.LastCheckResult)
	}
}

// A check whose result cannot be recorded (state.json unwritable) is
// logged: update status would show an older check as the last one.
func TestStateNotSavedIsLogged(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	os.MkdirAll(filepath.Join(f.store.Dir(), stateFile, "x"), 0o755) // a directory where state.json goes
	var logs bytes.Buffer
	u := f.updater()
	u.Log = slog.New(slog.NewTextHandler(&logs, nil))
	if _, err := u.Detect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if out, err := u.Install(context.Background(), "", false); err != nil || out.Version != "2026.10.1" {
		t.Fatalf("install: %+v %v", out, err)
	}
	if n := strings.Count(logs.String(), "the result of this update check is not recorded"); n != 2 ||
		!strings.Contains(logs.String(), "state.json") {
		t.Errorf("%d warnings about the unsaved state, want 2 (detect, install):\n%s", n, logs.String())
	}
}

// A source that has a file but not its signature is reached: the error is
// ErrUnsigned, names the missing .minisig and says what to do, never
// "unreachable". The bundle's signature is fetched before the bundle, so
// a missing one costs no download. A missing index is ErrNoIndex; a
// bundle the index offers but the source lacks is ErrNotFound.
func TestMissingFilesOnTheSource(t *testing.T) {
	bundle := defs.FileName("2026.10.1")
	cases := []struct {
		name, remove string
		want         error
		msg          string
	}{
		{"index signature", IndexFile + ".minisig", ErrUnsigned,
			"index.json.minisig: no signature on the source (%s): the index is not signed; publish with sclgate defs publish, or check updates.source"},
		{"bundle signature", bundle + ".minisig", ErrUnsigned,
			bundle + ".minisig: no signature on the source (%s): the bundle is not signed"},
		{"index", IndexFile, ErrNoIndex, "index.json: the source has no index at this address (%s)"},
		{"bundle", bundle, ErrNotFound, "the signed index offers it, but the source does not have it"},
	}
	for _, c := range cases {
		for _, dirSrc := range []bool{false, true} {
			t.Run(c.name+map[bool]string{false: " http", true: " dir"}[dirSrc], func(t *testing.T) {
				f := newFixture(t)
				f.publish("2026.10.1")
				os.Remove(filepath.Join(f.srcDir, c.remove))
				u := f.updater()
				how := "HTTP 404 Not Found"
				if dirSrc {
					u.Source, how = dirSource(f.srcDir), "no such file"
				}
				downloaded := false
				u.Progress = func(done, total int64) { downloaded = true }
				_, err := u.Install(context.Background(), "", false)
				msg := c.msg
				if strings.Contains(msg, "%s") {
					msg = fmt.Sprintf(msg, how)
				}
				if !errors.Is(err, c.want) || errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), msg) {
					t.Errorf("err = %v\nwant %v saying %q", err, c.want, msg)
				}
				if downloaded && c.remove == bundle+".minisig" {
					t.Error("the bundle was downloaded although its signature is missing")
				}
				if f.active() != "" {
					t.Errorf("active version changed to %q", f.active())
				}
			})
		}
	}
}

// install FILE with what is not a bundle says what to give instead: a
// directory or an index is a directory source (-source); a file larger
// than any bundle is refused before it is read into memory.
func TestInstallFileNotABundle(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	u := &Updater{Store: f.store, Keys: [][]byte{f.pub}, Builtin: "1"}
	if _, err := u.InstallFile(context.Background(), f.srcDir, false); err == nil ||
		err.Error() != "update: "+f.srcDir+" is a directory: to install from a directory source, use -source "+f.srcDir {
		t.Errorf("a directory: %v", err)
	}
	ix := filepath.Join(f.srcDir, IndexFile) // signed by the trusted key, with its .minisig beside it
	if _, err := u.InstallFile(context.Background(), ix, false); err == nil ||
		err.Error() != "update: "+ix+" looks like an update index, not a bundle: use -source "+f.srcDir+" (the directory holding it)" {
		t.Errorf("an index: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.tar.gz")
	if err := os.WriteFile(big, []byte{0x1f, 0x8b}, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(big, defs.DefaultMaxSize+1) // sparse: no disk used
	if _, err := u.InstallFile(context.Background(), big, false); !errors.Is(err, defs.ErrFormat) ||
		!strings.Contains(err.Error(), fmt.Sprintf("%d bytes, more than the %d a bundle may have", defs.DefaultMaxSize+1, defs.DefaultMaxSize)) {
		t.Errorf("a file larger than any bundle: %v", err)
	}
	if f.active() != "" {
		t.Errorf("active %q", f.active())
	}
}

// Nothing left to download needs no free space (the whole bundle already
// in its partial file), and the margin is at most a tenth of the file
// system: a small volume of definitions.dir's own stays updatable.
func TestCheckSpaceMargin(t *testing.T) {
	dir := t.TempDir()
	if err := checkSpace(dir, 0, "x", nil); err != nil {
		t.Errorf("nothing to download: %v", err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal("statfs:", err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	if err := checkSpace(dir, free+1, "x", nil); !errors.Is(err, errDiskFull) {
		t.Errorf("more than is free: %v", err)
	}
}

// A FIFO where a file should be, in a directory source or as the file of
// an offline install, is an error at once: opening it waited for a writer
// for ever, and the updater with it, which a reload and serve's shutdown
// wait for (and the command line, deaf to Ctrl-C).
func TestFIFONotWaitedOn(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	ix := filepath.Join(f.srcDir, IndexFile)
	os.Remove(ix)
	if err := syscall.Mkfifo(ix, 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), "sclgate-defs-2026.10.1.tar.gz")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	u := f.updater()
	u.Source = dirSource(f.srcDir)
	errs := notWaitedOn(t, []string{ix, fifo},
		func() error { _, err := u.Install(context.Background(), "", false); return err },
		func() error { _, err := u.InstallFile(context.Background(), fifo, false); return err })
	if err := errs[0]; err == nil || !strings.Contains(err.Error(), ix+": is not a regular file") {
		t.Errorf("a FIFO index in a directory source: %v", err)
	}
	if err := errs[1]; err == nil || !strings.Contains(err.Error(), fifo+": is not a regular file") {
		t.Errorf("install of a FIFO: %v", err)
	}
	if f.active() != "" {
		t.Errorf("active version changed to %q", f.active())
	}
}

// The version in use is mended by a plain install (and detect says so)
// also when the newest offer is one the admin rolled back from: it was
// "up to date", and serve ran on the built-in definitions for good.
func TestRepairAfterRollback(t *testing.T) {
	f, u := installedTwo(t)
	rollBackToDamaged(t, f)
	d, err := u.Detect(context.Background())
	if err != nil || !d.Damaged || !d.Available || d.Newest.Version != "2026.10.1" {
		t.Fatalf("detect: %+v, %v", d, err)
	}
	o, err := u.Install(context.Background(), "", false)
	if err != nil || o.UpToDate || !o.Repaired || o.Version != "2026.10.1" || f.active() != "2026.10.1" {
		t.Fatalf("install: %+v, %v; active %s", o, err, f.active())
	}
	if _, err := defs.ReadFile(f.store.BundlePath("2026.10.1")); err != nil {
		t.Errorf("not mended: %v", err)
	}
	if d, err := u.Detect(context.Background()); err != nil || d.Available || !d.Left {
		t.Errorf("detect after the repair: %+v, %v", d, err)
	}
}

// The store's lock file and the files defs publish reads are not waited
// on either when they are FIFOs.
func TestFIFONotWaitedOnByLockOrPublish(t *testing.T) {
	f := newFixture(t)
	lock := filepath.Join(f.store.Dir(), lockFile)
	os.MkdirAll(f.store.Dir(), 0o755)
	if err := syscall.Mkfifo(lock, 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(t.TempDir(), defs.FileName("2026.10.1"))
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	errs := notWaitedOn(t, []string{lock, fifo},
		func() error { _, err := f.store.Lock(context.Background(), nil); return err },
		func() error { _, err := Publish(f.srcDir, f.priv, "", []string{fifo}); return err })
	if err := errs[0]; err == nil || !strings.Contains(err.Error(), lock+": is not a regular file") {
		t.Errorf("a FIFO lock file: %v", err)
	}
	if err := errs[1]; err == nil || !strings.Contains(err.Error(), fifo+": is not a regular file") {
		t.Errorf("publish of a FIFO: %v", err)
	}
}

// notWaitedOn runs each step in turn and returns their errors, failing
// the test if they do not end within 5 seconds (a FIFO in fifos waited
// on): then it lets the opens waiting on the FIFOs go, so that the test
// ends.
func notWaitedOn(t *testing.T, fifos []string, steps ...func() error) []error {
	t.Helper()
	done := make(chan []error, 1)
	go func() {
		var errs []error
		for _, step := range steps {
			errs = append(errs, step())
		}
		done <- errs
	}()
	select {
	case errs := <-done:
		return errs
	case <-time.After(5 * time.Second):
		for range len(steps) {
			for _, p := range fifos {
				if w, err := os.OpenFile(p, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					w.Close()
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("hung on a FIFO")
		return nil
	}
}

// A damaged version in use that the source cannot mend (it offers only
// a version rolled back from) is an error for detect and a plain install,
// not "up to date": serve runs on the built-in definitions meanwhile.
func TestDamagedNotOffered(t *testing.T) {
	f, u := installedTwo(t)
	rollBackToDamaged(t, f)
	f.resignIndex(func(ix *Index) { // the source now offers only the version left
		ix.Versions = slices.DeleteFunc(ix.Versions, func(o Offer) bool { return o.Version == "2026.10.1" })
	})
	if _, err := u.Detect(context.Background()); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "the version in use, 2026.10.1: its installed copy is damaged") {
		t.Errorf("detect: %v", err)
	}
	if o, err := u.Install(context.Background(), "", false); !errors.Is(err, ErrDamaged) || o.UpToDate {
		t.Errorf("install: %+v, %v", o, err)
	}
}

// A version whose record no longer reads is installed again whole by an
// install of it (the rollback's advice), not refused on the old record.
func TestInstallMendsUnreadableRecord(t *testing.T) {
	f, u := installedTwo(t)
	os.WriteFile(filepath.Join(f.store.Dir(), "2026.10.1", installedFile), []byte("garbage"), 0o644)
	if _, err := u.Install(context.Background(), "2026.10.1", true); err != nil || f.active() != "2026.10.1" {
		t.Fatalf("install -force of a version whose record does not read: %v; active %s", err, f.active())
	}
	// The version in use too: it was "already installed and in use".
	os.WriteFile(filepath.Join(f.store.Dir(), "2026.10.1", installedFile), []byte("garbage"), 0o644)
	if o, err := u.Install(context.Background(), "2026.10.1", true); err != nil || o.Already {
		t.Fatalf("install of the version in use whose record does not read: %+v, %v", o, err)
	}
	if _, err := f.store.Record("2026.10.1"); err != nil {
		t.Errorf("record still does not read: %v", err)
	}
}

// An index.json defs publish cannot read is an error, not "no index":
// taken for none, a published version could change its contents.
func TestPublishUnreadableIndex(t *testing.T) {
	f := newFixture(t)
	ix := filepath.Join(f.srcDir, IndexFile)
	if err := syscall.Mkfifo(ix, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(f.srcDir, f.priv, "", []string{f.bundle("2026.10.1")}); err == nil || !strings.Contains(err.Error(), ix+": is not a regular file") {
		t.Errorf("publish over a FIFO index: %v", err)
	}
}

// A refused bundle leaves no empty source directory behind.
func TestPublishRefusedMakesNoDir(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "g.tar.gz")
	os.WriteFile(junk, []byte("garbage"), 0o644)
	src := filepath.Join(dir, "src")
	f := newFixture(t)
	if _, err := Publish(src, f.priv, "", []string{junk}); err == nil {
		t.Fatal("a garbage bundle was published")
	}
	if _, err := os.Lstat(src); !os.IsNotExist(err) {
		t.Errorf("%s was made: %v", src, err)
	}
}

// A dangling symbolic link as index.json is an index publish cannot read,
// not "no index".
func TestPublishDanglingIndexLink(t *testing.T) {
	f := newFixture(t)
	ix := filepath.Join(f.srcDir, IndexFile)
	if err := os.Symlink(filepath.Join(t.TempDir(), "gone.json"), ix); err != nil {
		t.Fatal(err)
	}
	if _, err := Publish(f.srcDir, f.priv, "", []string{f.bundle("2026.10.1")}); err == nil || !strings.Contains(err.Error(), "which does not exist") {
		t.Errorf("publish over a dangling index link: %v", err)
	}
	if _, err := os.Readlink(ix); err != nil {
		t.Errorf("the link was replaced: %v", err)
	}
}

// installedTwo installs 2026.10.1 and then 2026.10.2 from a fresh source.
func installedTwo(t *testing.T) (*fixture, *Updater) {
	t.Helper()
	f := newFixture(t)
	f.publish("2026.10.1", "2026.10.2")
	u := f.updater()
	for _, v := range []string{"2026.10.1", "2026.10.2"} {
		if _, err := u.Install(context.Background(), v, false); err != nil {
			t.Fatal(err)
		}
	}
	return f, u
}

// rollBackToDamaged rolls back to 2026.10.1 and damages its copy.
func rollBackToDamaged(t *testing.T, f *fixture) {
	t.Helper()
	if _, to, err := f.store.Rollback(nil); err != nil || to != "2026.10.1" {
		t.Fatalf("rollback to %q, %v", to, err)
	}
	os.WriteFile(f.store.BundlePath("2026.10.1"), []byte("junk"), 0o644)
}

// The version in use whose record no longer reads: detect says it is
// damaged (as for a damaged bundle) and a plain install repairs it; detect
// said "up to date" while install went on to install it again.
func TestDetectDamagedRecord(t *testing.T) {
	f, u := installedTwo(t)
	os.WriteFile(filepath.Join(f.store.Dir(), "2026.10.2", installedFile), []byte("junk"), 0o644)
	d, err := u.Detect(context.Background())
	if err != nil || !d.Damaged || !d.Available {
		t.Fatalf("detect: %+v, %v", d, err)
	}
	o, err := u.Install(context.Background(), "", false)
	if err != nil || !o.Repaired || o.Version != "2026.10.2" {
		t.Fatalf("install: %+v, %v", o, err)
	}
	if _, err := f.store.Record("2026.10.2"); err != nil {
		t.Errorf("record after the repair: %v", err)
	}
	if d, err := u.Detect(context.Background()); err != nil || d.Damaged || d.Available {
		t.Errorf("detect after the repair: %+v, %v", d, err)
	}
}

// A directory source given relative is recorded absolute, as a FILE
// install's origin is: status named "src/…" whatever directory it ran in.
func TestDirSourceAbsolute(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "src"), 0o755)
	t.Chdir(dir)
	s, err := NewSource("src")
	if err != nil {
		t.Fatal(err)
	}
	if got := s.String(); got != filepath.Join(dir, "src") {
		t.Errorf("source %q, want %q", got, filepath.Join(dir, "src"))
	}
}

// The file-system errors an admin meets on definitions.dir say what
// usually causes them: another user's files, a read-only mount (a systemd
// unit without ReadWritePaths), a full disk.
func TestFSHint(t *testing.T) {
	for _, c := range []struct {
		errno syscall.Errno
		want  string
	}{
		{syscall.EACCES, "run them as the user serve runs as"},
		{syscall.EROFS, "mounted read-only"},
		{syscall.ENOSPC, "disk full, free space"},
	} {
		err := fsHint(&fs.PathError{Op: "mkdir", Path: "/d/.tmp-1", Err: c.errno})
		if !errors.Is(err, c.errno) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v", c.errno, err)
		}
	}
}

// A genuine, signed bundle that the signed index offers as another
// version (an old one replayed as new, or a publishing slip) is refused
// as such, not as a bad signature: its signature is its own.
func TestIndexOffersBundleAsAnotherVersion(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	f.resignIndex(func(ix *Index) { ix.Versions[0].Version = "2027.01.1" })
	_, err := f.updater().Install(context.Background(), "", false)
	if !errors.Is(err, ErrMismatch) || errors.Is(err, defs.ErrBadSignature) ||
		!strings.Contains(err.Error(), "holds version 2026.10.1, the index says 2027.01.1") {
		t.Fatalf("install: %v", err)
	}
	if f.active() != "" {
		t.Errorf("active %q", f.active())
	}
}

// A source may be named by its index file's path or URL as well as by
// its directory: both name the directory.
func TestSourceNamedByItsIndex(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.10.1")
	for _, s := range []string{f.url + IndexFile, filepath.Join(f.srcDir, IndexFile)} {
		src, err := NewSource(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		u := f.updater()
		u.Source = src
		d, err := u.Detect(context.Background())
		if err != nil || d.Newest.Version != "2026.10.1" {
			t.Errorf("%s: detect %+v, %v", s, d, err)
		}
	}
	// Another file is not a source, and the error says what is.
	if _, err := NewSource(f.bundle("2026.10.2")); err == nil || !strings.Contains(err.Error(), "sclgate update install FILE") {
		t.Errorf("a bundle as source: %v", err)
	}
	// Only a whole last element "index.json" is taken off a URL.
	src, err := NewSource(f.url + "my" + IndexFile)
	if err != nil || !strings.HasSuffix(src.String(), "/my"+IndexFile+"/") {
		t.Errorf("a directory named my%s: %v, %v", IndexFile, src, err)
	}
}

// An offer of a bundle larger than any bundle may be is refused before
// anything is fetched (a download is read whole into memory, in serve
// too), and only that offer: the index still reads.
func TestIndexOfferTooLarge(t *testing.T) {
	f := newFixture(t)
	f.publish("2026.09.1", "2026.10.1")
	f.resignIndex(func(ix *Index) { ix.Versions[0].Size = defs.DefaultMaxSize + 1 }) // 2026.10.1, the newest
	_, err := f.updater().Install(context.Background(), "", false)
	if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "more than the") {
		t.Fatalf("install: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(f.store.Dir(), ".download")); len(ents) != 0 {
		t.Errorf("something was written to .download/: %v", ents)
	}
	if _, err := f.updater().Install(context.Background(), "2026.09.1", false); err != nil || f.active() != "2026.09.1" {
		t.Errorf("the index's other version: %v, active %q", err, f.active())
	}
}
