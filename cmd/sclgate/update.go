package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/update"
)

// Exit codes of "update detect", which scripts rely on.
const (
	exitUpToDate        = 0
	exitUpdateAvailable = 10
	exitError           = 1
)

// updateSynopsis is each update subcommand's usage line, after "sclgate
// update".
var updateSynopsis = map[string]string{
	"status":   "status [-config FILE]",
	"detect":   "detect [-config FILE] [-source SOURCE]",
	"install":  "install [-config FILE] [-source SOURCE] [-version VERSION] [-force] | install [-config FILE] [-force] FILE",
	"rollback": "rollback [-config FILE]",
}

const updateUsage = `usage:
  sclgate update status   [-config FILE]           version in use, installed versions, last check
  sclgate update detect   [-config FILE] [-source SOURCE]
                                                   exit 0: up to date; 10: update available; 1: error
  sclgate update install  [-config FILE] [-source SOURCE] [-version VERSION] [-force]
  sclgate update install  [-config FILE] [-force] FILE
                                                   download (or take FILE), verify, activate
  sclgate update rollback [-config FILE]           back to the previous version
`

// cmdUpdate implements "sclgate update status|detect|install|rollback".
func cmdUpdate(e env, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, updateUsage)
		return 2
	}
	if isHelp(args[0]) {
		fmt.Fprint(e.stdout, updateUsage)
		return 0
	}
	sub, args := args[0], args[1:]
	if !slices.Contains([]string{"status", "detect", "install", "rollback"}, sub) {
		fmt.Fprintf(e.stderr, "sclgate update: unknown subcommand %q\n\n%s", sub, updateUsage)
		return 2
	}
	fs := flag.NewFlagSet("update "+sub, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "usage: sclgate update %s\n", updateSynopsis[sub])
		fs.PrintDefaults()
	}
	configFile := fs.String("config", "", "configuration `FILE` (default: the embedded defaults)")
	var source, version *string
	var force *bool
	if sub == "detect" || sub == "install" {
		source = fs.String("source", "", "update `SOURCE`: https://..., http://... or a directory (default: updates.source)")
	}
	if sub == "install" {
		version = fs.String("version", "", "install this `VERSION` (default: the newest offered)")
		force = fs.Bool("force", false, "install even if older than the version in use")
	}
	// detect's exit codes are a contract with scripts (0 up to date, 10
	// update available, 1 error): a usage error is an error there too.
	usageExit := 2
	if sub == "detect" {
		usageExit = exitError
	}
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return flagExit(err, usageExit)
	}
	if sub == "install" && fs.NArg() > 0 && (*version != "" || *source != "") {
		fmt.Fprintln(e.stderr, "sclgate update install: -version and -source pick a version from a source; a FILE is the version it holds: give one or the other")
		return usageExit
	}
	if maxArgs := map[bool]int{true: 1, false: 0}[sub == "install"]; fs.NArg() > maxArgs {
		fmt.Fprintf(e.stderr, "sclgate update %s: unexpected argument %q\n", sub, fs.Arg(maxArgs))
		return usageExit
	}
	cfg, err := config.Load(*configFile)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitError
	}
	store, err := update.OpenStore(cfg.Definitions.Dir)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitError
	}
	// Warnings reach the admin (a check whose result could not be
	// recorded, a damaged copy being mended); the Info line of an install
	// would only repeat what the command prints.
	u := &update.Updater{Store: store, Builtin: builtinVersion(), Sclgate: buildVersion(), Usable: modelLoads, Log: warnLog(e.stderr)}
	if sub == "detect" || sub == "install" {
		if u.Keys, err = update.LoadKeys(cfg.Updates.TrustedKeys); err != nil {
			fmt.Fprintln(e.stderr, err)
			return exitError
		}
		if len(u.Keys) == 0 {
			fmt.Fprintln(e.stderr, "sclgate update: no updates.trusted_keys configured: nothing could be verified")
			return exitError
		}
		src := cfg.Updates.Source
		if *source != "" {
			src = *source
		}
		// An offline install from a file needs no source: the configured
		// one may be a directory not mounted now.
		// Nor does a switch to a version installed already (back, after a
		// rollback), whose own copy is verified and used.
		local := sub == "install" && fs.NArg() == 0 && *version != "" && u.HasCopy(*version)
		if sub == "detect" || fs.NArg() == 0 && !local {
			if u.Source, err = update.NewSource(src); err != nil {
				fmt.Fprintln(e.stderr, err)
				printHint(e, err)
				return exitError
			}
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch sub {
	case "status":
		return updateStatus(e, cfg, store, u)
	case "detect":
		d, err := u.Detect(ctx)
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			printHint(e, err)
			return exitError
		}
		if d.TooNew.Version != "" {
			fmt.Fprintf(e.stdout, "passed over: %s, which needs sclgate %s or later (this is %s)\n", d.TooNew.Version, d.TooNew.MinSclgate, buildVersion())
		}
		if d.Newest.Version == "" {
			fmt.Fprintf(e.stdout, "in use:  %s%s\nup to date: nothing %s offers fits this sclgate\n", displayVersion(d.InUse), builtinNote(d.Installed), u.Source)
			return exitUpToDate
		}
		if d.Damaged {
			// What serve scores with meanwhile, as status says it.
			fmt.Fprintf(e.stdout, "in use:  %s (built in: the active version %s is damaged)\noffered: %s (created %s) at %s\n", displayVersion(builtinVersion()), d.InUse,
				d.Newest.Version, d.Newest.Created.Format(time.DateOnly), u.Source)
			fmt.Fprintf(e.stdout, "the active version, %s, is damaged: installing it again repairs it (run: sclgate update install)\n", d.InUse)
			return exitUpdateAvailable
		}
		fmt.Fprintf(e.stdout, "in use:  %s%s\noffered: %s (created %s) at %s\n", displayVersion(d.InUse), builtinNote(d.Installed),
			d.Newest.Version, d.Newest.Created.Format(time.DateOnly), u.Source)
		if d.Available {
			fmt.Fprintf(e.stdout, "update available: %s (run: sclgate update install)\n", d.Newest.Version)
			return exitUpdateAvailable
		}
		if d.Left {
			fmt.Fprintf(e.stdout, "up to date: %s was rolled back or downgraded from, so it is not installed again (to have it back: sclgate update install -version %s)\n", d.Newest.Version, d.Newest.Version)
			return exitUpToDate
		}
		fmt.Fprintln(e.stdout, "up to date")
		return exitUpToDate
	case "install":
		u.Progress = newProgress(e)
		u.Waiting = waitingNote(e, store)
		var out update.Outcome
		if fs.NArg() > 0 {
			out, err = u.InstallFile(ctx, fs.Arg(0), *force)
		} else {
			out, err = u.Install(ctx, *version, *force)
		}
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(e.stderr, "\nsclgate update: cancelled; nothing was installed (run install again to resume the download)")
				return exitError
			}
			fmt.Fprintln(e.stderr, err)
			printHint(e, err)
			return exitError
		}
		if out.Already && *version == "" && fs.NArg() == 0 {
			// A plain install, as a timer runs it: said as detect says it.
			fmt.Fprintf(e.stdout, "up to date: the newest version offered, %s, is installed and in use; nothing to do\n", out.Version)
			return 0
		}
		if out.Already {
			fmt.Fprintf(e.stdout, "%s is already installed and in use: nothing to do\n", out.Version)
			return 0
		}
		if out.UpToDate {
			fmt.Fprintf(e.stdout, "up to date: %s; nothing to do\n", out.Note)
			return 0
		}
		if out.Repaired {
			fmt.Fprintf(e.stdout, "repaired %s: its damaged copy was installed again and is in use; a running sclgate serve switches to it within seconds\n", out.Version)
			return 0
		}
		fmt.Fprintf(e.stdout, "installed and activated %s; a running sclgate serve switches to it within seconds\n", out.Version)
		return 0
	case "rollback":
		if _, err := store.Active(); errors.Is(err, update.ErrNoneInstalled) {
			// Nothing to roll back: said without making definitions.dir.
			fmt.Fprintf(e.stderr, "sclgate update rollback: nothing to roll back to: the built-in definitions (%s) are in use, and nothing is older; sclgate update status lists the installed versions, and sclgate update install -version V switches to one (with -force if V is older than the built-in definitions)\n", builtinVersion())
			return exitError
		}
		wait := waitingNote(e, store)
		unlock, err := store.Lock(ctx, func() { wait("another install or rollback") })
		if err != nil {
			fmt.Fprintln(e.stderr, "sclgate update rollback:", err)
			return exitError
		}
		defer unlock()
		from, to, err := store.Rollback(u.UsableHere)
		if err != nil {
			fmt.Fprintln(e.stderr, err)
			return exitError
		}
		if to == "" {
			// Back to the built-in definitions, in use before the first install.
			to = "the built-in definitions " + builtinVersion()
		}
		fmt.Fprintf(e.stdout, "rolled back from %s to %s\n", from, to)
		return 0
	}
	fmt.Fprintf(e.stderr, "sclgate update: unknown subcommand %q\n", sub)
	return 2
}

