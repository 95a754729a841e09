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
	// from it goes there: to the built-in definitions only when they
	// were in use before it, not when the versions before it were pruned
	// (the last 3 are kept). Empty in records older than the field: not
	// known.
	Previous string `json:"previous,omitempty"`
	// PendingPrevious is Previous as a switch to this version records it
	// before the switch (so that a failure to record leaves nothing
	// switched): it counts only if the switch was made, that is when
	// this version is the active one (Record applies it). A switch cut
	// short (a kill, a failed rename) leaves Previous as it was.
	PendingPrevious string `json:"pending_previous,omitempty"`
	Active          bool   `json:"-"`
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
	// "builtin" stands for the built-in definitions in a record's
	// previous (Builtin): a version so named would be taken for them.
	if v == "" || len(v) > 64 || v[0] == '.' || v == activeLink || strings.EqualFold(v, Builtin) {
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
// numbers, of any length, everything else as text, so "2026.11.9" <
// "2026.11.23" and "1.10" > "1.9". Versions that differ only in leading
// zeros ("2027.1.1", "2027.01.01") come in text order: distinct names
// are never equal.
func CompareVersions(a, b string) int {
	oa, ob := a, b
	for a != "" && b != "" {
		ad, ar := leadingRun(a)
		bd, br := leadingRun(b)
		if isDigits(ad) && isDigits(bd) {
			an, bn := strings.TrimLeft(ad, "0"), strings.TrimLeft(bd, "0")
			if len(an) != len(bn) {
				if len(an) < len(bn) {
					return -1
				}
				return 1
			}
			if c := strings.Compare(an, bn); c != 0 {
				return c
			}
		} else if c := strings.Compare(ad, bd); c != 0 {
			return c
		}
		a, b = ar, br
	}
	if c := strings.Compare(a, b); c != 0 {
		return c
	}
	return strings.Compare(oa, ob)
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
		in, err := s.record(e.Name(), active)
		if err != nil {
			continue // not a complete install, or damaged: see Unreadables
		}
		in.Active = in.Version == active
		if in.Active {
			// The mark of a rollback or downgrade killed before its
			// switch, or of a switch to it killed before settle: the
			// version in use is not one the admin left.
			in.RolledBack, in.DowngradedFrom = false, false
		}
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
	if s.needsCopy(in.Version, bundle) {
		// Not installed, its copy differs from this verified bundle
		// (damaged after its install), or its record does not read:
		// written whole, then renamed in.
		tmp := filepath.Join(s.dir, ".tmp-"+in.Version+"-"+randHex())
		if err := os.Mkdir(tmp, 0o755); err != nil {
			return fmt.Errorf("update: install %s: nothing was switched: %w", in.Version, fsHint(err))
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
			return fmt.Errorf("update: install %s: nothing was switched: %w", in.Version, fsHint(err))
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
	err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_EXCHANGE)
	if err == nil {
		return os.RemoveAll(tmp) // the old copy, now under tmp's name
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP) {
		// A disk error, not a file system that cannot exchange: final
		// stays as it is.
		return err
	}
	// Moved aside in one step, not removed in place (a kill part-way
	// would leave a half-removed version under its name); what is aside
	// starts with ".tmp-" and is swept by Prune if the removal is cut.
	aside := tmp + "-old"
	if err := os.Rename(final, aside); err != nil {
		return err
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	return os.RemoveAll(aside)
}

// needsCopy reports whether Install of bundle as version writes a copy:
// it is not installed, its copy differs (damaged after its install), or
// its record does not read.
func (s *Store) needsCopy(version string, bundle []byte) bool {
	_, err := s.Record(version)
	return err != nil || !s.holds(version, bundle)
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
	if prev != version && ValidVersion(prev) {
		// Marked as part of the switch, before it: a downgrade marked
		// after it is not marked when a kill comes between, and the
		// timer's plain install then undoes it.
		downgrade := CompareVersions(version, prev) < 0
		if in, err := s.Record(prev); err == nil && (in.RolledBack || in.DowngradedFrom != downgrade) {
			// A forced downgrade is kept as a rollback is: the version
			// left is marked, so that plain and automatic installs do
			// not put it back (-version, or a rollback, still does).
			// Otherwise prev, in use until now, is neither rolled back
			// nor downgraded from: such a mark is that of a switch
			// killed before it was made, and a rollback would refuse
			// to go back to it.
			if err := s.mark(prev, func(in *Installed) { in.RolledBack, in.DowngradedFrom = false, downgrade }); err != nil {
				return fmt.Errorf("update: activate %s: nothing was switched: %w", version, fsHint(err))
			}
			err := s.activate(version, &prev)
			if err != nil {
				s.mark(prev, func(p *Installed) { p.RolledBack, p.DowngradedFrom = in.RolledBack, in.DowngradedFrom })
			}
			return err
		}
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
	// The version left: its record made final first (what was in use
	// before it, pending while a kill could still come between its own
	// switch and the record), since once it is no longer active a pending
	// value no longer counts.
	if cur, err := s.Active(); err == nil && cur != version {
		if err := s.settle(cur, false); err != nil {
			return fmt.Errorf("update: activate %s: nothing was switched: %w", version, fsHint(err))
		}
	}
	// Recorded before the switch, so that a failure here (disk full, a
	// directory another user made) leaves everything as it was, rather
	// than report a failure after the switch.
	recPath := filepath.Join(s.dir, version, installedFile)
	old, _ := safeio.ReadFile(recPath, maxRecord)
	if err := s.touchInstalled(version, previous); err != nil {
		return fmt.Errorf("update: activate %s: nothing was switched: %w", version, fsHint(err))
	}
	undo := func() {
		if old != nil {
			safeio.WriteFile(recPath, old, 0o644)
		}
	}
	tmp := filepath.Join(s.dir, ".active-"+randHex())
	if err := os.Symlink(version, tmp); err != nil {
		undo()
		return fmt.Errorf("update: activate %s: nothing was switched: %w", version, fsHint(err))
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, activeLink)); err != nil {
		os.Remove(tmp)
		undo()
		return fmt.Errorf("update: activate %s: nothing was switched: %w", version, fsHint(err))
	}
	// The switch is made: an error syncing the directory now would only
	// mean a crash might bring the old version back, which is whole too.
	// Reported as a failure, it would be taken for "nothing switched".
	safeio.SyncDir(s.dir)
	// The pending previous made final and the marks cleared (Record
	// applies the first meanwhile, List hides the second for the active
	// version, and the next switch away from version does both first).
	s.settle(version, true)
	return nil
}

// settle rewrites the record of version, the active one, with its
// pending previous made final (see Installed.PendingPrevious) and, with
// clearMarks (after a switch to it), no mark of having been rolled back
// or downgraded from. Before a switch away from version only the first
// is done: the marks are the switch's own. Nothing is written when
// nothing would change; a record that does not read is left to Record's
// callers to report.
func (s *Store) settle(version string, clearMarks bool) error {
	p := filepath.Join(s.dir, version, installedFile)
	b, err := safeio.ReadFile(p, maxRecord)
	if err != nil {
		return nil
	}
	var in Installed
	if json.Unmarshal(b, &in) != nil || in.Version != version {
		return nil
	}
	marked := clearMarks && (in.RolledBack || in.DowngradedFrom)
	if in.PendingPrevious == "" && !marked {
		return nil
	}
	if in.PendingPrevious != "" {
		in.Previous, in.PendingPrevious = in.PendingPrevious, ""
	}
	if clearMarks {
		in.RolledBack, in.DowngradedFrom = false, false
	}
	meta, _ := json.MarshalIndent(in, "", "  ")
	return safeio.WriteFile(p, meta, 0o644)
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
	// Its marks (rolled back or downgraded from) are cleared by settle,
	// after the switch: cleared before it, a switch cut short would let
	// the timer's plain install put back a version the admin left.
	in.PendingPrevious = "" // a rollback's switch: Previous stays
	if previous != nil && *previous != version {
		in.PendingPrevious = *previous
	}
	meta, _ := json.MarshalIndent(in, "", "  ")
	return safeio.WriteFile(filepath.Join(s.dir, version, installedFile), meta, 0o644)
}

// Record reads an installed version's record.
func (s *Store) Record(version string) (Installed, error) {
	active, _ := s.Active()
	return s.record(version, active)
}

// record is Record with the active version already read.
func (s *Store) record(version, active string) (Installed, error) {
	var in Installed
	p := filepath.Join(s.dir, version, installedFile)
	b, err := safeio.ReadFile(p, maxRecord)
	if err != nil {
		return in, fmt.Errorf("update: %w", err)
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return in, fmt.Errorf("update: %s: %w", p, err)
	}
	if in.Version != version {
		return in, fmt.Errorf("update: %s names version %q, not %s", p, in.Version, version)
	}
	if in.PendingPrevious != "" {
		// Every way to make a version active rewrites its record first
		// (touchInstalled), so a pending previous on the active version
		// is that of the switch that made it so.
		if active == version {
			in.Previous = in.PendingPrevious
		}
		in.PendingPrevious = ""
	}
	return in, nil
}

// Rollback makes the version that was active before the current one
// active again, and returns both. "Before" is what the current version's
// record says was in use when it was installed or switched to (so a
// rollback undoes the last switch, and never skips back past a version
// whose record is damaged or was pruned); for a record that does not say
// (one written by an older sclgate, or rewritten after it was damaged),
// the most recently used other version not itself rolled back from.
// When that is the built-in definitions, it removes the active link, and
// to is "". When the version before is no longer installed, or cannot be
// used (usable, when not nil, says why this build cannot use a bundle: see
// Updater.UsableHere), it is refused and says why and what to do.
func (s *Store) Rollback(usable func(*defs.Bundle) error) (from, to string, err error) {
	from, err = s.Active()
	if err != nil {
		return "", "", fmt.Errorf("update: rollback: %w", err)
	}
	rec, err := s.Record(from)
	if err != nil {
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: the record of the version in use cannot be read (%w: %w): install it again with sclgate update install -version %s (or update install FILE, with its bundle file); what was in use before it is then no longer known, and a rollback goes back to the most recently used other version",
			from, ErrDamaged, err, from)
	}
	before := rec.Previous
	if before == "" {
		list, err := s.List()
		if err != nil {
			return "", "", err
		}
		for i := range list {
			// List is newest activation first: the first other version
			// that was not itself rolled back from.
			if in := &list[i]; in.Version != from && !in.RolledBack {
				before = in.Version
				break
			}
		}
		if before == "" {
			if us := s.Unreadables(); len(us) > 0 {
				v := us[0].Version
				// Going past a version whose record no longer reads
				// would skip what may be the one the admin means.
				return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %s is installed but %s cannot be read (%w), and %s's record does not say what was in use before it: install %s again with sclgate update install -version %s -force to switch to it, or remove its directory to roll back past it",
					from, v, filepath.Join(s.dir, v, installedFile), ErrDamaged, from, v, v)
			}
			return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: what was in use before it is not recorded (it was installed by an older sclgate, or its record was rewritten after it was damaged), and no other installed version is left to go back to; sclgate update status lists the installed versions, and sclgate update install -version V switches to one (with -force if V is older)",
				from, ErrNoPrevious)
		}
	}
	if before == Builtin {
		return s.deactivate(from)
	}
	if before == from || !ValidVersion(before) {
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: its record names %q as in use before it; sclgate update install -version V switches to another version",
			from, ErrNoPrevious, before)
	}
	if _, err := os.Lstat(filepath.Join(s.dir, before)); err != nil {
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: %s, in use before it, is no longer installed (the last %d are kept); sclgate update install -version %s -force installs it again (offline: sclgate update install -force FILE, with its bundle file)",
			from, ErrNoPrevious, before, Keep, before)
	}
	// Checked as status and install check the version in use: switching
	// to a copy that does not read would have serve fall back to the
	// built-in definitions while the rollback reported success.
	prev, err := s.Record(before)
	var b *defs.Bundle
	if err == nil {
		b, err = defs.ReadFile(s.BundlePath(before))
	}
	if err != nil {
		return from, "", fmt.Errorf("update: rollback to %s refused, %s stays in use: %w (%w): to go back to it, install it again with sclgate update install -version %s -force (or update install -force FILE)",
			before, from, ErrDamaged, err, before)
	}
	if usable != nil {
		if err := usable(b); err != nil {
			return from, "", fmt.Errorf("update: rollback to %s refused, %s stays in use: %w (%w); serve would score with the built-in definitions. sclgate update install -version V -force switches to another installed or offered version",
				before, from, ErrUnusable, err)
		}
	}
	if prev.RolledBack {
		return from, "", fmt.Errorf("update: rollback refused, %s stays in use: %w: %s, in use before it, was itself rolled back from; sclgate update install -version %s -force switches to it",
			from, ErrNoPrevious, before, before)
	}
	if err := s.setRolledBack(from, true); err != nil {
		return "", "", fmt.Errorf("update: rollback: nothing was switched: %w", fsHint(err))
	}
	if err := s.activate(before, nil); err != nil {
		s.setRolledBack(from, false) // still the active one
		return "", "", err
	}
	return from, before, nil
}

