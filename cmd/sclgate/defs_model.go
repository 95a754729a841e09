package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/safeio"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/update"
)

// dirList is a repeatable -ham/-spam flag: each value a directory (every
// regular file directly in it, symbolic links followed) or a file.
type dirList []string

func (d *dirList) String() string { return strings.Join(*d, ",") }
func (d *dirList) Set(v string) error {
	if v == "" {
		return errors.New("a directory (or file) must follow it")
	}
	*d = append(*d, v)
	return nil
}

// spreadDirs lets one -ham or -spam name several directories, as the
// usage "-ham DIR..." reads and as a shell glob expands ("-ham
// corpus/easy_ham corpus/hard_ham"): it repeats the flag before each
// further argument that does not start with '-'. train and eval take no
// other arguments, so nothing else is taken for a directory.
func spreadDirs(args []string) []string {
	var out []string
	multi := false // the previous argument was a -ham/-spam value
	flagName := ""
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		if multi && !strings.HasPrefix(a, "-") {
			out = append(out, flagName, a)
			continue
		}
		multi = false
		out = append(out, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "ham" && name != "spam" {
			continue
		}
		flagName = "-" + name
		if !hasValue {
			if i+1 == len(args) {
				break
			}
			if next := args[i+1]; len(next) > 1 && strings.HasPrefix(next, "-") {
				// "-ham -spam DIR": -ham has no directory, and must not
				// take "-spam" for one.
				out[len(out)-1] = flagName + "="
				continue
			}
			i++
			out = append(out, args[i])
		}
		multi = true
	}
	return out
}

// corpusFlagsMissing says what is wrong with train's and eval's corpus
// arguments, or "".
func corpusFlagsMissing(ham, spam dirList, rest []string) string {
	switch {
	case len(ham) == 0 && len(spam) == 0:
		return "-ham DIR and -spam DIR are required"
	case len(ham) == 0:
		return "-ham DIR is required"
	case len(spam) == 0:
		return "-spam DIR is required"
	case len(rest) != 0:
		return fmt.Sprintf("unexpected argument %q (directories go after -ham or -spam)", rest[0])
	}
	return ""
}

// corpusFiles remembers the files read for train and eval, by identity
// (device and inode: the same file under two spellings, or hard-linked),
// with the class each was read as and the path it was first read under.
type corpusFiles map[fileID]corpusFile

type fileID struct{ dev, ino uint64 }

type corpusFile struct{ class, path string }

// clobbers says whether writing path (the flag's value) would replace one
// of the messages read, or one of others (the -defs bundle eval reads):
// the same file, under another spelling or a link.
func (c corpusFiles) clobbers(flag, path string, others ...string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return nil // nothing there yet
	}
	if id, ok := idOf(fi); ok {
		if was, in := c[id]; in {
			return fmt.Errorf("%s %s is (or links to) %s, one of the %s messages read: write it elsewhere", flag, path, was.path, was.class)
		}
	}
	for _, o := range others {
		if ofi, err := os.Stat(o); err == nil && os.SameFile(fi, ofi) {
			return fmt.Errorf("%s %s is (or links to) %s, which is read: write it elsewhere", flag, path, o)
		}
	}
	return nil
}

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), st.Ino}, true
}

