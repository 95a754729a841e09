package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/scorer"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// modelCorpus writes n generated ham and n spam messages (mbox "From "
// line first, as corpora store them) and returns their directories.
func modelCorpus(t *testing.T, n int) (hamDir, spamDir string) {
	t.Helper()
	dir := t.TempDir()
	hamDir, spamDir = filepath.Join(dir, "ham"), filepath.Join(dir, "spam")
	hamWords := strings.Fields("meeting project report schedule review thanks patch build release kernel bug fix")
	spamWords := strings.Fields("free money offer click now limited winner cash credit remove income deal")
	for _, d := range []string{hamDir, spamDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	text := func(words []string, i, k int) string {
		var b strings.Builder
		for j := range k {
			b.WriteString(words[(i*7+j*j)%len(words)] + " ")
		}
		return b.String()
	}
	for i := range n {
		ham := fmt.Sprintf("From dev%d@lists.example.org  Mon Nov  4 10:00:00 2002\nFrom: Dev <dev%d@lists.example.org>\nTo: list@lists.example.org\n"+
			"Subject: Re: %s\nIn-Reply-To: <%d@lists.example.org>\nContent-Type: text/plain\n\n%s\n", i, i, text(hamWords, i, 3), i, text(hamWords, i, 50))
		spam := fmt.Sprintf("From x@y  Mon Nov  4 10:00:00 2002\nFrom: Deals <d%d@offers.example.net>\nTo: undisclosed-recipients:;\n"+
			"Subject: %s!!!\nContent-Type: text/html\n\n<p>%s <a href=\"http://%d.example.net/\">CLICK</a></p>\n", i, strings.ToUpper(text(spamWords, i, 3)), text(spamWords, i, 40), i)
		os.WriteFile(filepath.Join(hamDir, fmt.Sprintf("%03d.eml", i)), []byte(ham), 0o644)
		os.WriteFile(filepath.Join(spamDir, fmt.Sprintf("%03d.eml", i)), []byte(spam), 0o644)
	}
	os.WriteFile(filepath.Join(hamDir, ".hidden"), []byte("not a message"), 0o644)
	return hamDir, spamDir
}

func TestDefsTrainEval(t *testing.T) {
	hamDir, spamDir := modelCorpus(t, 12)
	dir := t.TempDir()
	model := filepath.Join(dir, "sclgate-defs-test.tar.gz")
	code, out, errOut := sclgate(t, "", "defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", model, "-bits", "14", "-seed", "3", "-version", "t1", "-min-sclgate", "0.3")
	if code != 0 {
		t.Fatalf("train: exit %d\n%s%s", code, out, errOut)
	}
	// 12 ham cannot count a rate of 0.1% or less: the rows that need more
	// say they were extrapolated.
	for _, want := range []string{"trained on 12 ham + 12 spam", "calibration", "  9  ", "note: SCL ", "8, 9: less than one of the 12 ham is expected"} {
		if !strings.Contains(out, want) {
			t.Errorf("train stdout lacks %q:\n%s", want, out)
		}
	}
	// Not a terminal: plain log lines, no carriage returns.
	if !strings.Contains(errOut, "defs train: read 12 ham and 12 spam messages") || strings.Contains(errOut, "\r") {
		t.Errorf("train stderr:\n%q", errOut)
	}
	// Determinism is of the model: the bundle around it also records
	// when it was made.
	firstBundle, err := defs.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	first := firstBundle.Model
	if m := firstBundle.Manifest; m.MinSclgate != "0.3" || !strings.Contains(m.TrainingData, "ham weight 8") {
		t.Errorf("manifest: min_sclgate %q, training data %q", m.MinSclgate, m.TrainingData)
	}
	if code, _, _ := sclgate(t, "", "defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", model, "-bits", "14", "-seed", "3", "-version", "t1", "-workers", "2"); code != 0 {
		t.Fatal("second train failed")
	}
	secondBundle, err := defs.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if second := secondBundle.Model; !bytes.Equal(first, second) {
		t.Error("same corpus and seed gave a different model file")
	}
	// Without -min-sclgate, the bundle needs the first sclgate of its
	// feature set.
	if got := secondBundle.Manifest.MinSclgate; got != scorer.FeatureSetSince {
		t.Errorf("default min_sclgate %q, want %q", got, scorer.FeatureSetSince)
	}

	plot := filepath.Join(dir, "eval.svg")
	code, out, errOut = sclgate(t, "", "defs", "eval", "-defs", model, "-ham", hamDir, "-spam", spamDir, "-json", "-plot", plot)
	if code != 0 {
		t.Fatalf("eval: exit %d\n%s%s", code, out, errOut)
	}
	var r evalResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("eval -json: %v\n%s", err, out)
	}
	if r.Ham != 12 || r.Spam != 12 || len(r.Thresholds) != 9 || r.AUC < 0.9 || r.MessagesPerSec <= 0 || r.Model.Version != "t1" {
		t.Errorf("eval: %+v", r)
	}
	if th := r.Thresholds[0]; th.SCL != 1 || th.Ham != 12 || th.Spam != 12 || th.HamRate != 1 {
		t.Errorf("SCL >= 1 row %+v", th)
	}
	svg, err := os.ReadFile(plot)
	if err != nil || !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("ROC")) || !bytes.Contains(svg, []byte("sclgate definitions t1: 12 ham, 12 spam")) {
		t.Errorf("plot: %v %.100s", err, svg)
	}

	code, out, _ = sclgate(t, "", "defs", "eval", "-defs", model, "-ham", hamDir, "-spam", spamDir)
	if code != 0 || !strings.Contains(out, "AUC: ") || !strings.Contains(out, "messages/s") || !strings.Contains(out, "ham false positives") {
		t.Errorf("eval text: exit %d\n%s", code, out)
	}
}

