package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	binenc "encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/scorer"
	"github.com/sclgate/sclgate/update"
)

// updateSetup publishes versions into a directory served over HTTP on
// 127.0.0.1 and writes a config whose updates.source is that server.
func updateSetup(t *testing.T, versions ...string) (configFile, srcDir, pubFile string, priv []byte) {
	t.Helper()
	dir := t.TempDir()
	pub, priv, err := defs.GenerateKey("")
	if err != nil {
		t.Fatal(err)
	}
	pubFile = filepath.Join(dir, "publisher.pub")
	os.WriteFile(pubFile, pub, 0o644)
	srcDir = filepath.Join(dir, "src")
	publishVersions(t, srcDir, priv, versions...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.FileServer(http.Dir(srcDir))}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	configFile = filepath.Join(dir, "sclgate.yaml")
	os.WriteFile(configFile, []byte("definitions:\n  dir: "+filepath.Join(dir, "defs")+
		"\nupdates:\n  source: http://"+ln.Addr().String()+"/\n  trusted_keys: ["+pubFile+"]\n"), 0o644)
	return configFile, srcDir, pubFile, priv
}

// smallModel is a real model, as small as one gets (2^10 weights), so
// that the update tests move kilobytes, not the built-in model's 2 MB.
var smallModel = sync.OnceValues(func() ([]byte, error) {
	var ham, spam [][]byte
	for i := range 4 {
		ham = append(ham, fmt.Appendf(nil, "From: dev%d@lists.example.org\r\nSubject: patch review %d\r\n\r\nthe build passes, merging\r\n", i, i))
		spam = append(spam, fmt.Appendf(nil, "From: deals%d@offers.example.net\r\nSubject: FREE MONEY %d\r\n\r\nclick here now\r\n", i, i))
	}
	m, _, err := scorer.Train(context.Background(), ham, spam,
		scorer.TrainOptions{Bits: 10, Folds: 2, Epochs: []int{1}, L2: []float64{1}, Version: "small"})
	if err != nil {
		return nil, err
	}
	return m.MarshalBinary()
})

// testBundle writes an unsigned bundle of a small real model as version.
func testBundle(t *testing.T, version string) string {
	t.Helper()
	model, err := smallModel()
	if err != nil {
		t.Fatal(err)
	}
	return bundleWithModel(t, version, model)
}

func bundleWithModel(t *testing.T, version string, model []byte) string {
	t.Helper()
	return bundleNeeding(t, version, model, "")
}

// bundleNeeding is bundleWithModel with the manifest's min_sclgate.
func bundleNeeding(t *testing.T, version string, model []byte, minSclgate string) string {
	t.Helper()
	var buf bytes.Buffer
	b := &defs.Bundle{Manifest: defs.Manifest{Version: version, Created: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), TrainingData: "test",
		MinSclgate: minSclgate}, Model: model}
	if err := defs.Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), defs.FileName(version))
	os.WriteFile(p, buf.Bytes(), 0o644)
	return p
}

