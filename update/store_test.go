package update

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sclgate/sclgate/defs"
)

func install(t *testing.T, s *Store, v string) {
	t.Helper()
	if err := s.Install(Installed{Version: v, Origin: "test"}, testBundleBytes(t, v), []byte("sig "+v)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // distinct install times
}

// testBundleBytes is a well-formed bundle of version v (unsigned: the
// store takes verified bytes, and checks only that a copy still reads).
func testBundleBytes(t *testing.T, v string) []byte {
	t.Helper()
	var buf bytes.Buffer
	b := &defs.Bundle{Manifest: defs.Manifest{Version: v, Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), TrainingData: "test"},
		Model: []byte("model " + v)}
	if err := defs.Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func active(t *testing.T, s *Store) string {
	t.Helper()
	v, err := s.Active()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestStoreInstallRollback(t *testing.T) {
	s, err := OpenStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Active(); !errors.Is(err, ErrNoneInstalled) {
		t.Fatalf("empty store: %v", err)
	}
	install(t, s, "2026.01.1")
	install(t, s, "2026.02.1")
	install(t, s, "2026.03.1")
	if v := active(t, s); v != "2026.03.1" {
		t.Fatalf("active %s", v)
	}
	if b, err := defs.ReadFile(s.BundlePath("2026.03.1")); err != nil || b.Manifest.Version != "2026.03.1" {
		t.Errorf("bundle %v %v", b, err)
	}

	from, to, err := s.Rollback(nil)
	if err != nil || from != "2026.03.1" || to != "2026.02.1" || active(t, s) != "2026.02.1" {
		t.Fatalf("rollback 1: %s → %s, %v", from, to, err)
	}
	from, to, err = s.Rollback(nil)
	if err != nil || from != "2026.02.1" || to != "2026.01.1" {
		t.Fatalf("rollback 2: %s → %s, %v", from, to, err)
	}
	// Before the first, the built-in definitions: never forth to a
	// version rolled back from.
	from, to, err = s.Rollback(nil)
	if err != nil || from != "2026.01.1" || to != "" {
		t.Fatalf("rollback 3: %s → %q, %v", from, to, err)
	}
	if _, err := s.Active(); !errors.Is(err, ErrNoneInstalled) {
		t.Fatalf("after rollback 3, active: %v", err)
	}
	if l, _ := s.List(); len(l) != 3 {
		t.Errorf("rollback to the built-in definitions removed versions: %v", l)
	}
	// Re-activating a rolled-back version makes it a normal one again;
	// what was in use before it, the built-in definitions, is where a
	// rollback goes.
	if err := s.Activate("2026.03.1"); err != nil {
		t.Fatal(err)
	}
	if _, to, err := s.Rollback(nil); to != "" || err != nil {
		t.Errorf("after re-activation, rollback to %q, %v", to, err)
	}
	if err := s.Activate("2026.01.1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate("2026.02.1"); err != nil {
		t.Fatal(err)
	}
	if _, to, _ := s.Rollback(nil); to != "2026.01.1" {
		t.Errorf("after re-activating 01 then 02, rollback to %q", to)
	}
}

// A rollback from the oldest version left goes to the built-in
// definitions only when they were in use before it: when the version
// before it was pruned, it is refused, naming that version. (Every
// rollback from the last of four installs ended on the built-in
// definitions, older than anything installed.)
func TestRollbackAfterPrune(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	for _, v := range []string{"2027.01.01.1", "2027.01.02.1", "2027.01.03.1", "2027.01.04.1"} {
		install(t, s, v)
		if err := s.Prune(); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []string{"2027.01.03.1", "2027.01.02.1"} {
		if _, to, err := s.Rollback(nil); err != nil || to != want {
			t.Fatalf("rollback to %q, %v; want %s", to, err, want)
		}
	}
	_, to, err := s.Rollback(nil)
	if !errors.Is(err, ErrNoPrevious) || to != "" || !strings.Contains(err.Error(), "2027.01.01.1, in use before it, is no longer installed") ||
		!strings.Contains(err.Error(), "sclgate update install -version 2027.01.01.1 -force") {
		t.Fatalf("rollback past a pruned version: to %q, %v", to, err)
	}
	if v := active(t, s); v != "2027.01.02.1" {
		t.Errorf("a refused rollback switched to %s", v)
	}

	// A record from before Previous was kept: not known, refused.
	p := filepath.Join(s.Dir(), "2027.01.02.1", installedFile)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.Replace(b, []byte(`"previous"`), []byte(`"unknown"`), 1), 0o644)
	if _, _, err := s.Rollback(nil); !errors.Is(err, ErrNoPrevious) || !strings.Contains(err.Error(), "not recorded") {
		t.Fatalf("rollback from a record without previous: %v", err)
	}
}

// Repairing the version in use (its copy damaged, installed again) keeps
// what was in use before it: the rollback from it still goes there. The
// record was written anew without it, and the rollback refused.
func TestRepairKeepsPrevious(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2027.01.01.1")
	os.WriteFile(s.BundlePath("2027.01.01.1"), []byte("garbage"), 0o644)
	install(t, s, "2027.01.01.1")
	if in, err := s.Record("2027.01.01.1"); err != nil || in.Previous != Builtin {
		t.Fatalf("after the repair, previous = %q, %v", in.Previous, err)
	}
	if from, to, err := s.Rollback(nil); err != nil || from != "2027.01.01.1" || to != "" {
		t.Errorf("rollback after the repair: %s → %q, %v", from, to, err)
	}
}

func TestStorePruneKeepsThree(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	for _, v := range []string{"1", "2", "3", "4", "5"} {
		install(t, s, v)
	}
	os.Mkdir(filepath.Join(s.Dir(), ".tmp-6-abc"), 0o755) // an interrupted install
	if err := s.Prune(); err != nil {
		t.Fatal(err)
	}
	list, _ := s.List()
	var got []string
	for _, in := range list {
		got = append(got, in.Version)
	}
	if len(got) != Keep || got[0] != "5" || got[2] != "3" {
		t.Errorf("kept %v", got)
	}
	if _, err := os.Stat(filepath.Join(s.Dir(), ".tmp-6-abc")); err == nil {
		t.Error("leftover temp dir kept")
	}
}

// A download removes the partial downloads abandoned for over a week,
// but not a fresh one, nor the one it resumes.
func TestStorePrunePartials(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	dl := filepath.Join(s.Dir(), ".download")
	os.MkdirAll(dl, 0o755)
	old, fresh, resumed := filepath.Join(dl, "sclgate-defs-6.tar.gz.part"), filepath.Join(dl, "sclgate-defs-7.tar.gz.part"), filepath.Join(dl, "sclgate-defs-8.tar.gz.part")
	week := time.Now().Add(-partialMaxAge - time.Hour)
	for _, p := range []string{old, fresh, resumed} {
		os.WriteFile(p, []byte("abc"), 0o644)
		if p != fresh {
			os.Chtimes(p, week, week)
		}
	}
	s.prunePartials(resumed)
	if _, err := os.Stat(old); err == nil {
		t.Error("partial download abandoned for over a week kept")
	}
	for _, p := range []string{fresh, resumed} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("partial download removed: %v", err)
		}
	}
}

