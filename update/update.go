package update

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/safeio"
)

// Sentinel errors, besides defs' ErrBadSignature, ErrUnknownKey,
// ErrChecksum and ErrFormat.
var (
	ErrDowngrade = errors.New("refused: the source offers only versions older than the one in use (a replayed or downgraded index)")
	ErrOlder     = errors.New("refused: older than the version in use (use -force to install it anyway)")
	ErrNoSuch    = errors.New("the source does not offer that version")
	// ErrMismatch: a genuine bundle offered by the signed index under
	// another version than its own: a publishing mistake, or an old
	// bundle replayed as a new version.
	ErrMismatch = errors.New("the signed index and the bundle disagree on its version")
	// ErrUnusable: the bundle is genuine but this build cannot use it
	// (Updater.Usable said no); a newer sclgate may.
	ErrUnusable = errors.New("this build of sclgate cannot use it")
)

// Per-step time limits: a stuck source must not hang an update for hours
// (IMF's did).
const (
	indexTimeout = 30 * time.Second
	// A download may take long on a slow line, but not forever without
	// progress: stallTimeout bounds the time without a single byte.
	stallTimeout = 60 * time.Second
)

// Updater checks a source and installs what it offers.
type Updater struct {
	Store  *Store
	Keys   [][]byte // trusted minisign public keys
	Source Source   // nil: only InstallFile works
	// Builtin is the version built into the binary, in use while none is
	// installed.
	Builtin string
	// Sclgate is this build's version: offers whose min_sclgate is newer
	// are passed over by Detect and by Install of the newest, and such a
	// bundle is not installed (empty: min_sclgate is not checked).
	Sclgate string
	// Progress, if set, is told how a download goes: bytes done of total
	// (total -1 if unknown).
	Progress func(done, total int64)
	// Usable, if set, is asked about every verified bundle before it is
	// installed: one it refuses (a model this build cannot load, such as
	// one of another feature set) is not installed, so an update never
	// activates definitions the gateway would have to set aside.
	Usable func(*defs.Bundle) error
	// Waiting, if set, is called when an install has to wait, with whom
	// it waits for: "another install or rollback" (Store.Lock) or
	// "another install's download" (Store.LockDownload).
	Waiting func(holder string)
	// StallTimeout bounds the time a download may go without a byte
	// (0: stallTimeout).
	StallTimeout time.Duration
	Log          *slog.Logger

	statfs func(string, *syscall.Statfs_t) error // nil: syscall.Statfs (tests: a small file system)
}

// Detected is what Detect found.
type Detected struct {
	InUse     string // the version in use (installed, or Builtin)
	Installed bool   // InUse is an installed version, not the built-in one
	Newest    Offer  // the newest version the source offers that this build can use
	Available bool   // Newest should be installed
	// Damaged: the version in use is installed but its copy no longer
	// reads, and Newest is that version: installing it repairs it.
	Damaged bool
	// TooNew is the newest version offered when this build is too old for
	// it (its min_sclgate), else empty.
	TooNew Offer
	// Left: Newest is newer than the version in use, but the admin rolled
	// back (or downgraded with -force) from it, so it is not Available.
	Left bool
}

// NewEnough says whether sclgate version sclgate meets minSclgate (a
// manifest's or an index offer's min_sclgate; empty: any version does).
// Runs of digits compare as numbers, so "0.10" is after "0.9", and a
// "-dev" build counts as its release.
func NewEnough(sclgate, minSclgate string) error {
	if minSclgate != "" && CompareVersions(sclgate, minSclgate) < 0 {
		return fmt.Errorf("it needs sclgate %s or later, this is %s", minSclgate, sclgate)
	}
	return nil
}

// UsableHere says why this build cannot use b, as serve cannot (it then
// scores with the built-in definitions): a min_sclgate newer than it,
// or what Usable finds; nil when it can.
func (u *Updater) UsableHere(b *defs.Bundle) error {
	if u.Sclgate != "" {
		if err := NewEnough(u.Sclgate, b.Manifest.MinSclgate); err != nil {
			return err
		}
	}
	if u.Usable != nil {
		return u.Usable(b)
	}
	return nil
}

// InUseUnusable says why the installed version v, which reads, cannot be
// used by this build (nil when it can, or does not read: damaged, which
// is another matter).
func (u *Updater) InUseUnusable(v string) error {
	b, err := defs.ReadFile(u.Store.BundlePath(v))
	if err != nil {
		return nil
	}
	return u.UsableHere(b)
}

