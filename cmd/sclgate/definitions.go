package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/update"
)

// definitions are the filter definitions in use: the active version in
// definitions.dir, or the ones built into the binary while none is.
type definitions struct {
	Version string
	Origin  string // "built in" or the bundle's path
	Model   *scorer.Model
}

// loadDefinitions loads the active installed version, falling back to the
// built-in definitions, with the reason, when it cannot be read: a broken
// install must never stop mail.
func loadDefinitions(cfg *config.Config) (*definitions, error) {
	if cfg.Definitions.Dir != "" {
		// Nothing installed yet: no directory to make (serve -check and
		// scan change nothing on disk; the updater makes it when it
		// installs).
		if _, err := os.Stat(cfg.Definitions.Dir); errors.Is(err, os.ErrNotExist) {
			return builtinDefinitions(nil)
		}
		store, err := update.OpenStore(cfg.Definitions.Dir)
		if err != nil {
			return builtinDefinitions(err)
		}
		v, err := store.Active()
		if errors.Is(err, update.ErrNoneInstalled) {
			return builtinDefinitions(nil)
		}
		if err != nil {
			return builtinDefinitions(err)
		}
		path := store.BundlePath(v)
		d, err := definitionsFrom(path, func() (*defs.Bundle, error) {
			b, err := defs.ReadFile(path)
			if err == nil {
				// As update judges an installed version (status, detect,
				// rollback): they then say what serve does.
				if err = modelLoads(b); err != nil {
					err = fmt.Errorf("%s: %w", path, err)
				}
			}
			return b, err
		})
		if err != nil {
			return builtinDefinitions(err)
		}
		return d, nil
	}
	return builtinDefinitions(nil)
}

// errBuiltinFallback wraps why the built-in definitions are in use
// although a version is installed; the definitions are still usable.
type errBuiltinFallback struct{ err error }

func (e errBuiltinFallback) Error() string {
	return "installed definitions unusable, using the built-in ones: " + e.err.Error()
}
func (e errBuiltinFallback) Unwrap() error { return e.err }

func builtinDefinitions(why error) (*definitions, error) {
	d, err := definitionsFrom("built in", func() (*defs.Bundle, error) {
		return defs.Read(bytes.NewReader(defs.Builtin()), defs.DefaultMaxSize)
	})
	if err != nil {
		return nil, fmt.Errorf("built-in definitions: %w", err) // a build bug
	}
	if why != nil {
		return d, errBuiltinFallback{why}
	}
	return d, nil
}

func definitionsFrom(origin string, read func() (*defs.Bundle, error)) (*definitions, error) {
	b, err := read()
	if err != nil {
		return nil, err
	}
	if err := update.NewEnough(version, b.Manifest.MinSclgate); err != nil {
		return nil, fmt.Errorf("%s: %w", origin, err)
	}
	m, err := scorer.LoadModel(b.Model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", origin, err)
	}
	return &definitions{Version: b.Manifest.Version, Origin: origin, Model: m}, nil
}

// modelLoads is update.Updater.Usable: a bundle is usable when this build
// can load its model and its manifest's calibration table is the model's
// (checkContent; min_sclgate the Updater checks itself). A table that is
// not would have defs info and update status tell the admin what the
// installed model does not do.
func modelLoads(b *defs.Bundle) error {
	return checkContent(b)
}

// buildVersion is this build's version (for code where a local variable
// named version hides the package's).
func buildVersion() string { return version }

// definitionsFile loads a bundle file, or the built-in definitions when
// path is empty (the -defs flags of scan and defs eval). A bundle whose
// manifest's calibration table is not its model's is used (the model's
// own table gives the SCLs) but told to warn: an admin who tries a bundle
// with scan must hear what verify, sign and update install refuse it for.
func definitionsFile(path string, warn func(string)) (*definitions, error) {
	if path == "" {
		return builtinDefinitions(nil)
	}
	var b *defs.Bundle
	d, err := definitionsFrom(path, func() (*defs.Bundle, error) {
		var err error
		b, err = defs.ReadFile(path)
		return b, err
	})
	if err == nil {
		if err := checkContent(b); err != nil {
			warn(fmt.Sprintf("warning: %s: %v", path, err))
		}
	}
	return d, err
}

// activeStamp identifies what definitions.dir/active holds: the link's
// target, and the identity of its bundle file, which changes when an
// install mends a damaged copy of the version in use (the link then
// stays as it was).
func activeStamp(dir string) string {
	target, _ := os.Readlink(filepath.Join(dir, "active"))
	st, err := os.Stat(filepath.Join(dir, "active", update.BundleFile))
	if err != nil {
		return target
	}
	var ino uint64
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		ino = sys.Ino
	}
	return fmt.Sprintf("%s %d %d %d", target, ino, st.Size(), st.ModTime().UnixNano())
}