// The same directories given in another order train the same model.
func TestDefsTrainDirOrder(t *testing.T) {
	hamA, spamA := modelCorpus(t, 4)
	hamB, spamB := modelCorpus(t, 5)
	dir := t.TempDir()
	var models [][]byte
	for i, args := range [][]string{{"-ham", hamA, hamB, "-spam", spamA, spamB}, {"-spam", spamB, spamA, "-ham", hamB, hamA}} {
		out := filepath.Join(dir, fmt.Sprintf("m%d.tar.gz", i))
		if code, _, errOut := sclgate(t, "", append([]string{"defs", "train", "-bits", "12", "-version", "t", "-o", out}, args...)...); code != 0 {
			t.Fatalf("train: %d %s", code, errOut)
		}
		b, err := defs.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		models = append(models, b.Model)
	}
	if !bytes.Equal(models[0], models[1]) {
		t.Error("the same directories in another order gave another model")
	}
}

// One -ham or -spam may name several directories, as the usage "-ham
// DIR..." reads: the counts are those of both.
func TestDefsEvalSeveralDirsAfterOneFlag(t *testing.T) {
	hamA, spamA := modelCorpus(t, 3)
	hamB, spamB := modelCorpus(t, 4)
	code, out, errOut := sclgate(t, "", "defs", "eval", "-json", "-ham", hamA, hamB, "-spam", spamA, spamB)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var r struct{ Ham, Spam int }
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Ham != 7 || r.Spam != 7 {
		t.Errorf("counts %+v (%v), want 7 ham and 7 spam:\n%s", r, err, out)
	}
}