// usable says whether this build is new enough for o.
func (u *Updater) usable(o Offer) bool {
	return u.Sclgate == "" || NewEnough(u.Sclgate, o.MinSclgate) == nil
}

// newest is the newest offer this build can use; TooNew as in Detected.
func (u *Updater) newest(ix *Index) (newest Offer, ok bool, tooNew Offer) {
	for _, o := range ix.Versions {
		if u.usable(o) {
			return o, true, tooNew
		}
		if tooNew.Version == "" {
			tooNew = o
		}
	}
	return Offer{}, false, tooNew
}

func (u *Updater) log() *slog.Logger {
	if u.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return u.Log
}

func (u *Updater) inUse() (string, bool) {
	if v, err := u.Store.Active(); err == nil {
		return v, true
	}
	return u.Builtin, false
}

// ErrNoIndex: the source was reached but has no index.json: the address
// is not that of a directory defs publish wrote.
var ErrNoIndex = errors.New("the source has no index at this address")

// ErrUnsigned: the source has a file (the index, a bundle) but not its
// .minisig. Nothing unsigned is used; a missing signature is a publishing
// fault or tampering, not a network problem.
var ErrUnsigned = errors.New("no signature on the source")

// fetchSig fetches the signature of the file name (for what: "index",
// "bundle") from the source; a missing one is ErrUnsigned.
func (u *Updater) fetchSig(ctx context.Context, name, what string) ([]byte, error) {
	sig, err := fetchSmall(ctx, u.Source, name+".minisig", 64<<10)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("update: %s%s.minisig: %w (%v): the %s is not signed; publish with sclgate defs publish, or check updates.source",
			withSlash(u.Source.String()), name, ErrUnsigned, notFoundHow(err), what)
	}
	if err != nil {
		return nil, fmt.Errorf("update: signature of %s: %w", name, err)
	}
	return sig, nil
}

// notFoundHow is how the source said it has no such file: "HTTP 404 Not
// Found", or "no such file" for a directory.
func notFoundHow(err error) string {
	if nf := (*notFound)(nil); errors.As(err, &nf) {
		return nf.how
	}
	return "not found"
}

// ErrNotIndex: what the source served as its index (or the index's
// signature) is not one at all, but a web page: the source URL is not the
// directory defs publish wrote.
var ErrNotIndex = errors.New("not a definitions index")

// ErrTooLarge: an index or a signature far larger than any real one
// (defs publish writes a few kilobytes), refused before it is all read.
var ErrTooLarge = errors.New("too large for what it should be")

// ErrPartialKept: a download ended early (the connection closed, or
// stalled); what came is kept for the next install to resume from.
var ErrPartialKept = errors.New("partial download kept; run install again to resume")

// looksHTML reports whether b starts, after white space and a UTF-8 BOM,
// like an HTML or XML document; an index is JSON and a signature starts
// with "untrusted comment:".
func looksHTML(b []byte) bool {
	b = bytes.TrimLeft(bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")), " \t\r\n")
	return len(b) > 0 && b[0] == '<'
}

// Index fetches the source's index and checks its signature.
func (u *Updater) Index(ctx context.Context) (*Index, error) {
	if u.Source == nil {
		return nil, errors.New("update: no source configured (updates.source or -source)")
	}
	ctx, cancel := context.WithTimeout(ctx, indexTimeout)
	defer cancel()
	data, err := fetchSmall(ctx, u.Source, IndexFile, MaxIndexSize)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("update: %s%s: %w (%v)", withSlash(u.Source.String()), IndexFile, ErrNoIndex, notFoundHow(err))
	}
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	// A web server that answers every path with a page (a site's front
	// page or its "not found" page sent with 200, a captive portal) would
	// otherwise fail as a bad signature, which sends the admin looking
	// for tampering instead of at the URL.
	if looksHTML(data) {
		return nil, fmt.Errorf("update: %s%s: %w: the source answered with a web page", withSlash(u.Source.String()), IndexFile, ErrNotIndex)
	}
	sig, err := u.fetchSig(ctx, IndexFile, "index")
	if err != nil {
		return nil, err
	}
	if looksHTML(sig) {
		return nil, fmt.Errorf("update: %s%s.minisig: %w: the source answered with a web page", withSlash(u.Source.String()), IndexFile, ErrNotIndex)
	}
	if _, _, err := defs.Verify(u.Keys, data, sig); err != nil {
		return nil, fmt.Errorf("update: %s%s: %w", withSlash(u.Source.String()), IndexFile, err)
	}
	ix, err := ParseIndex(data)
	if err != nil {
		return nil, fmt.Errorf("update: %s%s: %w", withSlash(u.Source.String()), IndexFile, err)
	}
	return ix, nil
}