// readCorpus reads every message of the directories and files in paths as
// class ("ham" or "spam"), each directory in file-name order. Dot files
// are skipped. A file already read as the same class (a directory given
// twice, "dir" and "./dir/") is read once, with a warning: counted twice,
// one copy would land in a training fold and the other in the fold it is
// tested on, and the cross-validated calibration would promise what the
// model cannot keep. A file read as the other class is an error.
func readCorpus(paths []string, class string, seen corpusFiles, progress func(files int, bytes int64), warn func(format string, a ...any)) (msgs [][]byte, bytes int64, err error) {
	againFiles, firstAgain := 0, "" // files given by name and already read
	for _, p := range paths {
		again := 0 // files of p already read
		st, err := os.Stat(p)
		if err != nil {
			return nil, 0, err
		}
		files := []string{p}
		if st.IsDir() {
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, 0, err
			}
			files = files[:0]
			subdirs := 0
			for _, de := range ents {
				if strings.HasPrefix(de.Name(), ".") {
					continue
				}
				f := filepath.Join(p, de.Name())
				fi, err := os.Stat(f)
				if err != nil {
					// A dangling link (scripts/corpus.sh lays the corpus
					// out as links) is a message missing, not a skip.
					return nil, 0, err
				}
				switch {
				case fi.Mode().IsRegular(): // not FIFOs, devices
					files = append(files, f)
				case fi.IsDir():
					subdirs++
				}
			}
			if len(files) == 0 {
				// A directory that gives no message is a mistake, not a
				// class of none: a Maildir (its messages are in cur/ and
				// new/), a corpus laid out one level deeper, a path
				// mistyped. Counted as nothing, the model would be
				// trained or judged without it and nobody told.
				if subdirs > 0 {
					return nil, 0, fmt.Errorf("%s: no message files, only directories, which are not read: name them (e.g. %s)", p, filepath.Join(p, "*"))
				}
				return nil, 0, fmt.Errorf("%s: no message files in it", p)
			}
			slices.Sort(files)
		}
		for _, f := range files {
			b, id, err := readCorpusFile(f)
			if err != nil {
				return nil, 0, err
			}
			if id != (fileID{}) {
				if was, dup := seen[id]; dup {
					if was.class != class {
						if was.path == f {
							return nil, 0, fmt.Errorf("%s is given as both %s and %s: a message is one or the other", f, was.class, class)
						}
						return nil, 0, fmt.Errorf("%s is given as both %s and %s (as %s): a message is one or the other", f, was.class, class, was.path)
					}
					again++
					continue
				}
				seen[id] = corpusFile{class, f}
			}
			if why := notAMessage(b); why != "" {
				// Training on it would teach the model noise, silently:
				// a bundle written into a ham directory, a Maildir's
				// index files.
				return nil, 0, fmt.Errorf("%s: not a mail message: %s", f, why)
			}
			if at := mboxSecond(b); at >= 0 && warn != nil {
				warn("%s: a second mbox \"From \" line at byte %d: if the file is a mailbox of several messages, split it into one file per message (it is read as one); a message carrying a patch looks so too", f, at)
			}
			msgs = append(msgs, b)
			bytes += int64(len(b))
			if progress != nil {
				progress(len(msgs), bytes)
			}
		}
		switch {
		case again == 0 || warn == nil:
		case !st.IsDir():
			// Files given one by one (a shell glob given twice) are
			// told of once, below, not one line each.
			if againFiles == 0 {
				firstAgain = p
			}
			againFiles++
		case again == 1:
			warn("%s: 1 of its files was already read (given twice?): it is read once", p)
		default:
			warn("%s: %d of its files were already read (given twice?): each is read once", p, again)
		}
	}
	switch {
	case againFiles == 1:
		warn("%s was already read (given twice?): it is read once", firstAgain)
	case againFiles > 1:
		warn("%s and %d more of the files given were already read (given twice?): each is read once", firstAgain, againFiles-1)
	}
	return msgs, bytes, nil
}

// maxCorpusFile bounds a corpus file: no mail message is near it, and a
// device or a runaway file named by mistake must not take the memory.
const maxCorpusFile = 256 << 20

// readCorpusFile reads the corpus file at path, and returns its identity
// as the file opened (not as listed: a file swapped for another since
// must not pass the check against reading one message as ham and spam).
// What is not a regular file is an error, not a wait (a FIFO) or an
// endless read (/dev/zero).
func readCorpusFile(path string) ([]byte, fileID, error) {
	f, fi, err := safeio.Open(path, 0)
	if err != nil {
		return nil, fileID{}, err
	}
	defer f.Close()
	if fi.Size() > maxCorpusFile {
		return nil, fileID{}, fmt.Errorf("%s: %d bytes, larger than any mail message (at most %d)", path, fi.Size(), maxCorpusFile)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxCorpusFile+1))
	if err != nil {
		return nil, fileID{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxCorpusFile {
		return nil, fileID{}, fmt.Errorf("%s: larger than any mail message (at most %d bytes)", path, maxCorpusFile)
	}
	id, _ := idOf(fi)
	return b, id, nil
}

// notAMessage says why b is not a mail message as a corpus stores it
// (RFC 5322 header fields, optionally after an mbox "From " line), or "".
func notAMessage(b []byte) string {
	if len(b) == 0 {
		return "the file is empty"
	}
	m := scorer.TrimMboxFrom(b)
	if bytes.HasPrefix(m, []byte("\xef\xbb\xbf")) {
		// No mail program writes one; a text editor saving the file as
		// "UTF-8 with BOM" does, and a mail reader would take it as
		// part of the first field's name.
		return "it starts with a UTF-8 byte order mark (saved by a text editor?): remove the mark (3 bytes, EF BB BF)"
	}
	if !startsWithField(m) {
		return "its first line is not a header field (one message per file, as in the SpamAssassin corpus or a Maildir's cur/ and new/)"
	}
	// `{"id": 1,` reads as a field named `{"id"`, which RFC 5322 allows
	// but no mail program writes: it is JSON (an index or metadata file
	// beside the messages).
	if m[0] == '{' || m[0] == '[' || m[0] == '"' {
		return "it looks like JSON, not a header field"
	}
	return ""
}

// mboxFromRE is an mbox "From " line: sender, then an asctime date.
// A zone may come before the year (Google Takeout: "11:22:33 +0000 2023")
// or anything after it ("+0000", UUCP's "remote from host").
var mboxFromRE = regexp.MustCompile(`^From \S+ +(Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d \d\d:\d\d(:\d\d)?( [+-]\d{4}| [A-Z]{3,5})? \d{4}[^\n]*\n`)

// mboxSecond returns where a file that starts as an mbox holds what looks
// like the "From " line of a second message (after a blank line, a date,
// then a header field), or -1. It is a guess, only for a warning: a
// message that carries a git patch unescaped has such a line too.
func mboxSecond(b []byte) int {
	if !mboxFromRE.Match(b) {
		return -1
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte("\nFrom "))
		if j < 0 {
			return -1
		}
		i += j + 1
		blank := i >= 2 && b[i-2] == '\n' || i >= 3 && b[i-3] == '\n' && b[i-2] == '\r'
		if loc := mboxFromRE.FindIndex(b[i:]); blank && loc != nil && startsWithField(b[i+loc[1]:]) {
			return i
		}
	}
}