// classifier builds filter.classifier: none, builtin, or an external
// engine with the built-in model as its fallback (classifier_failure:
// fallback) or none (tempfail: the gateway answers 451).
func classifier(cfg *config.Config, d *definitions, onError func(classifier string, err error)) (scorer.Classifier, string, error) {
	var builtin scorer.Classifier
	version := ""
	if d != nil {
		builtin, version = d.Model, d.Version
	}
	c, err := scorer.NewClassifier(cfg.Filter.Classifier, scorer.ClassifierOptions{
		Builtin:  builtin,
		Timeout:  cfg.Filter.ClassifierTimeout,
		Fallback: cfg.Filter.ClassifierFailure == config.FailureFallback,
		OnError:  onError,
	})
	if err != nil {
		src := ""
		if cfg.Source != "" {
			src = cfg.Source + ": "
		}
		return nil, "", fmt.Errorf("config: %sfilter.classifier: %w", src, err)
	}
	if c.Name() == "none" {
		version = ""
	}
	return c, version, nil
}

// watchDefinitions polls definitions.dir/active (a symlink, switched by
// rename) and calls onChange when its activeStamp differs from last, the
// one the definitions in use were loaded from. Polling every two seconds
// costs one readlink and one stat and works on every file system, where
// change notification on a symlink rename does not.
func watchDefinitions(ctx context.Context, dir, last string, onChange func()) {
	if dir == "" {
		return
	}
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		// First at once: a reload restarts the watcher, and reloads
		// less than two seconds apart would otherwise keep it from ever
		// looking.
		if now := activeStamp(dir); now != last {
			last = now
			onChange()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// whatToDo is the "what to do" of an update error as a log field: the
// hint update install prints (none when the error says it itself).
func whatToDo(err error) slog.Attr {
	if hint := updateHint(err); hint != "" {
		return slog.String("what_to_do", hint)
	}
	return slog.Attr{} // a zero Attr is left out of the line
}

// autoUpdate checks updates.source a few seconds after start (a gateway
// back from downtime should not wait a whole interval) and then every
// updates.interval (±10%, so a fleet does not call at once), and installs
// new versions; the watcher then switches to them. Failures are logged
// and counted, never fatal: mail flow does not depend on them.
func autoUpdate(ctx context.Context, cfg *config.Config, log *slog.Logger, count func(result string)) {
	keys, err := update.LoadKeys(cfg.Updates.TrustedKeys)
	if err != nil {
		log.Error("automatic updates off", slog.Any("err", err))
		return
	}
	store, err := update.OpenStore(cfg.Definitions.Dir)
	if err != nil {
		log.Error("automatic updates off", slog.Any("err", err))
		return
	}
	builtin, _ := builtinDefinitions(nil)
	u := &update.Updater{Store: store, Keys: keys, Builtin: builtin.Version, Sclgate: version, Usable: modelLoads, Log: log}
	wait := time.Second + time.Duration(rand.Float64()*float64(4*time.Second))
	// Versions this build refused as unusable (another feature set): not
	// downloaded again at every check, until a restart (an upgrade).
	unusable := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		every := time.Duration(cfg.Updates.Interval)
		wait = every + time.Duration((rand.Float64()*0.2-0.1)*float64(every))
		if u.Source == nil {
			// Opened at each check until it works: a directory source
			// may be a share mounted after serve starts.
			src, err := update.NewSource(cfg.Updates.Source)
			if err != nil {
				log.Warn("definitions update check failed", slog.String("source", cfg.Updates.Source), slog.Any("err", err), whatToDo(err))
				count("error")
				continue
			}
			u.Source = src
		}
		d, err := u.Detect(ctx)
		switch {
		case ctx.Err() != nil:
			return // stopped (shutdown, or a reload with new settings): not a failed check
		case err != nil:
			log.Warn("definitions update check failed", slog.String("source", u.Source.String()), slog.Any("err", err), whatToDo(err))
			count("error")
		case !d.Available:
			count("current")
		case unusable[d.Newest.Version]:
			log.Warn("definitions update skipped: this build of sclgate cannot use it; upgrade sclgate",
				slog.String("version", d.Newest.Version))
			count("error")
		default:
			cctx, cancel := context.WithTimeout(ctx, time.Hour)
			// A plain install, as the timer's, not of d.Newest by name:
			// it chooses again under the store's lock, so a rollback
			// the admin made during its download is not undone.
			out, err := u.Install(cctx, "", false)
			cancel()
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				log.Warn("definitions update failed", slog.String("version", d.Newest.Version), slog.Any("err", err), whatToDo(err))
				count("error")
				if errors.Is(err, update.ErrUnusable) {
					unusable[d.Newest.Version] = true
				}
				continue
			}
			if out.Already || out.UpToDate {
				// Someone else (an admin, the timer) installed it meanwhile.
				count("current")
				continue
			}
			log.Info("definitions updated", slog.String("version", out.Version), slog.Bool("repaired", d.Damaged))
			count("installed")
		}
	}
}
