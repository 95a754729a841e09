package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// sclgate runs the command in-process and returns its exit code and output.
func sclgate(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

const testWeights = "../../testdata/weights/utf16le-bom.xml"

func TestVersion(t *testing.T) {
	code, out, _ := sclgate(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "sclgate ") {
		t.Errorf("version: %d %q", code, out)
	}
	if code, out, errOut := sclgate(t, "", "version", "extra"); code != 2 || out != "" || !strings.Contains(errOut, "takes no arguments") {
		t.Errorf("version extra: %d %q %q", code, out, errOut)
	}
}

// A directory of directories (a Maildir) scans nothing, and says why; a
// file name is printed as the terminal can show it.
// fullDisk is standard output on a full disk.
type fullDisk struct{}

func (fullDisk) Write([]byte) (int, error) { return 0, syscall.ENOSPC }

// A command that could not write its output fails, naming why, whatever
// the command (defs info -json exited 0 with nothing written); one that
// failed already keeps its own exit code.
// -h asks for help, which is no usage error: every command and
// subcommand prints its usage on standard output and exits 0, with
// nothing done.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range [][]string{
		{"-h"}, {"help"}, {"serve", "-h"}, {"scan", "-h"}, {"weights", "-h"}, {"weights", "check", "-h"},
		{"update", "-h"}, {"update", "status", "-h"}, {"update", "detect", "-h"}, {"update", "install", "-h"}, {"update", "rollback", "-h"},
		{"defs", "-h"}, {"defs", "keygen", "-h"}, {"defs", "sign", "-h"}, {"defs", "verify", "-h"}, {"defs", "info", "-h"},
		{"defs", "publish", "-h"}, {"defs", "train", "-h"}, {"defs", "eval", "-help"},
		{"archive", "-h"}, {"archive", "list", "-h"}, {"archive", "release", "-h"}, {"version", "-h"},
	} {
		// On standard output, with nothing on standard error.
		code, out, errOut := sclgate(t, "", args...)
		if code != 0 || !strings.Contains(strings.ToLower(out), "usage") || errOut != "" {
			t.Errorf("%v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errOut)
		}
	}
	// A flag that does not exist is still a usage error.
	if code, _, _ := sclgate(t, "", "update", "install", "-nosuchflag"); code != 2 {
		t.Errorf("update install -nosuchflag: exit %d", code)
	}
	if code, _, errOut := sclgate(t, "", "update", "frobnicate"); code != 2 || !strings.Contains(errOut, `unknown subcommand "frobnicate"`) {
		t.Errorf("update frobnicate: exit %d %q", code, errOut)
	}
}

func TestOutputErrorFails(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"defs", "info"}, {"defs", "info", "-json"}, {"scan", "-json"}} {
		var errOut bytes.Buffer
		code := run(args, strings.NewReader("Subject: hi\r\n\r\nhello\r\n"), fullDisk{}, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), "writing the output: no space left on device") {
			t.Errorf("%v: %d %q", args, code, errOut.String())
		}
	}
	var errOut bytes.Buffer
	if code := run([]string{"defs", "info", "/nonexistent"}, strings.NewReader(""), fullDisk{}, &errOut); code != 1 || strings.Contains(errOut.String(), "writing the output") {
		t.Errorf("a failed command: %d %q", code, errOut.String())
	}
}