func publishVersions(t *testing.T, srcDir string, priv []byte, versions ...string) {
	t.Helper()
	var paths []string
	for _, v := range versions {
		paths = append(paths, testBundle(t, v))
	}
	if _, err := update.Publish(srcDir, priv, "", paths); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateDetectExitCodes(t *testing.T) {
	cfg, src, _, priv := updateSetup(t, "2027.10.1")
	if code, out, errOut := sclgate(t, "", "update", "detect", "-config", cfg); code != 10 || !strings.Contains(out, "update available: 2027.10.1") {
		t.Fatalf("detect before install: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || !strings.Contains(out, "installed and activated 2027.10.1") {
		t.Fatalf("install: %d %q %q", code, out, errOut)
	}
	if code, out, _ := sclgate(t, "", "update", "detect", "-config", cfg); code != 0 || !strings.Contains(out, "up to date") {
		t.Errorf("detect after install: %d %q", code, out)
	}
	// Said as detect says it, for a script that looks for "up to date".
	if code, out, _ := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || out != "up to date: the newest version offered, 2027.10.1, is installed and in use; nothing to do\n" {
		t.Errorf("install again: %d %q", code, out)
	}
	if code, out, _ := sclgate(t, "", "update", "install", "-config", cfg, "-version", "2027.10.1"); code != 0 || out != "2027.10.1 is already installed and in use: nothing to do\n" {
		t.Errorf("install -version of the version in use: %d %q", code, out)
	}
	// A source that is down: exit 1 with the reason.
	if code, _, errOut := sclgate(t, "", "update", "detect", "-config", cfg, "-source", "http://127.0.0.1:1/"); code != 1 || !strings.Contains(errOut, "unreachable") ||
		!strings.Contains(errOut, "what to do: check updates.source (or -source) and that this machine can reach it") {
		t.Errorf("unreachable: %d %q", code, errOut)
	}
	// A directory source that is not there (a stick not plugged in).
	if code, _, errOut := sclgate(t, "", "update", "detect", "-config", cfg, "-source", filepath.Join(t.TempDir(), "usb")); code != 1 ||
		!strings.Contains(errOut, "update source unreachable: stat ") || !strings.Contains(errOut, "what to do: updates.source (or -source) names a directory that is not there") {
		t.Errorf("no such directory: %d %q", code, errOut)
	}
	// Tampered index: exit 1, names the file.
	ix := filepath.Join(src, "index.json")
	b, _ := os.ReadFile(ix)
	os.WriteFile(ix, append(b, ' '), 0o644)
	if code, _, errOut := sclgate(t, "", "update", "detect", "-config", cfg); code != 1 || !strings.Contains(errOut, "index.json") || !strings.Contains(errOut, "bad signature") ||
		!strings.Contains(errOut, "what to do: the file was changed after it was signed") {
		t.Errorf("tampered index: %d %q", code, errOut)
	}
	// A web page where the index should be: the URL is wrong, not the
	// signature.
	os.WriteFile(ix, []byte("<!DOCTYPE html><html><body>Not Found</body></html>"), 0o644)
	if code, _, errOut := sclgate(t, "", "update", "detect", "-config", cfg); code != 1 || !strings.Contains(errOut, "index.json: not a definitions index: the source answered with a web page") ||
		strings.Contains(errOut, "bad signature") || !strings.Contains(errOut, "what to do: updates.source (or -source) must be the URL of the directory defs publish wrote") {
		t.Errorf("web page as index: %d %q", code, errOut)
	}
	os.WriteFile(ix, b, 0o644) // the index as signed, offering 2027.10.1 only
	oldIndex, _ := os.ReadFile(ix)
	oldSig, _ := os.ReadFile(ix + ".minisig")
	publishVersions(t, src, priv, "2027.11.1")
	if code, _, _ := sclgate(t, "", "update", "detect", "-config", cfg); code != 10 {
		t.Errorf("detect of 2027.11.1: %d", code)
	}
	code, out, _ := sclgate(t, "", "update", "status", "-config", cfg)
	if !strings.Contains(out, "update available: 2027.11.1\n") {
		t.Errorf("status after detect: %d\n%s", code, out)
	}
	sclgate(t, "", "update", "install", "-config", cfg)
	// The install's own check is the last one status shows (the timer runs
	// install, not detect).
	code, out, _ = sclgate(t, "", "update", "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "in use:     2027.11.1") || !strings.Contains(out, "2027.10.1") || !strings.Contains(out, "automatic updates: disabled") ||
		!regexp.MustCompile(`last check: \S+ at http://127\.0\.0\.1:\d+/: installed 2027\.11\.1\n`).MatchString(out) || !strings.Contains(out, " built 20") || !strings.Contains(out, "last made active ") {
		t.Errorf("status: %d\n%s", code, out)
	}
	// A replayed older index (validly signed, offering only 2027.10.1):
	// refused, with what to do, and recorded.
	os.WriteFile(ix, oldIndex, 0o644)
	os.WriteFile(ix+".minisig", oldSig, 0o644)
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 1 || !strings.Contains(errOut, "replayed or downgraded index") ||
		!strings.Contains(errOut, "what to do: the source serves an index older than what you run") {
		t.Errorf("replayed index: %d %q", code, errOut)
	}
	if _, out, _ := sclgate(t, "", "update", "status", "-config", cfg); !strings.Contains(out, "in use:     2027.11.1") || !strings.Contains(out, ": error: update: ") {
		t.Errorf("status after the replay:\n%s", out)
	}
	if code, out, _ := sclgate(t, "", "update", "rollback", "-config", cfg); code != 0 || out != "rolled back from 2027.11.1 to 2027.10.1\n" {
		t.Errorf("rollback: %d %q", code, out)
	}
	// Before the first install, the built-in definitions were in use: a
	// rollback from it goes back to them.
	if code, out, errOut := sclgate(t, "", "update", "rollback", "-config", cfg); code != 0 || out != "rolled back from 2027.10.1 to the built-in definitions "+builtinVersion()+"\n" {
		t.Errorf("second rollback: %d %q %q", code, out, errOut)
	}
	if code, out, _ := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "in use:     "+builtinVersion()+" (built in; no installed version is active)") {
		t.Errorf("status after rolling back to the built-in definitions: %d\n%s", code, out)
	}
	if code, _, errOut := sclgate(t, "", "update", "rollback", "-config", cfg); code != 1 || !strings.Contains(errOut, "nothing to roll back to: the built-in definitions ("+builtinVersion()+") are in use") ||
		!strings.Contains(errOut, "sclgate update status lists the installed versions") || !strings.Contains(errOut, "sclgate update install -version V") {
		t.Errorf("third rollback: %d %q", code, errOut)
	}
	// With the newer index back, detect says why 2027.11.1 is not
	// offered for install, and how to have it.
	publishVersions(t, src, priv)
	if code, out, errOut := sclgate(t, "", "update", "detect", "-config", cfg); code != 0 ||
		!strings.Contains(out, "up to date: 2027.11.1 was rolled back or downgraded from, so it is not installed again (to have it back: sclgate update install -version 2027.11.1)") {
		t.Errorf("detect after the rollback: %d %q %q", code, out, errOut)
	}
}

func TestUpdateInstallOfflineFile(t *testing.T) {
	cfg, _, _, priv := updateSetup(t)
	p := testBundle(t, "2027.12.1")
	data, _ := os.ReadFile(p)
	sig, _ := defs.Sign(priv, "", data, defs.TrustedComment("2027.12.1", p, time.Now()))
	os.WriteFile(p+".minisig", sig, 0o644)
	// -version picks from the source; a file is its own version.
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, "-version", "2027.12.2", p); code != 2 || !strings.Contains(errOut, "give one or the other") {
		t.Errorf("-version with FILE: %d %q", code, errOut)
	}
	// The configured source is not needed (an offline site's USB stick
	// need not be mounted).
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, regexp.MustCompile(`source: \S+`).ReplaceAll(b, []byte("source: /media/not-mounted/sclgate-defs")), 0o644)
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg, p); code != 0 || !strings.Contains(out, "2027.12.1") {
		t.Fatalf("offline install: %d %q %q", code, out, errOut)
	}
	// Signed by someone else: refused, naming the key.
	_, other, _ := defs.GenerateKey("")
	q := testBundle(t, "2027.12.2")
	data, _ = os.ReadFile(q)
	sig, _ = defs.Sign(other, "", data, defs.TrustedComment("2027.12.2", q, time.Now()))
	os.WriteFile(q+".minisig", sig, 0o644)
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, q); code != 1 || !strings.Contains(errOut, "not a trusted key") ||
		!strings.Contains(errOut, "add its .pub to updates.trusted_keys") || !strings.Contains(errOut, "the definitions in use are unchanged") {
		t.Errorf("foreign key: %d %q", code, errOut)
	}
	// Signed and intact, but a model this build cannot load (here: of
	// another feature set): refused before it is installed.
	small, _ := smallModel()
	model := bytes.Clone(small)
	binenc.LittleEndian.PutUint16(model[6:], binenc.LittleEndian.Uint16(model[6:])+1)
	r := bundleWithModel(t, "2027.12.3", model)
	data, _ = os.ReadFile(r)
	sig, _ = defs.Sign(priv, "", data, defs.TrustedComment("2027.12.3", r, time.Now()))
	os.WriteFile(r+".minisig", sig, 0o644)
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, r); code != 1 ||
		!strings.Contains(errOut, "version 2027.12.3: this build of sclgate cannot use it") || !strings.Contains(errOut, "feature set") {
		t.Errorf("unloadable model: %d %q", code, errOut)
	}
	// A bundle for a newer sclgate than this one: refused likewise.
	r = bundleNeeding(t, "2027.12.4", small, "99.0")
	data, _ = os.ReadFile(r)
	sig, _ = defs.Sign(priv, "", data, defs.TrustedComment("2027.12.4", r, time.Now()))
	os.WriteFile(r+".minisig", sig, 0o644)
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, r); code != 1 ||
		!strings.Contains(errOut, "it needs sclgate 99.0 or later, this is "+version) {
		t.Errorf("min_sclgate: %d %q", code, errOut)
	}
	if code, out, _ := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "in use:     2027.12.1") ||
		strings.Contains(out, "2027.12.3") || strings.Contains(out, "2027.12.4") {
		t.Errorf("status after the refused installs: %d\n%s", code, out)
	}
}