// Unreadable is an installed version whose record (installed.json) does
// not read, which List leaves out.
type Unreadable struct {
	Version string
	Err     error
}

// Unreadables returns the version directories whose record does not read
// (a disk error, a hand edit, an install killed before it was whole is
// never renamed in, so not one of these).
func (s *Store) Unreadables() []Unreadable {
	ents, _ := os.ReadDir(s.dir)
	var out []Unreadable
	for _, e := range ents {
		if !e.IsDir() || !ValidVersion(e.Name()) {
			continue
		}
		if _, err := s.Record(e.Name()); err != nil {
			out = append(out, Unreadable{e.Name(), err})
		}
	}
	return out
}

// deactivate makes the built-in definitions the ones in use again,
// leaving from installed and marked as rolled back from (so that
// automatic updates do not bring it back).
func (s *Store) deactivate(from string) (string, string, error) {
	s.settle(from, false) // as activate does for the version it leaves
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
// active one) and leftovers of interrupted installs. (Partial downloads
// are a download's to remove: prunePartials.)
func (s *Store) Prune() error {
	list, err := s.List()
	if err != nil {
		return err
	}
	// Kept first: the active version and those a rollback from it goes
	// back through (its previous, that one's, ...), then the most
	// recently used others (rolled back from last): keeping a version no
	// rollback can reach while removing one the chain needs would refuse
	// a rollback the admin expects.
	keep := map[string]bool{}
	if active, err := s.Active(); err == nil {
		for v := active; len(keep) < Keep && ValidVersion(v) && !keep[v]; {
			in, err := s.Record(v)
			if err != nil {
				break
			}
			keep[v] = true
			v = in.Previous
		}
	}
	for _, rolledBack := range []bool{false, true} {
		for _, in := range list {
			if len(keep) < Keep && in.RolledBack == rolledBack {
				keep[in.Version] = true
			}
		}
	}
	for _, in := range list {
		if !keep[in.Version] && !in.Active {
			// Out of the versions' names in one step, then removed with
			// the leftovers below: removed in place, a kill part-way
			// left a version without its bundle, or an empty directory
			// no later prune saw (found by a fault-injection review).
			os.Rename(filepath.Join(s.dir, in.Version), filepath.Join(s.dir, ".tmp-pruned-"+in.Version+"-"+randHex()))
		}
	}
	ents, _ := os.ReadDir(s.dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".active-") {
			os.RemoveAll(filepath.Join(s.dir, e.Name()))
		}
	}
	// What a write killed before its rename leaves (safeio.WriteFile's
	// ".NAME.tmpN"): state.json is written without the lock (serve's
	// checks), so only what is old enough to be no one's.
	for _, dir := range append([]string{s.dir}, versionDirs(s.dir, ents)...) {
		tmps, _ := filepath.Glob(filepath.Join(dir, ".*.json.tmp*"))
		for _, p := range tmps {
			if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > partialMaxAge {
				os.Remove(p)
			}
		}
	}
	return nil
}

// prunePartials removes the partial downloads not resumed for
// partialMaxAge but keep, the one about to be resumed. Downloads call it
// holding their turn (LockDownload), which Prune, under the store's
// lock, does not have: it would race a download resuming an old file.
func (s *Store) prunePartials(keep string) {
	dl := filepath.Join(s.dir, ".download")
	ents, _ := os.ReadDir(dl)
	for _, e := range ents {
		p := filepath.Join(dl, e.Name())
		if fi, err := e.Info(); err == nil && p != keep && time.Since(fi.ModTime()) > partialMaxAge {
			os.Remove(p)
		}
	}
}

// versionDirs returns the version directories among ents, entries of dir.
func versionDirs(dir string, ents []fs.DirEntry) []string {
	var out []string
	for _, e := range ents {
		if e.IsDir() && ValidVersion(e.Name()) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
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
