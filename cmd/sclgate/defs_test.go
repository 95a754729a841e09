package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sclgate/sclgate/defs"
	"github.com/sclgate/sclgate/scorer"
)

// writeTestBundle writes a small valid bundle into dir and returns its
// path: a real (tiny) model, and its own calibration in the manifest.
func writeTestBundle(t *testing.T, dir string) string {
	t.Helper()
	return writeBundle(t, dir, false)
}

// writeBundle is writeTestBundle; with fakeTable the manifest shows a made-up
// calibration table with round figures instead, for the tests of defs
// info's layout (defs verify refuses such a bundle).
func writeBundle(t *testing.T, dir string, fakeTable bool) string {
	t.Helper()
	model, err := smallModel()
	if err != nil {
		t.Fatal(err)
	}
	b := &defs.Bundle{
		Manifest: defs.Manifest{
			Version:      "2026.11.1",
			Created:      time.Date(2026, 11, 23, 5, 19, 43, 0, time.UTC),
			TrainingData: "SpamAssassin public corpus, TRAIN split\n2,895 ham + 1,319 spam",
		},
		Model: model,
	}
	if fakeTable {
		for scl := 1; scl <= 9; scl++ {
			b.Manifest.Calibration = append(b.Manifest.Calibration, defs.CalRow{
				SCL: scl, Cut: float64(scl) / 10, HamRate: 0.05 / float64(scl*scl), SpamRate: 1 - float64(scl)/20,
				Ham: 1255 / scl / scl, Spam: 577 - 25*scl,
			})
		}
	} else {
		m, err := scorer.LoadModel(model)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range m.Calibration().Rows {
			b.Manifest.Calibration = append(b.Manifest.Calibration, defs.CalRow{SCL: r.SCL, Cut: r.Cut, HamRate: r.HamRate, SpamRate: r.SpamRate, Ham: r.Ham, Spam: r.Spam})
		}
	}
	path := filepath.Join(dir, defs.FileName(b.Manifest.Version))
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := defs.Write(f, b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// unsetenv removes a variable for the test and restores it after.
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	os.Unsetenv(name)
}

// keygen makes an unencrypted key pair NAME.key/NAME.pub in dir.
func keygen(t *testing.T, dir, name string) (base string) {
	t.Helper()
	base = filepath.Join(dir, name)
	code, out, errOut := sclgate(t, "", "defs", "keygen", "-nopass", "-out", base)
	if code != 0 || !strings.Contains(out, base+".key") {
		t.Fatalf("keygen: exit %d\n%s%s", code, out, errOut)
	}
	return base
}

var okLine = regexp.MustCompile(`^OK: signed by key ([0-9A-F]{16}), sclgate-defs version=2026\.11\.1 file=sclgate-defs-2026\.11\.1\.tar\.gz timestamp=\d+\n$`)

func TestDefsKeygenSignVerify(t *testing.T) {
	dir := t.TempDir()
	bundle := writeTestBundle(t, dir)
	k := keygen(t, dir, "release")
	if st, err := os.Stat(k + ".key"); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("secret key file: %v %v", st.Mode(), err)
	}
	pub, _ := os.ReadFile(k + ".pub")
	id, err := defs.PublicKeyID(pub)
	if err != nil {
		t.Fatal(err)
	}

	// keygen never overwrites.
	code, _, errOut := sclgate(t, "", "defs", "keygen", "-nopass", "-out", k)
	if code != 1 || !strings.Contains(errOut, "exists") {
		t.Errorf("keygen over existing files: %d %q", code, errOut)
	}
	// "-out NAME.key" names the pair by its secret half: NAME.key and
	// NAME.pub, not NAME.key.key.
	k2 := filepath.Join(t.TempDir(), "pair")
	if code, _, errOut := sclgate(t, "", "defs", "keygen", "-nopass", "-out", k2+".key"); code != 0 {
		t.Errorf("keygen -out NAME.key: %d %q", code, errOut)
	}
	for _, p := range []string{k2 + ".key", k2 + ".pub"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("keygen -out NAME.key: %v", err)
		}
	}

	code, out, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", bundle)
	if code != 0 || !strings.Contains(out, "wrote "+bundle+".minisig") {
		t.Fatalf("sign: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = sclgate(t, "", "defs", "verify", "-pub", k+".pub", bundle)
	if m := okLine.FindStringSubmatch(out); code != 0 || m == nil || m[1] != id {
		t.Fatalf("verify: exit %d\n%s%s", code, out, errOut)
	}
	// The key as a base64 line, and among other keys.
	other := keygen(t, dir, "other")
	keyLine := strings.Split(strings.TrimSpace(string(pub)), "\n")[1]
	code, out, _ = sclgate(t, "", "defs", "verify", "-pub", other+".pub", "-P", keyLine, bundle)
	if code != 0 || !okLine.MatchString(out) {
		t.Errorf("verify -P: %d %q", code, out)
	}

	// Signed, but its content is not usable: a manifest whose table is not
	// the model's, or a model this build cannot load. verify says so.
	// defs sign refuses to sign either (signed here by the library).
	priv, _ := os.ReadFile(k + ".key")
	signAnyway := func(path string) {
		t.Helper()
		data, _ := os.ReadFile(path)
		sig, err := defs.Sign(priv, "", data, "test")
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path+".minisig", sig, 0o644)
	}
	fakeDir := t.TempDir()
	fake := writeBundle(t, fakeDir, true)
	if code, _, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", fake); code != 1 || !strings.Contains(errOut, "not signed: the manifest's calibration for SCL 1") {
		t.Errorf("sign of a bundle whose table is not the model's: %d %q", code, errOut)
	}
	// scan and eval use it (the model's own table gives the SCLs), but
	// say what verify and update install refuse it for.
	if code, out, errOut := sclgate(t, "", "scan", "-defs", fake, "../../testdata/messages/plain.eml"); code != 0 || out == "" || !strings.Contains(errOut, "sclgate scan: warning: "+fake+": the manifest's calibration for SCL 1") {
		t.Errorf("scan -defs with a table not the model's: %d %q %q", code, out, errOut)
	}
	signAnyway(fake)
	code, out, errOut = sclgate(t, "", "defs", "verify", "-pub", k+".pub", fake)
	if code != 1 || out != "" || !strings.Contains(errOut, "signed by key "+id+", but the manifest's calibration for SCL 1") {
		t.Errorf("manifest table not the model's: %d %q %q", code, out, errOut)
	}
	var nb bytes.Buffer
	if err := defs.Write(&nb, &defs.Bundle{Manifest: defs.Manifest{Version: "2026.11.2", Created: time.Now(), TrainingData: "x"}, Model: []byte("not a model")}); err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(fakeDir, "junk.tar.gz")
	os.WriteFile(junk, nb.Bytes(), 0o644)
	if code, _, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", junk); code != 1 || !strings.Contains(errOut, "not signed: its model does not load") {
		t.Errorf("sign of a bundle with a junk model: %d %q", code, errOut)
	}
	signAnyway(junk)
	code, _, errOut = sclgate(t, "", "defs", "verify", "-pub", k+".pub", junk)
	if code != 1 || !strings.Contains(errOut, "but its model does not load") {
		t.Errorf("unloadable model: %d %q", code, errOut)
	}

	// A key that is not trusted: both ids are named.
	otherPub, _ := os.ReadFile(other + ".pub")
	otherID, _ := defs.PublicKeyID(otherPub)
	code, out, errOut = sclgate(t, "", "defs", "verify", "-pub", other+".pub", bundle)
	if code != 1 || out != "" || !strings.Contains(errOut, "unknown signing key") || !strings.Contains(errOut, id) || !strings.Contains(errOut, otherID) {
		t.Errorf("untrusted key: %d %q %q", code, out, errOut)
	}

	// A tampered bundle.
	data, _ := os.ReadFile(bundle)
	data[len(data)/2] ^= 1
	os.WriteFile(bundle, data, 0o644)
	code, out, errOut = sclgate(t, "", "defs", "verify", "-pub", k+".pub", bundle)
	if code != 1 || out != "" || !strings.Contains(errOut, "bad signature") || !strings.Contains(errOut, bundle) {
		t.Errorf("tampered bundle: %d %q %q", code, out, errOut)
	}
	// sign refuses to sign it.
	code, _, errOut = sclgate(t, "", "defs", "sign", "-key", k+".key", bundle)
	if code != 1 || !strings.Contains(errOut, "malformed bundle") && !strings.Contains(errOut, "checksum mismatch") {
		t.Errorf("sign of a broken bundle: %d %q", code, errOut)
	}
	data[len(data)/2] ^= 1
	os.WriteFile(bundle, data, 0o644)

	// A tampered trusted comment.
	sig, _ := os.ReadFile(bundle + ".minisig")
	os.WriteFile(bundle+".minisig", []byte(strings.Replace(string(sig), "version=2026.11.1", "version=2026.11.2", 1)), 0o644)
	code, _, errOut = sclgate(t, "", "defs", "verify", "-pub", k+".pub", bundle)
	if code != 1 || !strings.Contains(errOut, "bad signature") {
		t.Errorf("tampered comment: %d %q", code, errOut)
	}
	os.Remove(bundle + ".minisig")
	code, _, errOut = sclgate(t, "", "defs", "verify", "-pub", k+".pub", bundle)
	if code != 1 || !strings.Contains(errOut, ".minisig") {
		t.Errorf("missing signature: %d %q", code, errOut)
	}
}