func TestNewEnough(t *testing.T) {
	defer func(v string) { version = v }(version)
	version = "0.1.0-dev" // whatever this build is called
	for _, tc := range []struct {
		min  string
		want bool
	}{
		{"", true},
		{"0.1.0-dev", true},
		{"0.0.9", true},
		{"0.1", true},
		{"0.1.0", true}, // this -dev build counts as its release
		{"0.1.1", false},
		{"0.10", false},
		{"1.0", false},
	} {
		err := update.NewEnough(version, tc.min)
		if (err == nil) != tc.want {
			t.Errorf("min_sclgate %q with sclgate %s: %v", tc.min, version, err)
		}
	}
}

// The publisher's path end to end through the CLI: keygen, publish into a
// directory, and a gateway host that trusts the key and uses the directory
// as its (offline) source.
func TestDefsPublishThenUpdateFromDirectory(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release")
	if code, _, errOut := sclgate(t, "", "defs", "keygen", "-nopass", "-out", key); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	src := filepath.Join(dir, "site")
	code, out, errOut := sclgate(t, "", "defs", "publish", "-key", key+".key", "-nopass", "-dir", src, testBundle(t, "2027.10.1"), testBundle(t, "2027.11.1"))
	if code != 0 || !strings.Contains(out, "2 versions") {
		t.Fatalf("publish: %d %q %q", code, out, errOut)
	}
	// A published version keeps its contents: gateways that have it
	// would not fetch it again. The same bytes again are fine.
	model, _ := smallModel()
	other := bundleNeeding(t, "2027.11.1", model, "0.1.0")
	if code, _, errOut := sclgate(t, "", "defs", "publish", "-key", key+".key", "-nopass", "-dir", src, other); code != 1 || !strings.Contains(errOut, "already published with other contents") {
		t.Errorf("republish with other contents: %d %q", code, errOut)
	}
	if code, _, errOut := sclgate(t, "", "defs", "publish", "-key", key+".key", "-nopass", "-dir", src, testBundle(t, "2027.11.1")); code != 0 {
		t.Errorf("republish of the same bytes: %d %q", code, errOut)
	}
	// Two bundles of one version in one run, with other contents: refused.
	if code, _, errOut := sclgate(t, "", "defs", "publish", "-key", key+".key", "-nopass", "-dir", filepath.Join(dir, "site2"), testBundle(t, "2027.11.1"), other); code != 1 || !strings.Contains(errOut, "is given twice") {
		t.Errorf("one version twice: %d %q", code, errOut)
	}
	// Also when its file was removed: the index remembers. And one bundle
	// refused means none of them is published.
	os.Remove(filepath.Join(src, defs.FileName("2027.11.1")))
	if code, _, errOut := sclgate(t, "", "defs", "publish", "-key", key+".key", "-nopass", "-dir", src, testBundle(t, "2027.12.1"), other); code != 1 || !strings.Contains(errOut, "already published with other contents") {
		t.Errorf("republish after the file was removed: %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(src, defs.FileName("2027.12.1"))); err == nil {
		t.Error("2027.12.1 was published though the batch was refused")
	}
	if code, _, errOut := sclgate(t, "", "defs", "publish", "-key", key+".key", "-nopass", "-dir", src, testBundle(t, "2027.11.1")); code != 0 {
		t.Errorf("publishing the same bytes again: %d %q", code, errOut)
	}
	cfg := filepath.Join(dir, "sclgate.yaml")
	os.WriteFile(cfg, []byte("definitions:\n  dir: "+filepath.Join(dir, "defs")+"\nupdates:\n  source: "+src+"\n  trusted_keys: ["+key+".pub]\n"), 0o644)
	if code, out, errOut := sclgate(t, "", "update", "detect", "-config", cfg); code != 10 || !strings.Contains(out, "2027.11.1") {
		t.Fatalf("detect: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 {
		t.Fatalf("install: %q", errOut)
	}
	if code, out, _ := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "in use:     2027.11.1") || !strings.Contains(out, src) {
		t.Errorf("status:\n%s", out)
	}
}

// A version for a newer sclgate is passed over, and detect says so.
func TestUpdateDetectPassesOverTooNew(t *testing.T) {
	cfg, src, _, priv := updateSetup(t)
	small, err := smallModel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := update.Publish(src, priv, "", []string{bundleNeeding(t, "2027.9.9", small, "99.0")}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := sclgate(t, "", "update", "detect", "-config", cfg)
	if code != 0 || !strings.Contains(out, "passed over: 2027.9.9, which needs sclgate 99.0 or later (this is "+version+")") ||
		!strings.Contains(out, "up to date") {
		t.Errorf("detect: %d %q %q", code, out, errOut)
	}
	// A plain install agrees: nothing to do (exit 0), and why.
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || !strings.Contains(out, "up to date: nothing") || !strings.Contains(out, "needs sclgate 99.0 or later") {
		t.Errorf("install: %d %q %q", code, out, errOut)
	}
	// Asked for by name, it is refused.
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, "-version", "2027.9.9"); code != 1 || !strings.Contains(errOut, "needs sclgate 99.0 or later") {
		t.Errorf("install -version: %d %q", code, errOut)
	}
	// detect's codes are 0, 10 and 1 only: a usage error is 1.
	for _, args := range [][]string{{"detect", "-bogus"}, {"detect", "-config", cfg, "extra"}} {
		if code, _, errOut := sclgate(t, "", append([]string{"update"}, args...)...); code != 1 {
			t.Errorf("update %v: exit %d, want 1 (%s)", args, code, errOut)
		}
	}
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, "a.tar.gz", "b.tar.gz"); code != 2 || !strings.Contains(errOut, `unexpected argument "b.tar.gz"`) {
		t.Errorf("install with two files: %d %q", code, errOut)
	}
}