// A directory given twice (under two spellings) is read once, with a
// warning: counted twice, copies of one message sat in both a training
// and a validation fold, and the calibration table promised catch rates
// the model could not keep. A file given as both ham and spam, or -o
// naming a message read, is an error.
func TestDefsCorpusGivenTwice(t *testing.T) {
	ham, spam := modelCorpus(t, 6)
	code, out, errOut := sclgate(t, "", "defs", "eval", "-json", "-ham", ham, ham+"/", "-spam", spam, "-spam", filepath.Join(spam, "..", "spam"))
	if code != 0 || !strings.Contains(errOut, "6 of its files were already read (given twice?)") {
		t.Fatalf("eval: %d %s", code, errOut)
	}
	var r struct{ Ham, Spam int }
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Ham != 6 || r.Spam != 6 {
		t.Errorf("counts %+v (%v), want 6 and 6", r, err)
	}
	dir := t.TempDir()
	once, twice := filepath.Join(dir, "once.tar.gz"), filepath.Join(dir, "twice.tar.gz")
	for _, tc := range []struct {
		out  string
		args []string
	}{{once, []string{"-ham", ham, "-spam", spam}}, {twice, []string{"-ham", ham, ham + "/.", "-spam", spam, spam}}} {
		if code, _, errOut := sclgate(t, "", append([]string{"defs", "train", "-bits", "12", "-version", "t", "-o", tc.out}, tc.args...)...); code != 0 {
			t.Fatalf("train %v: %d %s", tc.args, code, errOut)
		}
	}
	a, errA := defs.ReadFile(once)
	b, errB := defs.ReadFile(twice)
	if errA != nil || errB != nil || !bytes.Equal(a.Model, b.Model) {
		t.Errorf("a corpus given twice trained another model (%v, %v)", errA, errB)
	}
	msg := filepath.Join(ham, "000.eml")
	if code, _, errOut := sclgate(t, "", "defs", "train", "-bits", "12", "-o", filepath.Join(dir, "x.tar.gz"), "-ham", ham, "-spam", spam, msg); code != 1 || !strings.Contains(errOut, msg+" is given as both ham and spam") {
		t.Errorf("a message as ham and spam: %d %s", code, errOut)
	}
	before, _ := os.ReadFile(msg)
	if code, _, errOut := sclgate(t, "", "defs", "train", "-bits", "12", "-o", msg, "-ham", ham, "-spam", spam); code != 1 || !strings.Contains(errOut, "one of the ham messages read: write it elsewhere") {
		t.Errorf("-o naming a message: %d %s", code, errOut)
	}
	// eval's -plot likewise, and the -defs bundle it reads.
	if code, _, errOut := sclgate(t, "", "defs", "eval", "-plot", msg, "-ham", ham, "-spam", spam); code != 1 || !strings.Contains(errOut, "-plot "+msg+" is (or links to)") {
		t.Errorf("-plot naming a message: %d %s", code, errOut)
	}
	if after, _ := os.ReadFile(msg); !bytes.Equal(before, after) {
		t.Error("the message was overwritten")
	}
	bundle, _ := os.ReadFile(once)
	if code, _, errOut := sclgate(t, "", "defs", "eval", "-defs", once, "-plot", once, "-ham", ham, "-spam", spam); code != 1 || !strings.Contains(errOut, "which is read: write it elsewhere") {
		t.Errorf("-plot naming the -defs bundle: %d %s", code, errOut)
	}
	if after, _ := os.ReadFile(once); !bytes.Equal(bundle, after) {
		t.Error("the bundle was overwritten")
	}
}