// A crash mid-install leaves a temp directory and the old active version:
// the half-made version is neither listed nor activatable.
func TestStoreHalfInstallInvisible(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "1")
	os.Mkdir(filepath.Join(s.Dir(), "2"), 0o755)
	os.WriteFile(filepath.Join(s.Dir(), "2", BundleFile), []byte("partial"), 0o644)
	if s.Has("2") || s.Activate("2") == nil {
		t.Error("half-installed version usable")
	}
	list, _ := s.List()
	if len(list) != 1 || active(t, s) != "1" {
		t.Errorf("list %v", list)
	}
	install(t, s, "2") // a retry completes it
	if active(t, s) != "2" {
		t.Error("retry did not install")
	}
}

func TestCompareVersions(t *testing.T) {
	cases := []struct {
		a, b string
		want int
	}{
		{"2026.11.9", "2026.11.23", -1},
		{"1.10", "1.9", 1},
		{"1.0", "1.0", 0},
		{"2026.11.23.0512", "2026.11.23.0511", 1},
		{"1.0-rc1", "1.0-rc2", -1},
		{"1.0", "1.0.1", -1},
		// Digit runs of any length: nanosecond stamps past 2^64/10.
		{"1900000000000000000", "1900000000000000001", -1},
		{"99999999999999999999999", "100000000000000000000000", -1},
		// Distinct names are never equal; leading zeros order by text.
		{"2027.1.1", "2027.01.01", 1},
		{"2027.01.01", "2027.1.1", -1},
	}
	for _, c := range cases {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	for _, bad := range []string{"", "..", ".x", "a/b", "active", "x y"} {
		if ValidVersion(bad) {
			t.Errorf("ValidVersion(%q)", bad)
		}
	}
}

// replaceDir swaps a new copy in over an existing directory (a damaged
// install): the new one ends at final, the old one is gone.
func TestReplaceDir(t *testing.T) {
	dir := t.TempDir()
	final, tmp := filepath.Join(dir, "2027.1.1"), filepath.Join(dir, ".tmp-2027.1.1-x")
	os.Mkdir(final, 0o755)
	os.WriteFile(filepath.Join(final, "bundle.tar.gz"), []byte("damaged"), 0o644)
	os.Mkdir(tmp, 0o755)
	os.WriteFile(filepath.Join(tmp, "bundle.tar.gz"), []byte("good"), 0o644)
	if err := replaceDir(tmp, final); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(final, "bundle.tar.gz")); string(b) != "good" {
		t.Errorf("final holds %q", b)
	}
	if _, err := os.Lstat(tmp); !os.IsNotExist(err) {
		t.Errorf("the old copy is still there: %v", err)
	}
	// No final yet: a plain rename.
	os.Mkdir(tmp, 0o755)
	if err := replaceDir(tmp, filepath.Join(dir, "2027.1.2")); err != nil {
		t.Fatal(err)
	}
}

