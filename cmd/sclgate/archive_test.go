package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sclgate/sclgate/archive"
	"github.com/sclgate/sclgate/config"
	"github.com/sclgate/sclgate/internal/syncbuf"
	"github.com/sclgate/sclgate/internal/testnet"
)

// archiveRun runs "sclgate archive ARGS" in-process.
func archiveRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := cmdArchive(env{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut}, args)
	return code, out.String(), errOut.String()
}

// testArchive fills a fresh archive directory: spam (SCL 9, two
// recipients, an encoded subject) received 2 days ago, ham (SCL 2) 40
// days ago, and the IMF file 05-imf-lf.eml (SCL 6) dated 10 days ago.
func testArchive(t *testing.T) (dir string, spam, ham, imf string) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "arch")
	now := time.Now()
	write := func(at time.Time, env archive.Envelope, scl int, msg string) string {
		st, err := archive.Open(dir, archive.Options{StoreSCL: true, Now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		id, err := st.Write(env, scl, strings.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	spam = write(now.Add(-48*time.Hour), archive.Envelope{From: "spammer@spam.test", To: []string{"bob@example.com", "carol@example.com"}}, 9,
		"X-SCL: -1\r\nX-Spam-Flag: NO\r\nFrom: <spammer@spam.test>\r\nSubject: =?utf-8?q?Casino_n=C3=A4ight?=\r\nX-SCL-Report: all\r\n good\r\n\r\nwin the casino jackpot now\r\n")
	ham = write(now.Add(-40*24*time.Hour), archive.Envelope{From: "", To: []string{"dave@example.com"}}, 2,
		"Subject: minutes\r\n\r\nsee you tuesday\r\n")
	b, err := os.ReadFile("../../testdata/archive/05-imf-lf.eml")
	if err != nil {
		t.Fatal(err)
	}
	imf = "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"
	p := filepath.Join(dir, imf+".eml")
	if err := os.WriteFile(p, b, 0o640); err != nil {
		t.Fatal(err)
	}
	old := now.Add(-10 * 24 * time.Hour)
	os.Chtimes(p, old, old)
	return dir, spam, ham, imf
}

func TestArchiveListJSONAndFilters(t *testing.T) {
	dir, spam, ham, imf := testArchive(t)
	code, out, errOut := archiveRun(t, "list", "-dir", dir, "-json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var got []listEntry
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(got) != 3 || got[0].ID != spam || got[1].ID != imf || got[2].ID != ham {
		t.Fatalf("want newest first spam, imf, ham:\n%s", out)
	}
	if s := got[0]; *s.SCL != 9 || s.From != "spammer@spam.test" || strings.Join(s.To, ",") != "bob@example.com,carol@example.com" ||
		s.Subject != "Casino näight" || s.Size == 0 {
		t.Errorf("spam entry %+v", s)
	}
	if i := got[1]; *i.SCL != 6 || i.From != "spammer@example.com" || len(i.To) != 2 || i.Subject != "Best prices" || i.Size != 253 {
		t.Errorf("IMF entry %+v", i)
	}
	if got[2].From != "" {
		t.Errorf("null sender: %+v", got[2])
	}

	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"-scl", "7"}, []string{spam}},
		{[]string{"-scl", "6"}, []string{spam, imf}},
		{[]string{"-since", "36h"}, nil},
		{[]string{"-since", "3d"}, []string{spam}},
		{[]string{"-since", time.Now().Add(-20 * 24 * time.Hour).Format("2006-01-02")}, []string{spam, imf}},
		{[]string{"-from", "SPAM.test"}, []string{spam}},
		{[]string{"-to", "carol@"}, []string{spam, imf}},
		{[]string{"-subject", "casino NÄ"}, []string{spam}},
		{[]string{"-subject", "prices", "-scl", "5"}, []string{imf}},
	} {
		code, out, errOut := archiveRun(t, append([]string{"list", "-json", "-dir", dir}, c.args...)...)
		var got []listEntry
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil {
			t.Errorf("%v: exit %d %v %s", c.args, code, err, errOut)
			continue
		}
		var ids []string
		for _, g := range got {
			ids = append(ids, g.ID)
		}
		if fmt.Sprint(ids) != fmt.Sprint(c.want) {
			t.Errorf("%v: got %v want %v", c.args, ids, c.want)
		}
	}

	code, out, _ = archiveRun(t, "list", "-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "ID ") || !strings.HasPrefix(lines[1], spam) ||
		!strings.Contains(lines[1], "bob@example.com,carol@example.com") || !strings.Contains(lines[1], "Casino näight") {
		t.Errorf("table:\n%s", out)
	}
	if code, _, errOut := archiveRun(t, "list", "-dir", dir, "-since", "yesterday"); code != 2 || !strings.Contains(errOut, "yesterday") {
		t.Errorf("bad -since: %d %s", code, errOut)
	}
	if code, _, errOut := archiveRun(t, "list", "-dir", filepath.Join(dir, "nosuch")); code != 1 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("missing dir: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "nosuch")); err == nil {
		t.Error("list created the directory it was given")
	}
}

func TestArchiveShowAndRaw(t *testing.T) {
	dir, spam, _, imf := testArchive(t)
	w := weightsFile(t, t.TempDir())
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("filter:\n  classifier: none\n  weights_file: %s\narchive:\n  dir: %s\ndefinitions:\n  dir: \"\"\n", w, dir)), 0o644)
	code, out, errOut := archiveRun(t, "show", "-config", cfg, spam)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"ID:          " + spam, "Sender:      <spammer@spam.test>", "Recipient:   <carol@example.com>",
		"SCL:         9 (archived)", "Subject:     Casino näight", "computed now", `scl=9 classifier=none score=0 classifier_scl=0; rules: BODY MAX "casino jackpot"`,
		"\nHeader:\nX-SCL: -1\nX-Spam-Flag: NO\n", "Text:\nwin the casino jackpot now\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Features that weighed most") {
		t.Errorf("show explains a verdict of classifier none:\n%s", out)
	}
	// With the built-in model, show lists the features that weighed most.
	cfgB := filepath.Join(t.TempDir(), "b.yaml")
	os.WriteFile(cfgB, []byte(fmt.Sprintf("archive:\n  dir: %s\ndefinitions:\n  dir: \"\"\n", dir)), 0o644)
	code, out, errOut = archiveRun(t, "show", "-config", cfgB, spam)
	if i := strings.Index(out, "Features that weighed most (log-odds; positive is spam):\n"); code != 0 || i < 0 ||
		strings.Count(out[i:strings.Index(out, "\nHeader:")], "\n") != 1+showFeatures {
		t.Errorf("builtin show: %d %s\n%s", code, errOut, out)
	}
	code, out, _ = archiveRun(t, "show", "-config", cfg, imf)
	if code != 0 || !strings.Contains(out, "SCL:         6 (archived)") || !strings.Contains(out, "Text:\nBuy now.") {
		t.Errorf("IMF show: %d\n%s", code, out)
	}
	code, out, _ = archiveRun(t, "raw", "-dir", dir, imf)
	b, _ := os.ReadFile("../../testdata/archive/05-imf-lf.eml")
	if code != 0 || !strings.HasPrefix(out, "Received: from mx.example.com") || !strings.HasSuffix(string(b), out) || len(out) != 253 {
		t.Errorf("raw: %d %q", code, out)
	}
	if code, _, errOut := archiveRun(t, "show", "-dir", dir, "../etc/passwd"); code != 1 || !strings.Contains(errOut, "invalid archive ID") {
		t.Errorf("bad ID: %d %s", code, errOut)
	}
	if code, _, errOut := archiveRun(t, "raw", "-dir", dir, "nosuch"); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Errorf("missing ID: %d %s", code, errOut)
	}
}