// The version in use whose record (installed.json) no longer reads is
// listed by status, which exits 1 and says what to do; it was left out,
// with exit 0, and the rollback then failed with no advice.
func TestUpdateStatusUnreadableRecord(t *testing.T) {
	cfg, _, _, _ := updateSetup(t, "2027.10.1")
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 {
		t.Fatalf("install: %d %q", code, errOut)
	}
	os.WriteFile(filepath.Join(filepath.Dir(cfg), "defs", "2027.10.1", "installed.json"), []byte("junk"), 0o644)
	code, out, errOut := sclgate(t, "", "update", "status", "-config", cfg)
	if code != 1 || !strings.Contains(out, "* 2027.10.1") || !strings.Contains(out, "its record cannot be read") ||
		!strings.Contains(errOut, "what to do: install it again (sclgate update install -version 2027.10.1") {
		t.Errorf("status: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := sclgate(t, "", "update", "rollback", "-config", cfg); code != 1 || !strings.Contains(errOut, "install it again with sclgate update install -version 2027.10.1") {
		t.Errorf("rollback: %d %q", code, errOut)
	}
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || !strings.Contains(out, "repaired 2027.10.1") {
		t.Errorf("install: %d %q %q", code, out, errOut)
	}
	if code, out, errOut := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || strings.Contains(out, "cannot be read") {
		t.Errorf("status after the repair: %d\n%s%s", code, out, errOut)
	}
}

// An installed bundle damaged after its install (a disk error, a hand
// edit) is not used: serve scores with the built-in definitions. status
// and serve -check say so, and installing the version again mends it.
func TestUpdateDamagedActiveBundle(t *testing.T) {
	cfg, _, _, _ := updateSetup(t, "2027.10.1")
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 {
		t.Fatalf("install: %d %q", code, errOut)
	}
	bundle := filepath.Join(filepath.Dir(cfg), "defs", "2027.10.1", "bundle.tar.gz")
	good, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	os.WriteFile(bundle, bad, 0o644)

	code, out, errOut := sclgate(t, "", "update", "status", "-config", cfg)
	if code != 1 || !strings.Contains(out, "in use:     "+builtinVersion()+" (built in: the active version 2027.10.1 is unusable: ") ||
		!strings.Contains(errOut, "what to do: install it again (sclgate update install -version 2027.10.1, or update install FILE), or sclgate update rollback") {
		t.Errorf("status: %d\n%s%s", code, out, errOut)
	}
	// detect says so too (exit 10: something to install), as the
	// automatic updater then installs it.
	if code, out, _ := sclgate(t, "", "update", "detect", "-config", cfg); code != 10 || !strings.Contains(out, "the active version, 2027.10.1, is damaged: installing it again repairs it") ||
		!strings.Contains(out, "in use:  "+builtinVersion()+" (built in: the active version 2027.10.1 is damaged)") {
		t.Errorf("detect: %d %q", code, out)
	}
	code, out, errOut = sclgate(t, "", "serve", "-check", "-config", cfg)
	if code != 0 || !strings.Contains(out+errOut, "installed definitions unusable") || !strings.Contains(out+errOut, "serve will score with the built-in") {
		t.Errorf("serve -check: %d\n%s%s", code, out, errOut)
	}
	// A plain install (the timer's) mends it, and then has nothing to do.
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || !strings.Contains(out, "repaired 2027.10.1: its damaged copy was installed again") {
		t.Fatalf("install: %d %q %q", code, out, errOut)
	}
	if b, _ := os.ReadFile(bundle); !bytes.Equal(b, good) {
		t.Error("the damaged bundle was not replaced")
	}
	if code, out, _ := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "in use:     2027.10.1\n") {
		t.Errorf("status after the install: %d\n%s", code, out)
	}
	if code, out, _ := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Errorf("install again: %d %q", code, out)
	}
}