// A switch whose bookkeeping fails (disk full, files another user made)
// fails before the switch: the version in use stays, and so does a
// rollback's. The store's directory is made only by what writes.
func TestActivateFailsBeforeTheSwitch(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "defs")
	s, err := OpenStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("OpenStore made %s: %v", dir, err)
	}
	install(t, s, "2026.01.1")
	install(t, s, "2026.02.1")
	meta := filepath.Join(dir, "2026.01.1", installedFile)
	os.Remove(meta)
	os.Mkdir(meta, 0o755) // unreadable as installed.json
	if err := s.Activate("2026.01.1"); err == nil || !strings.Contains(err.Error(), "nothing was switched") {
		t.Errorf("Activate: %v", err)
	}
	if v := active(t, s); v != "2026.02.1" {
		t.Errorf("active %s after a failed switch, want 2026.02.1", v)
	}
	if _, _, err := s.Rollback(nil); err == nil || !strings.Contains(err.Error(), "rollback to 2026.01.1 refused, 2026.02.1 stays in use: its installed copy is damaged") {
		t.Errorf("Rollback past a damaged version: %v", err)
	}
	if v := active(t, s); v != "2026.02.1" {
		t.Errorf("active %s after a failed rollback, want 2026.02.1", v)
	}
	list, _ := s.List()
	for _, in := range list {
		if in.Version == "2026.02.1" && in.RolledBack {
			t.Error("the version still in use is marked rolled back from")
		}
	}
}

// A rollback to a version whose installed copy no longer reads (a flipped
// byte) is refused, says what to do, and leaves the version in use; it
// did switch, and serve then fell back to the built-in definitions.
func TestRollbackRefusesDamagedCopy(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2026.01.1")
	install(t, s, "2026.02.1")
	p := s.BundlePath("2026.01.1")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	_, to, err := s.Rollback(nil)
	if !errors.Is(err, ErrDamaged) || to != "" ||
		!strings.Contains(err.Error(), "2026.02.1 stays in use") ||
		!strings.Contains(err.Error(), "sclgate update install -version 2026.01.1 -force") {
		t.Fatalf("rollback to a damaged copy: %q %v", to, err)
	}
	if v := active(t, s); v != "2026.02.1" {
		t.Errorf("active %s after a refused rollback, want 2026.02.1", v)
	}
	list, _ := s.List()
	for _, in := range list {
		if in.RolledBack {
			t.Errorf("%s marked rolled back from by a refused rollback", in.Version)
		}
	}
	// Mended (installed again), it can be gone back to.
	if err := s.Install(Installed{Version: "2026.01.1", Origin: "test"}, testBundleBytes(t, "2026.01.1"), []byte("sig")); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate("2026.02.1"); err != nil {
		t.Fatal(err)
	}
	if _, to, err := s.Rollback(nil); err != nil || to != "2026.01.1" {
		t.Errorf("rollback after the repair: %q %v", to, err)
	}
}

