package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/weights"
)

// scanResult is one line of "scan -json" output.
type scanResult struct {
	File          string     `json:"file"`
	SCL           int        `json:"scl"`
	Classifier    string     `json:"classifier"`
	Score         float64    `json:"score"`
	ClassifierSCL int        `json:"classifier_scl"`
	Rules         []scanRule `json:"rules"`
	Definitions   string     `json:"definitions,omitempty"`
	Defects       []string   `json:"defects,omitempty"`
	// Features: with -explain, the model features that weighed most.
	Features []scanFeature `json:"features,omitempty"`
}

type scanFeature struct {
	Feature string  `json:"feature"`
	LogOdds float64 `json:"log_odds"`
}

type scanRule struct {
	Type   string `json:"type"`
	Change string `json:"change"`
	Text   string `json:"text"`
	Line   int    `json:"line"`
}

// cmdScan implements "sclgate scan": score files, directories or stdin.
func cmdScan(e env, args []string) int {
	fs := flag.NewFlagSet("scan", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	configFile := fs.String("config", "", "configuration `FILE` (default: the embedded defaults)")
	classifierName := fs.String("classifier", "", "classifier `NAME` (default: filter.classifier)")
	weightsFile := fs.String("weights", "", "custom weight list `FILE` (default: filter.weights_file; -weights '' for none)")
	defsFile := fs.String("defs", "", "definitions bundle `FILE` (default: the built-in definitions)")
	asJSON := fs.Bool("json", false, "one JSON object per message and line")
	explain := fs.Int("explain", 0, "also list the `N` features of the built-in model that weighed most in each verdict")
	fs.Usage = func() {
		fmt.Fprintln(e.stderr, "usage: sclgate scan [-config FILE] [-classifier NAME] [-defs BUNDLE] [-weights FILE|''] [-json] [-explain N] [FILE|DIR...]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(reorderFlags(fs, args)); err != nil {
		return flagExit(err, 2)
	}
	if *explain < 0 {
		fmt.Fprintln(e.stderr, "sclgate scan: -explain: want a number of features, 0 or more")
		return 2
	}

	cfg, err := config.Load(*configFile)
	if err != nil {
		fmt.Fprintln(e.stderr, err)
		return 2
	}
	name := cfg.Filter.Classifier
	if *classifierName != "" {
		name = *classifierName
	}
	d, err := definitionsFile(*defsFile, func(w string) { fmt.Fprintln(e.stderr, "sclgate scan:", printLine(w)) })
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate scan:", err)
		return 2
	}
	cfg.Filter.Classifier = name
	c, defsVersion, err := classifier(cfg, d, func(c string, err error) {
		if cfg.Filter.ClassifierFailure == config.FailureTempfail {
			fmt.Fprintf(e.stderr, "sclgate scan: %s failed (classifier_failure: tempfail, so not scored): %v\n", c, err)
			return
		}
		fmt.Fprintf(e.stderr, "sclgate scan: %s failed, scored by the built-in model: %v\n", c, err)
	})
	if err != nil {
		fmt.Fprintln(e.stderr, "sclgate scan:", err)
		return 2
	}
	wf := cfg.Filter.WeightsFile
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "weights" { // -weights '' scores without the config's list
			wf = *weightsFile
		}
	})
	var list *weights.List
	if wf != "" {
		if list, err = weights.Load(wf); err != nil {
			fmt.Fprintln(e.stderr, "sclgate scan:", err)
			return 2
		}
	}
	s := &scorer.Scorer{Classifier: c, Weights: func() *weights.List { return list }, Definitions: defsVersion}

	files, failed := expandArgs(e, fs.Args())
	if len(fs.Args()) == 0 {
		files = []string{"-"}
	}
	enc := json.NewEncoder(jsonSafe{e.stdout})
	enc.SetEscapeHTML(false)
	for _, f := range files {
		raw, err := readInput(e, f, cfg.Limits.MaxMessageBytes)
		if err != nil {
			fmt.Fprintln(e.stderr, "sclgate scan:", printLine(err.Error()))
			failed = true
			continue
		}
		m := scorer.Parse(raw)
		r, err := s.Score(context.Background(), m)
		if err != nil {
			fmt.Fprintf(e.stderr, "sclgate scan: %s: %s\n", printLine(f), printLine(err.Error()))
			failed = true
			continue
		}
		features := s.Explain(m, r, *explain)
		if *asJSON {
			enc.Encode(toScanResult(f, r, m, features))
		} else {
			// The name as the terminal can show it (JSON escapes it).
			fmt.Fprintf(e.stdout, "%s: %s\n", printLine(f), r.Report(0))
			writeFeatures(e.stdout, features)
		}
	}
	if failed {
		return 1
	}
	return 0
}

// writeFeatures lists an explanation, one feature a line, indented under
// the message's line: its log-odds, then its name.
func writeFeatures(w io.Writer, fs []scorer.Contribution) {
	for _, c := range fs {
		fmt.Fprintf(w, "  %+7.2f  %s\n", c.Weight, printLine(c.Feature))
	}
}