func builtinNote(installed bool) string {
	if installed {
		return ""
	}
	return " (built in)"
}

func updateStatus(e env, cfg *config.Config, store *update.Store, u *update.Updater) int {
	status := 0
	active, err := store.Active()
	switch {
	case errors.Is(err, update.ErrNoneInstalled):
		if l, _ := store.List(); len(l) > 0 {
			fmt.Fprintf(e.stdout, "in use:     %s (built in; no installed version is active)\n", displayVersion(builtinVersion()))
		} else {
			fmt.Fprintf(e.stdout, "in use:     %s (built in; nothing installed in %s)\n", displayVersion(builtinVersion()), store.Dir())
		}
	case err != nil:
		fmt.Fprintln(e.stderr, err)
		return exitError
	default:
		if _, err := defs.ReadFile(store.BundlePath(active)); err != nil {
			// What serve does with it: the built-in definitions score.
			fmt.Fprintf(e.stdout, "in use:     %s (built in: the active version %s is unusable: %v)\n", displayVersion(builtinVersion()), active, err)
			fmt.Fprintf(e.stderr, "what to do: install it again (sclgate update install -version %s, or update install FILE), or sclgate update rollback\n", active)
			status = exitError
		} else if err := u.InUseUnusable(active); err != nil {
			// It reads, but this build cannot use it: serve does not.
			fmt.Fprintf(e.stdout, "in use:     %s (built in: this sclgate cannot use the active version %s: %v)\n", displayVersion(builtinVersion()), active, err)
			fmt.Fprintf(e.stderr, "what to do: install a version this sclgate can use (sclgate update install), or sclgate update rollback\n")
			status = exitError
		} else {
			fmt.Fprintf(e.stdout, "in use:     %s\n", active)
		}
	}
	list, err := store.List()
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return exitError
	}
	for _, in := range list {
		mark := " "
		if in.Active {
			mark = "*"
		}
		note := ""
		switch {
		case in.RolledBack:
			note = " (rolled back from)"
		case in.DowngradedFrom:
			note = " (downgraded from with -force)"
		}
		if !in.Active {
			// A rollback to it would be refused: said here, not only
			// then. (The active one's state is the "in use" line.)
			if _, err := defs.ReadFile(store.BundlePath(in.Version)); err != nil {
				note += fmt.Sprintf(" (damaged: %v; install it again before rolling back to it)", err)
			}
		}
		built := ""
		if !in.Created.IsZero() {
			built = " built " + in.Created.UTC().Format(time.DateOnly) + ","
		}
		// InstalledAt moves with every activation (install or rollback):
		// it orders the versions for rollback.
		fmt.Fprintf(e.stdout, "  %s %-20s%s last made active %s, from %s%s\n", mark, in.Version, built, in.InstalledAt.Format(time.RFC3339), in.Origin, note)
	}
	for _, u := range store.Unreadables() {
		// Listed, not left out: a rollback refuses to go past it, and
		// the admin should see why.
		if u.Version == active {
			fmt.Fprintf(e.stdout, "  * %-20s its record cannot be read: %v\n", u.Version, u.Err)
			fmt.Fprintf(e.stderr, "what to do: install it again (sclgate update install -version %s, or update install FILE) to write its record anew\n", u.Version)
			status = exitError
			continue
		}
		fmt.Fprintf(e.stdout, "    %-20s its record cannot be read: %v (sclgate update install -version %s -force switches to it and writes it anew; or remove its directory)\n", u.Version, u.Err, u.Version)
	}
	st := store.LoadState()
	if st.LastCheck.IsZero() {
		fmt.Fprintln(e.stdout, "last check: never")
	} else {
		result := st.LastCheckResult
		if v, ok := strings.CutPrefix(result, "update available: "); ok && v == active {
			result += " (installed since)"
		}
		fmt.Fprintf(e.stdout, "last check: %s at %s: %s\n", st.LastCheck.Format(time.RFC3339), st.LastCheckSource, result)
	}
	state := "disabled (updates.enabled: false)"
	if cfg.Updates.Enabled {
		state = fmt.Sprintf("enabled, every %s from %s", time.Duration(cfg.Updates.Interval), cfg.Updates.Source)
	}
	fmt.Fprintf(e.stdout, "automatic updates: %s\n", state)
	return status
}

