package update

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/safeio"
)

// Names inside definitions.dir.
const (
	activeLink    = "active"
	stateFile     = "state.json"
	BundleFile    = "bundle.tar.gz"
	SigFile       = "bundle.tar.gz.minisig"
	installedFile = "installed.json"
	// Keep is how many versions stay installed: the active one and the
	// ones a rollback can go back to.
	Keep = 3
)

// Sentinel errors.
var (
	ErrNoPrevious    = errors.New("nothing to roll back to")
	ErrNoneInstalled = errors.New("no definitions installed (the built-in definitions are in use)")
	// ErrDamaged: an installed version's copy no longer reads (a disk
	// error, a hand edit), so it is not made active.
	ErrDamaged    = errors.New("its installed copy is damaged")
	ErrBadVersion = errors.New("bad version string")
)

// Store is one definitions.dir.
type Store struct {
	dir string
}

// Installed describes one installed version.
type Installed struct {
	Version     string    `json:"version"`
	InstalledAt time.Time `json:"installed_at"`
	Origin      string    `json:"origin"`  // the source URL, directory or file it came from
	Created     time.Time `json:"created"` // when the definitions were built (manifest)
	// RolledBack is set on a version a rollback left: further rollbacks
	// go back past it, never forth to it. Activating it clears the mark.
	RolledBack bool `json:"rolled_back,omitempty"`
	// DowngradedFrom is set on a version a forced downgrade left: plain
	// and automatic installs do not put it back, as after a rollback, but
	// a rollback still goes back to it (it is the version before).
	// Activating it clears the mark.
	DowngradedFrom bool `json:"downgraded_from,omitempty"`
	// Previous is what was in use when this version was last made active
	// other than by a rollback: another version, or Builtin. A rollback
	// from the oldest version left goes there: to the built-in
	// definitions only when they were in use before it, not when the
	// versions before it were pruned (the last 3 are kept). Empty in
	// records older than the field: not known.
	Previous string `json:"previous,omitempty"`
	Active   bool   `json:"-"`
}

// State is what serve and "update detect" remember between runs.
type State struct {
	LastCheck       time.Time `json:"last_check"`
	LastCheckResult string    `json:"last_check_result"`
	LastCheckSource string    `json:"last_check_source,omitempty"`
}

// OpenStore opens (creating if need be) a definitions directory.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("update: definitions.dir is not set")
	}
	// Not made here: a command that only reads (update status), run as
	// root, would leave a directory the service user cannot write to.
	// Lock and SaveState make it, as the user who writes.
	return &Store{dir: dir}, nil
}

// mkdir makes the store's directory if it is missing.
func (s *Store) mkdir() error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("update: %w", fsHint(err))
	}
	return nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// ValidVersion reports whether v is usable as a version: it names a
// directory, so no separators, no dots-only, no leading dot, at most 64
// characters of letters, digits, '.', '-', '_', '+'.
func ValidVersion(v string) bool {
	if v == "" || len(v) > 64 || v[0] == '.' || v == activeLink {
		return false
	}
	for _, r := range v {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune(".-_+", r)) {
			return false
		}
	}
	return true
}

// CompareVersions orders version strings: runs of digits compare as
// numbers, everything else as text, so "2026.11.9" < "2026.11.23" and
// "1.10" > "1.9".
func CompareVersions(a, b string) int {
	for a != "" && b != "" {
		ad, ar := leadingRun(a)
		bd, br := leadingRun(b)
		if isDigits(ad) && isDigits(bd) {
			an, _ := strconv.ParseUint(strings.TrimLeft(ad, "0")+"0", 10, 64)
			bn, _ := strconv.ParseUint(strings.TrimLeft(bd, "0")+"0", 10, 64)
			if an != bn {
				if an < bn {
					return -1
				}
				return 1
			}
		} else if c := strings.Compare(ad, bd); c != 0 {
			return c
		}
		a, b = ar, br
	}
	return strings.Compare(a, b)
}

func leadingRun(s string) (run, rest string) {
	digit := s[0] >= '0' && s[0] <= '9'
	i := 1
	for i < len(s) && (s[i] >= '0' && s[i] <= '9') == digit {
		i++
	}
	return s[:i], s[i:]
}