func TestScanDirOfDirsAndOddNames(t *testing.T) {
	md := t.TempDir()
	os.Mkdir(filepath.Join(md, "cur"), 0o755)
	os.Mkdir(filepath.Join(md, "new"), 0o755)
	code, out, errOut := sclgate(t, "", "scan", "-classifier", "none", md)
	if code != 0 || out != "" || !strings.Contains(errOut, md+": no files, only directories, which are not scanned: name them (e.g. "+md+"/*)") {
		t.Errorf("maildir: %d %q %q", code, out, errOut)
	}
	raw, _ := os.ReadFile("../../testdata/messages/plain.eml")
	// Files next to the subdirectories: scanned, and the subdirectories
	// that were not are said.
	os.WriteFile(filepath.Join(md, "top.eml"), raw, 0o644)
	code, out, errOut = sclgate(t, "", "scan", "-classifier", "none", md)
	if code != 0 || !strings.Contains(out, "top.eml") || !strings.Contains(errOut, md+": its files were scanned, not its 2 subdirectories: name those too (e.g. "+md+"/*)") {
		t.Errorf("files and subdirectories: %d %q %q", code, out, errOut)
	}
	os.Remove(filepath.Join(md, "top.eml"))
	odd := filepath.Join(md, "new", "x\x1b]0;owned\x07.eml")
	os.WriteFile(odd, raw, 0o644)
	code, out, errOut = sclgate(t, "", "scan", "-classifier", "none", filepath.Join(md, "new"))
	if code != 0 || strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, "x\uFFFD]0;owned\uFFFD.eml: scl=0") {
		t.Errorf("odd name: %d %q %q", code, out, errOut)
	}
	// An empty directory (a spool with nothing in it now): exit 0, but
	// said, so that a script that gets no output knows why.
	code, out, errOut = sclgate(t, "", "scan", "-classifier", "none", filepath.Join(md, "cur"))
	if code != 0 || out != "" || errOut != "sclgate scan: "+filepath.Join(md, "cur")+": no messages in it: nothing scanned\n" {
		t.Errorf("empty directory: %d %q %q", code, out, errOut)
	}
	// A FIFO and a link to a device are not read (a FIFO would hang),
	// and said; the files next to them are scanned, exit 0.
	specials := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(specials, "fifo.eml"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Symlink("/dev/zero", filepath.Join(specials, "zero.eml"))
	code, out, errOut = sclgate(t, "", "scan", "-classifier", "none", specials)
	if code != 0 || out != "" || errOut != "sclgate scan: "+specials+": 2 entries are not regular files (FIFOs, sockets, devices), not read\n" {
		t.Errorf("a FIFO and a device: %d %q %q", code, out, errOut)
	}
	os.WriteFile(filepath.Join(specials, "a.eml"), raw, 0o644)
	os.Remove(filepath.Join(specials, "zero.eml"))
	code, out, errOut = sclgate(t, "", "scan", "-classifier", "none", specials)
	if code != 0 || !strings.Contains(out, "a.eml: scl=0") || errOut != "sclgate scan: "+specials+": 1 entry is not a regular file (FIFOs, sockets, devices), not read\n" {
		t.Errorf("a FIFO and a file: %d %q %q", code, out, errOut)
	}
	// Links to directories are directories too (a corpus of links).
	links := t.TempDir()
	os.Symlink(md, filepath.Join(links, "ham"))
	code, out, errOut = sclgate(t, "", "scan", "-classifier", "none", links)
	if code != 0 || out != "" || !strings.Contains(errOut, links+": no files, only directories, which are not scanned") {
		t.Errorf("links to directories: %d %q %q", code, out, errOut)
	}
}