// installedVersions publishes versions (updateSetup) and installs each,
// in order: the last is in use, the others are there to roll back to.
func installedVersions(t *testing.T, versions ...string) (cfg, srcDir string) {
	t.Helper()
	cfg, srcDir, _, _ = updateSetup(t, versions...)
	for _, v := range versions {
		if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, "-version", v); code != 0 {
			t.Fatalf("install %s: %d %q", v, code, errOut)
		}
	}
	return cfg, srcDir
}

// An installed version that reads but that this build cannot use (left
// from before an upgrade or a downgrade of sclgate: here one that needs a
// newer sclgate): status, detect and rollback say what serve does, that
// the built-in definitions score, instead of "in use" and "up to date".
func TestUpdateInstalledButUnusable(t *testing.T) {
	cfg, _ := installedVersions(t, "2027.10.1", "2027.10.2")
	model, err := smallModel()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"2027.10.1", "2027.10.2"} {
		b, _ := os.ReadFile(bundleNeeding(t, v, model, "99.0"))
		os.WriteFile(filepath.Join(filepath.Dir(cfg), "defs", v, "bundle.tar.gz"), b, 0o644)
	}
	code, out, errOut := sclgate(t, "", "update", "status", "-config", cfg)
	if code != 1 || !strings.Contains(out, "in use:     "+builtinVersion()+" (built in: this sclgate cannot use the active version 2027.10.2: it needs sclgate 99.0 or later") ||
		!strings.Contains(errOut, "what to do: install a version this sclgate can use (sclgate update install), or sclgate update rollback") {
		t.Errorf("status: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := sclgate(t, "", "update", "detect", "-config", cfg); code != 1 || !strings.Contains(errOut, "the version in use, 2027.10.2: this build of sclgate cannot use it: it needs sclgate 99.0 or later") {
		t.Errorf("detect: %d %q", code, errOut)
	}
	code, out, errOut = sclgate(t, "", "serve", "-check", "-config", cfg)
	if code != 0 || !strings.Contains(out+errOut, "serve will score with the built-in") {
		t.Errorf("serve -check: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := sclgate(t, "", "update", "rollback", "-config", cfg); code != 1 || !strings.Contains(errOut, "rollback to 2027.10.1 refused, 2027.10.2 stays in use: this build of sclgate cannot use it (it needs sclgate 99.0") {
		t.Errorf("rollback to an unusable version: %d %q", code, errOut)
	}
}

// Switching back to a version rolled back from uses its installed copy,
// verified again: the source may be offline, or no longer offer it.
func TestUpdateInstallVersionFromInstalledCopy(t *testing.T) {
	cfg, srcDir := installedVersions(t, "2027.10.1", "2027.10.2")
	if code, _, errOut := sclgate(t, "", "update", "rollback", "-config", cfg); code != 0 {
		t.Fatalf("rollback: %d %q", code, errOut)
	}
	if err := os.RemoveAll(srcDir); err != nil { // the source offers nothing now
		t.Fatal(err)
	}
	code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg, "-version", "2027.10.2")
	if code != 0 || !strings.Contains(out, "installed and activated 2027.10.2") {
		t.Fatalf("switch back without the source: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "in use:     2027.10.2\n") || !regexp.MustCompile(`\* 2027\.10\.2 .* from http://127\.0\.0\.1:\d+/sclgate-defs-2027\.10\.2\.tar\.gz`).MatchString(out) {
		t.Errorf("status after the switch (the origin stays the source's):\n%s", out)
	}
	// An installed copy that no longer verifies is not used: the source
	// is asked, and here has nothing.
	sigFile := filepath.Join(filepath.Dir(cfg), "defs", "2027.10.1", "bundle.tar.gz.minisig")
	os.WriteFile(sigFile, []byte("untrusted comment: x\nRWQ\n"), 0o644)
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg, "-version", "2027.10.1", "-force"); code != 1 || !strings.Contains(errOut, "the source has no index") {
		t.Errorf("switch to a copy that does not verify, without the source: %d %q", code, errOut)
	}
	if code, out, _ := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "in use:     2027.10.2\n") {
		t.Errorf("status after the refused switch:\n%s", out)
	}
}