// A rollback goes to what the version in use records as in use before
// it, never past it: when that version's record no longer reads (deleted,
// garbage, a directory, a FIFO), the rollback is refused and names it.
// It went to the next readable version in List's order, skipping it.
func TestRollbackDoesNotSkipUnreadableRecord(t *testing.T) {
	for name, damage := range map[string]func(string) error{
		"deleted": os.Remove,
		"garbage": func(p string) error { return os.WriteFile(p, []byte("{garbage"), 0o644) },
		"directory": func(p string) error {
			os.Remove(p)
			return os.Mkdir(p, 0o755)
		},
		"fifo": func(p string) error {
			os.Remove(p)
			return syscall.Mkfifo(p, 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s, _ := OpenStore(t.TempDir())
			for _, v := range []string{"2027.01.01.1", "2027.01.01.2", "2027.01.01.3"} {
				install(t, s, v)
			}
			if err := damage(filepath.Join(s.Dir(), "2027.01.01.2", installedFile)); err != nil {
				t.Fatal(err)
			}
			_, to, err := s.Rollback(nil)
			if err == nil || !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "rollback to 2027.01.01.2 refused, 2027.01.01.3 stays in use") {
				t.Errorf("rollback: to %q, %v", to, err)
			}
			if v := active(t, s); v != "2027.01.01.3" {
				t.Errorf("active %s, want 2027.01.01.3", v)
			}
			if us := s.Unreadables(); len(us) != 1 || us[0].Version != "2027.01.01.2" {
				t.Errorf("Unreadables: %v", us)
			}
		})
	}
}

// A rollback killed between marking the version it leaves and the
// switch leaves that version in use, marked "rolled back from": the mark
// must not make a later rollback skip it.
func TestKilledRollbackMarkIsHarmless(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2027.01.01.1")
	install(t, s, "2027.01.01.2")
	if err := s.setRolledBack("2027.01.01.2", true); err != nil { // the kill
		t.Fatal(err)
	}
	list, _ := s.List()
	for _, in := range list {
		if in.Active && in.RolledBack {
			t.Errorf("the version in use is listed as rolled back from: %+v", in)
		}
	}
	install(t, s, "2027.01.01.3")
	if from, to, err := s.Rollback(nil); err != nil || from != "2027.01.01.3" || to != "2027.01.01.2" {
		t.Errorf("rollback: %s → %s, %v (want 2027.01.01.3 → 2027.01.01.2)", from, to, err)
	}
}

// The version in use whose record does not read: the rollback says to
// install it again, not to remove its directory (which would leave the
// active link dangling); once installed again, what was before it is
// not known, and a rollback goes to the most recently used other version.
func TestRollbackFromUnreadableRecord(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2027.01.01.1")
	install(t, s, "2027.01.01.2")
	os.WriteFile(filepath.Join(s.Dir(), "2027.01.01.2", installedFile), []byte("junk"), 0o644)
	_, _, err := s.Rollback(nil)
	if err == nil || !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "the record of the version in use cannot be read") ||
		!strings.Contains(err.Error(), "sclgate update install -version 2027.01.01.2 ") || strings.Contains(err.Error(), "remove its directory") {
		t.Errorf("rollback: %v", err)
	}
	install(t, s, "2027.01.01.2") // what the advice says
	if from, to, err := s.Rollback(nil); err != nil || from != "2027.01.01.2" || to != "2027.01.01.1" {
		t.Errorf("rollback after the repair: %s → %s, %v", from, to, err)
	}
	// The only version, its record lost and written anew: refused, and
	// not blamed on an older sclgate alone.
	s2, _ := OpenStore(t.TempDir())
	install(t, s2, "2027.01.01.1")
	os.WriteFile(filepath.Join(s2.Dir(), "2027.01.01.1", installedFile), []byte("junk"), 0o644)
	install(t, s2, "2027.01.01.1")
	if _, _, err := s2.Rollback(nil); !errors.Is(err, ErrNoPrevious) || !strings.Contains(err.Error(), "or its record was rewritten after it was damaged") {
		t.Errorf("rollback of the only version, record rewritten: %v", err)
	}
}