func TestDefsPasswords(t *testing.T) {
	dir := t.TempDir()
	unsetenv(t, passwordEnv)
	code, _, errOut := sclgate(t, "", "defs", "keygen", "-out", filepath.Join(dir, "k"))
	if code != 2 || !strings.Contains(errOut, passwordEnv) || !strings.Contains(errOut, "-nopass") {
		t.Errorf("keygen without a password: %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "k.key")); err == nil {
		t.Error("keygen wrote a key anyway")
	}

	// An encrypted key (only its header matters: it is never decrypted
	// without a password) and no password.
	raw := make([]byte, 158)
	copy(raw, "EdScB2")
	enc := filepath.Join(dir, "enc.key")
	os.WriteFile(enc, []byte("untrusted comment: minisign encrypted secret key\n"+base64.StdEncoding.EncodeToString(raw)+"\n"), 0o600)
	bundle := writeTestBundle(t, dir)
	code, _, errOut = sclgate(t, "", "defs", "sign", "-key", enc, bundle)
	if code != 1 || !strings.Contains(errOut, "the secret key is encrypted, and no password was given") || strings.Contains(errOut, "wrong password") || !strings.Contains(errOut, "set "+passwordEnv) {
		t.Errorf("sign with an encrypted key and no password: %d %q", code, errOut)
	}
	if _, err := os.Stat(bundle + ".minisig"); err == nil {
		t.Error("sign wrote a signature anyway")
	}
	// -nopass with an encrypted key: said plainly, for sign and publish.
	for _, args := range [][]string{{"sign", "-nopass", "-key", enc, bundle}, {"publish", "-nopass", "-key", enc, "-dir", filepath.Join(dir, "site"), bundle}} {
		code, _, errOut = sclgate(t, "", append([]string{"defs"}, args...)...)
		if code != 1 || !strings.Contains(errOut, "enc.key is encrypted: leave out -nopass") || strings.Contains(errOut, "set "+passwordEnv) {
			t.Errorf("%s -nopass with an encrypted key: %d %q", args[0], code, errOut)
		}
	}
}

// A public key given where the secret key belongs (-key rel.pub) is
// named as such, for sign and publish, with -nopass or without: it was
// taken for an encrypted key, or failed as "invalid private key".
func TestDefsSignWithPublicKey(t *testing.T) {
	dir := t.TempDir()
	unsetenv(t, passwordEnv)
	k := keygen(t, dir, "rel")
	bundle := writeTestBundle(t, dir)
	site := filepath.Join(dir, "site")
	for _, args := range [][]string{
		{"sign", "-nopass", "-key", k + ".pub", bundle}, {"sign", "-key", k + ".pub", bundle},
		{"publish", "-nopass", "-key", k + ".pub", "-dir", site, bundle}, {"publish", "-key", k + ".pub", "-dir", site, bundle},
	} {
		code, _, errOut := sclgate(t, "", append([]string{"defs"}, args...)...)
		if code != 1 || !strings.Contains(errOut, "rel.pub is a public key: give the secret key (.key) to sign; the .pub goes in updates.trusted_keys") ||
			strings.Contains(errOut, "encrypted") || strings.Contains(errOut, "invalid private key") {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}
	if _, err := os.Stat(bundle + ".minisig"); err == nil {
		t.Error("sign wrote a signature")
	}
	if _, err := os.Stat(site); err == nil {
		t.Error("publish wrote the site")
	}
}

func TestDefsInfo(t *testing.T) {
	dir := t.TempDir()
	// A table that is not the model's (this one is made up, to check the
	// layout) is shown, and said to be false (exit 1): it was shown as
	// the model's own.
	bundle := writeBundle(t, dir, true)
	code, out, errOut := sclgate(t, "", "defs", "info", bundle)
	if code != 1 || !strings.Contains(errOut, "warning: the manifest's calibration for SCL 1") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if code, _, errOut := sclgate(t, "", "defs", "info", writeBundle(t, t.TempDir(), false)); code != 0 || errOut != "" {
		t.Errorf("info of a bundle whose table is the model's: %d %q", code, errOut)
	}
	for _, want := range []string{
		"version:        2026.11.1\n",
		"created:        2026-11-23T05:19:43Z\n",
		"training data:  SpamAssassin public corpus, TRAIN split\n                2,895 ham + 1,319 spam\n",
		"  model.bin  ",
		"  SCL     cut  ham FP rate  spam catch rate   ham  spam\n",
		"    1  0.1000        5.00%           95.00%  1255   552\n",
		"    5  0.5000        0.20%           75.00%    50   452\n",
		"    9  0.9000        0.06%           55.00%    15   352\n",
		"signature: not checked",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("info output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = sclgate(t, "", "defs", "info", "-json", bundle)
	var m defs.Manifest
	if err := json.Unmarshal([]byte(out), &m); code != 1 || err != nil || m.Version != "2026.11.1" || len(m.Calibration) != 9 || m.Calibration[8].Spam != 352 {
		t.Errorf("info -json: %d %v\n%s", code, err, out)
	}
	if !strings.Contains(out, `"ham_rate": 0.05,`) || !strings.Contains(out, `"model.bin": "`) {
		t.Errorf("info -json field names:\n%s", out)
	}

	// No bundle: the built-in definitions, with their calibration table.
	code, out, errOut = sclgate(t, "", "defs", "info")
	if code != 0 || !strings.Contains(out, "bundle:         built in\n") || !strings.Contains(out, "version:        "+builtinVersion()+"\n") ||
		!strings.Contains(out, "spam catch rate") || !strings.Contains(out, "signature: none needed") {
		t.Errorf("info without a bundle: %d %q\n%s", code, errOut, out)
	}

	// A damaged bundle: the reason, and nothing on stdout.
	data, _ := os.ReadFile(bundle)
	os.WriteFile(bundle, data[:len(data)-20], 0o644)
	code, out, errOut = sclgate(t, "", "defs", "info", bundle)
	if code != 1 || out != "" || !strings.Contains(errOut, "malformed bundle") || !strings.Contains(errOut, "truncated") {
		t.Errorf("truncated bundle: %d %q %q", code, out, errOut)
	}
}

func TestDefsUsage(t *testing.T) {
	if code, _, errOut := sclgate(t, "", "defs"); code != 2 || !strings.Contains(errOut, "defs keygen") {
		t.Errorf("no subcommand: %d %q", code, errOut)
	}
	if code, _, errOut := sclgate(t, "", "defs", "nosuch"); code != 2 || !strings.Contains(errOut, `unknown command "nosuch"`) {
		t.Errorf("unknown subcommand: %d %q", code, errOut)
	}
	for _, args := range [][]string{{"keygen"}, {"sign", "x"}, {"verify", "x"}, {"info", "a", "b"}, {"info", "-nope", "x"}} {
		if code, _, _ := sclgate(t, "", append([]string{"defs"}, args...)...); code != 2 {
			t.Errorf("defs %v: exit %d, want 2", args, code)
		}
	}
	// train and eval belong to the model code; they are reached.
	for _, sub := range []string{"train", "eval"} {
		if _, _, errOut := sclgate(t, "", "defs", sub, "-h"); strings.Contains(errOut, "unknown command") {
			t.Errorf("defs %s not dispatched: %q", sub, errOut)
		}
	}
}

// TestDefsMinisignInterop proves the formats are minisign's with the real
// minisign tool: it verifies what sclgate signs, sclgate signs with a key
// minisign made, and sclgate verifies what minisign signs with a key sclgate
// made. It fails when minisign is not installed (scripts/test.sh installs it).
func TestDefsMinisignInterop(t *testing.T) {
	minisign, err := exec.LookPath("minisign")
	if err != nil {
		t.Fatal("minisign not found: install it (apt-get install minisign; scripts/test.sh does)")
	}
	run := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command(minisign, args...)
		cmd.Stdin = nil // never a terminal: minisign must not prompt
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	dir := t.TempDir()
	bundle := writeTestBundle(t, dir)

	// 1. sclgate keygen + sign, minisign -V (with -H: prehashed required).
	k := keygen(t, dir, "sclgate")
	if code, out, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", bundle); code != 0 {
		t.Fatalf("sign: %d %s%s", code, out, errOut)
	}
	out, err := run("-V", "-H", "-p", k+".pub", "-m", bundle)
	if err != nil || !strings.Contains(out, "Signature and comment signature verified") ||
		!strings.Contains(out, "Trusted comment: sclgate-defs version=2026.11.1 file=sclgate-defs-2026.11.1.tar.gz timestamp=") {
		t.Fatalf("minisign -V of sclgate's signature: %v\n%s", err, out)
	}

	// 2. minisign -G -W key, sclgate defs sign, both verify.
	m := filepath.Join(dir, "mini")
	if out, err := run("-G", "-W", "-p", m+".pub", "-s", m+".key"); err != nil {
		t.Fatalf("minisign -G -W: %v\n%s", err, out)
	}
	if code, out, errOut := sclgate(t, "", "defs", "sign", "-key", m+".key", bundle); code != 0 {
		t.Fatalf("sign with minisign's key: %d %s%s", code, out, errOut)
	}
	if out, err := run("-V", "-p", m+".pub", "-m", bundle); err != nil || !strings.Contains(out, "Signature and comment signature verified") {
		t.Fatalf("minisign -V: %v\n%s", err, out)
	}
	if code, out, errOut := sclgate(t, "", "defs", "verify", "-pub", m+".pub", bundle); code != 0 || !okLine.MatchString(out) {
		t.Fatalf("sclgate verify with minisign's key: %d %s%s", code, out, errOut)
	}

	// 3. minisign -S with sclgate's key; sclgate verifies it.
	if out, err := run("-S", "-s", k+".key", "-m", bundle, "-t", "sclgate-defs version=2026.11.1 file=x timestamp=1"); err != nil {
		t.Fatalf("minisign -S with sclgate's key: %v\n%s", err, out)
	}
	code, out, errOut := sclgate(t, "", "defs", "verify", "-pub", k+".pub", bundle)
	if code != 0 || !strings.HasSuffix(out, ", sclgate-defs version=2026.11.1 file=x timestamp=1\n") {
		t.Fatalf("sclgate verify of minisign's signature: %d %s%s", code, out, errOut)
	}

	// 4. Both reject a tampered bundle.
	data, _ := os.ReadFile(bundle)
	data[len(data)-10] ^= 1
	os.WriteFile(bundle, data, 0o644)
	if out, err := run("-V", "-p", k+".pub", "-m", bundle); err == nil {
		t.Errorf("minisign -V accepted a tampered bundle:\n%s", out)
	}
	if code, _, errOut := sclgate(t, "", "defs", "verify", "-pub", k+".pub", bundle); code != 1 || !strings.Contains(errOut, "bad signature") {
		t.Errorf("sclgate verify of a tampered bundle: %d %q", code, errOut)
	}
}

// A key or signature file that is not one is named, not the bundle.
func TestDefsVerifyNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	bundle := writeTestBundle(t, dir)
	k := keygen(t, dir, "release")
	if code, _, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", bundle); code != 0 {
		t.Fatalf("sign: %d %s", code, errOut)
	}
	junk := filepath.Join(dir, "junk.minisig")
	os.WriteFile(junk, []byte("garbage\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-pub", k + ".key", bundle}, "release.key: not a minisign public key"},
		{[]string{"-P", "abc", bundle}, "-P key 1: not a minisign public key"},
		{[]string{"-pub", k + ".pub", "-sig", junk, bundle}, "junk.minisig: bad signature: malformed signature file"},
	} {
		code, _, errOut := sclgate(t, "", append([]string{"defs", "verify"}, tc.args...)...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// A manifest whose table claims other rates than the model's (an edited
// ham_rate) is caught by verify, refused by sign, publish and install; a
// bundle for a newer sclgate, whose model this build cannot load, is
// still signed (the publisher's sclgate may be older than the fleet's).
func TestDefsEditedRatesAndNewerBundles(t *testing.T) {
	ham, spam := modelCorpus(t, 6)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.tar.gz")
	if code, _, errOut := sclgate(t, "", "defs", "train", "-bits", "12", "-version", "2026.11.1", "-o", good, "-ham", ham, "-spam", spam); code != 0 {
		t.Fatalf("train: %d %s", code, errOut)
	}
	b, err := defs.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	b.Manifest.Calibration[6].HamRate = 0.5
	var buf bytes.Buffer
	if err := defs.Write(&buf, b); err != nil {
		t.Fatal(err)
	}
	edited := filepath.Join(dir, "edited.tar.gz")
	os.WriteFile(edited, buf.Bytes(), 0o644)
	k := keygen(t, dir, "k")
	if code, _, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", edited); code != 1 || !strings.Contains(errOut, "not signed: the manifest's calibration for SCL 7 (cut") || !strings.Contains(errOut, "ham rate 0.5") {
		t.Errorf("sign: %d %q", code, errOut)
	}
	if code, _, errOut := sclgate(t, "", "defs", "publish", "-key", k+".key", "-nopass", "-dir", filepath.Join(dir, "src"), edited); code != 1 || !strings.Contains(errOut, "not published: the manifest's calibration for SCL 7") {
		t.Errorf("publish: %d %q", code, errOut)
	}
	priv, _ := os.ReadFile(k + ".key")
	sig, _ := defs.Sign(priv, "", buf.Bytes(), "test")
	os.WriteFile(edited+".minisig", sig, 0o644)
	if code, _, errOut := sclgate(t, "", "defs", "verify", "-pub", k+".pub", edited); code != 1 || !strings.Contains(errOut, "ham rate 0.5") {
		t.Errorf("verify: %d %q", code, errOut)
	}
	if err := modelLoads(b); err == nil {
		t.Error("install would take the edited bundle")
	}

	var nb bytes.Buffer
	defs.Write(&nb, &defs.Bundle{Manifest: defs.Manifest{Version: "2099.1.1", Created: time.Now(), TrainingData: "x", MinSclgate: "99.0.0"}, Model: []byte("a model of feature set 99")})
	newer := filepath.Join(dir, "newer.tar.gz")
	os.WriteFile(newer, nb.Bytes(), 0o644)
	if code, _, errOut := sclgate(t, "", "defs", "sign", "-key", k+".key", newer); code != 0 {
		t.Errorf("sign of a bundle for a newer sclgate: %d %q", code, errOut)
	}
	// verify cannot vouch for its model here, and says why.
	if code, _, errOut := sclgate(t, "", "defs", "verify", "-pub", k+".pub", newer); code != 1 || !strings.Contains(errOut, "it is for sclgate 99.0.0 or later, check it with that") {
		t.Errorf("verify of a bundle for a newer sclgate: %d %q", code, errOut)
	}
}

// Usage errors of sign and verify say what is missing (they printed the
// usage alone); keygen -nopass says it ignores SCLGATE_KEY_PASSWORD.
func TestDefsSignVerifyUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"defs", "verify", "-pub", "k.pub"}, "sclgate defs verify: BUNDLE is missing"},
		{[]string{"defs", "verify", "b.tar.gz"}, "sclgate defs verify: -pub FILE (or -P KEY) is required"},
		{[]string{"defs", "verify", "-pub", "k.pub", "a", "b"}, "one BUNDLE at a time (2 given)"},
		{[]string{"defs", "sign", "-key", "k.key"}, "sclgate defs sign: BUNDLE is missing"},
		{[]string{"defs", "sign", "b.tar.gz"}, "sclgate defs sign: -key FILE is required"},
	} {
		if code, _, errOut := sclgate(t, "", tc.args...); code != 2 || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "usage:") {
			t.Errorf("%v: %d %q", tc.args, code, errOut)
		}
	}
	t.Setenv(passwordEnv, "secret")
	base := filepath.Join(t.TempDir(), "k")
	if code, _, errOut := sclgate(t, "", "defs", "keygen", "-nopass", "-out", base); code != 0 || !strings.Contains(errOut, "-nopass: SCLGATE_KEY_PASSWORD is ignored") {
		t.Errorf("keygen -nopass: %d %q", code, errOut)
	}
}