// Detect compares what the source offers with what is in use, and
// records the check in the store's state.
func (u *Updater) Detect(ctx context.Context) (Detected, error) {
	d, err := u.detect(ctx)
	result := "current"
	switch {
	case err != nil:
		result = "error: " + err.Error()
	case d.Damaged:
		result = "the version in use, " + d.InUse + ", is damaged: install repairs it"
	case d.Available:
		result = "update available: " + d.Newest.Version
	}
	u.saveState(result)
	return d, err
}

// saveState records a check's result for update status. Failing to is
// not the check's failure (an install done stays done), but it is said:
// status would otherwise show an older check as the last one.
func (u *Updater) saveState(result string) {
	st := State{LastCheck: time.Now().UTC(), LastCheckResult: result, LastCheckSource: u.sourceName()}
	if err := u.Store.SaveState(st); err != nil {
		u.log().Warn("the result of this update check is not recorded: update status shows an older check until one is",
			slog.String("result", result), slog.Any("err", err))
	}
}

func (u *Updater) sourceName() string {
	if u.Source == nil {
		return ""
	}
	return u.Source.String()
}

func (u *Updater) detect(ctx context.Context) (Detected, error) {
	var d Detected
	d.InUse, d.Installed = u.inUse()
	ix, err := u.Index(ctx)
	if err != nil {
		return d, err
	}
	if len(ix.Versions) == 0 {
		return d, fmt.Errorf("update: %s offers no versions", u.Source)
	}
	// A replayed index is judged on all it offers, usable or not.
	if top := ix.Versions[0]; d.Installed && CompareVersions(top.Version, d.InUse) < 0 {
		return d, fmt.Errorf("update: %s offers %s at newest, in use is %s: %w", u.Source, top.Version, d.InUse, ErrDowngrade)
	}
	var ok bool
	d.Newest, ok, d.TooNew = u.newest(ix)
	newer := ok && CompareVersions(d.Newest.Version, d.InUse) > 0
	d.Left = newer && u.rolledBack(d.Newest.Version)
	d.Available = newer && !d.Left
	// Nothing newer to install, but the version in use may need mending
	// (also when the newest is one the admin left).
	if !d.Available && u.damaged(d.InUse, d.Installed) {
		r, err := u.repair(ix, d.InUse)
		if err != nil {
			return d, err
		}
		d.Newest, d.Available, d.Damaged, d.Left = r, true, true, false
	}
	// Or it reads but this build cannot use it (installed before an
	// upgrade of sclgate that changed the model's features): serve
	// scores with the built-in definitions, and "up to date" would hide
	// it.
	if !d.Available && d.Installed {
		if err := u.InUseUnusable(d.InUse); err != nil {
			return d, fmt.Errorf("update: the version in use, %s: %w: %w; sclgate scores with the built-in definitions meanwhile, and nothing newer is to be installed from %s: sclgate update rollback goes back to the version in use before it, or sclgate update install -version V -force switches to another",
				d.InUse, ErrUnusable, err, u.Source)
		}
	}
	return d, nil
}

// damaged reports whether the installed version in use no longer reads,
// its bundle or its record (which precheck then installs again too).
func (u *Updater) damaged(inUse string, installed bool) bool {
	if !installed {
		return false
	}
	if _, err := defs.ReadFile(u.Store.BundlePath(inUse)); err != nil {
		return true
	}
	_, err := u.Store.Record(inUse)
	return err != nil
}

// repair returns the source's offer of the version in use, whose copy is
// damaged: installing it again mends it. When the source does not offer
// it in a form this sclgate can use, it says that nothing here will:
// "up to date" would hide that the gateway runs on the built-in
// definitions.
func (u *Updater) repair(ix *Index, inUse string) (Offer, error) {
	if o, ok := ix.Find(inUse); ok && u.usable(o) {
		return o, nil
	}
	return Offer{}, fmt.Errorf("update: the version in use, %s: %w (sclgate scores with the built-in definitions meanwhile), and %s does not offer it in a form this sclgate can use", inUse, ErrDamaged, u.Source)
}