// With SOURCE_DATE_EPOCH, two trainings of the same data and seed give
// the same bundle byte for byte, version included (from that time when
// -version is not given); without it the creation time made them differ.
func TestDefsTrainSourceDateEpoch(t *testing.T) {
	ham, spam := modelCorpus(t, 6)
	dir := t.TempDir()
	t.Setenv("SOURCE_DATE_EPOCH", "1795000000")
	var bundles [][]byte
	for i := range 2 {
		out := filepath.Join(dir, fmt.Sprintf("b%d.tar.gz", i))
		if code, _, errOut := sclgate(t, "", "defs", "train", "-bits", "12", "-o", out, "-ham", ham, "-spam", spam); code != 0 {
			t.Fatalf("train: %d %s", code, errOut)
		}
		b, _ := os.ReadFile(out)
		bundles = append(bundles, b)
		if i == 1 {
			// Another second on the clock: still the same bytes.
			break
		}
		time.Sleep(1100 * time.Millisecond)
	}
	if !bytes.Equal(bundles[0], bundles[1]) {
		t.Error("two trainings with the same SOURCE_DATE_EPOCH gave other bundles")
	}
	b, err := defs.ReadFile(filepath.Join(dir, "b0.tar.gz"))
	if err != nil || b.Manifest.Version != "2026.11.18.1106" || !b.Manifest.Created.Equal(time.Unix(1795000000, 0)) {
		t.Errorf("manifest: %+v, %v", b.Manifest, err)
	}
	// Past what a manifest may hold: refused before training, not after.
	t.Setenv("SOURCE_DATE_EPOCH", "253402300799")
	if code, _, errOut := sclgate(t, "", "defs", "train", "-o", filepath.Join(dir, "x.tar.gz"), "-ham", ham, "-spam", spam); code != 2 || !strings.Contains(errOut, "before 2200-01-01") {
		t.Errorf("SOURCE_DATE_EPOCH in 9999: %d %s", code, errOut)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if code, _, errOut := sclgate(t, "", "defs", "train", "-o", filepath.Join(dir, "x.tar.gz"), "-ham", ham, "-spam", spam); code != 2 || !strings.Contains(errOut, `SOURCE_DATE_EPOCH="yesterday": want seconds since 1970-01-01 UTC`) {
		t.Errorf("a bad SOURCE_DATE_EPOCH: %d %s", code, errOut)
	}
}

// The manifest's training_data names each path once, and only the first
// ones of a long list: a shell glob of thousands of files made it too long
// for a manifest, found only when the trained bundle was written.
func TestDescribePaths(t *testing.T) {
	if got := describePaths([]string{"corpus/train/spam", "corpus/train/spam/", "b"}); got != "corpus/train/spam, b" {
		t.Errorf("got %q", got)
	}
	var many []string
	for i := range 5000 {
		many = append(many, fmt.Sprintf("corpus/train/ham/%05d.eml", i))
	}
	got := describePaths(many)
	if len(got) > 2100 || !strings.HasPrefix(got, "corpus/train/ham/00000.eml, ") || !strings.HasSuffix(got, "(5000 paths in all)") {
		t.Errorf("%d bytes: %.80q … %q", len(got), got, got[max(0, len(got)-60):])
	}
}

func TestSpreadDirs(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-ham a b -spam c", "-ham a -ham b -spam c"},
		{"--ham=a b c -json", "--ham=a -ham b -ham c -json"},
		{"-spam a -ham b -plot x.svg", "-spam a -ham b -plot x.svg"},
		// A flag where -ham's directory should be: -ham gets none (an
		// error then), not "-spam" for a directory ("./-odd" names one).
		{"-defs d -ham -spam b", "-defs d -ham= -spam b"},
		{"-ham ./-odd b", "-ham ./-odd -ham b"},
		{"-ham a -- b", "-ham a -- b"},
		{"-json a b", "-json a b"},
		{"-ham", "-ham"},
	} {
		if got := strings.Join(spreadDirs(strings.Fields(tc.in)), " "); got != tc.want {
			t.Errorf("spreadDirs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDefsTrainEvalErrors(t *testing.T) {
	hamDir, spamDir := modelCorpus(t, 6)
	dir := t.TempDir()
	// A corpus directory with a link to a file gone: an error naming it,
	// not a message silently left out.
	dangling := filepath.Join(t.TempDir(), "ham")
	os.CopyFS(dangling, os.DirFS(hamDir))
	os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dangling, "gone.eml"))
	// Files that are not one message each: an error naming them, not noise
	// trained on (a bundle written into the ham directory, an empty file,
	// an mbox file of several messages).
	notMail := func(name string, content []byte) string {
		d := filepath.Join(t.TempDir(), "ham")
		os.CopyFS(d, os.DirFS(hamDir))
		os.WriteFile(filepath.Join(d, name), content, 0o644)
		return d
	}
	ham0, _ := os.ReadFile(filepath.Join(hamDir, "000.eml"))
	ham1, _ := os.ReadFile(filepath.Join(hamDir, "001.eml"))
	gz := notMail("defs.tar.gz", []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03rest"))
	empty := notMail("empty.eml", nil)
	js := notMail("index.json", []byte("{\"id\": 1, \"file\": \"000.eml\"}\n"))
	mbox := notMail("inbox.mbox", append(append(slices.Clone(ham0), '\n'), ham1...))
	bom := notMail("saved.eml", append([]byte("\xef\xbb\xbf"), scorer.TrimMboxFrom(ham1)...))
	// A Maildir, and an empty directory: an error naming them, not a
	// class trained or judged without them.
	maildir := filepath.Join(t.TempDir(), "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		os.MkdirAll(filepath.Join(maildir, sub), 0o755)
	}
	os.WriteFile(filepath.Join(maildir, "cur", "1.host:2,S"), ham0, 0o644)
	emptyDir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"defs", "train", "-ham", hamDir, "-o", filepath.Join(dir, "m")}, 2, "usage"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", filepath.Join(dir, "nope"), "-o", filepath.Join(dir, "m")}, 1, "nope"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-bits", "40"}, 2, "-bits 40: must be 10 to 24"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-workers", "0"}, 2, "-workers 0: must be 1 to 64"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "nodir", "m")}, 1, "nodir/m: cannot write there"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", dir}, 1, dir + ": is a directory"},
		{[]string{"defs", "train", "-ham", dangling, "-spam", spamDir, "-o", filepath.Join(dir, "m")}, 1, "gone.eml: no such file"},
		{[]string{"defs", "eval", "-ham", dangling, "-spam", spamDir}, 1, "gone.eml: no such file"},
		{[]string{"defs", "train", "-ham", gz, "-spam", spamDir, "-o", filepath.Join(dir, "m")}, 1, "defs.tar.gz: not a mail message: its first line is not a header field"},
		{[]string{"defs", "eval", "-ham", empty, "-spam", spamDir}, 1, "empty.eml: not a mail message: the file is empty"},
		{[]string{"defs", "eval", "-ham", js, "-spam", spamDir}, 1, "index.json: not a mail message: it looks like JSON"},
		{[]string{"defs", "eval", "-ham", bom, "-spam", spamDir}, 1, "saved.eml: not a mail message: it starts with a UTF-8 byte order mark"},
		{[]string{"defs", "eval", "-ham", hamDir, maildir, "-spam", spamDir}, 1, "Maildir: no message files, only directories, which are not read: name them (e.g. " + maildir + "/*)"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, emptyDir, "-o", filepath.Join(dir, "m")}, 1, emptyDir + ": no message files in it"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-ham-weight", "0"}, 2, "-ham-weight 0: must be a number above 0"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-ham-weight", "1e300"}, 2, "-ham-weight 1e+300: must be a number above 0 and at most 1000"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-min-sclgate", "1 2"}, 2, "-min-sclgate take"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-min-sclgate", "0.1.9"}, 2, "-min-sclgate 0.1.9: this build's models (feature set"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-version", "../x"}, 2, "-version and"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir, "-o", filepath.Join(dir, "m"), "-version", "builtin"}, 2, `other than "builtin"`},
		{[]string{"defs", "eval", "-defs", filepath.Join(hamDir, "000.eml"), "-ham", hamDir, "-spam", spamDir}, 1, "malformed bundle"},
		{[]string{"defs", "eval", "-defs", "x"}, 2, "-ham DIR and -spam DIR are required"},
		{[]string{"defs", "eval", "-spam", spamDir}, 2, "-ham DIR is required"},
		{[]string{"defs", "eval", "-ham", "-spam", spamDir}, 2, `flag -ham: a directory (or file) must follow it`},
		{[]string{"defs", "train", "-ham", hamDir, "-o", filepath.Join(dir, "m")}, 2, "-spam DIR is required"},
		{[]string{"defs", "train", "-ham", hamDir, "-spam", spamDir}, 2, "-o FILE is required"},
		{[]string{"defs", "eval", "-json", "-ham", hamDir, "-spam", spamDir, "--", "x"}, 2, `unexpected argument "x"`},
	} {
		code, _, errOut := sclgate(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, want %d with %q\n%s", tc.args, code, tc.code, tc.want, errOut)
		}
	}
	// What looks like a mailbox of several messages is a warning, not an
	// error: a message carrying a git patch looks the same.
	if code, _, errOut := sclgate(t, "", "defs", "eval", "-ham", mbox, "-spam", spamDir); code != 0 || !strings.Contains(errOut, "inbox.mbox: a second mbox \"From \" line at byte") {
		t.Errorf("eval over an mbox file: exit %d\n%s", code, errOut)
	}
}

