//go:build !race

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sclgate/sclgate/defs"
)

// TestBuiltinReproducible rebuilds the built-in definitions as
// scripts/build-defs.sh does (the TRAIN split, seed 1, the embedded
// bundle's version and creation time) and checks that the bundle is the embedded one, byte for
// byte: the README's figures are of a bundle anyone can rebuild. It needs
// the corpus (scripts/corpus.sh, which the README's test command runs);
// without it the test is skipped, except under CI, where it fails. It is
// built without the race detector only (training under it takes minutes);
// scripts/test.sh runs it in a step of its own.
func TestBuiltinReproducible(t *testing.T) {
	train := filepath.Join("..", "..", "corpus", "train")
	if _, err := os.Stat(filepath.Join(train, "spam")); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no corpus under CI (scripts/test.sh runs scripts/corpus.sh): %v", err)
		}
		t.Skipf("no corpus (run scripts/corpus.sh): %v", err)
	}
	builtin, err := defs.Read(bytes.NewReader(defs.Builtin()), 0)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "rebuilt.tar.gz")
	// As scripts/build-defs.sh runs it, from the top of the repository
	// (the manifest names the directories), with the built-in bundle's
	// creation time: the whole bundle comes out the same.
	t.Chdir(filepath.Join("..", ".."))
	t.Setenv("SOURCE_DATE_EPOCH", strconv.FormatInt(builtin.Manifest.Created.Unix(), 10))
	code, stdout, stderr := sclgate(t, "", "defs", "train", "-ham", "corpus/train/ham", "-spam", "corpus/train/spam",
		"-seed", "1", "-version", builtin.Manifest.Version, "-o", out)
	if code != 0 {
		t.Fatalf("defs train: exit %d\n%s%s", code, stdout, stderr)
	}
	rebuilt, err := defs.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rebuilt.Model, builtin.Model) {
		t.Errorf("scripts/build-defs.sh %s would not rebuild the embedded model (%d bytes, embedded %d): "+
			"what the features read changed since it was built; bump scorer.FeatureVersion and rebuild (DEVELOPERS.md)",
			builtin.Manifest.Version, len(rebuilt.Model), len(builtin.Model))
	}
	if b, err := os.ReadFile(out); err != nil || !bytes.Equal(b, defs.Builtin()) {
		t.Errorf("SOURCE_DATE_EPOCH=%d scripts/build-defs.sh %s does not rebuild the embedded bundle byte for byte (%v): manifest %+v, embedded %+v",
			builtin.Manifest.Created.Unix(), builtin.Manifest.Version, err, rebuilt.Manifest, builtin.Manifest)
	}
}