// rolledBack: the admin rolled back, or downgraded with -force, from this
// version; automatic and plain installs leave it alone (an explicit
// -version installs it).
func (u *Updater) rolledBack(v string) bool {
	list, _ := u.Store.List()
	for _, in := range list {
		if in.Version == v {
			return in.RolledBack || in.DowngradedFrom
		}
	}
	return false
}

// Outcome says what Install did.
type Outcome struct {
	Version string
	Already bool // that version was already in use: nothing done
	// UpToDate: a plain install (no version asked for) found nothing to
	// do, as Detect would say: Note says why, Version is the one in use.
	UpToDate bool
	Note     string
	// Repaired: the version in use was installed again because its
	// installed copy or record no longer read.
	Repaired bool
}

// Install installs version (empty: the newest offered) from the source.
// Installs and rollbacks take turns (see Store.Lock): a second install of
// the same version waits for the first and then has nothing to do.
//
// A plain install (version empty) does what Detect says: nothing when the
// newest offer is not newer than the version in use (the built-in
// definitions may be newer than anything published) or was rolled back
// from by the admin, so that an update timer neither fails nor undoes a
// rollback. An explicit version is installed as asked (older ones need
// force).
func (u *Updater) Install(ctx context.Context, version string, force bool) (Outcome, error) {
	if version != "" {
		if o, ok, err := u.installLocal(ctx, version, force); ok {
			return o, err
		}
	}
	o, err := u.installFromSource(ctx, version, force)
	// An install asks the source as detect does: status shows its
	// outcome as the last check (what a timer running install leaves).
	result := "installed " + o.Version
	switch {
	case err == nil && o.Repaired:
		result = "repaired " + o.Version
	case err != nil:
		result = "error: " + err.Error()
	case o.UpToDate || o.Already:
		result = "current"
	}
	u.saveState(result)
	return o, err
}

// installLocal switches to version, which is installed already, from its
// own copy (the bundle and signature its install left in its directory),
// verified again with the trusted keys: switching back after a rollback
// then needs no source, which may be offline, or no longer offer it.
// ok is false when there is no such copy or it no longer verifies (a key
// since taken out of updates.trusted_keys): the source is asked then.
func (u *Updater) installLocal(ctx context.Context, version string, force bool) (o Outcome, ok bool, err error) {
	data, sig, ok := u.localCopy(version)
	if !ok {
		return Outcome{}, false, nil
	}
	p := u.Store.BundlePath(version)
	origin := p
	if rec, err := u.Store.Record(version); err == nil && rec.Origin != "" {
		origin = rec.Origin // where it came from, not its installed copy
	}
	unlock, err := u.Store.Lock(ctx, u.waiting(holderStore))
	if err != nil {
		return Outcome{}, true, err
	}
	defer unlock()
	o, err = u.install(data, sig, p, origin, "", force)
	return o, true, err
}

// HasCopy says whether version is installed with a copy that verifies
// with the trusted keys, so that Install of it needs no source.
func (u *Updater) HasCopy(version string) bool {
	_, _, ok := u.localCopy(version)
	return ok
}

func (u *Updater) localCopy(version string) (data, sig []byte, ok bool) {
	if !ValidVersion(version) {
		return nil, nil, false
	}
	p := u.Store.BundlePath(version)
	data, err := readBundleFile(p)
	if err != nil {
		return nil, nil, false
	}
	sig, err = safeio.ReadFile(filepath.Join(filepath.Dir(p), SigFile), 64<<10)
	if err != nil {
		return nil, nil, false
	}
	b, _, _, err := defs.ReadVerified(data, sig, u.Keys, 0)
	if err != nil || b.Manifest.Version != version {
		return nil, nil, false
	}
	return data, sig, true
}