// Release into a Maildir downstream, with -to after the ID.
func TestArchiveReleaseFlagsAfterIDs(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	md := filepath.Join(t.TempDir(), "md")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: maildir:%s\narchive:\n  dir: %s\nhostname: gw.test\n", md, dir)), 0o644)
	code, out, errOut := archiveRun(t, "release", spam, "-config", cfg, "-to", "x@example.com")
	if code != 0 || !strings.Contains(out, "released "+spam+" to x@example.com") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	m := maildirOne(t, md)
	if !strings.HasPrefix(m, "Return-Path: <spammer@spam.test>\r\nDelivered-To: x@example.com\r\nX-SCL: -1\r\nX-SCL-Report: released from the archive; archived at SCL 9\r\nX-SCL-Released: ") {
		t.Errorf("delivered:\n%s", m)
	}
	if strings.Contains(m, "X-Spam-Flag") || strings.Count(m, "X-SCL-Report") != 1 || strings.Count(m, "X-SCL:") != 1 || strings.Contains(m, " good\r\n") ||
		!strings.HasSuffix(m, "From: <spammer@spam.test>\r\nSubject: =?utf-8?q?Casino_n=C3=A4ight?=\r\n\r\nwin the casino jackpot now\r\n") {
		t.Errorf("stamping:\n%q", m)
	}
	if _, err := os.Stat(filepath.Join(dir, releasedDir, spam+".eml")); err != nil {
		t.Errorf("not in released/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err == nil {
		t.Error("still in the archive")
	}
	// Released to x alone: the help desk sends another recipient her
	// copy with -force, from released/, where the file stays; show says
	// who got it.
	if code, _, errOut := archiveRun(t, "release", spam, "-config", cfg, "-to", "carol@example.com"); code != 1 || !strings.Contains(errOut, "already released (it is in released/); release -force sends it again") {
		t.Errorf("release of a released message: %d %q", code, errOut)
	}
	code, out, errOut = archiveRun(t, "release", spam, "-config", cfg, "-to", "carol@example.com", "-force")
	if code != 0 || !strings.Contains(out, "released "+spam+" again to carol@example.com") {
		t.Fatalf("release -force of a released message: %d\n%s%s", code, out, errOut)
	}
	if files, _ := filepath.Glob(filepath.Join(md, "new", "*")); len(files) != 2 {
		t.Errorf("%d files in maildir, want 2", len(files))
	}
	if _, err := os.Stat(filepath.Join(dir, releasedDir, spam+".eml")); err != nil {
		t.Errorf("not in released/ after a second release: %v", err)
	}
	code, out, _ = archiveRun(t, "show", spam, "-config", cfg)
	if code != 0 || !regexp.MustCompile(`Released to: <x@example\.com> at .+\nReleased to: <carol@example\.com> at `).MatchString(out) {
		t.Errorf("show after two releases:\n%s", out)
	}
}

// A release record that cannot be written does not stop the release
// (the message was delivered), and the admin is told that show will not
// list it.
func TestArchiveReleaseRecordNotWritten(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	md := filepath.Join(t.TempDir(), "md")
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: maildir:%s\narchive:\n  dir: %s\nhostname: gw.test\n", md, dir)), 0o644)
	// A directory where the record goes: it cannot be read or replaced.
	os.Mkdir(filepath.Join(dir, "."+spam+".released-to"), 0o755)
	code, out, errOut := archiveRun(t, "release", spam, "-config", cfg, "-to", "x@example.com")
	if code != 0 || !strings.Contains(out, "released "+spam+" to x@example.com") ||
		!strings.Contains(errOut, "warning: "+spam+": delivered to x@example.com, but the release record could not be written or given to the archive's owner, so archive show may not list it: ") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	if files, _ := filepath.Glob(filepath.Join(md, "new", "*")); len(files) != 1 {
		t.Errorf("%d files in maildir", len(files))
	}
}

// Two releases of one message at once (a double click, two admins, the
// CLI and the web page) deliver it once: the second is told another
// release is under way, or that it is released, and changes nothing.
func TestArchiveReleaseTwiceAtOnce(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	s := startSink(t, "-w", "2") // 2 s before answering DATA: the releases overlap
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: smtp://%s\narchive:\n  dir: %s\nhostname: gw.test\n", s.addr, dir)), 0o644)
	type result struct {
		code        int
		out, errOut string
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			code, out, errOut := archiveBin(t, t.TempDir(), "release", "-config", cfg, spam)
			results <- result{code, out, errOut}
		}()
		time.Sleep(200 * time.Millisecond)
	}
	var ok, refused int
	for range 2 {
		r := <-results
		switch {
		case r.code == 0 && strings.Contains(r.out, "released "+spam):
			ok++
		case r.code == 1 && (strings.Contains(r.errOut, "under way") || strings.Contains(r.errOut, "already released")):
			refused++
		default:
			t.Errorf("release: exit %d\n%s%s", r.code, r.out, r.errOut)
		}
	}
	if ok != 1 || refused != 1 {
		t.Errorf("%d releases succeeded and %d were refused, want 1 and 1", ok, refused)
	}
	time.Sleep(time.Second) // a second delivery, if any, would have reached the sink by now
	if msgs := s.messages(t, 1); len(msgs) != 1 {
		t.Errorf("the sink got %d copies, want 1", len(msgs))
	}
	// And afterwards: already released, nothing sent.
	code, _, errOut := archiveBin(t, t.TempDir(), "release", "-config", cfg, spam)
	if code != 1 || !strings.Contains(errOut, "already released") {
		t.Errorf("release after release: %d %s", code, errOut)
	}
}