// An expired certificate is not a trust problem: the hint says so.
func TestPrintHintExpiredCertificate(t *testing.T) {
	var out strings.Builder
	err := fmt.Errorf("update: download: %w", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}})
	printHint(env{stderr: &out}, err)
	if !strings.Contains(out.String(), "has expired") || strings.Contains(out.String(), "trust store") {
		t.Errorf("hint %q", out.String())
	}
}

// On a host where nothing was ever installed, status and rollback say so
// and leave definitions.dir unmade (a root shell would make it root's).
func TestUpdateFreshHost(t *testing.T) {
	dir := t.TempDir()
	defsDir := filepath.Join(dir, "defs")
	cfg := filepath.Join(dir, "c.yaml")
	os.WriteFile(cfg, []byte("definitions:\n  dir: "+defsDir+"\n"), 0o644)
	if code, out, errOut := sclgate(t, "", "update", "status", "-config", cfg); code != 0 || !strings.Contains(out, "nothing installed in "+defsDir) {
		t.Errorf("status: %d %q %q", code, out, errOut)
	}
	if code, _, errOut := sclgate(t, "", "update", "rollback", "-config", cfg); code != 1 || !strings.Contains(errOut, "nothing to roll back to: the built-in definitions") {
		t.Errorf("rollback: %d %q", code, errOut)
	}
	if _, err := os.Stat(defsDir); !os.IsNotExist(err) {
		t.Errorf("%s made: %v", defsDir, err)
	}
}