// TestNotAMessage: real messages pass whatever their bodies hold; only a
// file that starts as an mbox and has another mbox "From " line with a
// date and a header field after a blank line is taken for a mailbox, in
// LF or CRLF.
func TestNotAMessage(t *testing.T) {
	patch := "From: Dev <dev@example.org>\nSubject: [PATCH] fix\nContent-Type: multipart/mixed; boundary=b1\n\n--b1\nContent-Type: text/plain\n\nPatch attached.\n\n--b1\n" +
		"Content-Type: text/x-patch\n\nFrom 3f2a9c1d0e5b7a8f6e4d3c2b1a0f9e8d7c6b5a49 Mon Sep 17 00:00:00 2001\nFrom: Dev <dev@example.org>\n\n--- a/x\n--b1--\n"
	quote := "From: a@example.org\nSubject: re\n\nthanks\n\nFrom John Smith\nSent: Monday, 1 Jan\nTo: me\n"
	mbox1 := "From a@example.org  Mon Jun 24 17:45:50 2002\nFrom: a@example.org\nSubject: x\n\nbody\n"
	for _, tc := range []struct {
		name, b   string
		bad       bool
		secondMbx bool
	}{
		{"patch attached", patch, false, false},
		{"quoted From", quote, false, false},
		{"one mbox message", mbox1, false, false},
		{"one mbox message, CRLF", strings.ReplaceAll(mbox1, "\n", "\r\n"), false, false},
		{"two mbox messages", mbox1 + "\n" + mbox1, false, true},
		{"two mbox messages, CRLF", strings.ReplaceAll(mbox1+"\n"+mbox1, "\n", "\r\n"), false, true},
		{"two mbox messages, Takeout", strings.Repeat("From 1690000000000000001@xxx Fri Jul 21 11:22:33 +0000 2023\nX-GM-THRID: 1\nFrom: a@example.org\nSubject: x\n\nbody\n\n", 2), false, true},
		{"two mbox messages, zone after", strings.Repeat("From a@example.org Mon Jun 24 17:45:50 2002 +0000\nSubject: x\n\nbody\n\n", 2), false, true},
		{"empty", "", true, false},
		{"gzip", "\x1f\x8b\x08\x00rest", true, false},
		{"continuation first", " folded\nSubject: x\n\nb\n", true, false},
	} {
		if got := notAMessage([]byte(tc.b)) != ""; got != tc.bad {
			t.Errorf("%s: notAMessage %q", tc.name, notAMessage([]byte(tc.b)))
		}
		if got := mboxSecond([]byte(tc.b)) >= 0; got != tc.secondMbx {
			t.Errorf("%s: mboxSecond = %d", tc.name, mboxSecond([]byte(tc.b)))
		}
	}
}