// newProgress reports a download: a bar with rate and ETA on a terminal,
// a log line every 10% otherwise.
func newProgress(e env) func(done, total int64) {
	tty := false
	if f, ok := e.stderr.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	start := time.Now()
	var last time.Time
	lastTenth := int64(-1)
	base := int64(-1) // what was there before this run (a resumed download)
	return func(done, total int64) {
		now := time.Now()
		if base < 0 || done < base {
			// The first report, or a download started over (a partial
			// file that was not the bundle's start): the rate counts
			// from here.
			base, start = done, now
		}
		rate := float64(done-base) / max(now.Sub(start).Seconds(), 0.001)
		if tty {
			if now.Sub(last) < 100*time.Millisecond && done != total {
				return
			}
			last = now
			eta := "?"
			if total > 0 && rate > 0 {
				eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
			}
			pct := 0.0
			if total > 0 {
				pct = 100 * float64(done) / float64(total)
			}
			bar := int(pct / 5)
			fmt.Fprintf(e.stderr, "\r[%-20s] %5.1f%% %s / %s  %s/s  ETA %s ", repeat('#', bar), pct, size(done), size(total), size(int64(rate)), eta)
			if done == total {
				fmt.Fprintln(e.stderr)
			}
			return
		}
		if total > 0 {
			if tenth := 10 * done / total; tenth != lastTenth {
				lastTenth = tenth
				fmt.Fprintf(e.stderr, "download: %d%% (%s of %s, %s/s)\n", 10*tenth, size(done), size(total), size(int64(rate)))
			}
		}
	}
}