func TestScanJSON(t *testing.T) {
	code, out, errOut := sclgate(t, "", "scan", "-json", "-classifier", "none", "-weights", testWeights, "../../testdata/messages/plain.eml", "../../testdata/messages/html-qp-latin1.eml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out)
	}
	var r struct {
		File       string  `json:"file"`
		SCL        *int    `json:"scl"`
		Classifier string  `json:"classifier"`
		Score      float64 `json:"score"`
		Rules      []struct {
			Type, Change, Text string
		} `json:"rules"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &r); err != nil {
		t.Fatal(err)
	}
	// The sample list has BODY +5 and BOTH -2 for "special offer".
	if r.File != "../../testdata/messages/plain.eml" || r.SCL == nil || *r.SCL != 3 || r.Classifier != "none" || r.Score != 0 {
		t.Errorf("plain.eml: %s", lines[0])
	}
	if len(r.Rules) != 2 || r.Rules[0].Type != "BODY" || r.Rules[0].Change != "5" || r.Rules[0].Text != "special offer" ||
		r.Rules[1].Type != "BOTH" || r.Rules[1].Change != "-2" {
		t.Errorf("plain.eml rules: %s", lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &r); err != nil || *r.SCL != 9 {
		t.Errorf("html-qp-latin1.eml: %s", lines[1])
	}
}

func TestScanStdinAndDir(t *testing.T) {
	code, out, _ := sclgate(t, "Subject: x\r\n\r\na special offer\r\n", "scan", "-classifier", "none", "-weights", testWeights)
	if code != 0 || !strings.HasPrefix(out, "-: scl=3 ") {
		t.Errorf("stdin: %d %q", code, out)
	}
	code, out, errOut := sclgate(t, "", "scan", "-json", "../../testdata/messages")
	files, _ := filepath.Glob("../../testdata/messages/*")
	if code != 0 || strings.Count(out, "\n") != len(files) {
		t.Errorf("dir: exit %d, %d lines for %d files\n%s%s", code, strings.Count(out, "\n"), len(files), out, errOut)
	}
}

// An empty -weights scores without the list the configuration names; without
// -weights, the configuration's list counts.
func TestScanWithoutTheConfigsWeights(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "sclgate.yaml")
	abs, _ := filepath.Abs(testWeights)
	os.WriteFile(cfg, []byte("filter:\n  classifier: none\n  weights_file: "+abs+"\n"), 0o644)
	msg := "Subject: x\r\n\r\na special offer\r\n"
	if code, out, errOut := sclgate(t, msg, "scan", "-config", cfg); code != 0 || !strings.HasPrefix(out, "-: scl=3 ") {
		t.Errorf("the configuration's list: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := sclgate(t, msg, "scan", "-config", cfg, "-weights", ""); code != 0 || !strings.HasPrefix(out, "-: scl=0 ") {
		t.Errorf("-weights '': %d %q %q", code, out, errOut)
	}
}

func TestScanUnreadableFileContinues(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.eml")
	os.WriteFile(good, []byte("Subject: hi\r\n\r\nhello\r\n"), 0o644)
	code, out, errOut := sclgate(t, "", "scan", "-classifier", "none", filepath.Join(dir, "missing.eml"), good)
	if code != 1 || !strings.Contains(errOut, "missing.eml") || !strings.Contains(out, "good.eml: scl=0") {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}

func TestScanBadFlags(t *testing.T) {
	if code, _, errOut := sclgate(t, "", "scan", "-classifier", "nosuch"); code != 2 || !strings.Contains(errOut, "nosuch") {
		t.Errorf("unknown classifier: %d %q", code, errOut)
	}
	if code, _, errOut := sclgate(t, "", "scan", "-weights", "../../testdata/weights/bad-type.xml"); code != 2 || !strings.Contains(errOut, "bad-type.xml line") {
		t.Errorf("bad weights: %d %q", code, errOut)
	}
}

func TestWeightsCheck(t *testing.T) {
	code, out, errOut := sclgate(t, "", "weights", "check", testWeights)
	if code != 0 || !strings.Contains(out, "entries") || !strings.Contains(out, "BODY") {
		t.Errorf("good file: %d %q %q", code, out, errOut)
	}
	code, _, errOut = sclgate(t, "", "weights", "check", "../../testdata/weights/bad-type.xml")
	if code != 1 || !strings.Contains(errOut, "bad-type.xml line ") {
		t.Errorf("bad file: %d %q", code, errOut)
	}
	// A misspelt entry element is passed over, but named.
	typo := filepath.Join(t.TempDir(), "typo.xml")
	os.WriteFile(typo, []byte(`<CustomWeightEntries><CustomWeigthEntry Type="BODY" Change="MAX" Text="casino"/></CustomWeightEntries>`), 0o644)
	code, out, errOut = sclgate(t, "", "weights", "check", typo)
	if code != 0 || !strings.Contains(out, ": 0 entries") || !strings.Contains(errOut, "typo.xml line 1: element <CustomWeigthEntry> is not <CustomWeightEntry>; it is ignored") {
		t.Errorf("misspelt entry: %d %q %q", code, out, errOut)
	}
	// ... also when the file has errors besides, and there is no list to
	// ask (it was named only for a good file).
	os.WriteFile(typo, []byte(`<CustomWeightEntries><CustomWeigthEntry Type="BODY" Change="MAX" Text="casino"/>`+
		`<CustomWeightEntry Type="BODDY" Change="5" Text="b"/></CustomWeightEntries>`), 0o644)
	code, _, errOut = sclgate(t, "", "weights", "check", typo)
	if code != 1 || !strings.Contains(errOut, `unknown Type "BODDY"`) || !strings.Contains(errOut, "typo.xml: also: line 1: element <CustomWeigthEntry> is not <CustomWeightEntry>; it is ignored") {
		t.Errorf("misspelt entry and an error: %d %q", code, errOut)
	}
	// One entry is one entry.
	one := filepath.Join(t.TempDir(), "one.xml")
	os.WriteFile(one, []byte(`<CustomWeightEntries><CustomWeightEntry Type="BODY" Change="MAX" Text="casino"/></CustomWeightEntries>`), 0o644)
	if code, out, _ := sclgate(t, "", "weights", "check", one); code != 0 || !strings.Contains(out, ": 1 entry\n") {
		t.Errorf("one entry: %d %q", code, out)
	}
}

// The default classifier is the built-in model: a spam sample scores high,
// a personal note low, and -json gives the spam probability as score.
func TestScanBuiltin(t *testing.T) {
	dir := t.TempDir()
	ham := filepath.Join(dir, "ham.eml")
	os.WriteFile(ham, []byte("From: Alice Example <alice@example.org>\r\nTo: bob@example.com\r\nSubject: Re: minutes of Tuesday's meeting\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a1@example.org>\r\nIn-Reply-To: <b7@example.com>\r\n\r\n"+
		"Hi Bob,\r\n\r\nthanks for the notes. I fixed the two typos in section 3 and pushed the patch to the\r\n"+
		"branch; can you run the test suite again before Thursday? The build failed on the\r\nold compiler.\r\n\r\nAlice\r\n"), 0o644)
	spam := filepath.Join(dir, "spam.eml")
	os.WriteFile(spam, []byte("From: \"Best Deals\" <deals@cheap-pills.biz>\r\nTo: bob@example.com\r\nSubject: FREE!!! Lose weight FAST - 100% GUARANTEED\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<html><body><font color=red size=5><b>ACT NOW!</b></font><br>"+
		"Click here to claim your FREE offer. Earn $$$ from home, no credit check, limited time only!!! "+
		"<a href=\"http://203.0.113.9/remove.php\">Click here to be removed from our mailing list</a></body></html>\r\n"), 0o644)
	code, out, errOut := sclgate(t, "", "scan", "-json", ham, spam)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rs []struct {
		SCL         int     `json:"scl"`
		Classifier  string  `json:"classifier"`
		Score       float64 `json:"score"`
		Definitions string  `json:"definitions"`
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r struct {
			SCL         int     `json:"scl"`
			Classifier  string  `json:"classifier"`
			Score       float64 `json:"score"`
			Definitions string  `json:"definitions"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	if len(rs) != 2 || rs[0].Classifier != "builtin" || rs[0].Definitions == "" {
		t.Fatalf("results %+v", rs)
	}
	if rs[0].SCL >= 5 || rs[0].Score > 0.5 {
		t.Errorf("ham scored SCL %d, p=%v", rs[0].SCL, rs[0].Score)
	}
	if rs[1].SCL < 7 || rs[1].Score < 0.9 {
		t.Errorf("spam scored SCL %d, p=%v", rs[1].SCL, rs[1].Score)
	}
}

// scan -explain lists the built-in model's weightiest features under each
// verdict (text) or as "features" (JSON); a verdict the model did not give
// has none, and a negative count is a usage error.
func TestScanExplain(t *testing.T) {
	msg := "../../testdata/messages/plain.eml"
	code, out, errOut := sclgate(t, "", "scan", "-explain", "4", msg)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if code != 0 || len(lines) != 5 || !strings.HasPrefix(lines[0], msg+": scl=") {
		t.Fatalf("exit %d, %q, %s", code, out, errOut)
	}
	prev := math.Inf(1)
	for _, l := range lines[1:] {
		var w float64
		var name string
		if _, err := fmt.Sscanf(l, "%g %s", &w, &name); err != nil || !strings.HasPrefix(l, "  ") || name == "" {
			t.Fatalf("feature line %q: %v", l, err)
		}
		if math.Abs(w) > prev+0.005 {
			t.Errorf("not weightiest first: %q", out)
		}
		prev = math.Abs(w)
	}

	code, out, _ = sclgate(t, "", "scan", "-json", "-explain", "3", msg)
	var r scanResult
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.Features) != 3 || r.Features[0].Feature == "" {
		t.Fatalf("json: %d %v %q", code, err, out)
	}
	// Without -explain the key is absent, as before.
	if _, out, _ = sclgate(t, "", "scan", "-json", msg); strings.Contains(out, "features") {
		t.Errorf("features without -explain: %s", out)
	}
	// The built-in model standing in for a dead spamd is explained.
	code, out, errOut = sclgate(t, "", "scan", "-json", "-explain", "2", "-classifier", "spamd://127.0.0.1:1", msg)
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.Features) != 2 || !strings.Contains(errOut, "scored by the built-in model") {
		t.Errorf("fallback: %d %v %q %s", code, err, out, errOut)
	}
	if _, out, _ = sclgate(t, "", "scan", "-explain", "3", "-classifier", "none", msg); strings.Count(out, "\n") != 1 {
		t.Errorf("none explained: %q", out)
	}
	if code, _, errOut = sclgate(t, "", "scan", "-explain", "-1", msg); code != 2 || !strings.Contains(errOut, "-explain") {
		t.Errorf("-explain -1: %d %s", code, errOut)
	}
	// Flags may follow the files, as with the archive commands.
	code, out, errOut = sclgate(t, "", "scan", msg, "-json", "-explain", "2")
	if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil || len(r.Features) != 2 || r.File != msg {
		t.Errorf("flags after the file: %d %v %q %s", code, err, out, errOut)
	}
}