// A file in the archive that holds no readable archived message expires
// by its age like the others; a young one is reported (exit 1) and kept.
func TestArchivePurgeExpiresUnreadableFiles(t *testing.T) {
	dir, _, ham, _ := testArchive(t)
	old, young := filepath.Join(dir, "junk-old.eml"), filepath.Join(dir, "junk-young.eml")
	os.WriteFile(old, []byte("\x00 not a head\r\n"), 0o640)
	os.WriteFile(young, []byte("\x00 not a head\r\n"), 0o640)
	long := time.Now().Add(-60 * 24 * time.Hour)
	os.Chtimes(old, long, long)
	// A name no ID can be (a backslash) expires too.
	odd := filepath.Join(dir, `a\b.eml`)
	os.WriteFile(odd, []byte("Subject: copied in\r\n\r\nx\r\n"), 0o640)
	os.Chtimes(odd, long, long)
	code, out, errOut := archiveRun(t, "purge", "-dir", dir, "-older-than", "30d")
	if code != 1 || !strings.Contains(out, "deleted junk-old ") || !strings.Contains(out, "deleted "+ham) || !strings.Contains(errOut, "junk-young.eml") {
		t.Errorf("purge: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(old); err == nil {
		t.Error("the old unreadable file is still there")
	}
	if _, err := os.Stat(odd); err == nil {
		t.Error(`the old file named a\b.eml is still there`)
	}
	if _, err := os.Stat(young); err != nil {
		t.Errorf("the young one was removed: %v", err)
	}
	// Once it is old enough too, purge is clean.
	os.Chtimes(young, long, long)
	if code, out, errOut := archiveRun(t, "purge", "-dir", dir, "-older-than", "30d"); code != 0 || !strings.Contains(out, "deleted junk-young ") {
		t.Errorf("second purge: %d\n%s%s", code, out, errOut)
	}
}

func TestArchiveDeleteAndPurge(t *testing.T) {
	dir, spam, ham, imf := testArchive(t)
	code, out, _ := archiveRun(t, "purge", "-dir", dir, "-older-than", "30d", "-dry-run")
	if code != 0 || !strings.Contains(out, "would delete "+ham) || strings.Contains(out, imf) || !strings.Contains(out, "would delete 1 message") {
		t.Errorf("dry run: %d\n%s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, ham+".eml")); err != nil {
		t.Fatal("dry run removed it")
	}
	code, out, _ = archiveRun(t, "purge", "-older-than", "7d", "-dir", dir)
	if code != 0 || !strings.Contains(out, "deleted "+ham) || !strings.Contains(out, "deleted "+imf) || strings.Contains(out, spam) {
		t.Errorf("purge: %d\n%s", code, out)
	}
	if code, _, errOut := archiveRun(t, "purge", "-dir", dir); code != 2 || !strings.Contains(errOut, "-older-than") {
		t.Errorf("no age: %d %s", code, errOut)
	}
	// An age of 0 would remove everything: refused, not taken for "no age".
	if code, _, errOut := archiveRun(t, "purge", "-dir", dir, "-older-than", "0"); code != 2 || !strings.Contains(errOut, "would remove every message") {
		t.Errorf("-older-than 0: %d %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err != nil {
		t.Fatalf("-older-than 0 removed a message: %v", err)
	}
	// An SCL no message can have is a typo, said as one.
	for _, n := range []string{"10", "-2"} {
		if code, _, errOut := archiveRun(t, "list", "-dir", dir, "-scl", n); code != 2 || !strings.Contains(errOut, "is not an SCL") {
			t.Errorf("list -scl %s: %d %s", n, code, errOut)
		}
	}
	// An ID as ls shows it (with .eml) works too.
	code, out, errOut := archiveRun(t, "delete", "-dir", dir, spam+".eml", "nosuch")
	if code != 1 || !strings.Contains(out, "deleted "+spam) || !strings.Contains(errOut, "nosuch") {
		t.Errorf("delete: %d %s %s", code, out, errOut)
	}
	if code, out, _ := archiveRun(t, "list", "-dir", dir, "-json"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("left: %s", out)
	}
}

func TestStampRelease(t *testing.T) {
	in := "x-scl: 9\nSubject: hi\nX-SCL-Report: a\n\tb\nX-SCL-Released: forged\nTo: b@c\n\nX-SCL: body stays\n"
	got := string(stampRelease([]byte(in), []string{"X-SCL: -1", "X-SCL-Released: now"}))
	want := "X-SCL: -1\nX-SCL-Released: now\nSubject: hi\nTo: b@c\n\nX-SCL: body stays\n"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	// No header end at all, and a dropped field last.
	got = string(stampRelease([]byte("A: 1\r\nX-Spam-Flag: YES"), []string{"X-SCL: -1"}))
	if got != "X-SCL: -1\r\nA: 1\r\n" {
		t.Errorf("got %q", got)
	}
	// The header ends, without a final LF, just after a dropped field:
	// what follows it is kept.
	got = string(stampRelease([]byte("A: 1\r\nX-SCL: 1\r\n\r"), []string{"X-SCL: -1"}))
	if got != "X-SCL: -1\r\nA: 1\r\n\r" {
		t.Errorf("got %q", got)
	}
}

func TestCRLF(t *testing.T) {
	for in, want := range map[string]string{
		"":                "",
		"a\r\nb\r\n":      "a\r\nb\r\n",
		"a\nb\n":          "a\r\nb\r\n",
		"a\r\nb\nc":       "a\r\nb\r\nc\r\n",
		"\n\n":            "\r\n\r\n",
		"a\rb\n":          "a\r\nb\r\n", // a bare CR too: the gateway refuses them as smuggling
		"hi\r.\rMAIL\r\n": "hi\r\n.\r\nMAIL\r\n",
		"a\r\r\nb\r":      "a\r\nb\r\n", // CRLF converted twice: one line end
		"a\r\rb":          "a\r\n\r\nb\r\n",
		"From: a\r\r\nTo: b\r\r\n\r\r\nbody\r\r\n": "From: a\r\nTo: b\r\n\r\nbody\r\n",
		"X-SCL: 1\n\nbody":                         "X-SCL: 1\r\n\r\nbody\r\n",
	} {
		if got := string(crlf([]byte(in))); got != want {
			t.Errorf("crlf(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReorderFlags(t *testing.T) {
	c := newArchiveCmd(env{stderr: io.Discard}, "x", "")
	c.fs.Bool("dry-run", false, "")
	got := reorderFlags(c.fs, []string{"a", "-dry-run", "b", "-dir", "D", "--config=F", "c", "--", "-x"})
	if fmt.Sprint(got) != "[-dry-run -dir D --config=F -- a b c -x]" {
		t.Errorf("%v", got)
	}
	// A flag that takes a value, last: no value (it took "--" for one).
	if got := reorderFlags(c.fs, []string{"a", "-dir"}); fmt.Sprint(got) != "[-dir]" {
		t.Errorf("%v", got)
	}
	for _, args := range [][]string{{"defs", "sign", "-key"}, {"defs", "sign", "b.tar.gz", "-key"}, {"defs", "verify", "x.tar.gz", "-pub"}, {"scan", "x.eml", "-defs"}} {
		if code, _, errOut := sclgate(t, "", args...); code != 2 || !strings.Contains(errOut, "flag needs an argument: -"+args[len(args)-1][1:]) {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}
}

func TestRunRetention(t *testing.T) {
	dir, spam, ham, imf := testArchive(t)
	defer func(a, b time.Duration) { retentionFirstRun, retentionInterval = a, b }(retentionFirstRun, retentionInterval)
	retentionFirstRun, retentionInterval = 10*time.Millisecond, time.Hour
	cfg, err := config.Parse("t", []byte(fmt.Sprintf("archive:\n  dir: %s\n  retention: 7d\n", dir)))
	if err != nil {
		t.Fatal(err)
	}
	retentionUntil(t, cfg, "retention did not purge", func() bool {
		_, e1 := os.Stat(filepath.Join(dir, ham+".eml"))
		_, e2 := os.Stat(filepath.Join(dir, imf+".eml"))
		return e1 != nil && e2 != nil
	})
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err != nil {
		t.Errorf("recent message purged: %v", err)
	}
}

// released/ is kept by archive.retention and purged by
// archive.released_retention (and purge -released), each message removed
// logged by ID.
func TestReleasedRetention(t *testing.T) {
	dir, spam, ham, _ := testArchive(t)
	md := filepath.Join(t.TempDir(), "md")
	for _, id := range []string{spam, ham} {
		if code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, id); code != 0 {
			t.Fatalf("release %s: %s", id, errOut)
		}
	}
	rel := filepath.Join(dir, releasedDir)
	// purge -released: by archive.released_retention, or -older-than.
	if code, _, errOut := archiveRun(t, "purge", "-dir", dir, "-released"); code != 2 || !strings.Contains(errOut, "or set archive.released_retention for purge to use") {
		t.Errorf("purge -released without an age: %d %q", code, errOut)
	}
	code, out, errOut := archiveRun(t, "purge", "-dir", dir, "-released", "-older-than", "30d", "-dry-run")
	if code != 0 || !strings.Contains(out, "would delete "+ham+" (received ") || strings.Contains(out, spam) {
		t.Errorf("purge -released -dry-run: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(rel, ham+".eml")); err != nil {
		t.Fatalf("-dry-run removed it: %v", err)
	}

	defer func(a, b time.Duration) { retentionFirstRun, retentionInterval = a, b }(retentionFirstRun, retentionInterval)
	retentionFirstRun, retentionInterval = 10*time.Millisecond, time.Hour
	// archive.retention alone leaves released/ as it is.
	retainOnce(t, fmt.Sprintf("archive:\n  dir: %s\n  retention: 1d\n", dir))
	if _, err := os.Stat(filepath.Join(rel, ham+".eml")); err != nil {
		t.Errorf("archive.retention purged released/: %v", err)
	}
	logs := retainOnce(t, fmt.Sprintf("archive:\n  dir: %s\n  released_retention: 30d\n", dir))
	if _, err := os.Stat(filepath.Join(rel, ham+".eml")); err == nil {
		t.Error("archive.released_retention left a 40-day-old released message")
	}
	if _, err := os.Stat(filepath.Join(rel, spam+".eml")); err != nil {
		t.Errorf("a 2-day-old released message went: %v", err)
	}
	if l := logs; !strings.Contains(l, `msg="archive purged message" dir=`+rel+" archive_id="+ham) || !strings.Contains(l, "removed=1") {
		t.Errorf("log:\n%s", l)
	}
}

// retainOnce runs serve's archive upkeep on the configuration yaml until
// it has purged once, and returns its log.
func retainOnce(t *testing.T, yaml string) string {
	t.Helper()
	cfg, err := config.Parse("t", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { runRetention(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil))); close(done) }()
	defer func() { cancel(); <-done }()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), `msg="archive purged" `); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no purge with %q:\n%s", yaml, logs.String())
		}
	}
	return logs.String()
}

// ---- the real binary over an archive the real gateway wrote ----

// archiveBin runs the built binary's "archive" command in dir.
func archiveBin(t *testing.T, dir string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(binary(t), append([]string{"archive"}, args...)...)
	cmd.Dir = dir
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String(), errOut.String()
}

func TestArchiveCLIOverGatewayArchive(t *testing.T) {
	s := startSink(t)
	dir := t.TempDir()
	g := startGW(t, fmt.Sprintf("downstream: smtp://%s\nfilter:\n  weights_file: %s\n  gateway_action: archive\n", s.addr, weightsFile(t, dir)))
	arch := filepath.Join(g.dir, "archive")
	for i, subj := range []string{"first casino", "second casino", "third casino"} {
		out := swaks(t, g.addr, "--to", "bob@example.com,carol@example.com", "--from", fmt.Sprintf("spammer%d@spam.test", i),
			"--header", "Subject: "+subj, "--header", "X-SCL: -1", "--body", "win the casino jackpot now")
		if !reply(out, "250 ") {
			t.Fatalf("not archived:\n%s", out)
		}
	}
	if msgs := s.messages(t, 0); len(msgs) != 0 {
		t.Fatalf("spam was relayed: %d", len(msgs))
	}

	code, out, errOut := archiveBin(t, g.dir, "list", "-config", g.config, "-json")
	var list []listEntry
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 3 {
		t.Fatalf("list: %d %v\n%s%s", code, err, out, errOut)
	}
	if list[0].From != "spammer2@spam.test" || list[0].Subject != "third casino" || *list[0].SCL != 9 ||
		strings.Join(list[0].To, ",") != "bob@example.com,carol@example.com" {
		t.Errorf("newest %+v", list[0])
	}
	first, second, third := list[2].ID, list[1].ID, list[0].ID

	code, out, _ = archiveBin(t, g.dir, "list", "-config", g.config, "-subject", "second", "-scl", "9")
	if code != 0 || !strings.Contains(out, second) || strings.Contains(out, first) || strings.Contains(out, third) {
		t.Errorf("list -subject: %d\n%s", code, out)
	}
	code, out, _ = archiveBin(t, g.dir, "show", "-config", g.config, first)
	// The report the gateway made is kept with the message, and shown
	// above the one computed now.
	atArchiving := regexp.MustCompile(`X-SCL-Report \(at archiving\):\n  scl=9 classifier=none [^\n]*rules: BODY MAX "casino jackpot"\nX-SCL-Report \(computed now with the current configuration\):\n`)
	if code != 0 || !atArchiving.MatchString(out) || !strings.Contains(out, "computed now") ||
		!strings.Contains(out, "Subject:     first casino") || !strings.Contains(out, "win the casino jackpot now") {
		t.Errorf("show: %d\n%s", code, out)
	}
	code, out, _ = archiveBin(t, g.dir, "raw", "-config", g.config, first)
	// As received: our Received field (the client's address and HELO) on
	// top of what the client sent.
	if code != 0 || !strings.HasPrefix(out, "Received: from client.test ([127.0.0.1])\r\n\tby ") || !strings.Contains(out, "\r\nDate: ") ||
		!strings.Contains(out, "Subject: first casino\r\n") || !strings.Contains(out, "X-SCL: -1\r\n") {
		t.Errorf("raw: %d\n%q", code, out)
	}

	// Release to the gateway's own downstream, the sink.
	code, out, errOut = archiveBin(t, g.dir, "release", "-config", g.config, first)
	if code != 0 || !strings.Contains(out, "released "+first) {
		t.Fatalf("release: %d\n%s%s", code, out, errOut)
	}
	msgs := s.messages(t, 1)
	if len(msgs) != 1 {
		t.Fatalf("%d messages at the sink", len(msgs))
	}
	m := msgs[0]
	if v, _ := header(m, "X-SCL"); v != "-1" {
		t.Errorf("X-SCL %q\n%s", v, m)
	}
	if v, ok := header(m, "X-SCL-Released"); !ok {
		t.Errorf("no X-SCL-Released\n%s", m)
	} else if at, err := time.Parse(time.RFC1123Z, v); err != nil || time.Since(at) > time.Minute {
		t.Errorf("X-SCL-Released %q: %v", v, err)
	}
	if strings.Count(m, "X-SCL:") != 1 || !strings.Contains(m, "Subject: first casino") {
		t.Errorf("stamping:\n%s", m)
	}
	// The released message keeps the trace of how it came in.
	if !regexp.MustCompile(`Received: from client\.test \(\[127\.0\.0\.1\]\)\r?\n\tby gw\.test \(sclgate\)`).MatchString(m) {
		t.Errorf("released message lacks the archiving hop's Received field:\n%s", m)
	}
	if v, _ := header(m, "X-Mail-Args"); !strings.HasPrefix(v, "<spammer0@spam.test>") {
		t.Errorf("sender %q", v)
	}
	if rcpts := sinkRcpts(m); fmt.Sprint(rcpts) != "[<bob@example.com> <carol@example.com>]" {
		t.Errorf("recipients %v", rcpts)
	}
	if _, err := os.Stat(filepath.Join(arch, "released", first+".eml")); err != nil {
		t.Errorf("not moved to released/: %v", err)
	}
	// A released message can still be looked at, and says where it is.
	code, out, errOut = archiveBin(t, g.dir, "show", "-config", g.config, first)
	if code != 0 || !strings.Contains(out, "Released:    yes (the file is in released/)") || !strings.Contains(out, "Subject:     first casino") {
		t.Errorf("show after release: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ = archiveBin(t, g.dir, "raw", "-config", g.config, first); code != 0 || !strings.Contains(out, "Subject: first casino\r\n") {
		t.Errorf("raw after release: %d\n%s", code, out)
	}
	if code, _, errOut = archiveBin(t, g.dir, "delete", "-config", g.config, first); code != 1 || !strings.Contains(errOut, "already released (it is in released/); nothing deleted") {
		t.Errorf("delete after release: %d %s", code, errOut)
	}

	// Release failure: nothing listens on the downstream.
	bad := filepath.Join(g.dir, "bad.yaml")
	cfgText, _ := os.ReadFile(g.config)
	os.WriteFile(bad, []byte(strings.Replace(string(cfgText), "smtp://"+s.addr, "smtp://"+testnet.RefusingAddr(t), 1)), 0o644)
	code, out, errOut = archiveBin(t, g.dir, "release", "-config", bad, second, "-to", "x@example.com")
	if code != 1 || !strings.Contains(errOut, second) || !strings.Contains(errOut, "connect") || !strings.Contains(errOut, "refused") ||
		!strings.Contains(errOut, "file stays") || strings.Contains(out, "released") {
		t.Errorf("failed release: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(arch, second+".eml")); err != nil {
		t.Errorf("file gone after failed release: %v", err)
	}

	// Release with -to after the ID: only that recipient.
	code, _, errOut = archiveBin(t, g.dir, "release", second, "-config", g.config, "-to", "x@example.com")
	if code != 0 {
		t.Fatalf("release -to: %d %s", code, errOut)
	}
	msgs = s.messages(t, 2)
	var toX string
	for _, mm := range msgs {
		if strings.Contains(mm, "Subject: second casino") {
			toX = mm
		}
	}
	if rcpts := sinkRcpts(toX); fmt.Sprint(rcpts) != "[<x@example.com>]" {
		t.Errorf("release -to:\n%s", toX)
	}

	// An archive file IMF wrote: listed and released.
	imf := "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"
	b, _ := os.ReadFile("../../testdata/archive/05-imf-lf.eml")
	os.WriteFile(filepath.Join(arch, imf+".eml"), b, 0o640)
	code, out, _ = archiveBin(t, g.dir, "list", "-config", g.config)
	if code != 0 || !strings.Contains(out, imf) || !strings.Contains(out, "Best prices") || !strings.Contains(out, "<spammer@example.com>") {
		t.Errorf("IMF list: %d\n%s", code, out)
	}
	code, _, errOut = archiveBin(t, g.dir, "release", "-config", g.config, imf)
	if code != 0 {
		t.Fatalf("IMF release: %d %s", code, errOut)
	}
	msgs = s.messages(t, 3)
	var imfMsg string
	for _, mm := range msgs {
		if strings.Contains(mm, "Message-ID: <1@example.com>") {
			imfMsg = mm
		}
	}
	if v, _ := header(imfMsg, "X-SCL"); v != "-1" || fmt.Sprint(sinkRcpts(imfMsg)) != "[<bob@example.org> <carol@example.org>]" ||
		!strings.Contains(imfMsg, "Buy now.") {
		t.Errorf("IMF message at the sink:\n%s", imfMsg)
	}
	if _, err := os.Stat(filepath.Join(arch, "released", imf+".eml")); err != nil {
		t.Errorf("IMF file not in released/: %v", err)
	}
	// Its lines end in LF alone; released, they go out in CRLF, as SMTP
	// wants: a strict downstream (here sclgate itself, which refuses bare
	// LF) takes it.
	os.WriteFile(filepath.Join(arch, "imf-lf-2.eml"), b, 0o640)
	code, out, errOut = archiveBin(t, g.dir, "release", "-config", g.config, "-downstream", "smtp://"+g.addr, "-to", "x@example.com", "imf-lf-2")
	if code != 0 || !strings.Contains(out, "released imf-lf-2") {
		t.Errorf("IMF LF file released to a strict downstream: %d\n%s%s", code, out, errOut)
	}
	os.Remove(filepath.Join(arch, "released", "imf-lf-2.eml"))

	// Delete and purge through the binary.
	code, out, _ = archiveBin(t, g.dir, "purge", "-config", g.config, "-older-than", "1h", "-dry-run")
	if code != 0 || !strings.Contains(out, "would delete 0 message") {
		t.Errorf("purge -dry-run: %d\n%s", code, out)
	}
	code, out, _ = archiveBin(t, g.dir, "delete", "-config", g.config, third)
	if code != 0 || !strings.Contains(out, "deleted "+third) {
		t.Errorf("delete: %d\n%s", code, out)
	}
	code, out, _ = archiveBin(t, g.dir, "list", "-config", g.config, "-json")
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list) != 0 {
		t.Errorf("left after release, release, IMF release, delete: %s", out)
	}
	if n, _ := filepath.Glob(filepath.Join(arch, "released", "*.eml")); len(n) != 3 {
		t.Errorf("%d in released/", len(n))
	}
}

// sinkRcpts returns the envelope recipients smtp-sink recorded.
func sinkRcpts(dump string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^X-Rcpt-Args: (\S+)`).FindAllStringSubmatch(dump, -1) {
		out = append(out, m[1])
	}
	return out
}

// A file name that is not UTF-8 or holds control characters, and a
// message to thousands of recipients, do not break the list's columns.
func TestArchiveListOddNamesAndManyRecipients(t *testing.T) {
	dir, _, _, _ := testArchive(t)
	head := "X-Sender: <a@example.org>\r\nX-Receiver: <b@example.com>\r\nX-SCL: 5\r\nSubject: odd\r\n\r\nbody\r\n"
	os.WriteFile(filepath.Join(dir, "nonutf8-\xff\xfe\u202e.eml"), []byte(head), 0o640)
	var many strings.Builder
	many.WriteString("X-Sender: <a@example.org>\r\n")
	for i := range 5000 {
		fmt.Fprintf(&many, "X-Receiver: <user%d@example.com>\r\n", i)
	}
	many.WriteString("X-SCL: 6\r\nSubject: many\r\n\r\nbody\r\n")
	os.WriteFile(filepath.Join(dir, "many.eml"), []byte(many.String()), 0o640)
	code, out, errOut := archiveRun(t, "list", "-dir", dir)
	if code != 0 {
		t.Fatalf("list: %d %s", code, errOut)
	}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if len(l) > 600 || strings.Contains(l, "\t") || strings.IndexByte(l, 0xff) >= 0 || strings.Contains(l, "\u202e") {
			t.Errorf("line of %d bytes: %.200q", len(l), l)
		}
	}
	if !strings.Contains(out, "user0@example.com,user1@example.com,user2@example.com,+4997 more") || !strings.Contains(out, "nonutf8-\uFFFD\uFFFD ") {
		t.Errorf("list:\n%.2000s", out)
	}
}

// A release that could not move the file afterwards (here: a file named
// "released" where the directory should be) delivers nothing, rather than
// deliver and leave the file to be released, and delivered, again.
func TestArchiveReleaseChecksTheMoveFirst(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	os.WriteFile(filepath.Join(dir, "released"), []byte("not a directory"), 0o640)
	md := filepath.Join(t.TempDir(), "maildir")
	code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, spam)
	if code != 1 || !strings.Contains(errOut, "nothing was delivered") || !strings.Contains(errOut, "is not a directory") {
		t.Errorf("release: %d %q", code, errOut)
	}
	if files, _ := os.ReadDir(filepath.Join(md, "new")); len(files) != 0 {
		t.Errorf("%d message(s) delivered", len(files))
	}
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err != nil {
		t.Errorf("the archived file moved: %v", err)
	}
}

// A symbolic link in the archive directory is not an archived message:
// listed as unreadable, not released (which would move the link and lose
// what it pointed to), and purged as a link, leaving its target alone.
func TestArchiveSymlinkRefused(t *testing.T) {
	dir, _, _, _ := testArchive(t)
	target := filepath.Join(t.TempDir(), "outside.eml")
	os.WriteFile(target, []byte("X-Sender: <a@example.org>\r\nX-Receiver: <b@example.com>\r\nX-SCL: 5\r\nSubject: linked\r\n\r\nbody\r\n"), 0o640)
	link := filepath.Join(dir, "linked.eml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := archiveRun(t, "list", "-dir", dir)
	if strings.Contains(out, "linked") || !strings.Contains(errOut, "a symbolic link") {
		t.Errorf("list: %d\n%s%s", code, out, errOut)
	}
	md := filepath.Join(t.TempDir(), "md")
	if code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, "linked"); code != 1 || !strings.Contains(errOut, "a symbolic link") {
		t.Errorf("release: %d %q", code, errOut)
	}
	long := time.Now().Add(-60 * 24 * time.Hour)
	os.Chtimes(target, long, long)
	if err := exec.Command("touch", "-h", "-d", "60 days ago", link).Run(); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := archiveRun(t, "purge", "-dir", dir, "-older-than", "30d"); !strings.Contains(out, "deleted linked ") {
		t.Errorf("purge: %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Lstat(link); err == nil {
		t.Error("the link is still there")
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("the link's target is gone: %v", err)
	}
}

// A release that sent the whole message and got no answer (here smtp-sink
// hangs up after the final dot) may have been delivered: the file stays,
// marked, and the next release is refused unless -force, so that trying
// again does not put a second copy in the mailbox unasked. show says so;
// a forced release delivers and clears the mark.
func TestArchiveReleaseUnansweredNotRepeated(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	mute := startSink(t, "-q", ".")
	cfgFor := func(addr string) string {
		f := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(f, []byte(fmt.Sprintf("downstream: smtp://%s\narchive:\n  dir: %s\nhostname: gw.test\n", addr, dir)), 0o644)
		return f
	}
	code, out, errOut := archiveRun(t, "release", "-config", cfgFor(mute.addr), spam)
	if code != 1 || !strings.Contains(errOut, "the file stays in the archive, but it may have been delivered") {
		t.Fatalf("unanswered release: exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err != nil {
		t.Fatalf("the file did not stay: %v", err)
	}
	good := startSink(t)
	code, _, errOut = archiveRun(t, "release", "-config", cfgFor(good.addr), spam)
	if code != 1 || !strings.Contains(errOut, "an earlier release (at ") || !strings.Contains(errOut, "-force") {
		t.Errorf("second release: exit %d %s", code, errOut)
	}
	if _, out, _ := archiveRun(t, "show", "-dir", dir, spam); !strings.Contains(out, "Released:    maybe: a release at ") {
		t.Errorf("show does not say the release may have happened:\n%s", out)
	}
	time.Sleep(300 * time.Millisecond)
	if n, _ := os.ReadDir(good.dir); len(n) != 0 {
		t.Fatalf("the refused release delivered %d message(s)", len(n))
	}
	code, out, errOut = archiveRun(t, "release", "-force", "-config", cfgFor(good.addr), spam)
	if code != 0 || !strings.Contains(out, "released "+spam) {
		t.Fatalf("forced release: exit %d\n%s%s", code, out, errOut)
	}
	if msgs := good.messages(t, 1); len(msgs) != 1 {
		t.Errorf("the sink got %d copies, want 1", len(msgs))
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*unanswered")); len(left) != 0 {
		t.Errorf("mark left behind: %q", left)
	}
}

// A release killed (kill -9) while it waits for the downstream's answer to
// the message leaves the mark it set before sending: the next release is
// refused unless -force, as after an answer that never came.
func TestArchiveReleaseKilledNotRepeated(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	slow := startSink(t, "-W", ".:20") // answers the final dot after 20 s
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: smtp://%s\narchive:\n  dir: %s\nhostname: gw.test\nlimits:\n  downstream_timeout: 60s\n", slow.addr, dir)), 0o644)
	cmd := exec.Command(binary(t), "archive", "release", "-config", cfg, spam)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	time.Sleep(1500 * time.Millisecond) // the message is sent; the answer is 20 s away
	cmd.Process.Kill()
	cmd.Wait()
	if _, out, _ := archiveRun(t, "show", "-dir", dir, spam); !strings.Contains(out, "Released:    maybe: a release at ") || !strings.Contains(out, "stopped while sending the message or waiting for the answer") {
		t.Errorf("show does not say the killed release may have delivered it:\n%s", out)
	}
	good := startSink(t)
	code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "smtp://"+good.addr, spam)
	if code != 1 || !strings.Contains(errOut, "an earlier release (at ") || !strings.Contains(errOut, "-force") {
		t.Errorf("release after the killed one: exit %d %s", code, errOut)
	}
	time.Sleep(300 * time.Millisecond)
	if n, _ := os.ReadDir(good.dir); len(n) != 0 {
		t.Errorf("a second copy was delivered (%d)", len(n))
	}
	// A forced release that the downstream clearly refuses delivered
	// nothing: it takes its own mark back and leaves the earlier one.
	refusing := startSink(t, "-f", ".")
	code, _, errOut = archiveRun(t, "release", "-force", "-dir", dir, "-downstream", "smtp://"+refusing.addr, spam)
	if code != 1 || !strings.Contains(errOut, "not released, the file stays in the archive") {
		t.Errorf("refused release: exit %d %s", code, errOut)
	}
	if _, out, _ := archiveRun(t, "show", "-dir", dir, spam); !strings.Contains(out, "stopped while sending") {
		t.Errorf("the killed release's mark is gone after a refused one:\n%s", out)
	}
}

// A release the downstream clearly refuses leaves no mark: the next one
// needs no -force.
func TestArchiveReleaseRefusedNoMark(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	refusing := startSink(t, "-f", ".")
	if code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "smtp://"+refusing.addr, spam); code != 1 || !strings.Contains(errOut, "not released") {
		t.Fatalf("refused release: exit %d %s", code, errOut)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*unanswered")); len(left) != 0 {
		t.Errorf("mark left behind a clear refusal: %q", left)
	}
	releasesToSink(t, dir, spam, "release after a refused one")
}

// releasesToSink checks that a release of id, not forced, to a fresh
// smtp-sink succeeds: no mark stands in its way.
func releasesToSink(t *testing.T, dir, id, what string) {
	t.Helper()
	good := startSink(t)
	if code, out, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "smtp://"+good.addr, id); code != 0 || !strings.Contains(out, "released "+id) {
		t.Errorf("%s: exit %d\n%s%s", what, code, out, errOut)
	}
}

// A file sclgate did not write may hold control characters in its head:
// release sent them in RCPT and printed them (terminal escapes) on
// stdout. It now refuses such an address, and -to still releases it.
func TestArchiveReleaseRefusesControlCharacters(t *testing.T) {
	dir, _, _, _ := testArchive(t)
	id := "esc-rcpt"
	os.WriteFile(filepath.Join(dir, id+".eml"), []byte("X-Sender: <a@example.org>\r\nX-Receiver: <a\x1b]0;PWNED\x07\x1b[2J@example.com>\r\nX-SCL: 9\r\nSubject: s\r\n\r\nb\r\n"), 0o640)
	s := startSink(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: smtp://%s\narchive:\n  dir: %s\nhostname: gw.test\n", s.addr, dir)), 0o644)
	code, out, errOut := archiveRun(t, "release", "-config", cfg, id)
	if code != 1 || !strings.Contains(errOut, "in the file is not an address; give the address to release to (release -to, or the web page's Release to field)") || strings.ContainsAny(out+errOut, "\x1b\x07") {
		t.Errorf("release: exit %d %q %q", code, out, errOut)
	}
	code, out, errOut = archiveRun(t, "release", "-config", cfg, "-to", "bob@example.com", id)
	if code != 0 || !strings.Contains(out, "released "+id+" to bob@example.com") {
		t.Errorf("release -to: exit %d %q %q", code, out, errOut)
	}
	if msgs := s.messages(t, 1); len(msgs) != 1 {
		t.Errorf("the sink got %d messages, want 1", len(msgs))
	}
}

// show with a weight list that is not there reports without custom
// weights and says so, as serve runs: it exited 2 and showed nothing.
func TestArchiveShowWithoutWeightList(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	missing := filepath.Join(t.TempDir(), "weights.xml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("archive:\n  dir: %s\nfilter:\n  weights_file: %s\n", dir, missing)), 0o644)
	code, out, errOut := archiveRun(t, "show", "-config", cfg, spam)
	if code != 0 || !strings.Contains(out, "X-SCL-Report") || !strings.Contains(errOut, "warning: filter.weights_file "+missing+" does not exist") {
		t.Errorf("show: exit %d\n%s%s", code, out, errOut)
	}
}

// retentionUntil runs serve's archive upkeep on cfg until done says so
// (at most 5 s, else it fails with why), then stops it.
func retentionUntil(t *testing.T, cfg *config.Config, why string, done func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { runRetention(ctx, cfg, slog.New(slog.DiscardHandler)); close(stopped) }()
	defer func() { cancel(); <-stopped }()
	for deadline := time.Now().Add(5 * time.Second); !done(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
	}
}

// Without archive.retention, serve's archive upkeep still removes the
// temporary files crashed writes left (an hour old), and purges nothing.
func TestRunRetentionZeroCleansTemp(t *testing.T) {
	dir, spam, ham, _ := testArchive(t)
	defer func(a, b time.Duration) { retentionFirstRun, retentionInterval = a, b }(retentionFirstRun, retentionInterval)
	retentionFirstRun, retentionInterval = 10*time.Millisecond, time.Hour
	stale := filepath.Join(dir, ".sclgate-writing-1.tmp")
	fresh := filepath.Join(dir, ".sclgate-writing-2.tmp")
	for _, f := range []string{stale, fresh} {
		if err := os.WriteFile(f, []byte("half a message"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * time.Hour)
	os.Chtimes(stale, old, old)
	cfg, err := config.Parse("t", []byte(fmt.Sprintf("archive:\n  dir: %s\n", dir)))
	if err != nil {
		t.Fatal(err)
	}
	retentionUntil(t, cfg, "stale temporary file not removed", func() bool {
		_, err := os.Stat(stale)
		return err != nil
	})
	for _, f := range []string{fresh, filepath.Join(dir, spam+".eml"), filepath.Join(dir, ham+".eml")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s removed: %v", f, err)
		}
	}
}

// An IMF file named x.eml.eml is listed as x.eml; that ID, and the file's
// name, both reach it. A file x.eml next to it keeps its own ID x, and
// then x.eml, which names both, is refused: it acted on x, although list
// shows x.eml for the other message.
func TestArchiveIDEndingInEml(t *testing.T) {
	dir, _, _, _ := testArchive(t)
	msg := func(subj string) []byte {
		return []byte("X-Sender: <a@example.org>\r\nX-Receiver: <b@example.com>\r\nX-SCL: 6\r\nSubject: " + subj + "\r\n\r\nbody\r\n")
	}
	os.WriteFile(filepath.Join(dir, "twice.eml.eml"), msg("twice"), 0o640)
	code, out, _ := archiveRun(t, "list", "-dir", dir)
	if code != 0 || !strings.Contains(out, "twice.eml ") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	for _, arg := range []string{"twice.eml", "twice.eml.eml"} {
		if code, out, errOut := archiveRun(t, "raw", "-dir", dir, arg); code != 0 || !strings.Contains(out, "Subject: twice") {
			t.Errorf("raw %s: %d %s %s", arg, code, out, errOut)
		}
	}
	os.WriteFile(filepath.Join(dir, "twice.eml"), msg("once"), 0o640)
	for _, cmd := range []string{"raw", "delete"} {
		code, out, errOut := archiveRun(t, cmd, "-dir", dir, "twice.eml")
		if code != 2 || out != "" || !strings.Contains(errOut, "twice.eml names two messages, twice (file twice.eml) and twice.eml (file twice.eml.eml): give twice or twice.eml.eml; nothing was done") {
			t.Errorf("%s twice.eml with both files: %d %q %q", cmd, code, out, errOut)
		}
	}
	if code, out, _ := archiveRun(t, "raw", "-dir", dir, "twice"); code != 0 || !strings.Contains(out, "Subject: once") {
		t.Errorf("raw twice with both files: %d %s", code, out)
	}
	if code, out, _ := archiveRun(t, "raw", "-dir", dir, "twice.eml.eml"); code != 0 || !strings.Contains(out, "Subject: twice") {
		t.Errorf("raw twice.eml.eml with both files: %d %s", code, out)
	}
}

// JSON of mail is read on terminals too: C1 controls (CSI) and bidi
// controls are written as escapes, which mean the same to a JSON reader.
func TestJSONSafe(t *testing.T) {
	var b bytes.Buffer
	enc := json.NewEncoder(jsonSafe{&b})
	enc.Encode(map[string]string{"subject": "casino \x1b[2J\u009b31m \u202eevil\u202c ok é"})
	got := b.String()
	if strings.ContainsAny(got, "\u009b\u202e\u202c\x1b") || !strings.Contains(got, `\u009b31m \u202eevil\u202c ok é`) {
		t.Errorf("got %q", got)
	}
	var back map[string]string
	if err := json.Unmarshal(b.Bytes(), &back); err != nil || back["subject"] != "casino \x1b[2J\u009b31m \u202eevil\u202c ok é" {
		t.Errorf("does not read back: %v %q", err, back)
	}
}

// A message with a UTF-8 envelope is released with SMTPUTF8 (RFC 6531) to
// a downstream that offers it (a second sclgate, into a maildir); to one
// that does not (smtp-sink), a UTF-8 local part is refused with nothing
// sent and nothing marked.
func TestArchiveReleaseSMTPUTF8(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "arch")
	st, err := archive.Open(dir, archive.Options{StoreSCL: true})
	if err != nil {
		t.Fatal(err)
	}
	id, err := st.Write(archive.Envelope{From: "jörg@sender.test", To: []string{"δοκιμή@example.com"}}, 9, strings.NewReader("Subject: Grüße\r\n\r\nhello\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	sink := startSink(t)
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("downstream: smtp://%s\narchive:\n  dir: %s\nhostname: gw.test\n", sink.addr, dir)), 0o644)
	code, out, errOut := archiveRun(t, "release", id, "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "not released, the file stays in the archive: downstream mail: 553 5.6.7 Non-ASCII address not accepted") {
		t.Errorf("release of a UTF-8 sender to a downstream without SMTPUTF8: exit %d\n%s%s", code, out, errOut)
	}
	if n := len(sink.messages(t, 0)); n != 0 {
		t.Errorf("smtp-sink got %d messages", n)
	}
	if _, err := os.Stat(filepath.Join(dir, id+".eml")); err != nil {
		t.Fatalf("the refused message left the archive: %v", err)
	}

	md := filepath.Join(t.TempDir(), "md")
	inner := startGW(t, "downstream: maildir:"+md+"\naccepted_domains: [example.com, bücher.test]\n")
	code, out, errOut = archiveRun(t, "release", id, "-config", cfg, "-downstream", "smtp://"+inner.addr, "-to", "δοκιμή@example.com,carol@bücher.test")
	if code != 0 || !strings.Contains(out, "released "+id+" to δοκιμή@example.com,carol@bücher.test") {
		t.Fatalf("release over SMTPUTF8: exit %d\n%s%s", code, out, errOut)
	}
	m := maildirOne(t, md)
	for _, want := range []string{"Return-Path: <jörg@sender.test>\r\n", "Delivered-To: δοκιμή@example.com\r\nDelivered-To: carol@bücher.test\r\n", " with UTF8SMTP id ", "Subject: Grüße\r\n"} {
		if !strings.Contains(m, want) {
			t.Errorf("released message lacks %q:\n%s", want, m)
		}
	}

	// ASCII addresses and a header in UTF-8: SMTPUTF8 too, as the
	// gateway passes on its sender's; a Latin-1 header is not UTF-8.
	for _, c := range []struct {
		subject string
		with    string
	}{{"Grüße", " with UTF8SMTP id "}, {"Gr\xfc\xdfe", " with ESMTP id "}} {
		md := filepath.Join(t.TempDir(), "md")
		inner := startGW(t, "downstream: maildir:"+md+"\n")
		id, err := st.Write(archive.Envelope{From: "a@sender.test", To: []string{"bob@example.com"}}, 9, strings.NewReader("Subject: "+c.subject+"\r\n\r\nhello\r\n"))
		if err != nil {
			t.Fatal(err)
		}
		if code, out, errOut := archiveRun(t, "release", id, "-config", cfg, "-downstream", "smtp://"+inner.addr); code != 0 {
			t.Fatalf("release: exit %d\n%s%s", code, out, errOut)
		}
		if m := maildirOne(t, md); !strings.Contains(m, c.with) {
			t.Errorf("subject %+q: the mailbox's Received field lacks %q:\n%s", c.subject, c.with, m)
		}
	}
}

// releasable refuses in an address what the gateway refuses in one.
func TestReleasable(t *testing.T) {
	for a, want := range map[string]bool{
		"bob@example.com":       true,
		"jörg@bücher.example":   true,
		"\"a b\"@example.com":   false,
		"bob":                   false,
		"bob\r@example.com":     false,
		"bob\u0085@example.com": false,
		"bob\u202e@example.com": false,
		"bob\u00ad@example.com": false,
		"bob\xff@example.com":   false,
		"b\u200dob@example.com": true,
	} {
		if got := releasable(a); got != want {
			t.Errorf("releasable(%+q) = %v, want %v", a, got, want)
		}
	}
}

// An empty -to (an unset variable in a script) is refused, not taken for
// "the original recipients"; -dir alone does not release into the
// embedded defaults' maildir; -from stands in for a sender the file holds
// that cannot go into MAIL (a migrated IMF file), <> for the null sender.
func TestArchiveReleaseEnvelopeFlags(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	md := filepath.Join(t.TempDir(), "md")
	for _, to := range []string{"", " , ", "a@example.com,"} {
		code, out, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, "-to", to, spam)
		if code != 2 || out != "" || !strings.Contains(errOut, "holds an empty address") {
			t.Errorf("-to %q: %d %q %q", to, code, out, errOut)
		}
	}
	wd, _ := os.Getwd()
	t.Chdir(t.TempDir())
	code, out, errOut := archiveRun(t, "release", "-dir", dir, spam)
	if code != 2 || out != "" || !strings.Contains(errOut, "-dir without -config: say where to deliver") {
		t.Errorf("-dir alone: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat("sclgate-data"); err == nil {
		t.Error("-dir alone made a maildir in the working directory")
	}
	t.Chdir(wd)
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err != nil {
		t.Fatalf("the message left the archive: %v", err)
	}

	b, err := os.ReadFile("../../testdata/archive/12-quoted.eml")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "quoted.eml"), b, 0o640)
	code, _, errOut = archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, "-to", "bob@example.com", "quoted")
	if code != 1 || !strings.Contains(errOut, "is not an address; give one with release -from on the command line (<> for the null sender)") {
		t.Errorf("a sender that cannot go into MAIL: %d %q", code, errOut)
	}
	if code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, "-from", "john doe@example.com", "quoted"); code != 2 || !strings.Contains(errOut, "-from: \"john doe@example.com\" is not an address") {
		t.Errorf("-from with a space: %d %q", code, errOut)
	}
	code, out, errOut = archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, "-to", "bob@example.com", "-from", "<>", "quoted")
	if code != 0 || !strings.Contains(out, "released quoted to bob@example.com") {
		t.Fatalf("-from <>: %d %q %q", code, out, errOut)
	}
	if m := maildirOne(t, md); !strings.HasPrefix(m, "Return-Path: <>\r\nDelivered-To: bob@example.com\r\n") {
		t.Errorf("delivered:\n%.200s", m)
	}
}

// A release some of whose recipients the downstream refuses sends
// nothing; the error names every refused recipient with the reply, its
// enhanced code included, and the command that releases the message to
// the others.
func TestArchiveReleaseSomeRecipientsRefused(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	md := filepath.Join(t.TempDir(), "md")
	inner := startGW(t, "downstream: maildir:"+md+"\naccepted_domains: [example.com]\n")
	code, out, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "smtp://"+inner.addr, "-to", "x@other.test,bob@example.com,y@other.test", spam)
	want := regexp.MustCompile(`<x@other\.test>: downstream rcpt: 5\d\d 5\.\d\.\d+ [^;]+; <y@other\.test>: downstream rcpt: 5\d\d 5\.\d\.\d+ .*\(the others would take it: to send it to them alone, use "sclgate archive release -force -to 'bob@example\.com'"`)
	if code != 1 || out != "" || !want.MatchString(errOut) {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, spam+".eml")); err != nil {
		t.Errorf("the message left the archive: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(md, "new", "*")); len(files) != 0 {
		t.Errorf("%d messages delivered, want none", len(files))
	}
}

// Odd corners of the archive commands: a -dir that is released/ itself
// is refused for release; an IMF ID too long for "."+ID+".unanswered"
// still releases; a directory named like a message is not deleted;
// -since 0 is refused; -subject folds case fully (GRÜSSE finds Grüße).
func TestArchiveOddCorners(t *testing.T) {
	dir, spam, _, _ := testArchive(t)
	md := filepath.Join(t.TempDir(), "md")
	if code, _, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, spam); code != 0 {
		t.Fatalf("release: %s", errOut)
	}
	rel := filepath.Join(dir, releasedDir)
	code, _, errOut := archiveRun(t, "release", "-dir", rel, "-downstream", "maildir:"+md, spam)
	if code != 2 || !strings.Contains(errOut, "is an archive's released/ folder: give the archive itself (-dir "+dir+")") {
		t.Errorf("release -dir released/: %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(rel, releasedDir)); err == nil {
		t.Error("released/released/ made")
	}

	long := strings.Repeat("L", 247)
	b, _ := os.ReadFile("../../testdata/archive/05-imf-lf.eml")
	os.WriteFile(filepath.Join(dir, long+".eml"), b, 0o640)
	code, out, errOut := archiveRun(t, "release", "-dir", dir, "-downstream", "maildir:"+md, long)
	if code != 0 || !strings.Contains(out, "released "+long) {
		t.Errorf("release of a 247-character ID: %d %q %q", code, out, errOut)
	}
	if code, out, _ := archiveRun(t, "show", "-dir", dir, long); code != 0 || !strings.Contains(out, "Released to: <") {
		t.Errorf("show of a 247-character ID: %d %q", code, out)
	}

	os.Mkdir(filepath.Join(dir, "sub.eml"), 0o750)
	if code, out, errOut := archiveRun(t, "delete", "-dir", dir, "sub"); code != 1 || out != "" || !strings.Contains(errOut, "is a directory, not an archived message") {
		t.Errorf("delete of a directory: %d %q %q", code, out, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "sub.eml")); err != nil {
		t.Errorf("the directory went: %v", err)
	}

	for _, since := range []string{"0", "0d"} {
		if code, _, errOut := archiveRun(t, "list", "-dir", dir, "-since", since); code != 2 || !strings.Contains(errOut, "would show nothing") {
			t.Errorf("-since %s: %d %q", since, code, errOut)
		}
	}
	st, _ := archive.Open(dir, archive.Options{StoreSCL: true})
	id, err := st.Write(archive.Envelope{From: "a@example.org", To: []string{"b@example.com"}}, 8, strings.NewReader("Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nx\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if code, out, _ := archiveRun(t, "list", "-dir", dir, "-subject", "GRÜSSE"); code != 0 || !strings.Contains(out, id) {
		t.Errorf("-subject GRÜSSE: %d %q", code, out)
	}
}