func repeat(c byte, n int) string {
	b := make([]byte, max(n, 0))
	for i := range b {
		b[i] = c
	}
	return string(b)
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// builtinVersion is the version of the definitions built into the binary.
func builtinVersion() string {
	d, err := builtinDefinitions(nil)
	if err != nil {
		return "" // cannot happen in a correct build; "" sorts below any version
	}
	return d.Version
}

func displayVersion(v string) string {
	if v == "" {
		return "none"
	}
	return v
}

// printHint says what to do about an update error, when the error itself
// does not: nothing was installed, and the active version is unchanged.
func printHint(e env, err error) {
	if hint := updateHint(err); hint != "" {
		fmt.Fprintln(e.stderr, "what to do: "+hint)
	}
}

// updateHint is what to do about an update error, or "" when the error
// says it itself. update detect and install print it; serve's automatic
// updater logs it (what_to_do).
func updateHint(err error) string {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		dnsErr           *net.DNSError
	)
	const sourceDirHint = "updates.source (or -source) must be the URL of the directory defs publish wrote, the one holding index.json and index.json.minisig"
	hint := ""
	switch {
	case errors.Is(err, defs.ErrUnknownKey):
		hint = "if the publisher has a new key, check it with them and add its .pub to updates.trusted_keys; otherwise this source is not your publisher's"
	case errors.Is(err, update.ErrUnsigned):
		hint = "sclgate never uses an unsigned file. The source was reached, but the signature is not there: the files were published by hand or only in part (publish with sclgate defs publish, which signs the index and every bundle), a mirror is still being copied (the index comes first: try again later), or someone removed it; check with your publisher, and that updates.source (or -source) is their directory"
	case errors.Is(err, update.ErrNoIndex):
		hint = sourceDirHint + "; nothing is published at this one"
	case errors.Is(err, update.ErrNotFound):
		hint = "the source's signed index offers a file the source does not have: the publishing was incomplete (an upload or mirror sync not finished); try again later, and tell the publisher if it persists"
	case errors.Is(err, update.ErrNotIndex):
		hint = sourceDirHint + "; this URL answers with a web page instead"
	case errors.Is(err, update.ErrMismatch):
		hint = "the bundle is genuine but not the version the index offers it as: a publishing mistake (a bundle copied under another version's entry) or an older bundle replayed as a new version to hold you back; do not use it, and tell the publisher (sclgate update install -version V installs a version whose entry is right)"
	case errors.Is(err, defs.ErrBadSignature):
		hint = "the file was changed after it was signed, or the signature is not its own: do not use it; fetch both again from the publisher, and tell them if it persists"
	case errors.Is(err, defs.ErrChecksum):
		hint = "the download was damaged on the way or the source's copy differs from what it signed: run install again (it starts over); if it persists, tell the publisher"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		hint = "the source's TLS certificate has expired, or is not valid yet (is this machine's clock right?): have it renewed"
	case errors.As(err, &unknownAuthority), errors.As(err, &invalid):
		hint = "the source's TLS certificate is not trusted here: have it fixed, or add its CA to this machine's trust store (or point SSL_CERT_FILE at it)"
	case errors.As(err, &hostname):
		hint = "the source's TLS certificate is for another name: use the name it was issued for in updates.source, or have the certificate fixed"
	case errors.Is(err, update.ErrDowngrade):
		hint = "the source serves an index older than what you run: it is stale (a mirror not yet synced) or someone replays an old one to hold you back; check the source with your publisher. If newer versions really were withdrawn, install the one you want with -version V -force"
	case errors.Is(err, update.ErrPartialKept):
		hint = "the download ended before the whole file came (the connection closed, or nothing came for a while): run install again, which goes on from where this one stopped; if it keeps happening, check the network and the source"
	case errors.Is(err, update.ErrDamaged):
		hint = "install it again from its file (sclgate update install FILE, with its .minisig beside it) or from a source that still offers it (-source), or roll back (sclgate update rollback)"
	case errors.Is(err, update.ErrTooLarge):
		hint = sourceDirHint + "; what this one serves under that name is far larger than any index or signature defs publish writes (a file put there by mistake, or a source that is not your publisher's)"
	case errors.Is(err, update.ErrNoSuch):
		hint = "the source's index.json lists the versions it offers (sclgate update detect shows the newest); check the version asked for, or that updates.source (or -source) is the publisher's directory that has it"
	case errors.Is(err, update.ErrUnreachable) && errors.Is(err, fs.ErrNotExist):
		hint = "updates.source (or -source) names a directory that is not there: check the path, and that what holds it is mounted (a USB stick, a network share)"
	case errors.As(err, &dnsErr), errors.Is(err, update.ErrUnreachable):
		hint = "check updates.source (or -source) and that this machine can reach it"
	}
	if hint == "" {
		return ""
	}
	return hint + ". Nothing was installed; the definitions in use are unchanged."
}

// waitingNote tells the admin why a command does not go on: holder
// (another install or rollback: serve's updater, the timer) holds the
// store, or its download.
func waitingNote(e env, store *update.Store) func(holder string) {
	return func(holder string) {
		fmt.Fprintf(e.stderr, "sclgate update: waiting for %s in %s to finish (Ctrl-C gives up)\n", holder, store.Dir())
	}
}
