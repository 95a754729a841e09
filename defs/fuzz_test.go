package defs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the seed bundles in testdata/")

// seedBundles are the files in testdata/: each a bundle, good or bad in one
// way, and what Read says of it ("" for a good one). They seed FuzzRead.
func seedBundles(t testing.TB) map[string][]byte {
	model := []byte("model\x00bytes")
	manifest := manifestFor(t, model, nil)
	link := entry{tar.Header{Typeflag: tar.TypeSymlink, Name: ModelName, Linkname: "/etc/shadow", ModTime: testCreated}, nil}
	return map[string][]byte{
		"good.tar.gz":          writeBundle(t, sampleBundle()),
		"traversal.tar.gz":     makeArchive(t, reg(ManifestName, manifest), reg("../"+ModelName, model)),
		"absolute.tar.gz":      makeArchive(t, reg("/etc/cron.d/"+ManifestName, manifest)),
		"symlink.tar.gz":       makeArchive(t, reg(ManifestName, manifest), link),
		"extra-member.tar.gz":  makeArchive(t, reg(ManifestName, manifest), reg(ModelName, model), reg("x", nil)),
		"duplicate.tar.gz":     makeArchive(t, reg(ManifestName, manifest), reg(ModelName, model), reg(ModelName, model)),
		"bad-checksum.tar.gz":  makeArchive(t, reg(ManifestName, manifest), reg(ModelName, append(model, '!'))),
		"newer-format.tar.gz":  makeArchive(t, reg(ManifestName, manifestFor(t, model, func(m *Manifest) { m.FormatVersion = 2 })), reg(ModelName, model)),
		"truncated.tar.gz":     writeBundle(t, sampleBundle())[:300],
		"trailing-data.tar.gz": append(writeBundle(t, sampleBundle()), "junk"...),
	}
}

var seedResults = map[string]string{
	"good.tar.gz":          "",
	"traversal.tar.gz":     "path traversal",
	"absolute.tar.gz":      "absolute path",
	"symlink.tar.gz":       "is a link",
	"extra-member.tar.gz":  "unexpected member",
	"duplicate.tar.gz":     "appears twice",
	"bad-checksum.tar.gz":  "checksum mismatch",
	"newer-format.tar.gz":  "format version 2",
	"truncated.tar.gz":     "truncated",
	"trailing-data.tar.gz": "after the end of the gzip stream",
}

// TestSeeds checks what Read says of every seed file; with -update it
// writes them first.
func TestSeeds(t *testing.T) {
	if *update {
		for name, data := range seedBundles(t) {
			if err := os.WriteFile(filepath.Join("testdata", name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, want := range seedResults {
		_, err := ReadFile(filepath.Join("testdata", name))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want %q", name, err, want)
		}
	}
}

// FuzzRead: whatever the bytes, Read does not panic, fails only with
// ErrFormat or ErrChecksum, and what it accepts is a valid bundle that
// Write and Read reproduce. Each input is read as it is and, so that the
// mutations reach the tar layer too, gzipped.
func FuzzRead(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.tar.gz")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		if zr, err := gzip.NewReader(bytes.NewReader(data)); err == nil {
			raw, _ := io.ReadAll(zr)
			f.Add(raw)
		}
	}
	f.Add([]byte{})
	f.Add(gzipBytes(f, nil))
	var zbuf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestSpeed) // reused: a worker runs inputs one at a time
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRead(t, data)
		zbuf.Reset()
		zw.Reset(&zbuf)
		zw.Write(data)
		zw.Close()
		checkRead(t, zbuf.Bytes())
	})
}

func checkRead(t *testing.T, data []byte) {
	t.Helper()
	b, err := Read(bytes.NewReader(data), 1<<20)
	if err != nil {
		if !errors.Is(err, ErrFormat) && !errors.Is(err, ErrChecksum) {
			t.Fatalf("error wraps neither ErrFormat nor ErrChecksum: %v", err)
		}
		return
	}
	if err := b.Manifest.check(); err != nil {
		t.Fatalf("accepted a bad manifest: %v", err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, b); err != nil {
		t.Fatalf("cannot write back what was read: %v", err)
	}
	b2, err := Read(&buf, 2<<20)
	if err != nil {
		t.Fatalf("cannot read back what was written: %v", err)
	}
	if !bytes.Equal(b.Model, b2.Model) || b.Manifest.Version != b2.Manifest.Version || !b.Manifest.Created.Equal(b2.Manifest.Created) {
		t.Fatal("round trip changed the bundle")
	}
}

// FuzzManifest: any manifest text is read or refused, never a panic (the
// key check walks the JSON tokens itself).
func FuzzManifest(f *testing.F) {
	f.Add([]byte(`{"format_version":1,"version":"1","members":{"model.bin":"00"},"calibration":[{"scl":1,"cut":0}]}`))
	f.Add([]byte(`{"a":[{"b":{"c":[1,{"d":2}]}}],"members":{"X":{}}}`))
	f.Add([]byte(`[{"VERSION":1},{"version":2}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseManifest(data)
	})
}