func (u *Updater) installFromSource(ctx context.Context, version string, force bool) (Outcome, error) {
	// The index is read, the version chosen and its bundle downloaded
	// outside the store's lock, which serialises the store's changes: a
	// rollback, the admin's way out of bad definitions, does not wait
	// for a download, which takes long on a slow link. Downloads take
	// turns among themselves (Store.LockDownload: they share the partial
	// files), and the choice is made again under the store's lock, from
	// the same signed index, before anything is installed: what happened
	// to the store meanwhile (another install, a rollback) decides.
	unlockDL, err := u.Store.LockDownload(ctx, u.waiting(holderDownload))
	if err != nil {
		return Outcome{}, err
	}
	defer unlockDL()
	// Read and chosen after the wait: an install of the same version
	// that this one waited for leaves it nothing to do, and a wait that
	// took long does not act on an old index.
	ix, err := u.Index(ctx)
	if err != nil {
		return Outcome{}, err
	}
	offer, o, done, err := u.plan(ix, version, force, false)
	if done || err != nil {
		return o, err
	}
	// The signature first: it is small, and without it the bundle could
	// not be used, so a missing one should not cost the whole download.
	// Bounded as the index is: a signature that never ends would hold
	// the download's turn.
	sigCtx, cancel := context.WithTimeout(ctx, indexTimeout)
	sig, err := u.fetchSig(sigCtx, offer.File, "bundle")
	cancel()
	if err != nil {
		return Outcome{}, err
	}
	data, err := u.download(ctx, offer, false)
	if err != nil {
		return Outcome{}, err
	}
	// The verified download stays in .download/ until it is installed:
	// a wait for the store that is given up (Ctrl-C, serve's bound)
	// leaves it for the next run, which then fetches nothing.
	unlock, err := u.Store.Lock(ctx, u.waiting(holderStore))
	if err != nil {
		return Outcome{}, fmt.Errorf("%w; the download is kept: install again takes it from there", err)
	}
	defer unlock()
	now, o, done, err := u.plan(ix, version, force, true)
	switch {
	case err != nil:
		return o, err
	case done:
		os.Remove(u.partPath(offer))
		return o, nil
	case now != offer:
		// Another version is due now (the store changed during the
		// download, and a plain install picks anew): this run leaves it
		// to the next, rather than install what it did not choose.
		return Outcome{}, fmt.Errorf("update: the installed definitions changed while %s downloaded (now %s is due): run install again", offer.Version, now.Version)
	}
	out, err := u.install(data, sig, offer.File, withSlash(u.Source.String())+offer.File, offer.Version, force)
	if err == nil {
		os.Remove(u.partPath(offer))
	}
	return out, err
}

// Whom an install waits for (Updater.Waiting).
const (
	holderStore    = "another install or rollback"
	holderDownload = "another install's download"
)

// waiting is the callback for a lock's wait: Waiting, told whom.
func (u *Updater) waiting(holder string) func() {
	if u.Waiting == nil {
		return nil
	}
	return func() { u.Waiting(holder) }
}

// partPath is where offer's bundle is downloaded to.
func (u *Updater) partPath(o Offer) string {
	return filepath.Join(u.Store.Dir(), ".download", o.File+".part")
}

// plan chooses what an install from the index ix installs: version, or
// the newest when it is empty (see Install). done says there is nothing
// to do, with o saying why; otherwise offer is what to download. warn
// logs a damaged version in use (said once, by the choice made under
// the store's lock).
func (u *Updater) plan(ix *Index, version string, force, warn bool) (offer Offer, o Outcome, done bool, err error) {
	inUse, installed := u.inUse()
	if version == "" {
		if len(ix.Versions) == 0 {
			return Offer{}, Outcome{}, false, fmt.Errorf("update: %s offers no versions", u.Source)
		}
		if top := ix.Versions[0].Version; installed && CompareVersions(top, inUse) < 0 {
			return Offer{}, Outcome{Version: inUse}, false, fmt.Errorf("update: %s offers %s at newest, in use is %s: %w", u.Source, top, inUse, ErrDowngrade)
		}
		n, ok, tooNew := u.newest(ix)
		var note string // why there is nothing newer to install
		switch {
		case !ok:
			note = fmt.Sprintf("nothing %s offers fits this sclgate (%s needs sclgate %s or later, this is %s)", u.Source, tooNew.Version, tooNew.MinSclgate, u.Sclgate)
		case CompareVersions(n.Version, inUse) < 0:
			note = fmt.Sprintf("the newest version offered that this sclgate can use, %s, is older than %s in use", n.Version, inUse)
		case !installed && CompareVersions(n.Version, inUse) == 0:
			note = fmt.Sprintf("the newest version offered, %s, is the built-in one in use", n.Version)
		case n.Version != inUse && u.rolledBack(n.Version):
			note = fmt.Sprintf("the newest version offered, %s, was rolled back or downgraded from; install it again with -version %s", n.Version, n.Version)
		}
		switch {
		case note == "":
			version = n.Version
		case u.damaged(inUse, installed):
			// Nothing newer, but the one in use is to be mended.
			r, err := u.repair(ix, inUse)
			if err != nil {
				return Offer{}, Outcome{Version: inUse}, false, err
			}
			version = r.Version
		default:
			return Offer{}, Outcome{Version: inUse, UpToDate: true, Note: note}, true, nil
		}
	}
	offer, ok := ix.Find(version)
	if !ok {
		return Offer{}, Outcome{}, false, fmt.Errorf("update: %s: version %s: %w", u.Source, version, ErrNoSuch)
	}
	if done, err := u.precheck(version, inUse, force, warn); done || err != nil {
		return Offer{}, Outcome{Version: version, Already: done}, done, err
	}
	if !u.usable(offer) {
		// The signed index says so already: no need to download it to
		// refuse it (the bundle's own manifest is checked again below).
		return Offer{}, Outcome{}, false, fmt.Errorf("update: %s: version %s needs sclgate %s or later, this is %s: %w",
			u.Source, offer.Version, offer.MinSclgate, u.Sclgate, ErrUnusable)
	}
	return offer, Outcome{}, false, nil
}