// A directory of symlinks to messages (as scripts/corpus.sh lays out the
// corpus) is scanned like one of files.
func TestScanDirFollowsSymlinks(t *testing.T) {
	dir := t.TempDir()
	target, _ := filepath.Abs("../../testdata/messages/plain.eml")
	os.Symlink(target, filepath.Join(dir, "link.eml"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "dangling.eml"))
	// The link is followed; the dangling one is reported like an
	// unreadable file (exit 1), and the others are still scanned.
	code, out, errOut := sclgate(t, "", "scan", "-classifier", "none", dir)
	if code != 1 || !strings.Contains(out, "link.eml: scl=0") || strings.Contains(out, "dangling") || !strings.Contains(errOut, "dangling.eml") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
}

// scan reads at most limits.max_message_bytes of a message, as serve
// takes: a larger one is named and not scanned (exit 1), whatever its
// size, from a file or stdin.
func TestScanTooLarge(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("limits:\n  max_message_bytes: 1000\n"), 0o644)
	big := filepath.Join(dir, "big.eml")
	os.WriteFile(big, []byte("Subject: big\r\n\r\n"+strings.Repeat("x", 2000)+"\r\n"), 0o644)
	small := filepath.Join(dir, "small.eml")
	os.WriteFile(small, []byte("Subject: small\r\n\r\nhello\r\n"), 0o644)
	code, out, errOut := sclgate(t, "", "scan", "-config", cfg, "-classifier", "none", big, small)
	if code != 1 || !strings.Contains(errOut, "big.eml: larger than limits.max_message_bytes (1000 bytes)") || !strings.Contains(out, "small.eml: scl=0") || strings.Contains(out, "big.eml") {
		t.Errorf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
	code, _, errOut = sclgate(t, "Subject: big\r\n\r\n"+strings.Repeat("x", 2000), "scan", "-config", cfg, "-classifier", "none")
	if code != 1 || !strings.Contains(errOut, "stdin: larger than") {
		t.Errorf("stdin: exit %d %q", code, errOut)
	}
}