// startsWithField reports whether b begins with a header field name (printable
// ASCII but ':') followed, after optional blanks, by a colon.
func startsWithField(b []byte) bool {
	n := 0
	for n < len(b) && b[n] > ' ' && b[n] < 0x7f && b[n] != ':' {
		n++
	}
	if n == 0 {
		return false
	}
	for n < len(b) && (b[n] == ' ' || b[n] == '\t') {
		n++
	}
	return n < len(b) && b[n] == ':'
}

// progressLine shows progress: on a terminal one line rewritten in place,
// otherwise a log line per stage when it ends.
type progressLine struct {
	w     io.Writer
	tty   bool
	last  time.Time
	shown bool
}

func newProgressLine(w io.Writer) *progressLine {
	p := &progressLine{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

// writableOutput checks that the bundle can be written at path (see
// writeOutput): a file made there (a temporary file in its directory,
// renamed), or a device or FIFO written into.
func writableOutput(path string) error {
	t, err := resolveOutput(path)
	if err != nil {
		return err
	}
	if t.direct || t.fd > 0 {
		return nil // opened when written: a FIFO would wait for a reader here
	}
	f, err := os.CreateTemp(filepath.Dir(t.path), ".sclgate-train-check-*")
	if err != nil {
		return fmt.Errorf("%s: cannot write there: %w", path, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// bar draws done of total as a bar 30 characters wide, and a percentage.
func bar(done, total int) string {
	const width = 30
	if total <= 0 {
		total, done = 1, 0
	}
	n := min(width, width*done/total)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + fmt.Sprintf("] %3d%% ", 100*done/total)
}

// update shows "text" while a stage runs (terminal only, at most ten times
// a second, and always the final state).
func (p *progressLine) update(text string, final bool) {
	if !p.tty {
		return
	}
	if !final && time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	fmt.Fprintf(p.w, "\r\033[K%s", text)
	p.shown = true
}

// log ends the line in progress, if any, and prints a line.
func (p *progressLine) log(format string, args ...any) {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
	fmt.Fprintf(p.w, format+"\n", args...)
}

// defsTrain implements "sclgate defs train": train the built-in model on a
// corpus and write it.
func defsTrain(e env, args []string) int {
	fs := flag.NewFlagSet("defs train", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var hamDirs, spamDirs dirList
	fs.Var(&hamDirs, "ham", "`DIR` (or file) of legitimate messages, one message per file; repeatable, or several after one -ham")
	fs.Var(&spamDirs, "spam", "`DIR` (or file) of spam, one message per file; repeatable, or several after one -spam")
	out := fs.String("o", "", "write the definitions bundle to `FILE` (e.g. sclgate-defs-VERSION.tar.gz)")
	seed := fs.Uint64("seed", 1, "seed of the cross-validation folds and shuffles")
	version := fs.String("version", "", "definitions version `V` (default: from the UTC time, e.g. 2026.11.23.1405, or from SOURCE_DATE_EPOCH)")
	workers := fs.Int("workers", 1, "train folds on `N` goroutines (1 to 64; at most 2 run at once; the model does not depend on it)")
	bits := fs.Int("bits", 20, "log2 of the number of hash buckets (weights): the model has 2^`N` (10..24)")
	minSclgate := fs.String("min-sclgate", scorer.FeatureSetSince, "record in the manifest that the bundle needs sclgate `V` or later; not below the first sclgate of this build's feature set")
	hamWeight := fs.Float64("ham-weight", scorer.DefaultHamWeight, "a ham message counts `W` times a spam in the training loss (above 0, at most 1000)")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs train -ham DIR... -spam DIR... -o FILE [-seed N] [-version V] [-ham-weight W] [-min-sclgate V] [-bits N] [-workers N]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(spreadDirs(args)); err != nil {
		return flagExit(err, 2)
	}
	if msg := corpusFlagsMissing(hamDirs, spamDirs, fs.Args()); msg != "" || *out == "" {
		if msg == "" {
			msg = "-o FILE is required"
		}
		fmt.Fprintln(e.stderr, "sclgate defs train:", msg)
		fs.Usage()
		return 2
	}
	if *version != "" && !defs.ValidVersion(*version) || !defs.ValidVersion(*minSclgate) {
		fmt.Fprintln(e.stderr, `sclgate defs train: -version and -min-sclgate take 1 to 64 letters, digits and ". _ + -", beginning with a letter or digit, other than "builtin"`)
		return 2
	}
	if update.NewEnough(*minSclgate, scorer.FeatureSetSince) != nil {
		// An older sclgate extracts other features and cannot load the
		// model: it must pass the bundle over, not download it.
		fmt.Fprintf(e.stderr, "sclgate defs train: -min-sclgate %s: this build's models (feature set %d) need sclgate %s or later\n",
			*minSclgate, scorer.FeatureVersion, scorer.FeatureSetSince)
		return 2
	}
	if !(*hamWeight > 0 && *hamWeight <= scorer.MaxHamWeight) {
		fmt.Fprintf(e.stderr, "sclgate defs train: -ham-weight %v: must be a number above 0 and at most %d\n", *hamWeight, scorer.MaxHamWeight)
		return 2
	}
	if *workers < 1 || *workers > 64 {
		fmt.Fprintf(e.stderr, "sclgate defs train: -workers %d: must be 1 to 64\n", *workers)
		return 2
	}
	if *bits < 10 || *bits > 24 {
		fmt.Fprintf(e.stderr, "sclgate defs train: -bits %d: must be 10 to 24\n", *bits)
		return 2
	}
	created, err := creationTime()
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs train:", err)
		return 2
	}
	// Before minutes of training: can the bundle be written where asked?
	if err := writableOutput(*out); err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs train: -o", err)
		return 1
	}
	p := newProgressLine(e.stderr)
	start := time.Now()
	// The same directories in any order are the same data: the same model.
	slices.Sort(hamDirs)
	slices.Sort(spamDirs)
	reading := func(class string) func(int, int64) {
		return func(n int, b int64) {
			p.update(fmt.Sprintf("reading %s: %d messages, %.1f MB", class, n, float64(b)/1e6), false)
		}
	}
	warnf := func(format string, a ...any) { p.log("defs train: warning: "+format, a...) }
	seen := corpusFiles{}
	ham, hamBytes, err := readCorpus(hamDirs, "ham", seen, reading("ham"), warnf)
	if err == nil {
		var spamBytes int64
		var spam [][]byte
		spam, spamBytes, err = readCorpus(spamDirs, "spam", seen, reading("spam"), warnf)
		if err == nil {
			err = seen.clobbers("-o", *out)
		}
		if err == nil {
			p.log("defs train: read %d ham and %d spam messages (%.1f MB) in %s",
				len(ham), len(spam), float64(hamBytes+spamBytes)/1e6, time.Since(start).Round(time.Millisecond))
			v := *version
			if v == "" {
				v = created.Format("2006.01.02.1504")
			}
			desc := fmt.Sprintf("%d ham from %s; %d spam from %s; seed %d; ham weight %g",
				len(ham), describePaths(hamDirs), len(spam), describePaths(spamDirs), *seed, *hamWeight)
			return trainAndWrite(e, p, ham, spam, *out, desc, *minSclgate, created,
				scorer.TrainOptions{Seed: *seed, Version: v, Workers: *workers, Bits: *bits, HamWeight: *hamWeight})
		}
	}
	fmt.Fprintln(e.stderr, "sclgate defs train:", err)
	return 1
}

// describePaths lists the corpus paths for the manifest's training_data,
// each once, and only the first ones of a long list (a shell glob of
// thousands of files): the field is bounded, and a bundle refused for it
// after minutes of training would be training thrown away.
func describePaths(paths []string) string {
	var uniq []string
	for _, p := range paths {
		if p = filepath.Clean(p); !slices.Contains(uniq, p) {
			uniq = append(uniq, p)
		}
	}
	const max = 2000
	var b strings.Builder
	for i, p := range uniq {
		if i > 0 && b.Len()+len(p) > max {
			fmt.Fprintf(&b, " and %d more (%d paths in all)", len(uniq)-i, len(uniq))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(p) > max {
			p = p[:max] + "…"
		}
		b.WriteString(p)
	}
	return b.String()
}

// creationTime is the bundle's creation time, in its manifest and as its
// members' times: now, or SOURCE_DATE_EPOCH (reproducible-builds.org)
// when set, so that a rebuild of the same data, seed and version gives
// the same bundle byte for byte, not only the same model.
func creationTime() (time.Time, error) {
	s, ok := os.LookupEnv("SOURCE_DATE_EPOCH")
	if !ok || s == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n >= defs.MaxCreated.Unix() {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970-01-01 UTC, before %s, e.g. %d", s, defs.MaxCreated.Format(time.DateOnly), time.Now().Unix())
	}
	return time.Unix(n, 0).UTC(), nil
}

func trainAndWrite(e env, p *progressLine, ham, spam [][]byte, out, trainingData, minSclgate string, created time.Time, opts scorer.TrainOptions) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	stageStart := time.Now()
	opts.Progress = func(pr scorer.Progress) {
		switch pr.Stage {
		case "read":
			p.update(bar(pr.Done, pr.Total)+fmt.Sprintf("parsing: %d/%d messages, %d features", pr.Done, pr.Total, pr.Features), pr.Done == pr.Total)
		case "cv":
			p.update(bar(pr.Done, pr.Total)+fmt.Sprintf("cross-validation: epoch %d/%d (all folds and settings)", pr.Done, pr.Total), pr.Done == pr.Total)
		case "final":
			p.update(bar(pr.Done, pr.Total)+fmt.Sprintf("final model: epoch %d/%d (all fold models)", pr.Done, pr.Total), pr.Done == pr.Total)
		}
	}
	m, rep, err := scorer.Train(ctx, ham, spam, opts)
	if err != nil {
		p.log("sclgate defs train: %v", err)
		return 1
	}
	p.log("defs train: features: %d distinct (hashed into %d buckets), %.0f per message; extracted in %s",
		rep.Features, 1<<m.Info().Bits, rep.AvgFeatures, rep.ReadTime.Round(time.Millisecond))
	p.log("defs train: cross-validation: %d settings in %s", len(rep.Grid), rep.CVTime.Round(time.Millisecond))
	for _, g := range rep.Grid {
		mark := " "
		if g == rep.Chosen {
			mark = "*"
		}
		p.log("  %s L1=%g L2=%g epochs=%-3d AUC=%.5f log-loss=%.4f spam at SCL>=7: %.2f%%",
			mark, g.L1, g.L2, g.Epochs, g.AUC, g.LogLoss, 100*g.Catch)
	}
	p.log("defs train: final model (average of the fold models) in %s; %d non-zero weights; total %s",
		rep.FinalTime.Round(time.Millisecond), rep.NonZero, time.Since(stageStart).Round(time.Millisecond))
	mb, err := m.MarshalBinary()
	var bundle bytes.Buffer
	if err == nil {
		err = defs.Write(&bundle, &defs.Bundle{
			Manifest: defs.Manifest{
				Version:      opts.Version,
				Created:      created,
				TrainingData: fmt.Sprintf("%s; cross-validated AUC %.5f", trainingData, rep.Chosen.AUC),
				Calibration:  manifestCalibration(m.Calibration()),
				MinSclgate:   minSclgate,
			},
			Model: mb,
		})
	}
	if err == nil {
		err = writeOutput(out, bundle.Bytes(), 0o644)
	}
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs train:", err)
		return 1
	}
	w := e.stdout
	fmt.Fprintf(w, "definitions: %s (%d bytes; model %d bytes), version %q, seed %d\n", out, bundle.Len(), len(mb), opts.Version, opts.Seed)
	fmt.Fprintf(w, "sign it with: sclgate defs sign -key KEY %s\n", out)
	fmt.Fprintf(w, "trained on %d ham + %d spam; cross-validated AUC %.5f (body %.5f, subject %.5f, form %.5f)\n",
		rep.Ham, rep.Spam, rep.Chosen.AUC, rep.ViewAUC["body"], rep.ViewAUC["subject"], rep.ViewAUC["form"])
	fmt.Fprintf(w, "chosen: L1=%g L2=%g epochs=%d\n", rep.Chosen.L1, rep.Chosen.L2, rep.Chosen.Epochs)
	fmt.Fprintln(w, "calibration (cross-validated on the training messages: each scored by a model that did not see it):")
	writeCalibration(w, m.Calibration(), rep.Ham, rep.Spam)
	return 0
}

// writeCalibration prints the SCL table: cut, meaning, and what
// cross-validation measured.
func writeCalibration(w io.Writer, cal scorer.Calibration, ham, spam int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  SCL\tspam probability ≥\tmeaning: of ham at most\tham at or above\t\tspam at or above\t\t")
	for _, r := range cal.Rows {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d/%d\t%s\t%d/%d\t\n", r.SCL, formatProb(r.Cut), percent(r.HamTarget),
			percent(r.HamRate), r.Ham, ham, percent(r.SpamRate), r.Spam, spam)
	}
	tw.Flush()
	// A meaning of "at most 0.01% of ham" cannot be counted on fewer
	// than 10,000 ham: such cuts come from the fit of the ham scores'
	// tail, and the admin should know which.
	var fitted []string
	for _, r := range cal.Rows {
		if r.HamTarget > 0 && ham > 0 && r.HamTarget*float64(ham) < 1 {
			fitted = append(fitted, strconv.Itoa(r.SCL))
		}
	}
	if len(fitted) > 0 {
		fmt.Fprintf(w, "  note: SCL %s: less than one of the %d ham is expected at or above the cut, so it was extrapolated from the fit of the ham scores' tail, not counted\n",
			strings.Join(fitted, ", "), ham)
	}
}

// formatProb writes a probability so that cuts near 1 stay apart.
func formatProb(p float64) string {
	switch {
	case p == 0:
		return "0"
	case p == 1:
		return "1"
	case p > 0.999:
		return "1 - " + strconv.FormatFloat(1-p, 'g', 2, 64)
	case p < 0.001:
		return strconv.FormatFloat(p, 'g', 2, 64)
	}
	return strconv.FormatFloat(p, 'f', 4, 64)
}

// evalResult is "defs eval -json".
type evalResult struct {
	Model struct {
		Version string           `json:"version"`
		Info    scorer.ModelInfo `json:"info"`
		Table   []scorer.CalRow  `json:"calibration"`
	} `json:"model"`
	Ham            int         `json:"ham"`
	Spam           int         `json:"spam"`
	Bytes          int64       `json:"bytes"`
	Seconds        float64     `json:"seconds"`
	MessagesPerSec float64     `json:"messages_per_second"`
	AUC            float64     `json:"auc"`
	Thresholds     []evalRow   `json:"thresholds"`
	Histogram      evalHistSCL `json:"histogram"`
}

type evalRow struct {
	SCL        int     `json:"scl"` // messages with SCL ≥ this
	Ham        int     `json:"ham"`
	HamRate    float64 `json:"ham_fp_rate"`
	Spam       int     `json:"spam"`
	SpamRate   float64 `json:"spam_catch_rate"`
	CVHamRate  float64 `json:"cv_ham_rate"`  // what the calibration table expected
	CVSpamRate float64 `json:"cv_spam_rate"` // ditto
}

type evalHistSCL struct {
	Ham  [10]int `json:"ham"` // messages per SCL 0..9
	Spam [10]int `json:"spam"`
}

// defsEval implements "sclgate defs eval": score a labelled corpus.
func defsEval(e env, args []string) int {
	fs := flag.NewFlagSet("defs eval", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var hamDirs, spamDirs dirList
	defsFile := fs.String("defs", "", "definitions bundle `FILE` (default: the built-in definitions)")
	fs.Var(&hamDirs, "ham", "`DIR` (or file) of legitimate messages; repeatable, or several after one -ham")
	fs.Var(&spamDirs, "spam", "`DIR` (or file) of spam; repeatable, or several after one -spam")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	plot := fs.String("plot", "", "write an SVG chart (SCL histogram, ROC curve) to `FILE.svg`")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate defs eval [-defs FILE] -ham DIR... -spam DIR... [-json] [-plot FILE.svg]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(spreadDirs(args)); err != nil {
		return flagExit(err, 2)
	}
	if msg := corpusFlagsMissing(hamDirs, spamDirs, fs.Args()); msg != "" {
		fmt.Fprintln(e.stderr, "sclgate defs eval:", msg)
		fs.Usage()
		return 2
	}
	d, err := definitionsFile(*defsFile, func(w string) { fmt.Fprintln(e.stderr, "sclgate defs eval:", printLine(w)) })
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs eval:", err)
		return 1
	}
	m := d.Model
	warnf := func(format string, a ...any) { fmt.Fprintf(e.stderr, "sclgate defs eval: warning: "+format+"\n", a...) }
	seen := corpusFiles{}
	ham, hamBytes, err := readCorpus(hamDirs, "ham", seen, nil, warnf)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs eval:", err)
		return 1
	}
	spam, spamBytes, err := readCorpus(spamDirs, "spam", seen, nil, warnf)
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate defs eval:", err)
		return 1
	}
	if len(ham) == 0 || len(spam) == 0 {
		fmt.Fprintln(e.stderr, "sclgate defs eval: need at least one ham and one spam message")
		return 1
	}
	if *plot != "" {
		var others []string
		if *defsFile != "" {
			others = append(others, *defsFile)
		}
		if err := seen.clobbers("-plot", *plot, others...); err != nil {
			fmt.Fprintln(e.stderr, "sclgate defs eval:", err)
			return 1
		}
	}

	// Score everything on one goroutine and one P, files already in memory:
	// the figure is what one core does (parse + classify).
	all := append(slices.Clip(ham), spam...)
	z := make([]float64, len(all))
	scl := make([]int, len(all))
	prev := runtime.GOMAXPROCS(1)
	runtime.GC()
	start := time.Now()
	for i, raw := range all {
		msg := scorer.Parse(scorer.TrimMboxFrom(raw))
		z[i] = m.LogOdds(msg)
		scl[i] = m.Verdict(z[i]).SCL
	}
	elapsed := time.Since(start)
	runtime.GOMAXPROCS(prev)

	var r evalResult
	r.Model.Version = m.Version()
	r.Model.Info = m.Info()
	cal := m.Calibration()
	r.Model.Table = cal.Rows[:]
	r.Ham, r.Spam, r.Bytes = len(ham), len(spam), hamBytes+spamBytes
	r.Seconds = elapsed.Seconds()
	r.MessagesPerSec = float64(len(all)) / elapsed.Seconds()
	hz, sz := z[:len(ham)], z[len(ham):]
	r.AUC = scorer.AUC(hz, sz)
	for i := range all {
		if i < len(ham) {
			r.Histogram.Ham[scl[i]]++
		} else {
			r.Histogram.Spam[scl[i]]++
		}
	}
	for s := 1; s <= 9; s++ {
		row := evalRow{SCL: s, CVHamRate: cal.Rows[s-1].HamRate, CVSpamRate: cal.Rows[s-1].SpamRate}
		for k := s; k <= 9; k++ {
			row.Ham += r.Histogram.Ham[k]
			row.Spam += r.Histogram.Spam[k]
		}
		row.HamRate = float64(row.Ham) / float64(len(ham))
		row.SpamRate = float64(row.Spam) / float64(len(spam))
		r.Thresholds = append(r.Thresholds, row)
	}
	if *plot != "" {
		if err := writeOutput(*plot, evalSVG(&r, hz, sz), 0o644); err != nil {
			fmt.Fprintln(e.stderr, "sclgate defs eval:", err)
			return 1
		}
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(&r); err != nil {
			fmt.Fprintln(e.stderr, "sclgate defs eval:", err)
			return 1
		}
		return 0
	}
	w := e.stdout
	info := m.Info()
	fmt.Fprintf(w, "definitions: %s (%s), trained on %d ham + %d spam (cross-validated AUC %.5f)\n",
		d.Version, d.Origin, info.TrainHam, info.TrainSpam, info.CVAUC)
	fmt.Fprintf(w, "messages: %d ham + %d spam, %.1f MB\n", r.Ham, r.Spam, float64(r.Bytes)/1e6)
	fmt.Fprintf(w, "speed: %d messages in %s = %.0f messages/s on one core (parse + classify, files in memory)\n",
		len(all), elapsed.Round(time.Millisecond), r.MessagesPerSec)
	fmt.Fprintf(w, "AUC: %.5f\n", r.AUC)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  SCL ≥\tham false positives\t\tspam caught\t\texpected from training (ham, spam)\t")
	for _, row := range r.Thresholds {
		fmt.Fprintf(tw, "  %d\t%d/%d\t%s\t%d/%d\t%s\t%s, %s\t\n", row.SCL, row.Ham, r.Ham, percent(row.HamRate),
			row.Spam, r.Spam, percent(row.SpamRate), percent(row.CVHamRate), percent(row.CVSpamRate))
	}
	tw.Flush()
	if *plot != "" {
		fmt.Fprintf(w, "plot: %s\n", *plot)
	}
	return 0
}