// InstallFile installs a bundle from a local file (offline install), with
// its signature from path+".minisig". An older version than the one in
// use needs force, as from a source.
func (u *Updater) InstallFile(ctx context.Context, path string, force bool) (Outcome, error) {
	unlock, err := u.Store.Lock(ctx, u.waiting(holderStore))
	if err != nil {
		return Outcome{}, err
	}
	defer unlock()
	data, err := readBundleFile(path)
	if err != nil {
		return Outcome{}, err
	}
	sig, err := safeio.ReadFile(path+".minisig", 64<<10) // a few hundred bytes
	if err != nil {
		return Outcome{}, fmt.Errorf("update: signature: %w (the bundle's .minisig must lie beside it)", err)
	}
	abs, _ := filepath.Abs(path)
	return u.install(data, sig, path, abs, "", force)
}

// readBundleFile reads the FILE of update install FILE, refusing what is
// plainly not a bundle with what to do instead: a directory or an index
// (a directory source, which -source takes), or a file larger than any
// bundle (checked before it is read into memory).
func readBundleFile(path string) ([]byte, error) {
	f, st, err := safeio.Open(path, 0)
	if err != nil {
		if st != nil && st.IsDir() {
			return nil, fmt.Errorf("update: %s is a directory: to install from a directory source, use -source %s", path, path)
		}
		return nil, fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	if st.Size() > defs.DefaultMaxSize {
		return nil, fmt.Errorf("update: %s: %w: %d bytes, more than the %d a bundle may have: it is not a bundle", path, defs.ErrFormat, st.Size(), int64(defs.DefaultMaxSize))
	}
	// Capped again while reading: the file may grow after the Stat.
	data, err := io.ReadAll(io.LimitReader(f, defs.DefaultMaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	if int64(len(data)) > defs.DefaultMaxSize {
		return nil, fmt.Errorf("update: %s: %w: more than the %d bytes a bundle may have: it is not a bundle", path, defs.ErrFormat, int64(defs.DefaultMaxSize))
	}
	// A bundle is gzip (1f 8b); an index is JSON, signed by the same key,
	// so it would pass the signature check and fail only as "not a gzip
	// file".
	if t := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \t\r\n"); len(t) > 0 && t[0] == '{' {
		dir := filepath.Dir(path)
		return nil, fmt.Errorf("update: %s looks like an update index, not a bundle: use -source %s (the directory holding it)", path, dir)
	}
	return data, nil
}

// precheck: installing the version in use is a no-op, unless its
// installed copy no longer reads (a disk error, a hand edit: serve scores
// with the built-in definitions then), which the install mends; an older
// one needs force.
func (u *Updater) precheck(version, inUse string, force, warn bool) (done bool, err error) {
	if active, err := u.Store.Active(); err == nil && active == version {
		_, rerr := defs.ReadFile(u.Store.BundlePath(version))
		if rerr == nil {
			// Its record may not read (a rollback then refuses to go
			// past it, advising this install): written anew then.
			if _, rerr = u.Store.Record(version); rerr == nil {
				return true, nil
			}
		}
		if warn {
			u.log().Warn("the version in use is damaged; installing it again", slog.String("version", version), slog.Any("err", rerr))
		}
		return false, nil
	}
	if !force && CompareVersions(version, inUse) < 0 {
		return false, fmt.Errorf("update: %s (in use: %s): %w", version, inUse, ErrOlder)
	}
	return false, nil
}

// install verifies data (signature, then every member's checksum) before
// anything is written, then installs and activates it.
func (u *Updater) install(data, sig []byte, name, origin, wantVersion string, force bool) (Outcome, error) {
	b, keyID, _, err := defs.ReadVerified(data, sig, u.Keys, 0)
	if err != nil {
		return Outcome{}, fmt.Errorf("update: %s: %w", name, err)
	}
	v := b.Manifest.Version
	if wantVersion != "" && v != wantVersion {
		return Outcome{}, fmt.Errorf("update: %s holds version %s, the index says %s: %w", name, v, wantVersion, ErrMismatch)
	}
	if wantVersion == "" { // a file: the same rules as from a source
		inUse, _ := u.inUse()
		if done, err := u.precheck(v, inUse, force, true); done || err != nil {
			return Outcome{Version: v, Already: done}, err
		}
	}
	unusable := func(err error) (Outcome, error) {
		return Outcome{}, fmt.Errorf("update: %s: version %s: %w: %w", name, v, ErrUnusable, err)
	}
	if err := u.UsableHere(b); err != nil {
		return unusable(err)
	}
	// The copy must fit with room to spare, as a download must (for an
	// offline install, this is the first check); a version installed
	// intact is only made active again, which writes no copy.
	if u.Store.needsCopy(v, data) {
		if err := checkSpace(u.Store.Dir(), int64(len(data)+len(sig)), "the installed copy", u.statfs); err != nil {
			return Outcome{}, fmt.Errorf("update: install %s: %w; nothing was installed", v, err)
		}
	}
	in := Installed{Version: v, InstalledAt: time.Now().UTC(), Origin: origin, Created: b.Manifest.Created}
	left, leftErr := u.Store.Active()
	// A forced downgrade marks the version it leaves (Store.Activate).
	if err := u.Store.Install(in, data, sig); err != nil {
		return Outcome{}, err
	}
	u.Store.Prune()
	repaired := leftErr == nil && left == v // precheck let it through: damaged
	u.log().Info("definitions installed and active", slog.String("version", v), slog.String("origin", origin), slog.String("key", keyID), slog.Bool("repaired", repaired))
	return Outcome{Version: v, Repaired: repaired}, nil
}

// download fetches offer's bundle into definitions.dir/.download/, resuming
// a partial file from an earlier (interrupted or cancelled) attempt, and
// checks size and sha256 against the signed index.
func (u *Updater) download(ctx context.Context, o Offer, fresh bool) ([]byte, error) {
	if o.Size > defs.DefaultMaxSize {
		// A download is read whole into memory (in serve too, by its
		// automatic updates): refused before a byte is fetched. Only
		// this offer: the index's others stay installable (-version).
		return nil, fmt.Errorf("update: download %s: version %s: %w: %d bytes, more than the %d a bundle may have here",
			o.File, o.Version, ErrUnusable, o.Size, int64(defs.DefaultMaxSize))
	}
	part := u.partPath(o)
	dir := filepath.Dir(part)
	u.Store.prunePartials(part)
	// What is still to come must fit with room to spare, and so must the
	// installed copy written from it (the download is removed only once
	// that is in place), checked before a byte is written: a download
	// that fills the disk fills it for the mail spool too. The offered
	// size is the signed index's.
	have := int64(0)
	if st, err := os.Stat(part); err == nil && st.Mode().IsRegular() && st.Size() <= o.Size {
		have = st.Size()
	}
	if err := checkSpace(u.Store.Dir(), o.Size-have+o.Size, "the download and the installed copy", u.statfs); err != nil {
		return nil, fmt.Errorf("update: download %s: %w", o.File, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("update: download %s: nothing was installed: %w", o.File, fsHint(err))
	}
	f, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("update: download %s: nothing was installed: %w", o.File, fsHint(err))
	}
	defer f.Close()
	have, _ = f.Seek(0, io.SeekEnd)
	if have > o.Size {
		f.Truncate(0)
		have = 0
	}
	if have < o.Size {
		ctx, cancelCause := context.WithCancelCause(ctx)
		defer cancelCause(nil)
		cancel := func() { cancelCause(errStalled) }
		r, at, _, err := u.Source.Open(ctx, o.File, have)
		if errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("update: download %s: %w: the signed index offers it, but the source does not have it", o.File, err)
		}
		if err != nil {
			return nil, fmt.Errorf("update: download %s: %w", o.File, err)
		}
		defer r.Close()
		if at != have { // the source started over
			f.Truncate(0)
			have = 0
		}
		f.Seek(have, io.SeekStart)
		sr := &stallReader{r: r, cancel: cancel, d: cmp.Or(u.StallTimeout, stallTimeout)}
		sr.arm()
		defer sr.stop()
		w := &progressWriter{w: f, done: have, total: o.Size, report: u.Progress}
		if u.Progress != nil {
			u.Progress(have, o.Size) // where this run starts, for its rate
		}
		_, err = io.Copy(w, io.LimitReader(sr, o.Size-have))
		if errors.Is(context.Cause(ctx), errStalled) {
			err = fmt.Errorf("%w: nothing came for %v", errStalled, sr.d)
		}
		if err == nil {
			err = diskHint(f.Sync()) // a full disk may only show here (NFS, delayed allocation)
		}
		if noSpace(err) {
			// A partial that cannot grow is of no use to a later run, and
			// it is what keeps the disk full (mail on the same file
			// system gets 451): it goes.
			f.Close()
			os.Remove(part)
			return nil, fmt.Errorf("update: download %s: %w (the partial download was removed to give the space back)", o.File, err)
		}
		if err != nil {
			return nil, fmt.Errorf("update: download %s: %w (%w)", o.File, err, ErrPartialKept)
		}
	}
	data, err := os.ReadFile(part)
	if err != nil {
		return nil, fmt.Errorf("update: %w", err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != o.Size || hex.EncodeToString(sum[:]) != strings.ToLower(o.SHA256) {
		os.Remove(part) // a bad partial must not be resumed
		if resumed := have > 0; resumed && !fresh {
			// The partial file was not a prefix of this bundle (a stale
			// or republished one): start over once, from byte 0.
			return u.download(ctx, o, true)
		}
		return nil, fmt.Errorf("update: %s: got %d bytes with sha256 %x, the index says %d bytes %s: %w",
			o.File, len(data), sum, o.Size, o.SHA256, defs.ErrChecksum)
	}
	return data, nil // the partial file is removed once installed
}

func diskHint(err error) error {
	if noSpace(err) {
		return fmt.Errorf("%w: disk full, free space on the file system of definitions.dir (old partial downloads in its .download/ may go) and run install again", err)
	}
	return err
}

// fsHint is diskHint, and for a permission error or a read-only file
// system says what usually causes it.
func fsHint(err error) error {
	if errors.Is(err, syscall.EROFS) {
		return fmt.Errorf("%w: definitions.dir is on a file system mounted read-only (for serve or this command): mount it read-write, or under systemd list it in the unit's ReadWritePaths=", err)
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: definitions.dir holds files another user made (update commands run as root?): run them as the user serve runs as (runuser -u sclgate -- sclgate update ...), or give that user the directory (chown -R)", err)
	}
	return diskHint(err)
}

// errStalled: the download was cut off by its stall timeout.
var errStalled = errors.New("the source stopped sending (stalled)")

// stallReader cancels the download when no byte has come for
// stallTimeout.
type stallReader struct {
	r      io.Reader
	cancel func()
	d      time.Duration
	t      *time.Timer
}

func (s *stallReader) arm()  { s.t = time.AfterFunc(s.d, s.cancel) }
func (s *stallReader) stop() { s.t.Stop() }
func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.t.Reset(s.d)
	}
	return n, err
}

type progressWriter struct {
	w           io.Writer
	done, total int64
	report      func(done, total int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.done += int64(n)
	if p.report != nil {
		p.report(p.done, p.total)
	}
	return n, diskHint(err)
}

func withSlash(s string) string {
	if strings.HasSuffix(s, "/") {
		return s
	}
	return s + "/"
}

// LoadKeys reads updates.trusted_keys: each entry is a minisign public key
// (its base64 line, or the whole .pub text) or the path of a .pub file.
// An entry that parses as a key is one: base64 holds '/' more often than
// not, so the look of an entry cannot tell a key line from a path.
func LoadKeys(entries []string) ([][]byte, error) {
	var keys [][]byte
	for i, e := range entries {
		e = strings.TrimSpace(e)
		if _, err := defs.PublicKeyID([]byte(e)); err == nil {
			keys = append(keys, []byte(e))
			continue
		}
		b, err := safeio.ReadFile(e, 64<<10) // a .pub file is 2 lines
		if err != nil {
			return nil, fmt.Errorf("update: trusted key %d: neither a minisign public key nor a readable .pub file: %w", i+1, err)
		}
		b = bytes.TrimSpace(b)
		if _, err := defs.PublicKeyID(b); err != nil {
			return nil, fmt.Errorf("update: trusted key %d: %s: not a minisign public key file (%v)", i+1, e, err)
		}
		keys = append(keys, b)
	}
	return keys, nil
}