// Empty input (what fed scan failed: cat missing | sclgate scan) is
// named and not scanned (exit 1): a verdict on nothing would hide it.
func TestScanEmptyInput(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty.eml")
	os.WriteFile(empty, nil, 0o644)
	if code, out, errOut := sclgate(t, "", "scan", "-classifier", "none", empty); code != 1 || out != "" ||
		!strings.Contains(errOut, "empty.eml: empty (0 bytes): not a mail message, not scanned") {
		t.Errorf("empty file: exit %d %q %q", code, out, errOut)
	}
	if code, out, errOut := sclgate(t, "", "scan", "-classifier", "none"); code != 1 || out != "" || !strings.Contains(errOut, "stdin: empty (0 bytes)") {
		t.Errorf("empty stdin: exit %d %q %q", code, out, errOut)
	}
}

// serve takes no arguments: "serve FILE" (the -config forgotten) is a
// usage error, not a gateway (or a passed -check) on the embedded
// defaults, with every flag after FILE dropped by the flag parser.
func TestServeRefusesArguments(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "-check", "/etc/sclgate/sclgate.yaml"},
		{"serve", "extra", "-config", "x.yaml"},
	} {
		code, out, errOut := sclgate(t, "", args...)
		if code != 2 || out != "" || !strings.Contains(errOut, "unexpected argument") || !strings.Contains(errOut, "usage: sclgate serve") {
			t.Errorf("%q: exit %d %q %q", args, code, out, errOut)
		}
	}
}