// update rollback to a version whose installed copy no longer reads (a
// flipped byte) is refused with what to do, and the version in use stays:
// it switched, said so, exited 0, and serve fell back to the built-in
// definitions.
func TestUpdateRollbackRefusesDamagedTarget(t *testing.T) {
	cfg, src, _, priv := updateSetup(t, "2027.10.1")
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 {
		t.Fatalf("install: %d %q", code, errOut)
	}
	publishVersions(t, src, priv, "2027.11.1")
	if code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 {
		t.Fatalf("install: %d %q", code, errOut)
	}
	bundle := filepath.Join(filepath.Dir(cfg), "defs", "2027.10.1", "bundle.tar.gz")
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	os.WriteFile(bundle, b, 0o644)
	code, out, errOut := sclgate(t, "", "update", "rollback", "-config", cfg)
	if code != 1 || out != "" || !strings.Contains(errOut, "rollback to 2027.10.1 refused, 2027.11.1 stays in use") ||
		!strings.Contains(errOut, "its installed copy is damaged") ||
		!strings.Contains(errOut, "sclgate update install -version 2027.10.1 -force") {
		t.Errorf("rollback to a damaged copy: %d %q %q", code, out, errOut)
	}
	if _, out, _ := sclgate(t, "", "update", "status", "-config", cfg); !strings.Contains(out, "in use:     2027.11.1\n") || strings.Contains(out, "rolled back from") {
		t.Errorf("status after the refused rollback:\n%s", out)
	}
	// What it says to do works.
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg, "-version", "2027.10.1", "-force"); code != 0 || !strings.Contains(out, "installed and activated 2027.10.1") {
		t.Errorf("install -version 2027.10.1 -force: %d %q %q", code, out, errOut)
	}
}

// A signature missing on the source (404) is not "unreachable": the error
// names the .minisig, and the hint says what to do about an unsigned
// source, not to check the network.
func TestUpdateMissingSignature(t *testing.T) {
	cfg, src, _, _ := updateSetup(t, "2027.10.1")
	os.Remove(filepath.Join(src, "index.json.minisig"))
	code, _, errOut := sclgate(t, "", "update", "detect", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "index.json.minisig: no signature on the source (HTTP 404 Not Found): the index is not signed") ||
		strings.Contains(errOut, "unreachable") || strings.Contains(errOut, "can reach it") ||
		!strings.Contains(errOut, "what to do: sclgate never uses an unsigned file") {
		t.Errorf("detect without the index's signature: %d %q", code, errOut)
	}
	os.Remove(filepath.Join(src, "index.json"))
	code, _, errOut = sclgate(t, "", "update", "install", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "index.json: the source has no index at this address (HTTP 404 Not Found)") ||
		strings.Contains(errOut, "unreachable") || !strings.Contains(errOut, "what to do: updates.source (or -source) must be the URL of the directory defs publish wrote") {
		t.Errorf("install without an index: %d %q", code, errOut)
	}
}