func toScanResult(file string, r scorer.Result, m *scorer.Message, features []scorer.Contribution) scanResult {
	out := scanResult{
		File: file, SCL: r.SCL, Classifier: r.Classifier, Score: r.Score,
		ClassifierSCL: r.ClassifierSCL, Rules: []scanRule{}, Defects: m.Defects, Definitions: r.Definitions,
	}
	for _, en := range r.Rules {
		out.Rules = append(out.Rules, scanRule{Type: en.Type.String(), Change: en.ChangeString(), Text: en.Text, Line: en.Line})
	}
	for _, c := range features {
		out.Features = append(out.Features, scanFeature{Feature: c.Feature, LogOdds: c.Weight})
	}
	return out
}

// expandArgs turns the FILE|DIR arguments into a list of files: a directory
// stands for every regular file directly in it, in name order. Problems are
// reported on stderr and flagged, and the rest still scanned.
func expandArgs(e env, args []string) (files []string, failed bool) {
	for _, a := range args {
		if a == "-" {
			files = append(files, a)
			continue
		}
		st, err := os.Stat(a)
		if err != nil {
			fmt.Fprintln(e.stderr, "sclgate scan:", printLine(err.Error()))
			failed = true
			continue
		}
		if !st.IsDir() {
			files = append(files, a)
			continue
		}
		ents, err := os.ReadDir(a)
		if err != nil {
			fmt.Fprintln(e.stderr, "sclgate scan:", printLine(err.Error()))
			failed = true
			continue
		}
		var names []string
		subdirs, dangling, special := 0, 0, 0
		for _, de := range ents {
			// Regular files, and symlinks to them (corpus layouts and
			// maildirs are often links).
			p := filepath.Join(a, de.Name())
			if de.IsDir() {
				subdirs++
			} else if de.Type().IsRegular() {
				names = append(names, p)
			} else if de.Type()&os.ModeSymlink != 0 {
				switch st, err := os.Stat(p); {
				case err != nil:
					// A dangling link is a message that is not there:
					// said, like an unreadable file.
					fmt.Fprintln(e.stderr, "sclgate scan:", printLine(err.Error()))
					failed = true
					dangling++
				case st.Mode().IsRegular():
					names = append(names, p)
				case st.IsDir():
					subdirs++ // not followed, as a directory is not
				default:
					special++
				}
			} else {
				special++ // a FIFO, socket or device: not opened (a FIFO would hang)
			}
		}
		if special > 0 {
			what := fmt.Sprintf("%d entries are not regular files", special)
			if special == 1 {
				what = "1 entry is not a regular file"
			}
			fmt.Fprintf(e.stderr, "sclgate scan: %s: %s (FIFOs, sockets, devices), not read\n", printLine(a), what)
		}
		switch {
		case len(names) == 0 && subdirs == 0 && dangling == 0 && special == 0:
			// Exit 0 (a spool that is empty now is no error), but
			// said: a script reading the output sees why it has none.
			fmt.Fprintf(e.stderr, "sclgate scan: %s: no messages in it: nothing scanned\n", printLine(a))
		case len(names) == 0 && subdirs > 0:
			// A Maildir, or a corpus laid out by class: scan reads the
			// files directly in a directory, not its subdirectories.
			fmt.Fprintf(e.stderr, "sclgate scan: %s: no files, only directories, which are not scanned: name them (e.g. %s)\n",
				printLine(a), printLine(filepath.Join(a, "*")))
		case subdirs > 0:
			// Said too, or a tree of samples is scanned in part and
			// nobody knows.
			what := "1 subdirectory"
			if subdirs > 1 {
				what = fmt.Sprintf("%d subdirectories", subdirs)
			}
			fmt.Fprintf(e.stderr, "sclgate scan: %s: its files were scanned, not its %s: name those too (e.g. %s)\n",
				printLine(a), what, printLine(filepath.Join(a, "*")))
		}
		sort.Strings(names)
		files = append(files, names...)
	}
	return files, failed
}

// readInput reads the message in file f ("-": stdin), at most max bytes:
// a larger one is an error, as serve refuses it (552), rather than memory
// without bound (scan /dev/zero).
func readInput(e env, f string, max int64) ([]byte, error) {
	r := e.stdin
	name := "stdin"
	if f != "-" {
		file, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		defer file.Close()
		r, name = file, f
	}
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than limits.max_message_bytes (%d bytes), which serve refuses: not scanned", name, max)
	}
	if len(b) == 0 {
		// Most likely what fed it failed (cat missing | sclgate scan):
		// a verdict on nothing would hide that. serve never sees an
		// empty message either (DATA has at least its final line).
		return nil, fmt.Errorf("%s: empty (0 bytes): not a mail message, not scanned", name)
	}
	return b, nil
}