// A FIFO or a device named as a corpus file is an error naming it, not a
// wait for a writer that never comes or an endless read (/dev/zero took
// all the memory); inside a directory it is left out, as before. Files
// given one by one and again (a shell glob twice) are told of in one line.
func TestDefsCorpusSpecialFiles(t *testing.T) {
	ham, spam := modelCorpus(t, 6)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, "/dev/zero"} {
		for _, cmd := range [][]string{
			{"defs", "eval", "-ham", ham, p, "-spam", spam},
			{"defs", "train", "-bits", "12", "-o", filepath.Join(t.TempDir(), "x.tar.gz"), "-ham", ham, p, "-spam", spam},
		} {
			done := make(chan struct{})
			var code int
			var errOut string
			go func() {
				code, _, errOut = sclgate(t, "", cmd...)
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				// Unblock the reader so the test ends.
				if f, err := os.OpenFile(fifo, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
					f.Close()
				}
				t.Fatalf("%v: still reading %s after 30s", cmd, p)
			}
			if code != 1 || !strings.Contains(errOut, p+": is not a regular file") {
				t.Errorf("%v: %d %s", cmd, code, errOut)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(ham, "[0-9]*")) // as a shell's *: no dot files
	args := append(append(append([]string{"defs", "eval", "-json", "-ham"}, files...), files...), "-spam", spam)
	code, _, errOut := sclgate(t, "", args...)
	if code != 0 || strings.Count(errOut, "already read") != 1 || !strings.Contains(errOut, files[0]+" and 5 more of the files given were already read") {
		t.Errorf("a glob given twice: %d %s", code, errOut)
	}
	if code, _, errOut := sclgate(t, "", "defs", "eval", "-ham", ham, files[0], "-spam", spam, files[0]); code != 1 || !strings.Contains(errOut, files[0]+" is given as both ham and spam: a message") {
		t.Errorf("a message as ham and spam: %d %s", code, errOut)
	}
}