func isDigits(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' }

// Active returns the active version, or ErrNoneInstalled.
func (s *Store) Active() (string, error) {
	target, err := os.Readlink(filepath.Join(s.dir, activeLink))
	if errors.Is(err, fs.ErrNotExist) {
		return "", ErrNoneInstalled
	}
	if err != nil {
		return "", fmt.Errorf("update: %w", err)
	}
	v := filepath.Base(target)
	if !ValidVersion(v) {
		return "", fmt.Errorf("update: %s points to %q: %w", filepath.Join(s.dir, activeLink), target, ErrBadVersion)
	}
	return v, nil
}

// BundlePath is the bundle file of an installed version.
func (s *Store) BundlePath(version string) string {
	return filepath.Join(s.dir, version, BundleFile)
}

// List returns the installed versions, newest install first.
func (s *Store) List() ([]Installed, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // nothing installed yet
	}
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	active, _ := s.Active()
	var out []Installed
	for _, e := range ents {
		if !e.IsDir() || !ValidVersion(e.Name()) {
			continue
		}
		b, err := safeio.ReadFile(filepath.Join(s.dir, e.Name(), installedFile), maxRecord)
		if err != nil {
			continue // not a complete install
		}
		var in Installed
		if json.Unmarshal(b, &in) != nil || in.Version != e.Name() {
			continue
		}
		in.Active = in.Version == active
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Installed) int { return b.InstalledAt.Compare(a.InstalledAt) })
	return out, nil
}

// Has reports whether version is installed.
func (s *Store) Has(version string) bool {
	_, err := os.Stat(filepath.Join(s.dir, version, installedFile))
	return err == nil
}

// Install writes a verified bundle and its signature as version, then
// makes it active. The caller has checked the signature and checksums;
// Install only puts the bytes in place, durably and atomically.
func (s *Store) Install(in Installed, bundle, sig []byte) error {
	if !ValidVersion(in.Version) {
		return fmt.Errorf("update: version %q: %w", in.Version, ErrBadVersion)
	}
	if err := s.mkdir(); err != nil {
		return err
	}
	final := filepath.Join(s.dir, in.Version)
	old, recErr := s.Record(in.Version)
	if recErr != nil || !s.holds(in.Version, bundle) {
		// Not installed, its copy differs from this verified bundle
		// (damaged after its install), or its record does not read:
		// written whole, then renamed in.
		tmp := filepath.Join(s.dir, ".tmp-"+in.Version+"-"+randHex())
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return fmt.Errorf("update: %w", err)
		}
		if recErr == nil && in.Previous == "" {
			// A repair of an installed copy keeps what was in use before
			// it: a rollback from it goes there still.
			in.Previous = old.Previous
		}
		meta, _ := json.MarshalIndent(in, "", "  ")
		err := writeSynced(filepath.Join(tmp, BundleFile), bundle)
		if err == nil {
			err = writeSynced(filepath.Join(tmp, SigFile), sig)
		}
		if err == nil {
			err = writeSynced(filepath.Join(tmp, installedFile), meta)
		}
		if err == nil {
			err = safeio.SyncDir(tmp)
		}
		if err == nil {
			err = replaceDir(tmp, final)
		}
		if err != nil {
			os.RemoveAll(tmp)
			return fmt.Errorf("update: install %s: %w", in.Version, fsHint(err))
		}
		if err := safeio.SyncDir(s.dir); err != nil {
			return fmt.Errorf("update: install %s: %w", in.Version, err)
		}
	}
	return s.Activate(in.Version)
}

// replaceDir puts the directory tmp at final. A final that exists (a
// damaged copy, which "active" may point to, or a half-made leftover) is
// swapped with tmp in one step (renameat2 RENAME_EXCHANGE), so that final
// is never missing, and then removed from tmp's name; where the file
// system cannot exchange, it is removed first.
func replaceDir(tmp, final string) error {
	if _, err := os.Lstat(final); err != nil {
		return os.Rename(tmp, final)
	}
	if err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE); err == nil {
		return os.RemoveAll(tmp) // the old copy, now under tmp's name
	}
	os.RemoveAll(final)
	return os.Rename(tmp, final)
}

// holds reports whether the installed version's bundle is bundle.
func (s *Store) holds(version string, bundle []byte) bool {
	b, err := safeio.ReadFile(s.BundlePath(version), defs.DefaultMaxSize)
	return err == nil && bytes.Equal(b, bundle)
}

// maxRecord bounds what is read of installed.json and state.json, a few
// hundred bytes each.
const maxRecord = 1 << 20

// Builtin is Installed.Previous for a version installed while the
// built-in definitions were in use.
const Builtin = "builtin"