// Prune removes what a write killed before its rename left (state.json's
// and a record's temporary files) once it is old enough to be no one's,
// and leaves a fresh one (a write going on now) alone.
func TestPruneRemovesOldTempFiles(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2027.01.01.1")
	old := []string{filepath.Join(s.Dir(), ".state.json.tmp123"), filepath.Join(s.Dir(), "2027.01.01.1", ".installed.json.tmp456")}
	fresh := filepath.Join(s.Dir(), ".state.json.tmp789")
	for _, p := range append(old, fresh) {
		if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	long := time.Now().Add(-partialMaxAge - time.Hour)
	for _, p := range old {
		os.Chtimes(p, long, long)
	}
	s.Prune()
	for _, p := range old {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there: %v", p, err)
		}
	}
	if _, err := os.Lstat(fresh); err != nil {
		t.Errorf("a fresh temporary file was removed: %v", err)
	}
	if v := active(t, s); v != "2027.01.01.1" {
		t.Errorf("active %s", v)
	}
}

// Prune keeps what a rollback goes back through: after 3 → 2 and an
// install of 4, the versions kept are 4, 2 and 1 (a rollback walks 4, 2,
// 1), not 3, which was rolled back from and no rollback reaches.
func TestPruneKeepsRollbackChain(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	for _, v := range []string{"2027.01.01.1", "2027.01.01.2", "2027.01.01.3"} {
		install(t, s, v)
	}
	if _, to, err := s.Rollback(nil); err != nil || to != "2027.01.01.2" {
		t.Fatalf("rollback: %s, %v", to, err)
	}
	install(t, s, "2027.01.01.4")
	s.Prune()
	for _, want := range []string{"2027.01.01.2", "2027.01.01.1"} {
		from, to, err := s.Rollback(nil)
		if err != nil || to != want {
			t.Fatalf("rollback from %s: to %q, %v; want %s", from, to, err, want)
		}
	}
	if s.Has("2027.01.01.3") {
		t.Error("2027.01.01.3, which no rollback reaches, was kept")
	}
}

// cutShortSwitch does what a switch to version from prev does before it
// is cut short (a kill): it records prev as pending, and with linked it
// also switches the link, but writes nothing after that.
func cutShortSwitch(t *testing.T, s *Store, version, prev string, linked bool) {
	t.Helper()
	if err := s.touchInstalled(version, &prev); err != nil {
		t.Fatal(err)
	}
	if linked {
		tmp := filepath.Join(s.Dir(), ".x")
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(s.Dir(), activeLink)); err != nil {
			t.Fatal(err)
		}
	}
}

// A switch cut short after it recorded what was in use (a kill between
// the record and the link) does not change what a rollback from that
// version goes back to: it is pending until the switch is made.
func TestCutShortSwitchKeepsPrevious(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	for _, v := range []string{"2027.01.01.1", "2027.01.01.2", "2027.01.01.3"} {
		install(t, s, v)
	}
	// install -version 2027.01.01.1 -force, killed before the link.
	cutShortSwitch(t, s, "2027.01.01.1", "2027.01.01.3", false)
	for _, want := range []string{"2027.01.01.2", "2027.01.01.1", ""} {
		from, to, err := s.Rollback(nil)
		if err != nil || to != want {
			t.Fatalf("rollback from %s: to %q, %v; want %q", from, to, err, want)
		}
	}
	// A switch that was made, with its record not yet final (killed
	// after the link): the pending previous counts.
	s2, _ := OpenStore(t.TempDir())
	install(t, s2, "2027.01.01.1")
	install(t, s2, "2027.01.01.2")
	cutShortSwitch(t, s2, "2027.01.01.1", "2027.01.01.2", true)
	if _, to, err := s2.Rollback(nil); err != nil || to != "2027.01.01.2" {
		t.Errorf("rollback after a switch whose record was not made final: to %q, %v", to, err)
	}
}