// A download cut short says what to do, as every other refusal does, and
// that nothing was installed; run again, it resumes and installs.
func TestUpdateInstallTruncatedDownload(t *testing.T) {
	cfg, src, _, _ := updateSetup(t, "2027.10.1")
	var cut atomic.Bool
	cut.Store(true)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(src))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, ".tar.gz") || !cut.Load() {
			files.ServeHTTP(w, r)
			return
		}
		data, _ := os.ReadFile(filepath.Join(src, filepath.Base(r.URL.Path)))
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		w.Write(data[:len(data)/2]) // then the connection closes
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, regexp.MustCompile(`source: \S+`).ReplaceAll(b, []byte("source: http://"+ln.Addr().String()+"/")), 0o644)

	code, _, errOut := sclgate(t, "", "update", "install", "-config", cfg)
	if code != 1 || !strings.Contains(errOut, "partial download kept") ||
		!strings.Contains(errOut, "what to do: the download ended before the whole file came") ||
		!strings.Contains(errOut, "Nothing was installed; the definitions in use are unchanged.") {
		t.Errorf("cut download: %d %q", code, errOut)
	}
	cut.Store(false)
	if code, out, errOut := sclgate(t, "", "update", "install", "-config", cfg); code != 0 || !strings.Contains(out, "installed and activated 2027.10.1") {
		t.Errorf("install after the cut: %d %q %q", code, out, errOut)
	}
}

// Every refusal an admin can meet says what to do: an index far too
// large, a version the source does not offer, a bundle offered as
// another version.
func TestUpdateHintTooLargeAndNoSuch(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("update: %w", fmt.Errorf("index.json from http://x/ is larger than 1048576 bytes: %w", update.ErrTooLarge)): "far larger than any index",
		fmt.Errorf("update: http://x/: version 9: %w", update.ErrNoSuch):                                                       "index.json lists the versions it offers",
		fmt.Errorf("update: b holds version 1, the index says 2: %w", update.ErrMismatch):                                      "not the version the index offers it as",
	} {
		if h := updateHint(err); !strings.Contains(h, want) || !strings.HasSuffix(h, "the definitions in use are unchanged.") {
			t.Errorf("hint for %v: %q", err, h)
		}
	}
}

// A download started over (its partial file was not the bundle's start)
// reports its rate from the new start, not a negative one.
func TestProgressRestart(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(env{stderr: &out})
	p(4000, 8800) // resumed from a partial file
	p(0, 8800)    // which was not the bundle's: started over
	p(4400, 8800)
	p(8800, 8800)
	if strings.Contains(out.String(), "-") || strings.Count(out.String(), "download: ") != 4 {
		t.Errorf("progress:\n%s", out.String())
	}
}

// status marks an installed version whose copy no longer reads, not only
// the active one: a rollback to it would be refused, and the admin sees
// that before trying.
func TestUpdateStatusMarksDamagedVersion(t *testing.T) {
	cfg, _, _, _ := updateSetup(t, "2027.10.1", "2027.11.1")
	for _, args := range [][]string{{"-version", "2027.10.1"}, {}} {
		if code, _, errOut := sclgate(t, "", append([]string{"update", "install", "-config", cfg}, args...)...); code != 0 {
			t.Fatalf("install %v: %d %q", args, code, errOut)
		}
	}
	bundle := filepath.Join(filepath.Dir(cfg), "defs", "2027.10.1", "bundle.tar.gz")
	if err := os.Truncate(bundle, 100); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := sclgate(t, "", "update", "status", "-config", cfg)
	if code != 0 || !strings.Contains(out, "in use:     2027.11.1\n") ||
		!regexp.MustCompile(`(?m)^    2027\.10\.1 .*\(damaged: .*; install it again before rolling back to it\)$`).MatchString(out) {
		t.Errorf("status: %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "2027.11.1 ") && regexp.MustCompile(`2027\.11\.1 .*damaged`).MatchString(out) {
		t.Errorf("the sound version marked damaged:\n%s", out)
	}
}