// Activate makes an installed version the active one: a new symlink is
// renamed over "active", which is atomic.
func (s *Store) Activate(version string) error {
	// What is in use now is what a rollback from version goes back to.
	prev, err := s.Active()
	switch {
	case errors.Is(err, ErrNoneInstalled):
		prev = Builtin
	case err != nil:
		prev = "" // not known: the active link is damaged
	}
	return s.activate(version, &prev)
}

// activate makes version active, recording previous as its Previous
// unless previous is nil (a rollback, which goes back along the record)
// or version itself (made active again: its record stays).
func (s *Store) activate(version string, previous *string) error {
	if !ValidVersion(version) || !s.Has(version) {
		return fmt.Errorf("update: version %q is not installed", version)
	}
	// Recorded before the switch, so that a failure here (disk full, a
	// directory another user made) leaves everything as it was, rather
	// than report a failure after the switch.
	if err := s.touchInstalled(version, previous); err != nil {
		return fmt.Errorf("update: activate %s: nothing was switched: %w", version, fsHint(err))
	}
	tmp := filepath.Join(s.dir, ".active-"+randHex())
	if err := os.Symlink(version, tmp); err != nil {
		return fmt.Errorf("update: activate %s: %w", version, err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, activeLink)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("update: activate %s: %w", version, err)
	}
	// The switch is made: an error syncing the directory now would only
	// mean a crash might bring the old version back, which is whole too.
	// Reported as a failure, it would be taken for "nothing switched".
	safeio.SyncDir(s.dir)
	return nil
}

// touchInstalled records version as the most recently made active, so
// that List's order is the order a rollback walks back through, and
// with what was in use before it (see activate).
func (s *Store) touchInstalled(version string, previous *string) error {
	in, err := s.Record(version)
	if err != nil {
		return err
	}
	in.InstalledAt = time.Now().UTC()
	in.RolledBack, in.DowngradedFrom = false, false
	if previous != nil && *previous != version {
		in.Previous = *previous
	}
	meta, _ := json.MarshalIndent(in, "", "  ")
	return safeio.WriteFile(filepath.Join(s.dir, version, installedFile), meta, 0o644)
}

// Record reads an installed version's record.
func (s *Store) Record(version string) (Installed, error) {
	var in Installed
	p := filepath.Join(s.dir, version, installedFile)
	b, err := safeio.ReadFile(p, maxRecord)
	if err != nil {
		return in, fmt.Errorf("update: %w", err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("update: %s: %w", p, err)
	}
	return in, nil
}

// Rollback makes the version that was active before the current one
// active again, and returns both. When no other installed version is
// left to go back to and the built-in definitions were in use before the
// current one (the first install's), it goes back to them: it removes
// the active link, and to is "". When the version before was pruned, it
// is refused with ErrNoPrevious.
func (s *Store) Rollback() (from, to string, err error) {
	from, err = s.Active()
	if err != nil {
		return "", "", err
	}
	list, err := s.List()
	if err != nil {
		return "", "", err
	}
	var prev *Installed
	for i := range list {
		// List is newest activation first: the first other version that
		// was not itself rolled back from is the one before.
		if in := &list[i]; in.Version != from && !in.RolledBack {
			prev = in
			break
		}
	}
	if prev == nil {
		// Going past a version whose record no longer reads would skip
		// what may be the one the admin means to go back to.
		if v := s.unreadable(list); v != "" {
			return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %s is installed but %s cannot be read (%w): install it again with sclgate update install -version %s -force, or remove its directory to roll back past it",
				from, v, filepath.Join(s.dir, v, installedFile), ErrDamaged, v)
		}
		return s.rollbackToOldest(from, list)
	}
	// Checked as status and install check the version in use: switching
	// to a copy that does not read would have serve fall back to the
	// built-in definitions while the rollback reported success.
	if _, err := defs.ReadFile(s.BundlePath(prev.Version)); err != nil {
		return from, "", fmt.Errorf("update: rollback to %s refused, %s stays in use: %w (%w): to go back to it, install it again with sclgate update install -version %s -force (or update install -force FILE)",
			prev.Version, from, ErrDamaged, err, prev.Version)
	}
	if err := s.setRolledBack(from, true); err != nil {
		return "", "", fmt.Errorf("update: rollback: nothing was switched: %w", fsHint(err))
	}
	if err := s.activate(prev.Version, nil); err != nil {
		s.setRolledBack(from, false) // still the active one
		return "", "", err
	}
	return from, prev.Version, nil
}