// evalSVG draws the SCL histogram of ham and spam (share of each class per
// SCL) and the ROC curve (spam caught against ham false-positive rate, the
// latter on a log scale: the interesting part is below 1%), with the SCL
// cuts marked on it.
func evalSVG(r *evalResult, ham, spam []float64) []byte {
	const (
		w, h        = 960, 420
		panelW      = 400
		top, bottom = 50, 360
		hamColor    = "#2b7bb9"
		spamColor   = "#d7301f"
	)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	// The definitions version names the plot: two bundles' plots side
	// by side must not look alike.
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" text-anchor="middle">sclgate definitions %s: %d ham, %d spam, AUC %.5f</text>`+"\n",
		w/2, html.EscapeString(r.Model.Version), r.Ham, r.Spam, r.AUC)

	// Left: histogram, share of the class at each SCL 1..9.
	x0, y0 := 60.0, float64(bottom)
	ph := float64(bottom - top)
	maxShare := 0.0
	for s := 1; s <= 9; s++ {
		maxShare = max(maxShare, float64(r.Histogram.Ham[s])/float64(r.Ham), float64(r.Histogram.Spam[s])/float64(r.Spam))
	}
	maxShare = math.Ceil(maxShare*10) / 10
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">SCL given (share of each class)</text>`+"\n", x0+panelW/2, top-12)
	for t := 0.0; t <= maxShare+1e-9; t += 0.1 {
		y := y0 - t/maxShare*ph
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n",
			x0, x0+panelW, y, y, x0-5, y+4, 100*t)
	}
	slot := float64(panelW) / 9
	for s := 1; s <= 9; s++ {
		for k, c := range []struct {
			n, total int
			color    string
		}{{r.Histogram.Ham[s], r.Ham, hamColor}, {r.Histogram.Spam[s], r.Spam, spamColor}} {
			share := float64(c.n) / float64(c.total)
			bh := share / maxShare * ph
			x := x0 + float64(s-1)*slot + 6 + float64(k)*(slot-12)/2
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>SCL %d: %d</title></rect>`+"\n",
				x, y0-bh, (slot-12)/2, bh, c.color, s, c.n)
			if c.n > 0 {
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="9" text-anchor="middle">%d</text>`+"\n", x+(slot-12)/4, y0-bh-3, c.n)
			}
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%d</text>`+"\n", x0+(float64(s)-0.5)*slot, y0+16, s)
	}
	fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="black"/>`+"\n", x0, x0+panelW, y0, y0)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">SCL</text>`+"\n", x0+panelW/2, y0+34)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">ham (%d)</text>`+"\n", x0+10, bottom+44, hamColor, x0+26, bottom+54, r.Ham)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="12" height="12" fill="%s"/><text x="%.0f" y="%d">spam (%d)</text>`+"\n", x0+130, bottom+44, spamColor, x0+146, bottom+54, r.Spam)

	// Right: ROC, x = log10 ham FP rate from 1e-4 to 1, y = spam caught.
	rx0 := 540.0
	const lo = -4.0
	xOf := func(fpr float64) float64 {
		l := lo
		if fpr > 0 {
			l = max(lo, math.Log10(fpr))
		}
		return rx0 + (l-lo)/(-lo)*panelW
	}
	yOf := func(tpr float64) float64 { return y0 - tpr*ph }
	fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">ROC: spam caught vs ham false positives</text>`+"\n", rx0+panelW/2, top-12)
	for _, f := range []float64{1e-4, 1e-3, 1e-2, 1e-1, 1} {
		x := xOf(f)
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%.0f" stroke="#ddd"/><text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`+"\n",
			x, x, top, y0, x, y0+16, rocTick(f))
	}
	for t := 0.0; t <= 1.0001; t += 0.1 {
		y := yOf(t)
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" text-anchor="end">%.0f%%</text>`+"\n",
			rx0, rx0+panelW, y, y, rx0-5, y+4, 100*t)
	}
	fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="%d" height="%.0f" fill="none" stroke="black"/>`+"\n", rx0, top, panelW, ph)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">ham false-positive rate (log scale; 0.01%% and below, 0 too, at the left edge)</text>`+"\n", rx0+panelW/2, y0+34)
	// The curve: walk thresholds from high to low.
	type pt struct {
		z    float64
		spam bool
	}
	pts := make([]pt, 0, len(ham)+len(spam))
	for _, v := range ham {
		pts = append(pts, pt{v, false})
	}
	for _, v := range spam {
		pts = append(pts, pt{v, true})
	}
	slices.SortFunc(pts, func(a, b pt) int {
		switch {
		case a.z > b.z:
			return -1
		case a.z < b.z:
			return 1
		}
		return 0
	})
	var path strings.Builder
	fp, tp := 0, 0
	fmt.Fprintf(&path, "M%.1f %.1f", xOf(0), yOf(0))
	for i := 0; i < len(pts); {
		j := i
		for j < len(pts) && pts[j].z == pts[i].z {
			if pts[j].spam {
				tp++
			} else {
				fp++
			}
			j++
		}
		i = j
		fmt.Fprintf(&path, " L%.1f %.1f", xOf(float64(fp)/float64(len(ham))), yOf(float64(tp)/float64(len(spam))))
	}
	fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="black" stroke-width="1.5"/>`+"\n", path.String())
	for _, row := range r.Thresholds[1:] {
		x, y := xOf(row.HamRate), yOf(row.SpamRate)
		fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"><title>SCL ≥ %d: ham %d, spam %d</title></circle><text x="%.1f" y="%.1f" font-size="10">%d</text>`+"\n",
			x, y, spamColor, row.SCL, row.Ham, row.Spam, x+5, y+12, row.SCL)
	}
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

// manifestCalibration is the model's calibration table as the bundle's
// manifest carries it, for "defs info" and admins.
func manifestCalibration(c scorer.Calibration) []defs.CalRow {
	rows := make([]defs.CalRow, 0, len(c.Rows))
	for _, r := range c.Rows {
		rows = append(rows, defs.CalRow{SCL: r.SCL, Cut: r.Cut, HamRate: r.HamRate, SpamRate: r.SpamRate, Ham: r.Ham, Spam: r.Spam})
	}
	return rows
}

// rocTick labels the ROC's x axis at ham false-positive rate f; the left
// edge stands for every rate up to it, none included.
func rocTick(f float64) string {
	l := strconv.FormatFloat(100*f, 'g', -1, 64) + "%"
	if f <= 1e-4 {
		l = "≤" + l
	}
	return l
}
