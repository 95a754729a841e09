package main

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/config"
)

// purgeArchive deletes the archived messages received more than olderThan
// before now (dryRun: only says which), and returns them. Only messages
// directly in the archive directory count: what "archive release" moved to
// released/ is left alone. Files List could not read are not touched; the
// *archive.SkippedError naming them comes back with the messages removed,
// joined with any deletion errors. A message someone else removed
// meanwhile is not an error and not in removed.
func purgeArchive(store *archive.Store, olderThan time.Duration, dryRun bool, now time.Time) (removed []archive.Item, err error) {
	if olderThan <= 0 {
		return nil, errors.New("archive purge: the age must be positive")
	}
	items, err := store.List()
	var skipped *archive.SkippedError
	if err != nil && !errors.As(err, &skipped) {
		return nil, err
	}
	errs := []error{}
	cutoff := now.Add(-olderThan)
	unreadable := map[string]bool{}
	if skipped != nil {
		// A file that is no readable archived message (damaged, foreign,
		// unreadable) expires by its modification time like the others,
		// instead of failing every purge forever; younger ones are
		// reported.
		var left []error
		for i, id := range skipped.IDs {
			path := store.File(id)
			fi, err := os.Lstat(path)
			if err != nil || !fi.ModTime().Before(cutoff) {
				left = append(left, skipped.Errs[i])
				continue
			}
			items = append(items, archive.Item{ID: id, Path: path, Received: fi.ModTime().UTC()})
			unreadable[id] = true
		}
		if len(left) > 0 {
			errs = append(errs, &archive.SkippedError{Errs: left})
		}
	}
	for _, it := range items {
		if !it.Received.Before(cutoff) {
			continue
		}
		if !dryRun {
			remove := store.Delete
			if unreadable[it.ID] {
				remove = store.RemoveSkipped // its name need not be a valid ID
			}
			if err := remove(it.ID); errors.Is(err, fs.ErrNotExist) {
				continue
			} else if err != nil {
				errs = append(errs, err)
				continue
			}
		}
		removed = append(removed, it)
	}
	return removed, errors.Join(errs...)
}

// retain purges store's messages older than keep and logs each one it
// removed (an audit trail: which mail went, not only how much), then the
// count.
func retain(store *archive.Store, keep time.Duration, log *slog.Logger) {
	removed, err := purgeArchive(store, keep, false, time.Now())
	for _, it := range removed {
		log.Info("archive purged message", slog.String("dir", store.Dir()), slog.String("archive_id", it.ID),
			slog.Time("received", it.Received), slog.String("from", it.Envelope.From))
	}
	if err != nil {
		log.Warn("archive purge", slog.String("dir", store.Dir()), slog.Int("removed", len(removed)), slog.Any("err", err))
		return
	}
	log.Info("archive purged", slog.String("dir", store.Dir()), slog.Int("removed", len(removed)),
		slog.String("older_than", keep.String()))
}

// Retention timing; variables so tests can shorten them.
var (
	retentionFirstRun = 30 * time.Second // after serve starts
	retentionInterval = 24 * time.Hour
)

// runRetention looks after the archive shortly after start and then once
// a day, until ctx ends: it removes the temporary files crashed writes
// left behind (up to max_message_bytes each, listed nowhere) and, when
// archive.retention is positive, purges mail older than that. serve starts
// it as a goroutine when there is an archive.dir. Failures are logged,
// never fatal: the next run tries again.
func runRetention(ctx context.Context, cfg *config.Config, log *slog.Logger) {
	keep := time.Duration(cfg.Archive.Retention)
	if cfg.Archive.Dir == "" {
		return
	}
	store, err := archive.Open(cfg.Archive.Dir, archive.Options{StoreSCL: cfg.Archive.StoreSCL})
	if err != nil {
		log.Error("archive upkeep (retention, temporary files) off", slog.Any("err", err))
		return
	}
	wait := retentionFirstRun
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = retentionInterval
		if keep > 0 {
			retain(store, keep, log)
		}
		if keep := time.Duration(cfg.Archive.ReleasedRetention); keep > 0 {
			dir := filepath.Join(store.Dir(), releasedDir)
			if _, err := os.Stat(dir); err == nil { // none until a first release
				if rs, err := archive.Open(dir, archive.Options{}); err != nil {
					log.Warn("archive purge", slog.String("dir", dir), slog.Any("err", err))
				} else {
					retain(rs, keep, log)
				}
			}
		}
		n, err := store.CleanTemp(time.Hour)
		if err != nil {
			log.Warn("archive temporary files", slog.String("dir", store.Dir()), slog.Int("removed", n), slog.Any("err", err))
		} else if n > 0 {
			log.Info("archive: removed temporary files of interrupted writes", slog.String("dir", store.Dir()), slog.Int("removed", n))
		}
	}
}