// unreadable returns a version directory List left out, one whose
// installed.json does not read, or "".
func (s *Store) unreadable(list []Installed) string {
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if e.IsDir() && ValidVersion(e.Name()) && !slices.ContainsFunc(list, func(in Installed) bool { return in.Version == e.Name() }) {
			return e.Name()
		}
	}
	return ""
}

// rollbackToOldest rolls back from the oldest version left, from: to the
// built-in definitions if they were in use before it, else nowhere (the
// version before was pruned, or is not known), saying how to go on.
func (s *Store) rollbackToOldest(from string, list []Installed) (string, string, error) {
	var before string
	for _, in := range list {
		if in.Version == from {
			before = in.Previous
		}
	}
	switch {
	case before == Builtin:
		return s.deactivate(from)
	case before == "":
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: what was in use before it is not recorded (it was installed by an older sclgate); sclgate update status lists the installed versions, and sclgate update install -version V switches to one (with -force if V is older)",
			from, ErrNoPrevious)
	case s.Has(before):
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: %s, in use before it, was itself rolled back from; sclgate update install -version %s -force switches to it",
			from, ErrNoPrevious, before, before)
	default:
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: %s, in use before it, is no longer installed (the last %d are kept); sclgate update install -version %s -force installs it again (offline: sclgate update install -force FILE, with its bundle file)",
			from, ErrNoPrevious, before, Keep, before)
	}
}

// deactivate makes the built-in definitions the ones in use again,
// leaving from installed and marked as rolled back from (so that
// automatic updates do not bring it back).
func (s *Store) deactivate(from string) (string, string, error) {
	if err := s.setRolledBack(from, true); err != nil {
		return "", "", fmt.Errorf("update: rollback: nothing was switched: %w", fsHint(err))
	}
	if err := os.Remove(filepath.Join(s.dir, activeLink)); err != nil {
		s.setRolledBack(from, false) // still the active one
		return "", "", fmt.Errorf("update: rollback: nothing was switched: %w", fsHint(err))
	}
	safeio.SyncDir(s.dir)
	return from, "", nil
}

func (s *Store) setRolledBack(version string, rolledBack bool) error {
	return s.mark(version, func(in *Installed) { in.RolledBack = rolledBack })
}

func (s *Store) setDowngradedFrom(version string) error {
	return s.mark(version, func(in *Installed) { in.DowngradedFrom = true })
}

// mark changes version's installed.json with set.
func (s *Store) mark(version string, set func(*Installed)) error {
	p := filepath.Join(s.dir, version, installedFile)
	b, err := safeio.ReadFile(p, maxRecord)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	var in Installed
	if err := json.Unmarshal(b, &in); err != nil {
		return fmt.Errorf("update: %s: %w", p, err)
	}
	set(&in)
	meta, _ := json.MarshalIndent(in, "", "  ")
	return safeio.WriteFile(p, meta, 0o644)
}

// partialMaxAge is how long a partial download in .download/ is kept for
// a later install to resume: one left longer was abandoned (its version
// was superseded, or its source gone), and would otherwise stay forever.
const partialMaxAge = 7 * 24 * time.Hour

// Prune removes installed versions beyond the newest Keep (never the
// active one), leftovers of interrupted installs, and partial downloads
// not resumed for partialMaxAge.
func (s *Store) Prune() error {
	list, err := s.List()
	if err != nil {
		return err
	}
	kept := 0
	for _, in := range list {
		if in.Active || kept < Keep {
			kept++
			continue
		}
		os.RemoveAll(filepath.Join(s.dir, in.Version))
	}
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".active-") {
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
	dl := filepath.Join(s.dir, ".download")
	ents, _ = os.ReadDir(dl)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > partialMaxAge {
			os.Remove(filepath.Join(dl, e.Name()))
		}
	}
	return nil
}

// LoadState reads state.json; a missing file is the zero State.
func (s *Store) LoadState() State {
	var st State
	if b, err := safeio.ReadFile(filepath.Join(s.dir, stateFile), maxRecord); err == nil {
		json.Unmarshal(b, &st)
	}
	return st
}

// SaveState writes state.json atomically.
func (s *Store) SaveState(st State) error {
	if err := s.mkdir(); err != nil {
		return err
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	p := filepath.Join(s.dir, stateFile)
	if err := safeio.WriteFile(p, b, 0o644); err != nil {
		return fmt.Errorf("update: record the check in %s: %w", p, fsHint(err))
	}
	return nil
}

func randHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