// "builtin" names the built-in definitions in a record: no installed
// version may be called so.
func TestBuiltinIsNotAVersion(t *testing.T) {
	for _, v := range []string{"builtin", "BuiltIn"} {
		if ValidVersion(v) {
			t.Errorf("ValidVersion(%q)", v)
		}
	}
	s, _ := OpenStore(t.TempDir())
	if err := s.Install(Installed{Version: "builtin"}, testBundleBytes(t, "builtin"), nil); err == nil {
		t.Error("a version named builtin was installed")
	}
}

// A switch made whose record was not made final (the write after the
// link failed, or a kill came between): the pending previous counts while
// the version is in use, and is made final when a later switch leaves
// it, so that a rollback back to it and then from it still goes to what
// was before it. It went to the built-in definitions, skipping a version.
func TestPendingPreviousSurvivesLeaving(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	for _, v := range []string{"2027.01.01.1", "2027.01.01.2", "2027.01.01.3"} {
		install(t, s, v)
	}
	// install -version 2027.01.01.1 -force, the record's final write lost.
	cutShortSwitch(t, s, "2027.01.01.1", "2027.01.01.3", true)
	install(t, s, "2027.01.01.4")
	for _, want := range []string{"2027.01.01.1", "2027.01.01.3"} {
		from, to, err := s.Rollback(nil)
		if err != nil || to != want {
			t.Fatalf("rollback from %s: to %q, %v; want %s", from, to, err, want)
		}
	}
}

// A forced downgrade marks the version it leaves as part of the switch:
// marked after it, a kill between left it unmarked, and the timer's plain
// install put it back. A version left by an upgrade is not marked.
func TestDowngradeMarkedWithTheSwitch(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2027.01.01.1")
	install(t, s, "2027.01.01.3")
	if err := s.Activate("2027.01.01.1"); err != nil { // what install -force does
		t.Fatal(err)
	}
	if in, _ := s.Record("2027.01.01.3"); !in.DowngradedFrom {
		t.Errorf("the version a downgrade left is not marked: %+v", in)
	}
	if err := s.Activate("2027.01.01.3"); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Record("2027.01.01.1"); in.DowngradedFrom || in.RolledBack {
		t.Errorf("the version an upgrade left is marked: %+v", in)
	}
	if in, _ := s.Record("2027.01.01.3"); in.DowngradedFrom {
		t.Errorf("the version made active is still marked: %+v", in)
	}
}

// A switch cut short before the link keeps the marks of the version it
// was switching to (rolled back or downgraded from): cleared before the
// switch, the timer's plain install put that version back. A mark left on
// the version still in use by a cut-short downgrade is not shown; a
// switch made clears the marks of the version it makes active.
func TestCutShortSwitchKeepsMarks(t *testing.T) {
	s, _ := OpenStore(t.TempDir())
	install(t, s, "2027.01.01.1")
	install(t, s, "2027.01.01.2")
	if _, to, err := s.Rollback(nil); err != nil || to != "2027.01.01.1" {
		t.Fatalf("rollback: %s, %v", to, err)
	}
	cutShortSwitch(t, s, "2027.01.01.2", "2027.01.01.1", false) // install -version .2, killed before the link
	if in, _ := s.Record("2027.01.01.2"); !in.RolledBack {
		t.Errorf("the mark of the version left by a rollback was cleared by a switch that was not made: %+v", in)
	}
	// A downgrade to .1 from .3, killed after the mark on .3.
	install(t, s, "2027.01.01.3")
	s.mark("2027.01.01.3", func(in *Installed) { in.DowngradedFrom = true })
	list, _ := s.List()
	for _, in := range list {
		if in.Active && (in.DowngradedFrom || in.RolledBack) {
			t.Errorf("the version in use is shown as left: %+v", in)
		}
	}
	// A switch made clears the marks of the version made active.
	if err := s.Activate("2027.01.01.2"); err != nil {
		t.Fatal(err)
	}
	if in, _ := s.Record("2027.01.01.2"); in.RolledBack || in.DowngradedFrom {
		t.Errorf("the version made active keeps a mark: %+v", in)
	}
}
